"""A typed client for the parts of Chatwoot's REST API the bot uses.

The `httpx.AsyncClient` is passed in (tests plug a fake in over real HTTP or a MockTransport).
Every failure becomes `ChatwootUnavailable` (retry: connection errors, timeouts, 5xx, 429) or
`ChatwootRejected` (a 4xx: retrying will not help). Paths use the conversation's display id.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from agentbot import channels
from agentbot.config import Secret
from agentbot.errors import ChatwootRejected, ChatwootUnavailable

ACTIVITY = 2  # `message_type` of an activity message in Chatwoot's REST answers


class ChatwootClient:
    """`token` is the Agent Bot's; `user_token`, when given, stands in where Chatwoot refuses
    the bot's (labels before 4.14.2).

    `in_flight`, when given, is how many requests go out at once: the size of `http`'s pool.
    The others wait their turn here, at most the pool timeout as in the pool. httpcore walks
    its waiting requests against its connections each time a request starts or ends, so a
    queue left to it costs CPU that grows with the backlog, just when the outbox is behind.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        token: Secret,
        user_token: Secret | None = None,
        *,
        in_flight: int | None = None,
    ) -> None:
        self.http = http
        self.token = token
        self.user_token = user_token
        self._fallback_token = token
        self._turns = None if in_flight is None else asyncio.Semaphore(in_flight)

    async def create_message(
        self, account_id: int, conversation_id: int, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Post a message. Chatwoot renders Liquid in an outgoing message's content before it
        saves it: the content is written so that the rendering gives back the text we mean."""
        data = dict(body)
        if isinstance(data.get("content"), str):
            data["content"] = channels.liquid_safe(data["content"])
        return await self._request(
            "POST", f"{_conv(account_id, conversation_id)}/messages", json=data
        )

    async def labels(self, account_id: int, conversation_id: int) -> list[str]:
        data = await self._bot_or_user_request(
            "GET", f"{_conv(account_id, conversation_id)}/labels"
        )
        payload = data.get("payload")
        return [x for x in payload if isinstance(x, str)] if isinstance(payload, list) else []

    async def set_labels(
        self, account_id: int, conversation_id: int, labels: Sequence[str]
    ) -> list[str]:
        """Chatwoot's POST replaces the whole set: pass the union you want."""
        data = await self._bot_or_user_request(
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

    async def assign(
        self, account_id: int, conversation_id: int, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """`{"assignee_id": N}` or `{"team_id": N}`; assigning does not change the status."""
        return await self._request(
            "POST", f"{_conv(account_id, conversation_id)}/assignments", json=body
        )

    async def conversation(self, account_id: int, conversation_id: int) -> dict[str, Any]:
        """The conversation as Chatwoot shows it (a bot may read it from 4.14.2 on)."""
        return await self._bot_or_user_request("GET", _conv(account_id, conversation_id))

    async def last_message(self, account_id: int, conversation_id: int) -> dict[str, Any] | None:
        """The conversation's newest message that is not an activity, as Chatwoot shows it.

        `GET conversations/{id}` carries it in `last_non_activity_message`; its `messages`
        holds the newest message of any kind, used when the other key is absent. A bot token may
        read a conversation from Chatwoot 4.14.2 on; before that only a user token may.
        """
        data = await self.conversation(account_id, conversation_id)
        last = data.get("last_non_activity_message")
        if isinstance(last, dict):
            return last
        messages = data.get("messages")
        if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
            newest: dict[str, Any] = messages[-1]
            if newest.get("message_type") != ACTIVITY:
                return newest
        return None

    async def conversation_attributes(
        self, account_id: int, conversation_id: int
    ) -> dict[str, Any]:
        current = (await self.conversation(account_id, conversation_id)).get("custom_attributes")
        return dict(current) if isinstance(current, Mapping) else {}

    async def set_conversation_attributes(
        self, account_id: int, conversation_id: int, attributes: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Chatwoot replaces the whole hash: pass the merged attributes."""
        return await self._request(
            "POST",
            f"{_conv(account_id, conversation_id)}/custom_attributes",
            json={"custom_attributes": dict(attributes)},
        )

    async def update_contact(
        self, account_id: int, contact_id: int, attributes: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Contact attributes are merged by Chatwoot; only a user token may write them."""
        if self.user_token is None:
            raise ChatwootRejected(
                401, "contact attributes need CHATWOOT_USER_TOKEN", method="PATCH", path="/contacts"
            )
        return await self._request(
            "PATCH",
            f"/api/v1/accounts/{account_id}/contacts/{contact_id}",
            json={"custom_attributes": dict(attributes)},
            token=self.user_token,
        )

    # --- a start by contact (the old system's call), with the user token -----------------------

    def _user(self, method: str, path: str) -> Secret:
        if self.user_token is None:
            raise ChatwootRejected(
                401, "this call needs CHATWOOT_USER_TOKEN", method=method, path=path
            )
        return self.user_token

    async def contact_conversations(self, account_id: int, contact_id: int) -> list[Any]:
        path = f"/api/v1/accounts/{account_id}/contacts/{contact_id}/conversations"
        data = await self._request("GET", path, token=self._user("GET", path))
        payload = data.get("payload")
        return payload if isinstance(payload, list) else []

    async def contactable_inboxes(self, account_id: int, contact_id: int) -> list[Any]:
        path = f"/api/v1/accounts/{account_id}/contacts/{contact_id}/contactable_inboxes"
        data = await self._request("GET", path, token=self._user("GET", path))
        payload = data.get("payload")
        return payload if isinstance(payload, list) else []

    async def create_conversation(self, account_id: int, body: Mapping[str, Any]) -> dict[str, Any]:
        path = f"/api/v1/accounts/{account_id}/conversations"
        return await self._request("POST", path, json=body, token=self._user("POST", path))

    # --- administration, with an administrator's token (`agentbot register`) ----------------

    async def server_info(self) -> dict[str, Any]:
        """`GET /api` (no authentication): `version`, `queue_services`, `data_services`."""
        return await self._request("GET", "/api")

    async def profile(self) -> dict[str, Any]:
        """The token's user, with the `accounts` it belongs to; a bot token is refused (401)."""
        return await self._request("GET", "/api/v1/profile")

    async def agent_bots(self, account_id: int) -> list[dict[str, Any]]:
        data = await self._request("GET", f"/api/v1/accounts/{account_id}/agent_bots")
        payload = data.get("payload")
        return [b for b in payload if isinstance(b, dict)] if isinstance(payload, list) else []

    async def create_agent_bot(self, account_id: int, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._request(
            "POST", f"/api/v1/accounts/{account_id}/agent_bots", json=dict(body)
        )

    async def update_agent_bot(
        self, account_id: int, bot_id: int, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        return await self._request(
            "PATCH", f"/api/v1/accounts/{account_id}/agent_bots/{bot_id}", json=dict(body)
        )

    async def inbox_agent_bot(self, account_id: int, inbox_id: int) -> dict[str, Any] | None:
        """The agent bot connected to the inbox, or None."""
        data = await self._request(
            "GET", f"/api/v1/accounts/{account_id}/inboxes/{inbox_id}/agent_bot"
        )
        bot = data.get("agent_bot")
        return bot if isinstance(bot, dict) and bot else None

    async def set_inbox_agent_bot(self, account_id: int, inbox_id: int, bot_id: int | None) -> None:
        """Connect the bot to the inbox (None disconnects the inbox's bot)."""
        await self._request(
            "POST",
            f"/api/v1/accounts/{account_id}/inboxes/{inbox_id}/set_agent_bot",
            json={"agent_bot": bot_id},
        )

    async def _bot_or_user_request(
        self, method: str, path: str, *, json: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        try:
            return await self._request(method, path, json=json, token=self._fallback_token)
        except ChatwootRejected as exc:
            # Chatwoot < 4.14.2 answers a bot token 401 on labels and on reading a conversation:
            # use the user token for these calls, from now on.
            if (
                exc.status_code != 401
                or self.user_token is None
                or self._fallback_token is self.user_token
            ):
                raise
            self._fallback_token = self.user_token
            return await self._request(method, path, json=json, token=self.user_token)

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        token: Secret | None = None,
    ) -> dict[str, Any]:
        headers = {"api_access_token": (token or self.token).reveal()}
        if self._turns is not None:
            try:
                async with asyncio.timeout(self.http.timeout.pool):
                    await self._turns.acquire()
            except TimeoutError as exc:
                raise ChatwootUnavailable(f"{method} {path}: no free connection: {exc!r}") from exc
        try:
            response = await self.http.request(method, path, json=json, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            # No connection, so no request: Chatwoot cannot have acted on it.
            raise ChatwootUnavailable(f"{method} {path} failed: {exc!r}", unreachable=True) from exc
        except httpx.PoolTimeout as exc:
            raise ChatwootUnavailable(f"{method} {path}: no free connection: {exc!r}") from exc
        except httpx.TimeoutException as exc:
            raise ChatwootUnavailable(f"{method} {path} timed out", maybe_done=True) from exc
        except httpx.TransportError as exc:
            raise ChatwootUnavailable(f"{method} {path} failed: {exc!r}", maybe_done=True) from exc
        finally:
            if self._turns is not None:
                self._turns.release()
        status = response.status_code
        if status == 429 or status >= 500:
            raise ChatwootUnavailable(
                f"Chatwoot answered {status} to {method} {path}",
                retry_after=_retry_after(response.headers.get("retry-after")),
                maybe_done=status not in (429, 503),
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


_VERSION = re.compile(r"\s*v?(\d+)\.(\d+)(?:\.(\d+))?")


def parse_version(text: object) -> tuple[int, int, int] | None:
    """`"4.14.2"` (as `GET /api` reports it) -> `(4, 14, 2)`; None when it is not a version."""
    if not isinstance(text, str):
        return None
    found = _VERSION.match(text)
    if found is None:
        return None
    return (int(found.group(1)), int(found.group(2)), int(found.group(3) or 0))
