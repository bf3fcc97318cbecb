"""The outbox: retry policy, action encoding, and delivery against the fake Chatwoot over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from agentbot.chatwoot import ChatwootClient
from agentbot.config import Secret
from agentbot.engine import AddLabels, BackToBot, Handoff, Option, SendOptions, SendText
from agentbot.errors import ChatwootUnavailable
from agentbot.outbox import Outbox, RetryPolicy, decode, encode
from agentbot.store import Store
from tests.fakes import FakeChatwoot, FakeChatwootServer
from tests.harness import FAST

DELAYS = [
    ("first retry", 1, 0, None, 1.0),
    ("doubles", 4, 10, None, 8.0),
    ("capped at a minute", 12, 100, None, 60.0),
    ("Retry-After wins when longer", 1, 0, 30.0, 30.0),
    ("Retry-After shorter than backoff", 5, 0, 2.0, 16.0),
    ("many attempts but young: keep going", 50, 3599, None, 60.0),
    ("old but few attempts: keep going", 3, 7200, None, 4.0),
    ("old and many attempts: give up", 10, 3600, None, None),
]


@pytest.mark.parametrize(
    ("attempts", "age", "retry_after", "delay"), [d[1:] for d in DELAYS], ids=[d[0] for d in DELAYS]
)
def test_next_delay(attempts: int, age: float, retry_after: float | None, delay: float | None):
    """Backoff doubles up to 60 s, honours Retry-After, and gives up only after an hour."""
    assert RetryPolicy().next_delay(attempts, age, retry_after) == delay


ACTIONS = [
    SendText("Oi", "a"),
    SendOptions("Escolha", (Option("Sim", "sim"), Option("Não", "nao")), "b"),
    AddLabels(("x", "y"), "c"),
    Handoff("asked", "d"),
    BackToBot("an agent gave the conversation back to the bot (bot)", "e"),
]


@pytest.mark.parametrize("action", ACTIONS, ids=lambda a: type(a).__name__)
def test_encode_decode(action: Any) -> None:
    """Every action survives the trip through the outbox's JSON."""
    assert decode(encode(action)) == action


def test_decode_unknown() -> None:
    """An action type this version does not know is an error, not a guess."""
    with pytest.raises(ValueError, match="unknown outbox action type 'fax'"):
        decode({"type": "fax"})


pytestmark = pytest.mark.anyio


@dataclass
class Rig:
    store: Store
    outbox: Outbox
    fake: FakeChatwoot
    server: FakeChatwootServer

    async def queue(self, conversation_id: int, action: dict[str, Any]) -> None:
        async with self.store.transaction() as tx:
            await tx.enqueue(
                account_id=1, conversation_id=conversation_id, session_id=None, action=action
            )

    async def rows(self) -> list[tuple[Any, ...]]:
        async with self.store.transaction() as tx:
            cur = await tx.conn.execute(
                "select action->>'type', status, attempts, last_error,"
                " extract(epoch from next_attempt_at - now())::int"
                " from workflow_outbox order by id"
            )
            return await cur.fetchall()


async def no_sleep(_: float) -> None:
    return None


@asynccontextmanager
async def rig(dsn: str, policy: RetryPolicy = FAST) -> AsyncIterator[Rig]:
    fake = FakeChatwoot()
    with FakeChatwootServer(fake) as server:
        async with (
            AsyncConnectionPool(dsn, min_size=1, max_size=4, open=False) as pool,
            httpx.AsyncClient(base_url=server.url) as http,
        ):
            store = Store(pool)
            client = ChatwootClient(http, Secret(fake.bot_token))
            yield Rig(store, Outbox(store, client, policy=policy, sleep=no_sleep), fake, server)


async def test_labels_merged_not_replaced(db_dsn: str) -> None:
    """Labels are added to the agent's; nothing is posted when they are all there already."""
    async with rig(db_dsn) as r:
        r.fake.add_conversation(1, 5, labels=["vip", "a"])
        await r.queue(5, encode(AddLabels(("a", "b"), "x")))
        await r.queue(5, encode(AddLabels(("b",), "x")))
        assert await r.outbox.run_once() == 2
        assert r.fake.labels(5) == ["vip", "a", "b"]
        posts = [q for q in r.fake.requests if q.method == "POST" and q.path.endswith("/labels")]
        assert len(posts) == 1


