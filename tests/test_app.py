"""The service end to end: webhook in over HTTP, PostgreSQL, outbox, fake Chatwoot over HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from structlog.testing import capture_logs

from agentbot import tokens
from agentbot.config import Secret, Settings
from tests.fakes import FakeChatwoot
from tests.harness import API_TOKEN, Harness, incoming, running, write_flow
from tests.proxy import DatabaseProxy

pytestmark = pytest.mark.anyio


async def test_whatsapp_conversation(db_dsn: str, tmp_path: Path) -> None:
    """Greeting with buttons and the name, a label beside an agent's, handoff, then silence."""
    fake = FakeChatwoot()
    fake.add_conversation(1, 1287, status="pending", labels=["vip"])  # an agent's label
    async with running(db_dsn, write_flow(tmp_path), fake=fake) as h:
        r = await h.post(incoming(1287, 1, "Oi"))
        assert r.status_code == 200
        await h.until(lambda: len(h.sent(1287)) == 1)
        first = h.sent(1287)[0]
        assert first["content"] == "Olá Maria Silva! Você já é nosso cliente?"
        assert first["content_type"] == "input_select"
        assert first["content_attributes"] == {
            "items": [{"title": "Sim", "value": "sim"}, {"title": "Não", "value": "nao"}]
        }

        await h.post(incoming(1287, 2, "nao", labels=["vip"]))
        await h.until(lambda: len(h.sent(1287)) == 2)
        assert h.fake.labels(1287) == ["vip", "lead_novo"]
        assert h.sent(1287)[1]["content"] == "Qual produto te interessa?"

        await h.post(incoming(1287, 3, "Plano Pro"))
        await h.until(lambda: h.fake.status(1287) == "open")
        assert h.contents(1287)[-1] == "Perfeito! Vou chamar um especialista."
        assert h.fake.labels(1287) == ["vip", "lead_novo", "plano_pro", "lead_quente"]

        # Chatwoot keeps sending events after the handoff: the bot stays quiet.
        r = await h.post(incoming(1287, 4, "Alô?", status="open"))
        assert r.json() == {"status": "quiet"}
        r = await h.post(incoming(1287, 5, "Alô??"))  # even if it still looked pending
        assert r.json() == {"status": "quiet"}
        await h.settled()
        assert len(h.sent(1287)) == 3
        assert h.fake.violations == []
        rows = h.query("select direction, kind, block from workflow_interactions order by id")
        assert rows[0] == ("in", "started", None)
        assert ("in", "chose", "boas_vindas") in rows
        assert ("out", "handoff", "atendente") in rows
        status = h.query("select status, current_block from workflow_conversations")
        assert status == [("handed_off", "atendente")]


async def test_completed_flow_starts_over(db_dsn: str, tmp_path: Path) -> None:
    """After the flow ends (and its 10-minute rest), a later message in a still-pending
    conversation starts again."""
    now = [datetime(2026, 6, 20, 14, 0, tzinfo=UTC)]
    async with running(db_dsn, write_flow(tmp_path), clock=lambda: now[0]) as h:
        for i, text in enumerate(["Oi", "Sim", "Só olhando", "Oi de novo"], start=1):
            if i == 4:
                now[0] += timedelta(minutes=10)
            await h.post(incoming(50, i, text))
            await h.until(lambda n=i: len(h.sent(50)) == n)  # type: ignore[misc]
        assert h.contents(50)[2:] == [
            "Tudo bem! Estamos aqui quando precisar.",
            "Olá Maria Silva! Você já é nosso cliente?",
        ]
        sessions = h.query("select status from workflow_conversations order by id")
        assert sessions == [("completed",), ("active",)]


async def test_same_event_twice_one_reply(db_dsn: str, tmp_path: Path) -> None:
    """A redelivery (same delivery id) and a resend (same message id) are processed once."""
    async with running(db_dsn, write_flow(tmp_path)) as h:
        event = incoming(60, 1, "Oi")
        answers = [
            await h.post(event, delivery_id="d-1"),
            await h.post(event, delivery_id="d-1"),
            await h.post(event, delivery_id="d-2"),
        ]
        assert [a.json()["status"] for a in answers] == ["acted", "duplicate", "duplicate"]
        await h.settled()
        assert len(h.sent(60)) == 1


