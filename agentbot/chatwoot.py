"""A typed client for the parts of Chatwoot's REST API the bot uses.

The `httpx.AsyncClient` is passed in (tests plug a fake in over real HTTP or a MockTransport).
Every failure becomes `ChatwootUnavailable` (retry: connection errors, timeouts, 5xx, 429) or
`ChatwootRejected` (a 4xx: retrying will not help). Paths use the conversation's display id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from agentbot.config import Secret
from agentbot.errors import ChatwootRejected, ChatwootUnavailable


class ChatwootClient:
    def __init__(self, http: httpx.AsyncClient, token: Secret) -> None:
        self.http = http
        self.token = token

    async def create_message(
        self, account_id: int, conversation_id: int, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        return await self._request(
            "POST", f"{_conv(account_id, conversation_id)}/messages", json=dict(body)
        )

    async def labels(self, account_id: int, conversation_id: int) -> list[str]:
        data = await self._request("GET", f"{_conv(account_id, conversation_id)}/labels")
        payload = data.get("payload")
        return [x for x in payload if isinstance(x, str)] if isinstance(payload, list) else []

    async def set_labels(
        self, account_id: int, conversation_id: int, labels: Sequence[str]
    ) -> list[str]:
        """Chatwoot's POST replaces the whole set: pass the union you want."""
        data = await self._request(
            "POST", f"{_conv(account_id, conversation_id)}/labels", json={"labels": list(labels)}
        )
        payload = data.get("payload")
        return [x for x in payload if isinstance(x, str)] if isinstance(payload, list) else []

    async def toggle_status(
        self, account_id: int, conversation_id: int, status: str
    ) -> dict[str, Any]:
        return await self._request(
            "POST", f"{_conv(account_id, conversation_id)}/toggle_status", json={"status": status}
        )

    async def _request(
        self, method: str, path: str, *, json: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        headers = {"api_access_token": self.token.reveal()}
        try:
            response = await self.http.request(method, path, json=json, headers=headers)
        except httpx.TimeoutException as exc:
            raise ChatwootUnavailable(f"{method} {path} timed out") from exc
        except httpx.TransportError as exc:
            raise ChatwootUnavailable(f"{method} {path} failed: {exc!r}") from exc
        status = response.status_code
        if status == 429 or status >= 500:
            raise ChatwootUnavailable(
                f"Chatwoot answered {status} to {method} {path}",
                retry_after=_retry_after(response.headers.get("retry-after")),
            )
        if status >= 400:
            raise ChatwootRejected(status, response.text, method=method, path=path)
        if not response.content:
            return {}
        try:
            data = response.json()
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {"payload": data}


def _conv(account_id: int, conversation_id: int) -> str:
    return f"/api/v1/accounts/{account_id}/conversations/{conversation_id}"


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header; an HTTP date (which Chatwoot does not send) is ignored."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
