"""Timers: block timeouts and flow inactivity, kept in the database.

The deadlines live in the session rows (the engine computes them from the `now` it is given),
so a restart loses none. Every `interval` the worker lists the sessions whose deadline passed
and fires each through `Service.fire_timer`, which locks the conversation, re-reads the session
and checks the deadline again: two replicas, or a timer racing a customer message, fire once.
The same loop answers bursts (a flow's `debounce`) whose window has closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime

import structlog

from agentbot.errors import StoreError
from agentbot.service import Service

log = structlog.get_logger("agentbot.timers")


class Timers:
    def __init__(
        self, service: Service, *, clock: Callable[[], datetime], interval: float = 1.0
    ) -> None:
        self.service = service
        self.clock = clock
        self.interval = interval

    async def run(self) -> None:
        while True:
            try:
                await self.run_once()
            except StoreError as exc:
                log.warning("timers.database_unavailable", error=str(exc))
            await asyncio.sleep(self.interval)

    async def run_once(self) -> int:
        """Fire every deadline due now and answer every burst whose window closed; the number
        of conversations stepped."""
        now = self.clock()
        fired = 0
        for account_id, conversation_id in await self.service.store.due_bursts(now):
            with contextlib.suppress(StoreError):
                handled = await self.service.release_burst(account_id, conversation_id, now)
                fired += handled.result.value == "acted"
        for account_id, conversation_id in await self.service.store.due_timers(now):
            with contextlib.suppress(StoreError):
                handled = await self.service.fire_timer(account_id, conversation_id, now)
                fired += handled.result.value == "acted"
        return fired