async def test_twenty_messages_at_once_in_order(db_dsn: str, tmp_path: Path) -> None:
    """Twenty messages of one conversation posted at once are handled one at a time, in order."""
    blocks = "\n".join(
        f"  b{i}:\n    message: 'pergunta {i}'\n    buttons: [{{text: Sim, next_block: b{i + 1}}}]"
        for i in range(21)
    )
    flow = f"trigger: {{default: true}}\nblocks:\n{blocks}\n  b21:\n    message: fim\n"
    async with running(db_dsn, write_flow(tmp_path, flow, "cadeia.yaml")) as h:
        await h.post(incoming(70, 1, "Oi"))
        answers = await asyncio.gather(*(h.post(incoming(70, 100 + i, "Sim")) for i in range(20)))
        assert [a.status_code for a in answers] == [200] * 20
        await h.until(lambda: len(h.sent(70)) == 21)
        await h.settled()
        assert h.contents(70) == [f"pergunta {i}" for i in range(21)]


async def test_chatwoot_500_three_times_then_ok(db_dsn: str, tmp_path: Path) -> None:
    """Chatwoot answering 500 three times then 200: each reply delivered once, in order."""
    async with running(db_dsn, write_flow(tmp_path)) as h:
        h.fake.fail_next(3, status=500)
        await h.post(incoming(80, 1, "Oi"))
        await h.post(incoming(80, 2, "Sim"))
        await h.until(lambda: len(h.sent(80)) == 2)
        await h.settled()
        assert h.contents(80) == [
            "Olá Maria Silva! Você já é nosso cliente?",
            "Qual produto te interessa?",
        ]
        failed = [r for r in h.fake.requests if r.status == 500]
        assert len(failed) == 3


async def test_chatwoot_down_then_back(db_dsn: str, tmp_path: Path) -> None:
    """Chatwoot down while 50 events arrive: all answered 200 at once, all delivered later."""
    async with running(db_dsn, write_flow(tmp_path)) as h:
        h.chatwoot.stop()
        started = time.monotonic()
        answers = await asyncio.gather(*(h.post(incoming(1000 + i, i, "Oi")) for i in range(50)))
        elapsed = time.monotonic() - started
        assert [a.status_code for a in answers] == [200] * 50
        assert elapsed < 5, "the webhook must not wait for Chatwoot"
        await asyncio.sleep(0.3)  # let the worker fail a few times
        pending = h.query("select count(*) from workflow_outbox where status = 'pending'")
        assert pending == [(50,)]
        h.chatwoot.start()
        await h.until(lambda: all(len(h.sent(1000 + i)) == 1 for i in range(50)), limit=20)
        await h.settled()
        assert h.query("select count(*) from workflow_outbox where status = 'sent'") == [(50,)]


async def test_rejected_reply_is_dead_lettered_and_handed_off(db_dsn: str, tmp_path: Path) -> None:
    """A 4xx is final: recorded with Chatwoot's answer, logged, and the conversation handed off."""
    async with running(db_dsn, write_flow(tmp_path)) as h:
        h.fake.fail_next(1, status=422, body={"error": "Validation failed: Content is too long"})
        with capture_logs() as logs:
            await h.post(incoming(90, 1, "Oi"))
            await h.until(lambda: h.fake.status(90) == "open")
            await h.settled()
        dead = h.query("select last_error from workflow_outbox where status = 'dead'")
        assert len(dead) == 1
        assert "422" in dead[0][0]
        assert "Content is too long" in dead[0][0]
        assert any(e["event"] == "outbox.dead" for e in logs)
        assert h.query("select status from workflow_conversations") == [("handed_off",)]


