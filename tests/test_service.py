"""Who holds the conversation: agents taking over, resolves, reopenings, refused deliveries."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.fakes import FakeChatwoot
from tests.harness import (
    agent_message,
    conversation_event,
    delivery_failed,
    incoming,
    running,
    write_flow,
)

pytestmark = pytest.mark.anyio

GREETING = "Olá Maria Silva! Você já é nosso cliente?"


async def test_agent_reply_silences_until_resolved(db_dsn: str, tmp_path: Path) -> None:
    """An agent replying mid-flow silences the bot; after the resolve, the flow starts again."""
    async with running(db_dsn, write_flow(tmp_path)) as h:
        await h.post(incoming(10, 1, "Oi"))
        await h.until(lambda: len(h.sent(10)) == 1)
        r = await h.post(agent_message(10, 2, "Oi Maria, aqui é a Ana!"))
        assert r.json() == {"status": "humans"}
        await h.until(lambda: h.fake.status(10) == "open")  # it was still pending: handed off

        # Still pending in an event that crossed the handoff, or open: silence either way.
        assert (await h.post(incoming(10, 3, "Sim"))).json() == {"status": "quiet"}
        r = await h.post(incoming(10, 4, "Sim", status="open"))
        assert r.json() == {"status": "quiet"}
        await h.settled()
        assert h.contents(10) == [GREETING]

        r = await h.post(conversation_event("conversation_resolved", 10, "resolved"))
        assert r.json() == {"status": "closed"}
        # The widget and single-conversation inboxes reopen the same conversation as pending.
        await h.post(incoming(10, 5, "Oi de novo"))
        await h.until(lambda: len(h.sent(10)) == 2)
        assert h.contents(10) == [GREETING, GREETING]
        kinds = h.query("select kind from workflow_interactions where direction = 'in' order by id")
        assert [k for (k,) in kinds] == ["started", "agent_replied", "resolved", "started"]


async def test_agent_reply_in_open_conversation_needs_no_toggle(
    db_dsn: str, tmp_path: Path
) -> None:
    """An agent's reply in a conversation already open ends the session without a toggle."""
    async with running(db_dsn, write_flow(tmp_path)) as h:
        await h.post(incoming(11, 1, "Oi"))
        r = await h.post(agent_message(11, 2, "Já vou te ajudar", status="open"))
        assert r.json() == {"status": "humans"}
        await h.settled()
        assert not [q for q in h.fake.requests if q.path.endswith("/toggle_status")]


async def test_private_note_does_not_take_over(db_dsn: str, tmp_path: Path) -> None:
    """A private note that is no command is not a reply: the flow goes on."""
    async with running(db_dsn, write_flow(tmp_path)) as h:
        await h.post(incoming(12, 2, "Oi"))
        note = agent_message(12, 3, "cliente VIP")
        note["private"] = True
        assert (await h.post(note)).json() == {"status": "recorded"}
        assert h.query("select status from workflow_conversations") == [("active",)]
        assert (await h.post(incoming(12, 4, "Sim"))).json() == {"status": "acted"}


STATUS_CASES = [
    (
        "opened by an agent",
        conversation_event("conversation_status_changed", 13, "open"),
        "humans",
        "handed_off",
    ),
    (
        "opened (deprecated event)",
        conversation_event("conversation_opened", 13, "open"),
        "humans",
        "handed_off",
    ),
    (
        "assigned to an agent",
        conversation_event(
            "conversation_updated",
            13,
            "pending",
            changed=[{"assignee_id": {"previous_value": None, "current_value": 3}}],
            assignee={"id": 3, "name": "Ana", "type": "user"},
        ),
        "humans",
        "handed_off",
    ),
    (
        "resolved",
        conversation_event("conversation_status_changed", 13, "resolved"),
        "closed",
        "closed",
    ),
    (
        "an update that is not about status or assignee",
        conversation_event(
            "conversation_updated",
            13,
            "pending",
            changed=[{"label_list": {"previous_value": [], "current_value": ["a"]}}],
        ),
        "recorded",
        "active",
    ),
]


