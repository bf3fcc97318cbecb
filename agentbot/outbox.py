"""The outbox worker: carries out the actions the engine decided, in order per conversation.

Two layers of retry. Inside one attempt, tenacity retries a call Chatwoot did not answer (a
timeout, a 5xx, a 429) a few times within seconds. Across attempts, the row's `attempts` and
`next_attempt_at` come from the pure `RetryPolicy.next_delay`, so a restart or an outage only
delays a reply. A 4xx other than 429 is final: the row is dead-lettered with Chatwoot's answer
and the conversation handed off, since the customer would otherwise wait for a bot that failed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, assert_never

import structlog
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from agentbot.chatwoot import ChatwootClient
from agentbot.engine import Action, AddLabels, Handoff, Option, SendOptions, SendText
from agentbot.errors import ChatwootRejected, ChatwootUnavailable, StoreError
from agentbot.store import Claim, Store

log = structlog.get_logger("agentbot.outbox")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When to try again. Defaults: at most 60 s apart, given up after at least an hour."""

    in_process_attempts: int = 3
    in_process_seconds: float = 10.0
    in_process_wait_max: float = 5.0
    first_delay: float = 1.0
    max_delay: float = 60.0
    give_up_after: float = 3600.0
    min_attempts: int = 10

    def next_delay(
        self, attempts: int, age_seconds: float, retry_after: float | None = None
    ) -> float | None:
        """Seconds until the next attempt after `attempts` failed ones, or None to give up."""
        if attempts >= self.min_attempts and age_seconds >= self.give_up_after:
            return None
        delay = min(self.max_delay, self.first_delay * 2.0 ** max(0, attempts - 1))
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.give_up_after))
        return delay


def encode(action: Action) -> dict[str, Any]:
    """An engine action as the JSON stored in the outbox."""
    match action:
        case SendText(text=text, block=block):
            return {"type": "text", "text": text, "block": block}
        case SendOptions(text=text, options=options, block=block):
            items = [{"title": o.title, "value": o.value} for o in options]
            return {"type": "options", "text": text, "options": items, "block": block}
        case AddLabels(labels=labels, block=block):
            return {"type": "labels", "labels": list(labels), "block": block}
        case Handoff(reason=reason, block=block):
            return {"type": "handoff", "reason": reason, "block": block}
        case _:
            assert_never(action)


def decode(data: Mapping[str, Any]) -> Action:
    block = str(data.get("block") or "")
    kind = data.get("type")
    if kind == "text":
        return SendText(str(data["text"]), block)
    if kind == "options":
        options = tuple(Option(str(o["title"]), str(o["value"])) for o in data["options"])
        return SendOptions(str(data["text"]), options, block)
    if kind == "labels":
        return AddLabels(tuple(str(x) for x in data["labels"]), block)
    if kind == "handoff":
        return Handoff(str(data.get("reason") or ""), block)
    raise ValueError(f"unknown outbox action type {kind!r}")