async def test_retry_after_is_honoured(db_dsn: str) -> None:
    """429 with Retry-After: the row waits at least that long."""
    async with rig(db_dsn) as r:
        r.fake.fail_next(3, status=429, headers={"Retry-After": "30"})
        await r.queue(6, encode(SendText("Oi", "a")))
        assert await r.outbox.run_once() == 1
        [(kind, status, attempts, error, wait)] = await r.rows()
        assert (kind, status, attempts) == ("text", "pending", 1)
        assert "429" in error
        assert 25 <= wait <= 30


async def test_giving_up_hands_off(db_dsn: str) -> None:
    """After the policy gives up, the row is dead and the conversation handed off instead."""
    policy = RetryPolicy(in_process_attempts=1, first_delay=0, give_up_after=0, min_attempts=1)
    async with rig(db_dsn, policy) as r:
        r.fake.fail_next(1, status=503)
        await r.queue(7, encode(SendText("Oi", "a")))
        await r.queue(7, encode(SendText("Tudo bem?", "a")))
        assert await r.outbox.run_once() == 2
        rows = await r.rows()
        assert [row[:2] for row in rows] == [
            ("text", "dead"),
            ("text", "cancelled"),
            ("handoff", "sent"),
        ]
        assert r.fake.status(7) == "open"
        assert r.fake.messages(7) == []


async def test_failed_handoff_is_not_handed_off_again(db_dsn: str) -> None:
    """A handoff that Chatwoot refuses is dead-lettered without queueing another one."""
    async with rig(db_dsn) as r:
        r.fake.fail_next(1, status=404, body={"error": "Resource could not be found"})
        await r.queue(8, encode(Handoff("asked", "a")))
        assert await r.outbox.run_once() == 1
        [(kind, status, attempts, error, _)] = await r.rows()
        assert (kind, status, attempts) == ("handoff", "dead", 1)
        assert "404" in error


async def test_unreadable_row_is_dead(db_dsn: str) -> None:
    """A row this version cannot read is dead-lettered, not retried forever."""
    async with rig(db_dsn) as r:
        async with r.store.transaction() as tx:
            await tx.conn.execute(
                "insert into workflow_outbox (account_id, conversation_id, action)"
                " values (1, 9, %s)",
                (Jsonb({"type": "fax"}),),
            )
        assert await r.outbox.run_once() == 1
        [(kind, status, _, error, _)] = await r.rows()
        assert (kind, status) == ("fax", "dead")
        assert "unknown outbox action type" in error


class Crm:
    """An external service a flow's webhook block calls, served over real HTTP."""

    def __init__(self) -> None:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse, PlainTextResponse, Response
        from starlette.routing import Route

        self.calls: list[tuple[str, str, Any, dict[str, str]]] = []
        self.fail = 0

        async def leads(request: Request) -> Response:
            body = await request.json() if await request.body() else None
            self.calls.append((request.method, request.url.path, body, dict(request.headers)))
            if self.fail:
                self.fail -= 1
                return JSONResponse({"error": "down"}, status_code=503)
            if request.url.path == "/text":
                return PlainTextResponse("ok, anotado")
            return JSONResponse({"protocolo": "A-17", "plano": "pro"})

        self.app = Starlette(
            routes=[Route("/{path:path}", leads, methods=["GET", "POST", "PUT", "DELETE"])]
        )