@pytest.mark.parametrize(
    ("event", "result", "status"), [c[1:] for c in STATUS_CASES], ids=[c[0] for c in STATUS_CASES]
)
async def test_conversation_events(
    db_dsn: str, tmp_path: Path, event: dict[str, object], result: str, status: str
) -> None:
    """Conversation events move the bot's session as docs/guarantees.md §1 says."""
    async with running(db_dsn, write_flow(tmp_path)) as h:
        await h.post(incoming(13, 1, "Oi"))
        assert (await h.post(event)).json() == {"status": result}
        assert h.query("select status from workflow_conversations") == [(status,)]


async def test_pending_again_starts_over(db_dsn: str, tmp_path: Path) -> None:
    """A handed-off conversation set back to pending: the next message starts the flow again."""
    async with running(db_dsn, write_flow(tmp_path)) as h:
        await h.post(incoming(14, 1, "Oi"))
        await h.post(incoming(14, 2, "atendente"))
        await h.until(lambda: h.fake.status(14) == "open")
        # A pending mention that is not a transition (a label change) keeps the silence.
        same = conversation_event("conversation_updated", 14, "pending", changed=[])
        assert (await h.post(same)).json() == {"status": "recorded"}
        back = conversation_event(
            "conversation_updated",
            14,
            "pending",
            changed=[{"status": {"previous_value": "open", "current_value": "pending"}}],
        )
        assert (await h.post(back)).json() == {"status": "closed"}
        await h.post(incoming(14, 3, "Oi"))
        await h.until(lambda: h.contents(14)[-1] == GREETING and len(h.sent(14)) == 3)


async def test_refused_question_hands_off(db_dsn: str, tmp_path: Path) -> None:
    """The channel refusing the question the bot waits on hands off; it is recorded once."""
    async with running(db_dsn, write_flow(tmp_path)) as h:
        await h.post(incoming(15, 1, "Oi"))
        await h.until(lambda: len(h.sent(15)) == 1)
        question = h.sent(15)[0]["id"]
        error = "(#131009) Parameter value is not valid"
        r = await h.post(delivery_failed(15, question, error))
        assert r.json() == {"status": "humans"}
        assert (await h.post(delivery_failed(15, question, error))).json() == {
            "status": "duplicate"
        }
        await h.until(lambda: h.fake.status(15) == "open")
        assert h.query("select error from workflow_interactions where error is not null") == [
            (error,)
        ]
        assert h.query("select status from workflow_conversations") == [("handed_off",)]


async def test_refused_old_message_is_only_recorded(db_dsn: str, tmp_path: Path) -> None:
    """A refused message the session no longer waits on is recorded, not handed off."""
    async with running(db_dsn, write_flow(tmp_path)) as h:
        await h.post(incoming(16, 1, "Oi"))
        await h.until(lambda: len(h.sent(16)) == 1)
        old = h.sent(16)[0]["id"]
        await h.post(incoming(16, 2, "Sim"))
        await h.until(lambda: len(h.sent(16)) == 2)
        r = await h.post(delivery_failed(16, old, "late failure"))
        assert r.json() == {"status": "recorded"}
        assert (await h.post(delivery_failed(16, 999999, "not ours"))).json() == {
            "status": "recorded"
        }
        assert h.query("select status from workflow_conversations") == [("active",)]


async def test_flood_guard_waits_for_that_conversation_only(db_dsn: str, tmp_path: Path) -> None:
    """422 Too many messages delays that conversation; another one is answered meanwhile."""
    fake = FakeChatwoot()
    async with running(db_dsn, write_flow(tmp_path), fake=fake) as h:
        h.fake.fail_next(1, status=422, body={"error": "Validation failed: Too many messages"})
        await h.post(incoming(17, 1, "Oi"))
        await h.until(
            lambda: bool(h.query("select 1 from workflow_outbox where last_error is not null"))
        )
        await h.post(incoming(18, 2, "Oi"))
        await h.until(lambda: len(h.sent(18)) == 1)
        [(delay,)] = h.query(
            "select extract(epoch from next_attempt_at - now())::int from workflow_outbox"
            " where conversation_id = 17"
        )
        assert 50 <= delay <= 60
        await asyncio.sleep(6)  # longer than the probe interval: the probe must leave it alone
        assert h.sent(17) == []


