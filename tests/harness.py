"""The whole service over real HTTP, against a fake Chatwoot over real HTTP and a real database."""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from agentbot.app import create_app
from agentbot.config import Secret, Settings
from agentbot.destinations import Allowed
from agentbot.outbox import RetryPolicy
from tests.conftest import SAMPLES, ServedApp
from tests.fakes import FakeChatwoot, FakeChatwootServer

WEBHOOK_TOKEN = "hook-token"
API_TOKEN = "api-token"
# Quick retries so that outages in tests last milliseconds, not minutes.
FAST = RetryPolicy(
    in_process_attempts=3,
    in_process_seconds=1.0,
    in_process_wait_max=0.01,
    first_delay=0.05,
    max_delay=0.2,
    give_up_after=3600,
)

SALES_FLOW = """
name: vendas
title: Vendas
trigger: {default: true}
blocks:
  boas_vindas:
    message: "Olá {{nome}}! Você já é nosso cliente?"
    buttons:
      - {text: Sim, next_block: produto}
      - {text: Não, value: nao, next_block: produto, tag: lead_novo}
  produto:
    message: "Qual produto te interessa?"
    buttons:
      - {text: Plano Básico, next_block: atendente}
      - {text: Plano Pro, next_block: atendente, tags: [plano_pro]}
      - {text: Só olhando, next_block: tchau}
  atendente:
    message: "Perfeito! Vou chamar um especialista."
    tags: [lead_quente]
    handoff: true
  tchau:
    message: "Tudo bem! Estamos aqui quando precisar."
"""


def incoming(
    conversation_id: int,
    message_id: int,
    text: str,
    *,
    status: str = "pending",
    account_id: int = 1,
    labels: list[str] | None = None,
) -> dict[str, Any]:
    """A WhatsApp `message_created` from the recorded sample, with these values."""
    data: dict[str, Any] = json.loads(
        (SAMPLES / "message_created_whatsapp_incoming_text.json").read_text()
    )
    data = copy.deepcopy(data)
    data["id"] = message_id
    data["content"] = text
    data["account"]["id"] = account_id
    conv = data["conversation"]
    conv["id"] = conversation_id
    conv["status"] = status
    conv["labels"] = labels or []
    conv["messages"][0].update(id=message_id, content=text, conversation_id=conversation_id)
    return data


@dataclass
class Harness:
    http: httpx.AsyncClient
    fake: FakeChatwoot
    chatwoot: FakeChatwootServer
    dsn: str
    url: str

    async def post(
        self,
        payload: Any,
        *,
        delivery_id: str | None = None,
        token: str | None = WEBHOOK_TOKEN,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
    ) -> httpx.Response:
        params = {"token": token} if token is not None else {}
        all_headers = {
            "content-type": "application/json",
            "x-chatwoot-delivery": delivery_id or str(uuid.uuid4()),
            **(headers or {}),
        }
        body = content if content is not None else json.dumps(payload).encode()
        return await self.http.post(
            "/webhooks/chatwoot", params=params, headers=all_headers, content=body
        )

    def sent(self, conversation_id: int) -> list[dict[str, Any]]:
        """The messages Chatwoot stored for the conversation (none before the first one)."""
        try:
            return self.fake.messages(conversation_id)
        except KeyError:
            return []

    def contents(self, conversation_id: int) -> list[str]:
        return [str(m.get("content")) for m in self.sent(conversation_id)]

    async def until(self, condition: Callable[[], bool], limit: float = 10.0) -> None:
        """Wait for the outbox to make `condition` true (polling, bounded)."""
        deadline = asyncio.get_running_loop().time() + limit
        while not condition():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("timed out waiting for the condition")
            await asyncio.sleep(0.02)

    async def settled(self) -> None:
        """Wait until the outbox holds nothing pending."""
        await self.until(
            lambda: (
                self.query("select count(*) from workflow_outbox where status = 'pending'")[0][0]
                == 0
            )
        )

    def query(self, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn) as conn:
            return conn.execute(statement, params).fetchall()


@asynccontextmanager
async def running(
    dsn: str,
    flows_dir: Path,
    *,
    fake: FakeChatwoot | None = None,
    settings: Settings | None = None,
    policy: RetryPolicy = FAST,
    clock: Callable[[], datetime] | None = None,
    timer_interval: float = 0.05,
    webhook_allowed: str = "",
    body_deadline: float = 10.0,
) -> AsyncIterator[Harness]:
    fake = fake or FakeChatwoot()
    with FakeChatwootServer(fake) as chatwoot:
        settings = settings or Settings(
            chatwoot_url=chatwoot.url,
            chatwoot_api_token=Secret(fake.bot_token),
            webhook_token=Secret(WEBHOOK_TOKEN),
            api_token=Secret(API_TOKEN),
            flows_dir=flows_dir,
            webhook_allowed=Allowed.parse(webhook_allowed),
        )
        app = create_app(
            settings,
            dsn=dsn,
            policy=policy,
            poll_interval=0.05,
            timer_interval=timer_interval,
            clock=clock or (lambda: datetime.now(UTC)),
            body_deadline=body_deadline,
        )
        async with (
            ServedApp(app) as served,
            httpx.AsyncClient(base_url=served.url, timeout=10) as http,
        ):
            yield Harness(http, fake, chatwoot, dsn, served.url)


def write_flow(directory: Path, text: str = SALES_FLOW, name: str = "vendas.yaml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(text)
    return directory


_UPDATED_AT = itertools.count(1781964615.204117, 0.000001)


def conversation_event(
    event: str,
    conversation_id: int,
    status: str,
    *,
    changed: list[dict[str, Any]] | None = None,
    assignee: dict[str, Any] | None = None,
    account_id: int = 1,
) -> dict[str, Any]:
    """A conversation event (status changed, updated, opened, resolved) from the sample."""
    data: dict[str, Any] = json.loads(
        (SAMPLES / "conversation_status_changed_bot_handoff.json").read_text()
    )
    data.update(event=event, id=conversation_id, status=status, changed_attributes=changed)
    data["updated_at"] = next(_UPDATED_AT)  # Chatwoot's to the microsecond: each event differs
    data["account"]["id"] = account_id
    data["meta"]["assignee"] = assignee
    data["meta"]["assignee_type"] = "User" if assignee else None
    return data


def agent_message(conversation_id: int, message_id: int, text: str, **kw: Any) -> dict[str, Any]:
    """An agent's public reply, as Chatwoot sends it to the bot."""
    data = incoming(conversation_id, message_id, text, **kw)
    data["message_type"] = "outgoing"
    data["sender"] = {"id": 3, "name": "Ana Agente", "email": "ana@acme.example", "type": "user"}
    return data


def widget_answer(
    conversation_id: int, question_id: int, title: str, value: str, *, status: str = "pending"
) -> dict[str, Any]:
    """The web widget's answer: an update of the bot's own input_select message."""
    data: dict[str, Any] = json.loads(
        (SAMPLES / "message_updated_webwidget_input_select.json").read_text()
    )
    data["id"] = question_id
    data["conversation"]["id"] = conversation_id
    data["conversation"]["status"] = status
    data["content_attributes"]["submitted_values"] = [{"title": title, "value": value}]
    return data


def delivery_failed(conversation_id: int, message_id: int, error: str) -> dict[str, Any]:
    """Chatwoot's update of the bot's own message when the channel refused it."""
    data = incoming(conversation_id, message_id, "x")
    data.update(
        event="message_updated",
        message_type="outgoing",
        sender={"id": 1, "name": "Acme Bot", "type": "agent_bot"},
        content_attributes={"external_error": error},
    )
    return data