CRM_FLOW = """
trigger: {default: true}
blocks:
  email:
    message: "Qual é o seu e-mail?"
    input: {save_as: email, type: email}
    save_to: conversation.custom_attributes.email
    next_block: crm
  crm:
    webhook:
      url: "{crm}/leads?origem=bot"
      method: POST
      headers: {X-Token: segredo}
      body: {email: "{{email}}", nome: "{{nome}}"}
      save_as: crm
      on_error: falha
    conditions:
      - if: 'crm.plano == "pro"'
        next_block: pro
    next_block: fim
  pro:
    message: "Protocolo {{crm.protocolo}}: cliente Pro!"
    handoff: {team_id: 4, note: "Lead do bot"}
  fim:
    message: "fim"
  falha:
    message: "Nosso sistema está fora do ar."
    end: {resolve: true}
"""


async def test_webhook_block_end_to_end(db_dsn: str, tmp_path: Path) -> None:
    """Input captured and saved, the CRM called from the outbox, its answer used in a
    condition and a template, then a handoff to a team with a private note."""
    from tests.conftest import ServedApp
    from tests.harness import incoming, running, write_flow

    crm = Crm()
    fake = FakeChatwoot()
    fake.add_team(1, 4)
    fake.add_conversation(1, 30, custom_attributes={"origem": "site"})
    async with ServedApp(crm.app) as served:
        flow = CRM_FLOW.replace("{crm}", served.url)
        crm_yaml = write_flow(tmp_path, flow, "crm.yaml")
        # The fake CRM listens on 127.0.0.1: the operator's allow-list lets flows call it.
        async with running(db_dsn, crm_yaml, fake=fake, webhook_allowed="127.0.0.1") as h:
            await h.post(incoming(30, 1, "Oi"))
            await h.until(lambda: len(h.sent(30)) == 1)
            await h.post(incoming(30, 2, "Ana@Exemplo.com "))
            await h.until(lambda: h.fake.status(30) == "open")
            await h.settled()
            assert crm.calls[0][:3] == (
                "POST",
                "/leads",
                {"email": "Ana@exemplo.com", "nome": "Maria Silva"},
            )
            assert crm.calls[0][3]["x-token"] == "segredo"
            assert h.fake.custom_attributes(30) == {"origem": "site", "email": "Ana@exemplo.com"}
            public = [m["content"] for m in h.sent(30) if not m["private"]]
            assert public == ["Qual é o seu e-mail?", "Protocolo A-17: cliente Pro!"]
            [note] = [m["content"] for m in h.sent(30) if m["private"]]
            assert note.startswith("Lead do bot")
            assert "Ana@exemplo.com" in note
            assert h.fake.team(30) == 4
            assert h.fake.violations == []


async def test_webhook_error_goes_to_on_error(db_dsn: str, tmp_path: Path) -> None:
    """A failing webhook (POST: not retried) goes to on_error, which resolves the chat."""
    from tests.conftest import ServedApp
    from tests.harness import incoming, running, write_flow

    crm = Crm()
    crm.fail = 1
    async with ServedApp(crm.app) as served:
        flow = CRM_FLOW.replace("{crm}", served.url)
        crm_yaml = write_flow(tmp_path, flow, "crm.yaml")
        async with running(db_dsn, crm_yaml, webhook_allowed="127.0.0.1") as h:
            await h.post(incoming(31, 1, "Oi"))
            await h.post(incoming(31, 2, "ana@exemplo.com"))
            await h.until(lambda: h.fake.status(31) == "resolved")
            assert len(crm.calls) == 1
            assert h.contents(31)[-1] == "Nosso sistema está fora do ar."
            assert h.query("select status from workflow_conversations") == [("completed",)]


