"""Reading request bodies with limits: a size cap, a read deadline, JSON made fit to store.

Every route that takes a body reads it here, so no route buffers more than its cap or waits
for a client that stalls halfway, and no JSON that PostgreSQL would refuse goes further.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

from agentbot import jsonsafe

log = structlog.get_logger("agentbot.bodies")

READ_DEADLINE = 10.0  # seconds to receive a whole body; Chatwoot sends ours in milliseconds


class BodyRefused(Exception):
    """The body cannot be taken: `response` says why, as the JSON error to send."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.response = JSONResponse({"error": code, "message": message}, status_code=status)
        self.code = code


async def read(request: Request, limit: int, deadline: float = READ_DEADLINE) -> bytes:
    """The whole body, at most `limit` bytes, received within `deadline` seconds."""
    length = request.headers.get("content-length")
    if length is not None:
        declared = jsonsafe.ascii_int(length.strip(), max_digits=12)
        if declared is None:
            raise BodyRefused(400, "bad_request", "Content-Length is not a number")
        if declared > limit:
            raise BodyRefused(413, "too_large", f"the body is larger than {limit} bytes")
    body = bytearray()
    try:
        async with asyncio.timeout(deadline):
            async for chunk in request.stream():
                body.extend(chunk)
                if len(body) > limit:
                    raise BodyRefused(413, "too_large", f"the body is larger than {limit} bytes")
    except ClientDisconnect:
        raise BodyRefused(400, "disconnected", "the client went away mid-body") from None
    except TimeoutError:
        raise BodyRefused(
            408, "timeout", f"the body did not arrive within {deadline:g} s"
        ) from None
    return bytes(body)


def parse_json(body: bytes, hint: str = "") -> Any:
    """The body as JSON fit for PostgreSQL; `BodyRefused` 400 when it is not."""
    try:
        return jsonsafe.loads(body)
    except jsonsafe.Unfit as exc:
        raise BodyRefused(400, "bad_json", f"{exc}{hint}") from None
