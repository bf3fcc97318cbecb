"""The operators' API: retiring flows, the old system's bodies, paging, contacts, the audit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from agentbot.config import Secret, Settings
from tests.fakes import FakeChatwoot, FakeChatwootServer
from tests.harness import SALES_FLOW, WEBHOOK_TOKEN, Harness, incoming, running, write_flow

pytestmark = pytest.mark.anyio

API = "api-token"
AUTH = {"authorization": f"Bearer {API}"}
SURVEY = {"trigger": {"keywords": ["pesquisa"]}, "blocks": {"a": {"message": "Nota de 0 a 10?"}}}


@asynccontextmanager
async def serve(db_dsn: str, flows: Path) -> AsyncIterator[Harness]:
    """The app with Chatwoot (the fake) and the API token set."""
    fake = FakeChatwoot()
    with FakeChatwootServer(fake) as server:
        settings = Settings(
            chatwoot_url=server.url,
            chatwoot_api_token=Secret(fake.bot_token),
            webhook_token=Secret(WEBHOOK_TOKEN),
            api_token=Secret(API),
            flows_dir=flows,
        )
        async with running(db_dsn, flows, fake=fake, settings=settings) as h:
            yield h


async def test_old_workflows_body_and_retiring(db_dsn: str, tmp_path: Path) -> None:
    """The old body's config.name is the title; DELETE retires a flow: no new session starts
    on it, a session in flight finishes on its version; both writes are audited."""
    flows = write_flow(tmp_path / "flows")
    async with serve(db_dsn, flows) as h:
        body = {"name": "meu_fluxo", "config": {**SURVEY, "name": "Fluxo Comercial"}}
        r = await h.http.post("/api/workflows", json=body, headers=AUTH)
        assert r.status_code == 201, r.text
        read = (await h.http.get("/api/workflows/meu_fluxo", headers=AUTH)).json()
        assert (read["name"], read["title"]) == ("meu_fluxo", "Fluxo Comercial")
        # A session of vendas in flight, then vendas is retired.
        await h.post(incoming(70, 1, "Oi"))
        await h.settled()
        r = await h.http.delete("/api/workflows/vendas", headers=AUTH)
        assert (r.status_code, r.json()["status"]) == (200, "retired")
        assert (await h.http.delete("/api/workflows/vendas", headers=AUTH)).status_code == 404
        listed = (await h.http.get("/api/workflows", headers=AUTH)).json()["workflows"]
        assert [w["name"] for w in listed] == ["meu_fluxo"]
        await h.post(incoming(70, 2, "Sim"))  # the session in flight goes on
        await h.until(lambda: len(h.sent(70)) == 2)
        assert h.contents(70)[1] == "Qual produto te interessa?"
        r = await h.post(incoming(71, 3, "Oi"))  # a new conversation: no flow to start
        assert r.json() == {"status": "no_flow"}
        audit = h.query(
            "select method, path, action, subject, remote from agentbot_audit order by id"
        )
        assert audit == [
            ("POST", "/api/workflows", "stored", "meu_fluxo", "127.0.0.1"),
            ("DELETE", "/api/workflows/vendas", "retired", "vendas", "127.0.0.1"),
        ]


async def test_file_removed_retires_its_flow(db_dsn: str, tmp_path: Path) -> None:
    """A flow whose file left FLOWS_DIR is retired at the next start; API flows stay."""
    flows = write_flow(tmp_path / "flows")
    async with serve(db_dsn, flows) as h:
        r = await h.http.post(
            "/api/workflows", json={"name": "pesquisa", "config": SURVEY}, headers=AUTH
        )
        assert r.status_code == 201
    (flows / "vendas.yaml").unlink()
    async with serve(db_dsn, flows) as h:
        listed = (await h.http.get("/api/workflows", headers=AUTH)).json()["workflows"]
        assert [w["name"] for w in listed] == ["pesquisa"]
    write_flow(flows, SALES_FLOW)
    async with serve(db_dsn, flows) as h:
        listed = (await h.http.get("/api/workflows", headers=AUTH)).json()["workflows"]
        assert [w["name"] for w in listed] == ["pesquisa", "vendas"]


async def test_conversation_pages_and_contact_sessions(db_dsn: str, tmp_path: Path) -> None:
    """GET /api/conversation/{id} pages its history (limit, before) with each interaction's
    session; GET /api/contacts/{id}/conversations lists the contact's sessions."""
    flows = write_flow(tmp_path / "flows")
    async with serve(db_dsn, flows) as h:
        for i, text in enumerate(["Oi", "Sim", "Só olhando", "menu"], start=1):
            await h.post(incoming(60, i, text))
            await h.settled()
        everything = (await h.http.get("/api/conversation/60", headers=AUTH)).json()
        ids = [i["id"] for i in everything["interactions"]]
        assert ids == sorted(ids)
        assert everything["next_before"] is None
        sessions = [i["session_id"] for i in everything["interactions"]]
        assert len(set(sessions)) == 2
        assert everything["session"]["id"] == sessions[-1]
        pages: list[int] = []
        before: int | None = None
        while True:
            params = {"limit": "4", **({"before": str(before)} if before else {})}
            page = (await h.http.get("/api/conversation/60", params=params, headers=AUTH)).json()
            pages = [i["id"] for i in page["interactions"]] + pages
            before = page["next_before"]
            if before is None:
                break
        assert pages == ids
        r = await h.http.get("/api/conversation/60", params={"limit": "0"}, headers=AUTH)
        assert r.status_code == 422
        r = await h.http.get("/api/conversation/60", params={"before": "x"}, headers=AUTH)
        assert r.status_code == 422
        contact = h.query("select contact_id from workflow_conversations limit 1")[0][0]
        listed = (await h.http.get(f"/api/contacts/{contact}/conversations", headers=AUTH)).json()
        assert [(s["conversation_id"], s["status"]) for s in listed["sessions"]] == [
            (60, "active"),
            (60, "completed"),
        ]
        empty = (await h.http.get("/api/contacts/999999/conversations", headers=AUTH)).json()
        assert empty == {"contact_id": 999999, "sessions": []}
        assert (await h.http.get("/api/contacts/1/conversations")).status_code == 401


