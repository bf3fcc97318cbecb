"""How `agentbot serve` runs uvicorn: limits on connections, headers and idle time.

uvicorn's own settings cover idle keep-alive connections (`timeout_keep_alive`) and the size of
a request's headers (`h11_max_incomplete_event_size`); nothing in it limits how long a client
may take to send them. `HeaderDeadline` adds that: a connection whose request line and headers
have not all arrived within HEADER_TIMEOUT seconds is closed. Bodies have their own deadline
where they are read (bodies.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT = 10.0  # seconds for a request's line and headers
IDLE_TIMEOUT = 5  # seconds a kept-alive connection may wait for its next request
MAX_HEADER_BYTES = 16 * 1024  # a request's line and headers together


class HeaderDeadline(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, closing connections that send their headers too slowly."""

    header_timeout = HEADER_TIMEOUT
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:
            self._disarm()  # the headers are in: the body has its own deadline

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def options() -> dict[str, Any]:
    """uvicorn's settings for agentbot (for `uvicorn.run` and `uvicorn.Config`)."""
    return {
        "http": HeaderDeadline,
        "timeout_keep_alive": IDLE_TIMEOUT,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
    }
