"""Who holds the conversation, end to end: agents' replies and assignments at any point of a
flow, snoozes, `/bot`, `/pause 30` and the label `bot`, with Chatwoot-shaped payloads.

Payload sources (Chatwoot 4.15.1): messages are `Message#webhook_data` (app/models/message.rb);
an agent's private note is an `outgoing` message with `private: true` and the agent's
`User#webhook_data` as sender (tests/samples/message_created_private_note.json); conversation
events are `Conversation#webhook_data` plus `changed_attributes` from
`BaseListener#extract_changed_attributes` (tests/samples/conversation_updated_*.json); a
customer's message on a snoozed conversation arrives with status `open`, because
`Message#reopen_conversation` opens a snoozed conversation even when a bot is attached.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import SAMPLES
from tests.harness import (
    Harness,
    agent_message,
    conversation_event,
    incoming,
    running,
    write_flow,
)

pytestmark = pytest.mark.anyio

GREETING = "Olá Maria Silva! Você já é nosso cliente?"
PRODUCT = "Qual produto te interessa?"
BYE = "Tudo bem! Estamos aqui quando precisar."

TIMED_FLOW = """
name: vendas
title: Vendas
trigger: {default: true, keywords: [vendas]}
inactivity: {after: 2h, message: "Encerramos por falta de resposta."}
blocks:
  boas_vindas:
    message: "Olá {{nome}}! Você já é nosso cliente?"
    timeout: {after: 30m, next_block: tchau}
    buttons:
      - {text: Sim, next_block: produto}
      - {text: Não, value: nao, next_block: produto}
  produto:
    message: "Qual produto te interessa?"
    buttons:
      - {text: Plano Básico, next_block: tchau}
      - {text: Plano Pro, next_block: tchau}
  tchau:
    message: "Tudo bem! Estamos aqui quando precisar."
"""


def note(conversation_id: int, message_id: int, text: str, status: str = "pending") -> Any:
    """An agent's private note, from the recorded sample."""
    data: dict[str, Any] = json.loads((SAMPLES / "message_created_private_note.json").read_text())
    data = copy.deepcopy(data)
    data.update(id=message_id, content=text)
    data["conversation"].update(id=conversation_id, status=status)
    data["conversation"]["messages"][0].update(id=message_id, content=text)
    return data


def status_change(conversation_id: int, previous: str, current: str, **kw: Any) -> Any:
    """A `conversation_updated` whose changed_attributes say the status went previous -> current."""
    change = [{"status": {"previous_value": previous, "current_value": current}}]
    return conversation_event(
        "conversation_updated", conversation_id, current, changed=change, **kw
    )


def snoozed_to_open(conversation_id: int) -> Any:
    """The recorded `conversation_updated` of a snoozed conversation opened again."""
    data: dict[str, Any] = json.loads(
        (SAMPLES / "conversation_updated_snoozed_to_open.json").read_text()
    )
    data["id"] = conversation_id
    return data


def labels_changed(conversation_id: int, before: list[str], after: list[str], status: str) -> Any:
    change = [{"label_list": {"previous_value": before, "current_value": after}}]
    data = conversation_event("conversation_updated", conversation_id, status, changed=change)
    data["labels"] = after
    return data


def holds(h: Harness) -> list[tuple[Any, ...]]:
    return h.query("select conversation_id, kind from workflow_holds order by conversation_id")


def statuses(h: Harness) -> list[str]:
    return [s for (s,) in h.query("select status from workflow_conversations order by id")]


async def agent_toggles(h: Harness, conversation_id: int, status: str) -> None:
    """An agent sets the status in Chatwoot (the fake, with a user's token)."""
    async with httpx.AsyncClient(base_url=h.chatwoot.url) as client:
        r = await client.post(
            f"/api/v1/accounts/1/conversations/{conversation_id}/toggle_status",
            json={"status": status},
            headers={"api_access_token": h.fake.user_token},
        )
        assert r.status_code == 200, r.text


async def test_obrigado_then_agent_reply_after_a_finished_flow(db_dsn: str, tmp_path: Path) -> None:
    """After a completed flow, "obrigado" gets no greeting; an agent's reply then opens the
    conversation and silences the bot until the resolve."""
    async with running(db_dsn, write_flow(tmp_path)) as h:
        for i, text in enumerate(["Oi", "Sim", "Só olhando"], start=1):
            await h.post(incoming(30, i, text))
        await h.until(lambda: h.contents(30)[-1:] == [BYE])
        assert statuses(h) == ["completed"]
        assert (await h.post(incoming(30, 4, "obrigado!"))).json() == {"status": "quiet"}
        assert holds(h) == [(30, "resting")]

        r = await h.post(agent_message(30, 5, "Qualquer coisa, estou por aqui."))
        assert r.json() == {"status": "humans"}
        await h.until(lambda: h.fake.status(30) == "open")
        assert holds(h) == [(30, "humans")]
        # A message that crossed the toggle (still pending) is not answered either.
        assert (await h.post(incoming(30, 6, "Valeu"))).json() == {"status": "quiet"}
        assert (await h.post(incoming(30, 7, "Valeu", status="open"))).json() == {"status": "quiet"}

        resolved = conversation_event("conversation_resolved", 30, "resolved")
        assert (await h.post(resolved)).json() == {"status": "recorded"}
        assert holds(h) == []
        await h.post(incoming(30, 8, "Oi de novo"))
        await h.until(lambda: h.contents(30)[-1] == GREETING)
        await h.settled()
        assert h.contents(30).count(GREETING) == 2