async def test_call_webhook_retries_idempotent_only(tmp_path: Path) -> None:
    """GET is retried twice on failure; POST is not, unless the flow says retry: true."""
    from agentbot.engine import CallWebhook
    from agentbot.outbox import call_webhook
    from tests.conftest import ServedApp

    crm = Crm()
    async with ServedApp(crm.app) as served, httpx.AsyncClient() as http:
        get = CallWebhook(f"{served.url}/x", "GET", {}, None, 5.0, True, "b")
        crm.fail = 2
        reply = await call_webhook(http, get, sleep=no_sleep)
        assert (reply.ok, reply.status, reply.data) == (
            True,
            200,
            {"protocolo": "A-17", "plano": "pro"},
        )
        post = CallWebhook(f"{served.url}/x", "POST", {}, {"a": 1}, 5.0, False, "b")
        crm.fail = 1
        reply = await call_webhook(http, post, sleep=no_sleep)
        assert (reply.ok, reply.status, reply.error) == (False, 503, "answered 503")
        assert len(crm.calls) == 4
        text = await call_webhook(
            http, CallWebhook(f"{served.url}/text", "GET", {}, None, 5.0, True, "b")
        )
        assert text.data == "ok, anotado"
        down = CallWebhook("http://127.0.0.1:9/x", "GET", {}, None, 1.0, False, "b")
        reply = await call_webhook(http, down)
        assert not reply.ok
        assert reply.error is not None
        assert reply.error.startswith("request failed")


CONTACT_FLOW = """
trigger: {default: true}
blocks:
  cpf:
    message: "Qual é o seu CPF?"
    input: {save_as: cpf, type: cpf}
    save_to: contact.custom_attributes.cpf
    next_block: fim
  fim:
    message: "Obrigado!"
"""


async def test_contact_attribute_with_user_token(db_dsn: str, tmp_path: Path) -> None:
    """save_to contact.* is merged into the contact's attributes with CHATWOOT_USER_TOKEN."""
    from agentbot.config import Settings
    from tests.harness import WEBHOOK_TOKEN, incoming, running, write_flow

    fake = FakeChatwoot()
    fake.add_contact(1, 4821, name="Maria Silva", custom_attributes={"plano": "pro"})
    flows = write_flow(tmp_path, CONTACT_FLOW, "cpf.yaml")
    with FakeChatwootServer(fake) as server:
        settings = Settings(
            chatwoot_url=server.url,
            chatwoot_api_token=Secret(fake.bot_token),
            chatwoot_user_token=Secret(fake.user_token),
            webhook_token=Secret(WEBHOOK_TOKEN),
            flows_dir=flows,
        )
        async with running(db_dsn, flows, fake=fake, settings=settings) as h:
            await h.post(incoming(32, 1, "Oi"))
            await h.post(incoming(32, 2, "529.982.247-25"))
            await h.until(lambda: len(h.sent(32)) == 2)
            await h.settled()
            contact = fake.contact(4821)
            assert contact["custom_attributes"] == {"plano": "pro", "cpf": "52998224725"}
            patches = [q for q in fake.requests if q.method == "PATCH"]
            assert [q.headers["api_access_token"] for q in patches] == [fake.user_token]
            assert fake.violations == []


async def test_requests_to_chatwoot_wait_their_turn() -> None:
    """With `in_flight`, at most that many requests are at Chatwoot at once; the others wait
    their turn in the client, and one that waits longer than the pool timeout fails as
    retryable ("no free connection") without reaching Chatwoot."""
    fake = FakeChatwoot()
    fake.delay = 0.5
    with FakeChatwootServer(fake) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            client = ChatwootClient(http, Secret(fake.bot_token), in_flight=2)
            sends = [
                asyncio.create_task(client.create_message(1, 7, {"content": f"m{i}"}))
                for i in range(5)
            ]
            most = 0
            while not all(task.done() for task in sends):
                pending = [r for r in fake.requests if r.status is None]
                most = max(most, len(pending))
                await asyncio.sleep(0.01)
            assert all(task.exception() is None for task in sends)
            assert most == 2
            assert len(fake.requests) == 5
        async with httpx.AsyncClient(
            base_url=server.url, timeout=httpx.Timeout(5.0, pool=0.1)
        ) as http:
            client = ChatwootClient(http, Secret(fake.bot_token), in_flight=1)
            first = asyncio.create_task(client.create_message(1, 7, {"content": "a"}))
            await asyncio.sleep(0.05)
            with pytest.raises(ChatwootUnavailable, match="no free connection") as info:
                await client.create_message(1, 7, {"content": "b"})
            assert not info.value.maybe_done  # it never left: no need to ask Chatwoot
            await first
            assert [r.json["content"] for r in fake.requests[5:]] == ["a"]
