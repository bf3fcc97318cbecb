"""Bursts (`debounce:`), A/B splits and shared hours end to end: webhook, API, database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from agentbot import events
from agentbot.catalog import Catalog
from agentbot.config import Secret, Settings
from agentbot.service import Result, Service
from agentbot.store import Store
from tests.fakes import FakeChatwoot
from tests.harness import (
    API_TOKEN,
    SALES_FLOW,
    WEBHOOK_TOKEN,
    agent_message,
    conversation_event,
    incoming,
    running,
    write_flow,
)
from tests.test_holds import note

pytestmark = pytest.mark.anyio

DEBOUNCED = SALES_FLOW.replace("trigger: {default: true}", "trigger: {default: true}\ndebounce: 1s")
GREETING = "Olá Maria Silva! Você já é nosso cliente?"


async def quiet_for(seconds: float) -> None:
    """Let the window close and the timers run well past it, so a second answer would show."""
    await asyncio.sleep(seconds)


async def test_five_messages_within_100ms_get_one_answer(db_dsn: str, tmp_path: Path) -> None:
    """Five messages in 100 ms: each held at once (200), then one greeting, no duplicate."""
    async with running(db_dsn, write_flow(tmp_path, DEBOUNCED)) as h:
        texts = ["Oi", "tudo bem?", "queria saber", "dos planos", "de vocês"]
        started = asyncio.get_running_loop().time()
        answers = []
        for i, text in enumerate(texts, start=1):
            answers.append(await h.post(incoming(500, i, text)))
            await asyncio.sleep(0.02)
        assert asyncio.get_running_loop().time() - started < 1.0  # well inside the window
        assert [a.json() for a in answers] == [{"status": "held"}] * 5
        assert h.sent(500) == []  # nothing before the window closes
        await h.until(lambda: len(h.sent(500)) == 1)
        await h.settled()
        await quiet_for(1.5)
        assert h.contents(500) == [GREETING]
        rows = h.query(
            "select kind, content from workflow_interactions where direction = 'in' order by id"
        )
        assert rows == [*(("held", t) for t in texts), ("started", "Oi")]
        assert h.query("select count(*) from workflow_bursts") == [(0,)]
        assert h.fake.violations == []


async def test_a_burst_at_a_question_takes_the_answer_in_it(db_dsn: str, tmp_path: Path) -> None:
    """At a question, "hmm", "Sim", "ok?" answer the question once with "Sim"; no retry."""
    async with running(db_dsn, write_flow(tmp_path, DEBOUNCED)) as h:
        await h.post(incoming(501, 1, "Oi"))
        await h.until(lambda: len(h.sent(501)) == 1)
        for i, text in enumerate(["hmm", "Sim", "ok?"], start=2):
            assert (await h.post(incoming(501, i, text))).json() == {"status": "held"}
        await h.until(lambda: len(h.sent(501)) == 2)
        await h.settled()
        await quiet_for(1.5)
        assert h.contents(501) == [GREETING, "Qual produto te interessa?"]


async def test_a_burst_of_misses_is_one_miss(db_dsn: str, tmp_path: Path) -> None:
    """Three replies that match nothing ask again once, counted as one miss (no handoff)."""
    async with running(db_dsn, write_flow(tmp_path, DEBOUNCED)) as h:
        await h.post(incoming(502, 1, "Oi"))
        await h.until(lambda: len(h.sent(502)) == 1)
        for i, text in enumerate(["abc", "def", "ghi"], start=2):
            await h.post(incoming(502, i, text))
        await h.until(lambda: len(h.sent(502)) == 2)
        await h.settled()
        await quiet_for(1.5)
        assert len(h.sent(502)) == 2
        assert h.contents(502)[1].startswith("Não entendi.")
        assert h.query("select misses, status from workflow_conversations") == [(1, "active")]
        missed = h.query("select content from workflow_interactions where kind = 'missed'")
        assert missed == [("abc\ndef\nghi",)]


async def test_a_held_burst_survives_a_restart(db_dsn: str, tmp_path: Path) -> None:
    """Messages held when the service stops are answered, once, by the next start."""
    fake = FakeChatwoot()
    flows = write_flow(tmp_path, DEBOUNCED)
    async with running(db_dsn, flows, fake=fake) as h:
        await h.post(incoming(503, 1, "Oi"))
        await h.post(incoming(503, 2, "alguém aí?"))
        await h.post(incoming(503, 2, "alguém aí?"))  # Chatwoot's retry: a duplicate
    assert h.sent(503) == []
    assert h.query("select jsonb_array_length(events) from workflow_bursts") == [(2,)]
    async with running(db_dsn, flows, fake=fake) as h:
        await h.until(lambda: len(h.sent(503)) == 1)
        await h.settled()
        await quiet_for(1.2)
        assert h.contents(503) == [GREETING]


async def test_without_debounce_each_message_is_answered_at_once(
    db_dsn: str, tmp_path: Path
) -> None:
    """A flow without debounce holds nothing: the webhook acts on each message."""
    async with running(db_dsn, write_flow(tmp_path)) as h:
        assert (await h.post(incoming(504, 1, "Oi"))).json() == {"status": "acted"}
        assert h.query("select count(*) from workflow_bursts") == [(0,)]


SPLIT_FLOW = """
name: campanha
trigger: {default: true}
blocks:
  teste_ab:
    split:
      - {weight: 50, next_block: curta, name: a}
      - {weight: 50, next_block: longa, name: b}
  curta:
    message: "Oferta curta"
  longa:
    message: "Oferta longa"