GREETING = """
name: boas
trigger: {keywords: [boas]}
variables: [pedido]
blocks:
  oi:
    message: "Olá {{nome}}! Seu pedido {{pedido | default('?')}} chegou."
"""


async def test_start_by_contact(db_dsn: str, tmp_path: Path) -> None:
    """The old start body: the contact's open conversation in the inbox is used, else one is
    created through Chatwoot's API with the user token; initialData's nome wins."""
    fake = FakeChatwoot()
    fake.add_inbox(1, 7, channel_type="Channel::Api")
    fake.add_inbox(1, 8, channel_type="Channel::Api")
    fake.add_contact(1, 4821, name="João Pereira")
    fake.add_conversation(1, 90, "open", inbox_id=7, contact_id=4821)
    fake.add_contact(1, 4822, name="Ana Lima")
    fake.add_conversation(1, 91, "resolved", inbox_id=7, contact_id=4822)
    flows = write_flow(tmp_path / "flows", GREETING, "boas.yaml")
    with FakeChatwootServer(fake) as server:
        settings = Settings(
            chatwoot_url=server.url,
            chatwoot_api_token=Secret(fake.bot_token),
            chatwoot_user_token=Secret(fake.user_token),
            webhook_token=Secret(WEBHOOK_TOKEN),
            api_token=Secret(API),
            flows_dir=flows,
        )
        async with running(db_dsn, flows, fake=fake, settings=settings) as h:
            body = {
                "contactId": 4821,
                "workflowName": "boas",
                "initialData": {"nome": "João", "pedido": 4417},
                "accountId": 1,
            }
            r = await h.http.post("/api/workflow/start", json=body, headers=AUTH)
            assert r.status_code == 201, r.text
            assert (r.json()["conversationId"], r.json()["conversationCreated"]) == (90, False)
            await h.until(lambda: len(h.sent(90)) == 1)
            assert h.contents(90) == ["Olá João! Seu pedido 4417 chegou."]
            # Ana's only conversation is resolved: a new one is created in her only inbox.
            body = {"contactId": 4822, "workflowName": "boas", "accountId": 1}
            r = await h.http.post("/api/workflow/start", json=body, headers=AUTH)
            assert r.status_code == 201, r.text
            created = r.json()["conversationId"]
            assert r.json()["conversationCreated"] is True
            assert created not in (90, 91)
            await h.until(lambda: len(h.sent(created)) == 1)
            assert h.contents(created) == ["Olá Ana Lima! Seu pedido ? chegou."]
            assert fake.conversation(created)["meta"]["sender"]["id"] == 4822
            # The account is known from the contact's sessions now; two inboxes need inboxId.
            fake.add_contact_inbox(1, 4822, 8)
            body = {"contactId": 4822, "workflowName": "boas"}
            r = await h.http.post("/api/workflow/start", json=body, headers=AUTH)
            assert (r.status_code, r.json()["error"]) == (422, "inbox_needed")
            r = await h.http.post("/api/workflow/start", json={**body, "inboxId": 8}, headers=AUTH)
            assert r.status_code == 201, r.text
            assert r.json()["conversationCreated"] is True
            r = await h.http.post(
                "/api/workflow/start",
                json={"contactId": 5000, "workflowName": "boas"},
                headers=AUTH,
            )
            assert (r.status_code, r.json()["error"]) == (422, "account_needed")
            actions = h.query("select action from agentbot_audit order by id")
            assert actions == [("started",), ("started",), ("started",)]
            assert h.fake.violations == []