async def test_keyword_after_a_finished_flow_starts_at_once(db_dsn: str, tmp_path: Path) -> None:
    """Right after a completed flow, a trigger keyword starts the flow again."""
    async with running(db_dsn, write_flow(tmp_path, TIMED_FLOW)) as h:
        for i, text in enumerate(["Oi", "Sim", "Plano Pro"], start=1):
            await h.post(incoming(31, i, text))
        await h.until(lambda: h.contents(31)[-1:] == [BYE])
        assert (await h.post(incoming(31, 4, "Vendas"))).json() == {"status": "acted"}
        await h.until(lambda: h.contents(31)[-1] == GREETING)
        assert holds(h) == []


async def test_agent_reply_with_no_session(db_dsn: str, tmp_path: Path) -> None:
    """An agent who answers first (no flow yet) takes the conversation: no greeting over them."""
    async with running(db_dsn, write_flow(tmp_path)) as h:
        h.fake.add_conversation(1, 32)
        assert (await h.post(agent_message(32, 1, "Bom dia!"))).json() == {"status": "humans"}
        await h.until(lambda: h.fake.status(32) == "open")
        assert (await h.post(incoming(32, 2, "Oi"))).json() == {"status": "quiet"}
        await h.settled()
        assert h.contents(32) == []
        assert statuses(h) == []


async def test_assignment_mid_flow_opens_the_conversation(db_dsn: str, tmp_path: Path) -> None:
    """Assigning an agent while the flow runs hands off and sets the conversation open."""
    async with running(db_dsn, write_flow(tmp_path)) as h:
        await h.post(incoming(33, 1, "Oi"))
        await h.until(lambda: len(h.sent(33)) == 1)
        assigned = conversation_event(
            "conversation_updated",
            33,
            "pending",
            changed=[{"assignee_id": {"previous_value": None, "current_value": 3}}],
            assignee={"id": 3, "name": "Ana", "type": "user"},
        )
        assert (await h.post(assigned)).json() == {"status": "humans"}
        await h.until(lambda: h.fake.status(33) == "open")
        assert statuses(h) == ["handed_off"]
        assert (await h.post(incoming(33, 2, "Sim"))).json() == {"status": "quiet"}


async def test_snooze_stops_the_timers_and_the_customer_resumes(
    db_dsn: str, tmp_path: Path
) -> None:
    """A snooze clears the flow's deadlines; the customer's reply (status open) resumes the flow
    where it was, sets the conversation pending again, and restarts the timers."""
    async with running(db_dsn, write_flow(tmp_path, TIMED_FLOW)) as h:
        await h.post(incoming(34, 1, "Oi"))
        await h.until(lambda: len(h.sent(34)) == 1)
        await agent_toggles(h, 34, "snoozed")
        r = await h.post(status_change(34, "pending", "snoozed"))
        assert r.json() == {"status": "snoozed"}
        assert h.query("select timeout_at, inactive_at from workflow_conversations") == [
            (None, None)
        ]
        assert holds(h) == [(34, "snoozed")]

        # Chatwoot opens the snoozed conversation on the customer's message; either event
        # may come first.
        await agent_toggles(h, 34, "open")
        assert (await h.post(snoozed_to_open(34))).json() == {"status": "recorded"}
        r = await h.post(incoming(34, 2, "Sim", status="open"))
        assert r.json() == {"status": "acted"}
        await h.until(lambda: h.contents(34)[-1] == PRODUCT)
        await h.until(lambda: h.fake.status(34) == "pending")
        assert holds(h) == [(34, "resuming")]
        [(timeout_at, inactive_at)] = h.query(
            "select timeout_at, inactive_at from workflow_conversations"
        )
        assert timeout_at is None  # produto has no timeout
        assert inactive_at is not None

        # A late status event of the snooze's end does not hand the flow to humans; the
        # pending the bot asked for ends the resume.
        assert (await h.post(conversation_event("conversation_opened", 34, "open"))).json() == {
            "status": "recorded"
        }
        assert (await h.post(status_change(34, "open", "pending"))).json() == {"status": "recorded"}
        assert holds(h) == []
        assert statuses(h) == ["active"]
        assert (await h.post(incoming(34, 3, "Plano Pro"))).json() == {"status": "acted"}
        await h.until(lambda: h.contents(34)[-1] == BYE)