async def test_bad_requests(db_dsn: str, tmp_path: Path) -> None:
    """Bad token 401 and nothing stored; bad JSON 400; 2 MiB 413; wrong shape 200, logged."""
    async with running(db_dsn, write_flow(tmp_path)) as h:
        r = await h.post(incoming(95, 1, "Oi"), token="wrong")
        assert r.status_code == 401
        assert r.json()["error"] == "unauthorized"
        r = await h.post(incoming(95, 1, "Oi"), token=None)
        assert r.status_code == 401
        r = await h.post(None, content=b"{not json")
        assert (r.status_code, r.json()["error"]) == (400, "bad_json")
        r = await h.post(None, content=b"[" + b"1," * (1024 * 1024) + b"1]")
        assert (r.status_code, r.json()["error"]) == (413, "too_large")
        with capture_logs() as logs:
            r = await h.post({"event": "message_created", "id": 5})
        assert r.status_code == 200
        assert r.json()["status"] == "ignored"
        assert [e["event"] for e in logs] == ["webhook.malformed"]
        assert h.query("select count(*) from workflow_events") == [(0,)]
        r = await h.http.get("/nope")
        assert (r.status_code, r.json()["error"]) == (404, "not_found")


def sign(secret: str, body: bytes, ts: int) -> str:
    return (
        "sha256=" + hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    )


async def test_signature(db_dsn: str, tmp_path: Path) -> None:
    """With a secret, only a valid, recent X-Chatwoot-Signature is accepted."""
    fake = FakeChatwoot()
    settings = Settings(
        chatwoot_url="http://127.0.0.1:9",
        chatwoot_api_token=Secret("bot-token"),
        chatwoot_webhook_secret=Secret("s3cret"),
        flows_dir=write_flow(tmp_path),
    )
    async with running(db_dsn, tmp_path, fake=fake, settings=settings) as h:
        body = json.dumps(incoming(96, 1, "Oi")).encode()
        now = int(time.time())
        cases = [
            (
                {
                    "x-chatwoot-signature": sign("s3cret", body, now),
                    "x-chatwoot-timestamp": str(now),
                },
                200,
            ),
            (
                {
                    "x-chatwoot-signature": sign("wrong", body, now),
                    "x-chatwoot-timestamp": str(now),
                },
                401,
            ),
            (
                {
                    "x-chatwoot-signature": sign("s3cret", body, now - 600),
                    "x-chatwoot-timestamp": str(now - 600),
                },
                401,
            ),
            ({}, 401),
        ]
        for headers, status in cases:
            r = await h.post(None, content=body, headers=headers, token=None)
            assert r.status_code == status, headers
        assert h.query("select count(*) from workflow_events") == [(1,)]


async def test_generated_token_is_kept(db_dsn: str, tmp_path: Path) -> None:
    """With neither secret nor token, a token is generated once, printed, and required."""
    settings = Settings(flows_dir=write_flow(tmp_path))
    with capture_logs() as logs:
        async with running(db_dsn, tmp_path, settings=settings) as h:
            [event] = [e for e in logs if e["event"] == "webhook.token_generated"]
            token = event["webhook_url"].rpartition("?token=")[2]
            stored = h.query("select value from agentbot_settings where key = 'webhook_token'")
            assert stored == [(tokens.digest(token),)]  # kept hashed, never in clear
            assert (await h.post(incoming(97, 1, "Oi"), token=None)).status_code == 401
            assert (await h.post(incoming(97, 1, "Oi"), token=token)).status_code == 200
            health = (await h.http.get("/health")).json()
            assert health["chatwoot"] == "not configured"
        async with running(db_dsn, tmp_path, settings=settings) as h:
            assert (await h.post(incoming(97, 2, "Sim"), token=token)).status_code == 200
    generated = [e for e in logs if e["event"] == "webhook.token_generated"]
    assert len(generated) == 1
    assert generated[0]["webhook_url"].endswith(f"?token={token}")
    # No Chatwoot configured: the replies wait in the outbox.
    assert h.query("select count(*) from workflow_outbox where status = 'pending'") == [(2,)]