"""


async def test_split_arms_are_recorded_per_conversation(db_dsn: str, tmp_path: Path) -> None:
    """30 conversations: split interactions per arm match the sessions and messages; arms stay."""
    async with running(db_dsn, write_flow(tmp_path, SPLIT_FLOW, "campanha.yaml")) as h:
        conversations = range(600, 630)
        for conversation in conversations:
            await h.post(incoming(conversation, conversation, "Oi"))
        await h.until(lambda: all(len(h.sent(c)) == 1 for c in conversations))
        await h.settled()
        rows = h.query(
            "select conversation_id, block, choice from workflow_interactions"
            " where kind = 'split' order by conversation_id"
        )
        assert [r[0] for r in rows] == list(conversations)
        arms = {conversation: arm for conversation, _, arm in rows}
        assert {block for _, block, _ in rows} == {"teste_ab"}
        assert set(arms.values()) == {"a", "b"}
        for conversation, arm in arms.items():
            expected = "Oferta curta" if arm == "a" else "Oferta longa"
            assert h.contents(conversation) == [expected]
        variables = h.query(
            "select conversation_id, variables->>'teste_ab' from workflow_conversations"
        )
        assert dict(variables) == arms
        per_arm = h.query(
            "select choice, count(*) from workflow_interactions where kind = 'split'"
            " group by choice order by choice"
        )
        counted = {arm: list(arms.values()).count(arm) for arm in ("a", "b")}
        assert dict(per_arm) == counted
        # the flow completed: a restart word starts it over, and it takes the same arm again
        await h.post(incoming(600, 10_000, "menu"))
        await h.until(lambda: len(h.sent(600)) == 2)
        assert h.contents(600)[1] == h.contents(600)[0]


async def test_stats_per_split_arm_match_a_scripted_run(db_dsn: str, tmp_path: Path) -> None:
    """40 conversations through an A/B split: GET /api/stats counts each arm as the split
    block's choice, and each arm's block as entered, as often as the customers saw that arm."""
    async with running(db_dsn, write_flow(tmp_path, SPLIT_FLOW, "campanha.yaml")) as h:
        conversations = range(700, 740)
        for conversation in conversations:
            await h.post(incoming(conversation, conversation, "Oi"))
        await h.until(lambda: all(len(h.sent(c)) == 1 for c in conversations))
        await h.settled()
        # What the customers saw decides the expected counts, not agentbot's own records.
        seen = [h.contents(c)[0] for c in conversations]
        short, long = seen.count("Oferta curta"), seen.count("Oferta longa")
        assert short + long == 40
        assert short > 0
        assert long > 0
        r = await h.http.get(
            "/api/stats",
            params={"flow": "campanha"},
            headers={"authorization": f"Bearer {API_TOKEN}"},
        )
        assert r.status_code == 200, r.text
    [flow] = r.json()["flows"]
    assert (flow["name"], flow["started"], flow["completed"]) == ("campanha", 40, 40)
    blocks = {b["block"]: b for b in flow["blocks"]}
    assert blocks["teste_ab"]["choices"] == {"a": short, "b": long}
    assert blocks["teste_ab"]["entered"] == 40
    assert (blocks["curta"]["entered"], blocks["longa"]["entered"]) == (short, long)


async def test_api_flow_names_shared_hours(db_dsn: str, tmp_path: Path) -> None:
    """POST /api/workflows writes `hours: office` out from FLOWS_DIR/hours; unknown names: 422."""
    flows = write_flow(tmp_path)
    (flows / "hours").mkdir()
    (flows / "hours" / "office.yaml").write_text("tz: America/Sao_Paulo\nmon-fri: 08:00-18:00\n")
    settings = Settings(
        webhook_token=Secret(WEBHOOK_TOKEN), api_token=Secret("api"), flows_dir=flows
    )
    auth = {"authorization": "Bearer api"}
    config = {
        "trigger": {"keywords": ["plantao"]},
        "hours": "office",
        "blocks": {
            "a": {"conditions": [{"if": "open_now", "next_block": "b"}], "else": "c"},
            "b": {"message": "Aberto"},
            "c": {"message": "Fechado"},
        },
    }
    async with running(db_dsn, flows, settings=settings) as h:
        r = await h.http.post(
            "/api/workflows", json={"name": "plantao", "config": config}, headers=auth
        )
        assert r.status_code == 201, r.text
        read = (await h.http.get("/api/workflows/plantao", headers=auth)).json()
        assert read["config"]["hours"] == {"tz": "America/Sao_Paulo", "mon-fri": "08:00-18:00"}
        r = await h.http.post(
            "/api/workflows",
            json={"name": "plantao", "config": {**config, "hours": "weekend"}},
            headers=auth,
        )
        assert r.status_code == 422
        assert "FLOWS_DIR/hours/weekend.yaml" in r.json()["problems"][0]


async def test_humans_stepping_in_drop_a_held_burst(db_dsn: str, tmp_path: Path) -> None:
    """An agent's reply or an assignment while messages are held: the bot never answers them."""
    async with running(db_dsn, write_flow(tmp_path, DEBOUNCED)) as h:
        await h.post(incoming(520, 1, "Oi"))
        r = await h.post(agent_message(520, 2, "Oi! Sou a Ana, posso ajudar?"))
        assert r.json() == {"status": "humans"}
        await h.post(incoming(521, 3, "Oi"))
        assigned = conversation_event(
            "conversation_updated", 521, "pending", assignee={"id": 3, "name": "Ana"}
        )
        assigned["changed_attributes"] = [{"assignee_id": {"previous_value": None}}]
        assert (await h.post(assigned)).json() == {"status": "humans"}
        await h.post(incoming(522, 4, "Oi"))  # a burst nobody touches, to know the timers ran
        await h.until(lambda: len(h.sent(522)) == 1)
        await quiet_for(1.2)
        assert h.sent(520) == []
        assert h.sent(521) == []
        assert h.query("select count(*) from workflow_bursts") == [(0,)]