class Outbox:
    def __init__(
        self,
        store: Store,
        client: ChatwootClient | None,
        *,
        policy: RetryPolicy | None = None,
        concurrency: int = 8,
        poll_interval: float = 1.0,
        probe_interval: float = 5.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.client = client
        self.policy = policy or RetryPolicy()
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.probe_interval = probe_interval
        self.sleep = sleep
        self.clock = clock
        self._wakeup = asyncio.Event()
        self._slots: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        """New work was committed: look now rather than at the next poll."""
        self._wakeup.set()

    async def run(self) -> None:
        """Deliver until cancelled. Without a Chatwoot client, replies wait in the outbox."""
        if self.client is None:
            log.warning("outbox.waiting", reason="Chatwoot is not configured")
            await asyncio.Event().wait()
        loop = asyncio.get_running_loop()
        last_probe = loop.time()
        try:
            while True:
                self._wakeup.clear()
                if not self._slots:
                    # Rows waiting out a backoff may wait up to a minute; a probe every few
                    # seconds notices Chatwoot's return and wakes them all.
                    probe = loop.time() - last_probe >= self.probe_interval
                    if probe:
                        last_probe = loop.time()
                    self._spawn(probe=probe)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), self.poll_interval)
        finally:
            for task in self._slots:
                task.cancel()
            await asyncio.gather(*self._slots, return_exceptions=True)

    def _spawn(self, *, probe: bool = False) -> None:
        task = asyncio.create_task(self._slot(probe=probe))
        self._slots.add(task)
        task.add_done_callback(self._slot_done)

    def _slot_done(self, task: asyncio.Task[None]) -> None:
        self._slots.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("outbox.slot_failed", error=repr(task.exception()))

    async def _slot(self, *, probe: bool = False) -> None:
        """Deliver heads of conversations' queues one after the other until none is due.

        A slot that finds work starts another one, up to `concurrency`, so a slow conversation
        never holds up the others and an idle outbox costs one query per poll.
        """
        while True:
            try:
                async with self.store.claim(probe=probe) as claim:
                    probe = False
                    if claim is None:
                        return
                    if len(self._slots) < self.concurrency:
                        self._spawn()
                    await self.deliver(claim)
            except StoreError as exc:
                log.warning("outbox.database_unavailable", error=str(exc))
                await self.sleep(self.poll_interval)
                return

    async def run_once(self) -> int:
        """Deliver every row due now, one at a time (used by tests and `agentbot` tooling)."""
        count = 0
        while True:
            async with self.store.claim() as claim:
                if claim is None:
                    return count
                await self.deliver(claim)
                count += 1

    async def deliver(self, claim: Claim) -> None:
        row = claim.row
        bound = log.bind(
            outbox_id=row.id,
            account_id=row.account_id,
            conversation_id=row.conversation_id,
            action=row.action.get("type"),
        )
        try:
            action = decode(row.action)
        except (KeyError, TypeError, ValueError) as exc:
            error = f"unreadable outbox action: {exc!r}"
            bound.error("outbox.dead", error=error)
            await claim.give_up(error=error, handoff=None)
            return
        assert self.client is not None
        try:
            result = await self._with_retries(
                self.client, row.account_id, row.conversation_id, action
            )
        except ChatwootUnavailable as exc:
            age = (self.clock() - row.created_at).total_seconds()
            delay = self.policy.next_delay(row.attempts + 1, age, exc.retry_after)
            if delay is not None:
                bound.info("outbox.retry", error=str(exc), attempts=row.attempts + 1, delay=delay)
                await claim.reschedule(delay=delay, error=str(exc))
                return
            await self._give_up(claim, action, f"gave up after {row.attempts + 1} attempts: {exc}")
            return
        except ChatwootRejected as exc:
            await self._give_up(claim, action, str(exc))
            return
        await claim.mark_sent(result)
        bound.info("outbox.sent", attempts=row.attempts + 1)

    async def _give_up(self, claim: Claim, action: Action, error: str) -> None:
        handoff = None
        if not isinstance(action, Handoff):
            handoff = encode(
                Handoff(f"delivery failed: {error[:200]}", getattr(action, "block", ""))
            )
        cancelled = await claim.give_up(error=error, handoff=handoff)
        log.error(
            "outbox.dead",
            outbox_id=claim.row.id,
            account_id=claim.row.account_id,
            conversation_id=claim.row.conversation_id,
            action=claim.row.action.get("type"),
            error=error,
            cancelled=len(cancelled),
            handed_off=handoff is not None,
        )

    async def _with_retries(
        self, client: ChatwootClient, account_id: int, conversation_id: int, action: Action
    ) -> dict[str, Any]:
        policy = self.policy
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(ChatwootUnavailable),
            stop=stop_after_attempt(policy.in_process_attempts)
            | stop_after_delay(policy.in_process_seconds),
            wait=wait_random_exponential(max=policy.in_process_wait_max),
            sleep=self.sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await carry_out(client, account_id, conversation_id, action)
        raise AssertionError("unreachable: tenacity reraises the last error")


async def carry_out(
    client: ChatwootClient, account_id: int, conversation_id: int, action: Action
) -> dict[str, Any]:
    """One action, as Chatwoot's API wants it."""
    match action:
        case SendText(text=text):
            body = {"content": text, "message_type": "outgoing", "private": False}
            return await client.create_message(account_id, conversation_id, body)
        case SendOptions(text=text, options=options):
            items = [{"title": o.title, "value": o.value} for o in options]
            body = {
                "content": text,
                "message_type": "outgoing",
                "private": False,
                "content_type": "input_select",
                "content_attributes": {"items": items},
            }
            return await client.create_message(account_id, conversation_id, body)
        case AddLabels(labels=labels):
            # Chatwoot's POST replaces the set: add ours to what agents already put there.
            current = await client.labels(account_id, conversation_id)
            wanted = current + [label for label in labels if label not in current]
            if wanted == current:
                return {"labels": current}
            return {"labels": await client.set_labels(account_id, conversation_id, wanted)}
        case Handoff():
            return await client.toggle_status(account_id, conversation_id, "open")
        case _:
            assert_never(action)
