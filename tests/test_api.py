"""/api/*: a proactive start with initialData, WhatsApp's 24-hour window, the session view."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from agentbot import tokens
from agentbot.config import Secret, Settings
from tests.fakes import FakeChatwoot, FakeChatwootServer
from tests.harness import WEBHOOK_TOKEN, incoming, running, write_flow

pytestmark = pytest.mark.anyio

API = "api-token"
AUTH = {"authorization": f"Bearer {API}"}
FLOW = """
trigger: {keywords: [campanha]}
variables: [cupom]
template:
  name: retomada
  language: pt_BR
  category: MARKETING
  params: {body: {"1": "{{nome}}", "2": "{{cupom}}"}}
blocks:
  oferta:
    message: >-
      Oi {{contact.name | first_name}}! Seu cupom é {{cupom | default('NENHUM')}}.
      Quer usar?
    buttons:
      - {text: Sim, next_block: fim}
      - {text: Não, next_block: fim}
  fim:
    message: "Combinado!"
"""
NO_TEMPLATE = FLOW[: FLOW.index("template:")] + FLOW[FLOW.index("blocks:") :]


def whatsapp(fake: FakeChatwoot, conversation_id: int, *, can_reply: bool = True) -> None:
    fake.add_inbox(1, 7, channel_type="Channel::Whatsapp")
    fake.add_contact(1, 4821, name="Maria Silva", phone_number="+5511987654321")
    fake.add_conversation(1, conversation_id, inbox_id=7, contact_id=4821, can_reply=can_reply)


def settings_for(server: FakeChatwootServer, fake: FakeChatwoot, flows: Path) -> Settings:
    return Settings(
        chatwoot_url=server.url,
        chatwoot_api_token=Secret(fake.bot_token),
        webhook_token=Secret(WEBHOOK_TOKEN),
        api_token=Secret(API),
        flows_dir=flows,
    )


async def start(h: Any, body: dict[str, Any], headers: dict[str, str] = AUTH) -> Any:
    return await h.http.post("/api/workflow/start", json=body, headers=headers)


async def test_start_with_initial_data(db_dsn: str, tmp_path: Path) -> None:
    """A start sends the first block with initialData and the contact filled in; a second
    start while it runs is refused; the session shows in /api/conversation."""
    fake = FakeChatwoot()
    whatsapp(fake, 80)
    flows = write_flow(tmp_path, FLOW, "campanha.yaml")
    with FakeChatwootServer(fake) as server:
        async with running(
            db_dsn, flows, fake=fake, settings=settings_for(server, fake, flows)
        ) as h:
            body = {
                "conversationId": 80,
                "workflowName": "campanha",
                "initialData": {"cupom": "BEMVINDA10"},
                "accountId": 1,
            }
            r = await start(h, body)
            assert (r.status_code, r.json()["status"]) == (201, "started")
            await h.until(lambda: len(h.sent(80)) == 1)
            first = h.sent(80)[0]
            assert first["content"] == "Oi Maria! Seu cupom é BEMVINDA10. Quer usar?"
            assert first["template_params"] is None
            r = await start(h, body)
            assert (r.status_code, r.json()["error"]) == (409, "busy")

            await h.post(incoming(80, 1, "Sim"))
            await h.until(lambda: len(h.sent(80)) == 2)
            view = (await h.http.get("/api/conversation/80", headers=AUTH)).json()
            assert view["session"] == {
                "id": view["session"]["id"],
                "flow": "campanha",
                "version": view["session"]["version"],
                "block": "fim",
                "status": "completed",
                "variables": {"cupom": "BEMVINDA10"},
            }
            kinds = [(i["direction"], i["kind"]) for i in view["interactions"]]
            assert kinds[0] == ("in", "started")
            assert ("in", "chose") in kinds
            assert h.fake.violations == []


async def test_outside_the_24_hour_window(db_dsn: str, tmp_path: Path) -> None:
    """can_reply false on WhatsApp: the first message goes as the flow's approved template;
    a flow without one is refused with the reason."""
    fake = FakeChatwoot()
    whatsapp(fake, 81, can_reply=False)
    flows = write_flow(tmp_path, FLOW, "campanha.yaml")
    write_flow(tmp_path, NO_TEMPLATE.replace("campanha]", "outra]"), "sem_modelo.yaml")
    with FakeChatwootServer(fake) as server:
        async with running(
            db_dsn, flows, fake=fake, settings=settings_for(server, fake, flows)
        ) as h:
            body = {"conversationId": 81, "workflowName": "sem_modelo", "accountId": 1}
            r = await start(h, body)
            assert (r.status_code, r.json()["error"]) == (422, "outside_window")
            body = {
                "conversationId": 81,
                "workflowName": "campanha",
                "accountId": 1,
                "initialData": {"cupom": "VOLTA5"},
            }
            assert (await start(h, body)).status_code == 201
            await h.until(lambda: len(h.sent(81)) == 1)
            sent = h.sent(81)[0]
            assert sent["template_params"] == {
                "name": "retomada",
                "language": "pt_BR",
                "category": "MARKETING",
                "processed_params": {"body": {"1": "Maria Silva", "2": "VOLTA5"}},
            }
            assert h.fake.violations == []


BAD = [
    ("no token", {"conversationId": 1, "workflowName": "campanha"}, {}, 401, "unauthorized"),
    ("wrong token", {}, {"authorization": "Bearer nope"}, 401, "unauthorized"),
    ("not an object", [1], AUTH, 422, "invalid"),
    ("no id", {"workflowName": "campanha"}, AUTH, 422, "invalid"),
    ("no name", {"conversationId": 1}, AUTH, 422, "invalid"),
    (
        "bad data",
        {"conversationId": 1, "workflowName": "campanha", "initialData": [1]},
        AUTH,
        422,
        "invalid",
    ),
    ("unknown flow", {"conversationId": 1, "workflowName": "campanhas"}, AUTH, 404, "unknown_flow"),
    (
        "by contact without the user token",
        {"contactId": 1, "inboxId": 7, "workflowName": "campanha"},
        AUTH,
        422,
        "user_token_needed",
    ),
    (
        "unseen, no account",
        {"conversationId": 999, "workflowName": "campanha"},
        AUTH,
        422,
        "account_needed",
    ),
    (
        "bad account",
        {"conversationId": 1, "workflowName": "campanha", "accountId": "x"},
        AUTH,
        422,
        "invalid",
    ),
    (
        "not in Chatwoot",
        {"conversationId": 5, "workflowName": "campanha", "accountId": 99},
        AUTH,
        404,
        "not_in_chatwoot",
    ),
]


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
async def test_bad_requests(
    db_dsn: str, tmp_path: Path, body: Any, headers: dict[str, str], status: int, code: str
) -> None:
    """Each bad request gets its status and a JSON error naming the fix."""
    fake = FakeChatwoot(autocreate=False)
    flows = write_flow(tmp_path, FLOW, "campanha.yaml")
    with FakeChatwootServer(fake) as server:
        async with running(
            db_dsn, flows, fake=fake, settings=settings_for(server, fake, flows)
        ) as h:
            r = await start(h, body, headers)
            assert (r.status_code, r.json()["error"]) == (status, code)
            assert r.json()["message"]


async def test_generated_api_token_and_bad_json(db_dsn: str, tmp_path: Path) -> None:
    """Without WORKFLOWS_API_TOKEN one is generated, printed once and required; no Chatwoot
    configured: a start is 503."""
    settings = Settings(
        webhook_token=Secret(WEBHOOK_TOKEN), flows_dir=write_flow(tmp_path, FLOW, "c.yaml")
    )
    with capture_logs() as logs:
        async with running(db_dsn, tmp_path, settings=settings) as h:
            [event] = [e for e in logs if e["event"] == "api.token_generated"]
            token = event["api_token"]
            stored = h.query("select value from agentbot_settings where key = 'api_token'")
            assert stored == [(tokens.digest(token),)]  # kept hashed, never in clear
            auth = {"authorization": f"Bearer {token}"}
            r = await h.http.post("/api/workflow/start", content=b"{", headers=auth)
            assert (r.status_code, r.json()["error"]) == (400, "bad_json")
            r = await start(h, {"conversationId": 1, "workflowName": "c"}, auth)
            assert (r.status_code, r.json()["error"]) == (503, "chatwoot_not_configured")
            view = (await h.http.get("/api/conversation/5", headers=auth)).json()
            assert view == {
                "conversation_id": 5,
                "session": None,
                "next_before": None,
                "interactions": [],
            }
            r = await h.http.get("/api/conversation/5?accountId=x", headers=auth)
            assert r.status_code == 422
            assert (await h.http.get("/api/conversation/5")).status_code == 401
    assert [e["api_token"] for e in logs if e["event"] == "api.token_generated"] == [token]


SIMPLE = {"trigger": {"keywords": ["pesquisa"]}, "blocks": {"a": {"message": "Nota de 0 a 10?"}}}


async def test_workflows_create_list_read(db_dsn: str, tmp_path: Path) -> None:
    """POST /api/workflows stores a flow (JSON or YAML), used at once; a second identical POST
    changes nothing; GET lists and reads them."""
    flows = write_flow(tmp_path, FLOW, "campanha.yaml")
    settings = Settings(webhook_token=Secret(WEBHOOK_TOKEN), api_token=Secret(API), flows_dir=flows)
    async with running(db_dsn, flows, settings=settings) as h:
        r = await h.http.post(
            "/api/workflows", json={"name": "pesquisa", "config": SIMPLE}, headers=AUTH
        )
        assert (r.status_code, r.json()["changed"]) == (201, True)
        again = await h.http.post(
            "/api/workflows", json={"name": "pesquisa", "config": SIMPLE}, headers=AUTH
        )
        assert (again.status_code, again.json()) == (200, {**r.json(), "changed": False})
        yaml_flow = (
            "name: pesquisa\ntrigger: {keywords: [pesquisa]}\nblocks:\n  a: {message: 'Nota?'}\n"
        )
        r = await h.http.post(
            "/api/workflows",
            content=yaml_flow.encode(),
            headers={**AUTH, "content-type": "application/yaml"},
        )
        assert r.status_code == 201
        listed = (await h.http.get("/api/workflows", headers=AUTH)).json()["workflows"]
        assert [(w["name"], w["source"]) for w in listed] == [
            ("campanha", "file"),
            ("pesquisa", "api"),
        ]
        read = (await h.http.get("/api/workflows/pesquisa", headers=AUTH)).json()
        assert read["config"]["blocks"]["a"]["message"] == "Nota?"
        assert (await h.http.get("/api/workflows/nada", headers=AUTH)).status_code == 404
        # In use at once: a new conversation saying the keyword starts it.
        await h.post(incoming(85, 1, "pesquisa"))
        assert h.query("select flow_name from workflow_conversations") == [("pesquisa",)]


STORE_BAD = [
    (
        "invalid flow",
        {"name": "x", "config": {"blocks": {"a": {"message": ""}}}},
        {},
        422,
        "invalid_flow",
    ),
    (
        "second default",
        {"name": "x", "config": {"trigger": {"default": True}, "blocks": {"a": {"message": "oi"}}}},
        {},
        422,
        "invalid_flow",
    ),
    ("no config", {"name": "x"}, {}, 422, "invalid"),
    ("no name", {"config": SIMPLE}, {}, 422, "invalid"),
    (
        "yaml without a name",
        "blocks: {a: {message: oi}}",
        {"content-type": "application/yaml"},
        422,
        "invalid",
    ),
    ("bad yaml", "blocks: [", {"content-type": "application/yaml"}, 422, "invalid_flow"),
    ("not json", "{", {"content-type": "application/json"}, 400, "bad_json"),
    (
        "contact attributes without the user token",
        {
            "name": "x",
            "config": {
                "blocks": {
                    "a": {
                        "message": "CPF?",
                        "input": {"save_as": "cpf", "type": "cpf"},
                        "save_to": "contact.custom_attributes.cpf",
                    }
                }
            },
        },
        {},
        422,
        "invalid_flow",
    ),
]


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"), [b[1:] for b in STORE_BAD], ids=[b[0] for b in STORE_BAD]
)
async def test_workflows_refused(
    db_dsn: str, tmp_path: Path, body: Any, headers: dict[str, str], status: int, code: str
) -> None:
    """An invalid flow is refused with every problem; nothing is stored."""
    default = "trigger: {default: true}\nblocks:\n  a: {message: oi}\n"
    flows = write_flow(tmp_path, default, "geral.yaml")
    settings = Settings(webhook_token=Secret(WEBHOOK_TOKEN), api_token=Secret(API), flows_dir=flows)
    async with running(db_dsn, flows, settings=settings) as h:
        if isinstance(body, str):
            r = await h.http.post(
                "/api/workflows", content=body.encode(), headers={**AUTH, **headers}
            )
        else:
            r = await h.http.post("/api/workflows", json=body, headers=AUTH)
        assert (r.status_code, r.json()["error"]) == (status, code)
        if code == "invalid_flow":
            assert r.json()["problems"]
        assert h.query("select count(*) from workflow_configs where source = 'api'") == [(0,)]