async def test_a_pause_while_messages_are_held_keeps_the_bot_quiet(
    db_dsn: str, tmp_path: Path
) -> None:
    """An agent's `/pause 30` arrives while a burst is held: when the window closes the bot
    does not answer it (who holds the conversation is decided again at the release)."""
    async with running(db_dsn, write_flow(tmp_path, DEBOUNCED)) as h:
        await h.post(incoming(530, 1, "Oi"))
        assert (await h.post(note(530, 2, "/pause 30"))).json() == {"status": "paused"}
        await h.post(incoming(531, 3, "Oi"))  # a burst nobody touches, to know the timers ran
        await h.until(lambda: len(h.sent(531)) == 1)
        await quiet_for(1.2)
        assert h.contents(530) == []
        assert h.query("select count(*) from workflow_bursts") == [(0,)]


async def test_a_burst_is_released_once_on_the_clock(db_dsn: str, tmp_path: Path) -> None:
    """With the clock pinned: not before the window closes; four replicas at once, one answer."""
    flows = write_flow(tmp_path, DEBOUNCED.replace("debounce: 1s", "debounce: 2s"))
    t0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    async with AsyncConnectionPool(db_dsn, min_size=1, open=False) as pool:
        store = Store(pool)
        replicas = [Service(store, Catalog(store)) for _ in range(4)]
        for replica in replicas:
            await replica.catalog.sync_files(flows)
        for i, text in enumerate(["Oi", "tudo bem?", "alô"]):
            payload = incoming(530, 100 + i, text)
            event = events.parse(payload)
            assert isinstance(event, events.CustomerMessage)
            now = t0 + timedelta(milliseconds=40 * i)
            handled = await replicas[0].handle(
                event, event_name="message_created", delivery_id=None, now=now, payload=payload
            )
            assert handled.result is Result.HELD
        # the window counts from the last message (t0 + 80 ms): closed at t0 + 2.08 s
        early = await replicas[1].release_burst(1, 530, t0 + timedelta(seconds=2))
        assert early.result is Result.QUIET
        assert await store.due_bursts(t0 + timedelta(seconds=2)) == []
        due = t0 + timedelta(seconds=2.1)
        assert await store.due_bursts(due) == [(1, 530)]
        results = await asyncio.gather(*(r.release_burst(1, 530, due) for r in replicas))
        assert sorted(r.result.value for r in results) == ["acted", "quiet", "quiet", "quiet"]
    with psycopg.connect(db_dsn) as conn:
        rows = conn.execute("select action->>'text' from workflow_outbox").fetchall()
    assert rows == [(GREETING,)]