async def test_bot_note_gives_the_conversation_back(db_dsn: str, tmp_path: Path) -> None:
    """`/bot` in a private note: the humans' session closes, the conversation is pending
    again, and the customer's next message starts a flow."""
    async with running(db_dsn, write_flow(tmp_path)) as h:
        await h.post(incoming(35, 1, "Oi"))
        await h.post(incoming(35, 2, "atendente"))
        await h.until(lambda: h.fake.status(35) == "open")
        assert (await h.post(note(35, 3, "/bot", status="open"))).json() == {"status": "bot"}
        await h.until(lambda: h.fake.status(35) == "pending")
        assert statuses(h) == ["closed"]
        assert (await h.post(note(35, 3, "/bot", status="open"))).json() == {"status": "duplicate"}
        await h.post(status_change(35, "open", "pending"))
        await h.post(incoming(35, 4, "Oi de novo"))
        await h.until(lambda: h.contents(35)[-1] == GREETING)
        kinds = h.query("select kind from workflow_interactions where direction = 'in' order by id")
        assert [k for (k,) in kinds] == ["started", "handoff_word", "bot", "started"]


async def test_pause_30_silences_the_bot_for_half_an_hour(db_dsn: str, tmp_path: Path) -> None:
    """`/pause 30`: the customer's messages get no answer and an agent may write without taking
    over; after 30 minutes the flow answers again where it was."""
    now = [datetime(2026, 6, 20, 14, 0, tzinfo=UTC)]
    async with running(db_dsn, write_flow(tmp_path, TIMED_FLOW), clock=lambda: now[0]) as h:
        await h.post(incoming(36, 1, "Oi"))
        await h.until(lambda: len(h.sent(36)) == 1)
        assert (await h.post(note(36, 2, "/pause 30"))).json() == {"status": "paused"}
        assert h.query("select kind, until from workflow_holds") == [
            ("paused", now[0] + timedelta(minutes=30))
        ]
        assert h.query("select timeout_at, inactive_at from workflow_conversations") == [
            (None, None)
        ]
        r = await h.post(agent_message(36, 3, "Um minutinho, vou conferir."))
        assert r.json() == {"status": "recorded"}
        assert (await h.post(incoming(36, 4, "Sim"))).json() == {"status": "quiet"}
        now[0] += timedelta(minutes=29)
        assert (await h.post(incoming(36, 5, "Sim"))).json() == {"status": "quiet"}
        await h.settled()
        assert h.contents(36) == [GREETING]
        assert h.fake.status(36) == "pending"

        now[0] += timedelta(minutes=1)
        assert (await h.post(incoming(36, 6, "Sim"))).json() == {"status": "acted"}
        await h.until(lambda: h.contents(36)[-1] == PRODUCT)
        assert holds(h) == []
        assert statuses(h) == ["active"]


async def test_pause_without_minutes_answers_the_agent(db_dsn: str, tmp_path: Path) -> None:
    """`/pause` with no (or a wrong) number changes nothing and says so in a private note."""
    async with running(db_dsn, write_flow(tmp_path)) as h:
        await h.post(incoming(37, 1, "Oi"))
        assert (await h.post(note(37, 2, "/pause meia hora"))).json() == {"status": "recorded"}
        await h.until(lambda: len(h.sent(37)) == 2)
        last = h.sent(37)[-1]
        assert last["private"] is True
        assert "/pause takes a number of minutes from 1 to 1440" in str(last["content"])
        assert holds(h) == []
        assert statuses(h) == ["active"]


async def test_label_bot_gives_the_conversation_back(db_dsn: str, tmp_path: Path) -> None:
    """Adding the label `bot` does what `/bot` does; removing it changes nothing."""
    async with running(db_dsn, write_flow(tmp_path)) as h:
        await h.post(incoming(38, 1, "Oi"))
        await h.post(agent_message(38, 2, "Deixa comigo."))
        await h.until(lambda: h.fake.status(38) == "open")
        r = await h.post(labels_changed(38, ["vip"], ["vip", "bot"], "open"))
        assert r.json() == {"status": "bot"}
        await h.until(lambda: h.fake.status(38) == "pending")
        assert statuses(h) == ["closed"]
        r = await h.post(labels_changed(38, ["vip", "bot"], ["vip"], "pending"))
        assert r.json() == {"status": "recorded"}
        await h.post(incoming(38, 3, "Oi"))
        await h.until(lambda: h.contents(38)[-1] == GREETING)
        assert statuses(h) == ["closed", "active"]


async def test_paused_widget_conversation_is_not_greeted(db_dsn: str, tmp_path: Path) -> None:
    """`/pause 30` before any flow: the widget's opening is not greeted until the pause ends."""
    opened = json.loads((SAMPLES / "webwidget_triggered.json").read_text())
    flow = "trigger: {widget: true}\nblocks:\n  oi:\n    message: 'Oi! Posso ajudar?'\n"
    now = [datetime(2026, 6, 20, 14, 0, tzinfo=UTC)]
    async with running(
        db_dsn, write_flow(tmp_path, flow, "widget.yaml"), clock=lambda: now[0]
    ) as h:
        assert (await h.post(note(1290, 1, "/pause 30"))).json() == {"status": "paused"}
        assert (await h.post(opened)).json() == {"status": "recorded"}
        now[0] += timedelta(minutes=30)
        assert (await h.post(opened)).json() == {"status": "acted"}
        await h.until(lambda: h.contents(1290) == ["Oi! Posso ajudar?"])