async def test_health(db_dsn: str, tmp_path: Path) -> None:
    """/health reports the database, and with the API token the flows and what became of the
    events since the start; without it, fixed keys only."""
    async with running(db_dsn, write_flow(tmp_path)) as h:
        r = await h.http.get("/health")
        assert r.json() == {
            "status": "ok",
            "database": "ok",
            "chatwoot": "configured",
            "flow_count": 1,
        }
        h.http.headers["authorization"] = f"Bearer {API_TOKEN}"
        r = await h.http.get("/health")
        assert r.status_code == 200
        assert r.json() == {
            "status": "ok",
            "database": "ok",
            "chatwoot": "configured",
            "flows": ["vendas"],
            "events": {},
        }
        await h.post(incoming(99, 1, "Oi"))
        await h.post({"event": "webwidget_triggered", "id": 5140})
        r = await h.http.get("/health")
        assert r.json()["events"] == {
            "message_created": {"acted": 1},
            "webwidget_triggered": {"ignored": 1},
        }


def pending(dsn: str) -> int:
    """Outbox rows not yet delivered."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "select count(*) from workflow_outbox where status = 'pending'"
        ).fetchone()
    return int(row[0]) if row is not None else 0


async def test_database_down_and_back(db_dsn: str, tmp_path: Path) -> None:
    """Database away: webhook 500 and /health 503; when it returns the service recovers alone."""
    async with DatabaseProxy(db_dsn) as proxy, running(proxy.dsn, write_flow(tmp_path)) as h:
        assert (await h.post(incoming(98, 1, "Oi"))).status_code == 200
        await h.until(lambda: len(h.sent(98)) == 1)
        # Marked sent (asked past the proxy, which this thread would block): a cut now cannot
        # make the reply go out twice.
        direct = Harness(h.http, h.fake, h.chatwoot, db_dsn, h.url)
        await direct.settled()
        await proxy.cut()
        r = await h.post(incoming(98, 2, "Sim"))
        assert (r.status_code, r.json()["error"]) == (500, "database_unavailable")
        r = await h.http.get("/health")
        assert (r.status_code, r.json()["database"]) == (503, "unreachable")
        await proxy.start()
        # The pool reconnects on its own, with a backoff: wait for /health to say so.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while (await h.http.get("/health")).status_code != 200:
            assert loop.time() < deadline, "the service did not recover"
            await asyncio.sleep(0.2)
        r = await h.post(incoming(98, 2, "Sim"))
        assert r.status_code == 200
        await h.until(lambda: len(h.sent(98)) == 2)
        assert h.contents(98)[1] == "Qual produto te interessa?"


async def test_reset_tokens_reach_a_running_service(db_dsn: str) -> None:
    """Generated tokens are re-read like flows: after a reset the new ones work, the old don't;
    tokens set in the environment are never replaced."""
    from psycopg_pool import AsyncConnectionPool

    from agentbot.app import Credentials, api_token, webhook_auth
    from agentbot.store import Store

    async with AsyncConnectionPool(db_dsn, min_size=1, open=False) as pool:
        store = Store(pool)
        with capture_logs() as logs:
            credentials = Credentials(
                await webhook_auth(Settings(), store), await api_token(Settings(), store)
            )
        old_api = next(e["api_token"] for e in logs if e["event"] == "api.token_generated")
        assert credentials.api.matches(old_api)
        await store.replace_setting(tokens.API_KEY, tokens.digest("new-api"))
        await store.replace_setting(tokens.WEBHOOK_KEY, tokens.digest("new-hook"))
        await credentials.refresh(store)
        assert credentials.api.matches("new-api")
        assert not credentials.api.matches(old_api)
        assert credentials.webhook.token is not None
        assert credentials.webhook.token.matches("new-hook")
        fixed = Settings(webhook_token=Secret("env-hook"), api_token=Secret("env-api"))
        pinned = Credentials(await webhook_auth(fixed, store), await api_token(fixed, store))
        await pinned.refresh(store)
        assert pinned.api.matches("env-api")
        assert pinned.webhook.token is not None
        assert pinned.webhook.token.matches("env-hook")