async def test_labels_with_user_token_on_old_chatwoot(db_dsn: str, tmp_path: Path) -> None:
    """Chatwoot < 4.14.2 refuses labels to a bot token: CHATWOOT_USER_TOKEN does them."""
    from agentbot.config import Secret, Settings
    from tests.fakes import FakeChatwootServer
    from tests.harness import WEBHOOK_TOKEN

    fake = FakeChatwoot(labels_for_bots=False)
    fake.add_conversation(1, 19, labels=["vip"])
    with FakeChatwootServer(fake) as server:
        settings = Settings(
            chatwoot_url=server.url,
            chatwoot_api_token=Secret(fake.bot_token),
            chatwoot_user_token=Secret(fake.user_token),
            webhook_token=Secret(WEBHOOK_TOKEN),
            flows_dir=write_flow(tmp_path),
        )
        async with running(db_dsn, tmp_path, fake=fake, settings=settings) as h:
            await h.post(incoming(19, 1, "Oi"))
            await h.post(incoming(19, 2, "Não"))
            await h.until(lambda: len(h.sent(19)) == 2)
            await h.settled()
            assert fake.labels(19) == ["vip", "lead_novo"]
            assert h.query("select count(*) from workflow_outbox where status = 'dead'") == [(0,)]


async def test_slow_conversation_does_not_delay_others(db_dsn: str, tmp_path: Path) -> None:
    """Chatwoot answering one conversation slowly holds up only that conversation's replies."""
    async with running(db_dsn, write_flow(tmp_path)) as h:
        h.fake.slow_paths["/conversations/20/"] = 3.0
        await h.post(incoming(20, 1, "Oi"))
        await asyncio.sleep(0.2)  # its delivery is under way, and slow
        loop = asyncio.get_running_loop()
        started = loop.time()
        for i in range(5):
            await h.post(incoming(21 + i, 10 + i, "Oi"))
        await h.until(lambda: all(len(h.sent(21 + i)) == 1 for i in range(5)))
        others = loop.time() - started
        assert h.sent(20) == []  # the slow one is still waiting for Chatwoot
        assert others < 2.5, f"the other conversations waited {others:.1f} s"
        await h.until(lambda: len(h.sent(20)) == 1)


async def test_edited_flow_keeps_conversations_in_flight(db_dsn: str, tmp_path: Path) -> None:
    """A deploy that edits the flow (a block renamed, a text changed) does not break a
    conversation in progress: it finishes on the version it started; new ones get the new."""
    from tests.harness import SALES_FLOW

    fake = FakeChatwoot()
    flows = write_flow(tmp_path)
    async with running(db_dsn, flows, fake=fake) as h:
        await h.post(incoming(90, 1, "Oi"))
        await h.until(lambda: len(h.sent(90)) == 1)
    edited = SALES_FLOW.replace("Qual produto te interessa?", "O que você procura?").replace(
        "produto", "interesse"
    )
    write_flow(tmp_path, edited)
    async with running(db_dsn, flows, fake=fake) as h:
        await h.post(incoming(90, 2, "Sim"))
        await h.until(lambda: len(h.sent(90)) == 2)
        assert h.contents(90)[1] == "Qual produto te interessa?"
        await h.post(incoming(91, 3, "Oi"))
        await h.post(incoming(91, 4, "Sim"))
        await h.until(lambda: len(h.sent(91)) == 2)
        assert h.contents(91)[1] == "O que você procura?"
        versions = h.query(
            "select conversation_id, flow_version from workflow_conversations order by id"
        )
        assert versions[0][1] != versions[1][1]
