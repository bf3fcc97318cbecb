"""lifecycle.py's tables: who holds the conversation after each event, the clock pinned."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agentbot import engine
from agentbot.engine import BackToBot, Handoff, PrivateNote, Resolve, SendText, Status
from agentbot.events import AgentMessage, AgentNote, Conversation, ConversationChanged
from agentbot.lifecycle import (
    PAUSE_USAGE,
    QUIET_AFTER_END,
    Act,
    BadCommand,
    BotCommand,
    Decision,
    Hold,
    PauseCommand,
    State,
    command,
    current_hold,
    may_greet,
    names_a_flow,
    on_message,
    on_notice,
    rests,
)
from agentbot.loader import parse_flow

NOW = datetime(2026, 6, 20, 14, 0, tzinfo=UTC)
SOON = NOW + timedelta(minutes=5)
PAST = NOW - timedelta(seconds=1)

RUNNING = State(session="active", block="menu")
HELD = State(session="handed_off", block="humano")
DONE = State(session="completed", block="tchau")
NONE = State()


def conv(status: str) -> Conversation:
    return Conversation(account_id=1, id=7, inbox_id=1, status=status)


def held(state: State, hold: Hold, until: datetime | None = None) -> State:
    return State(session=state.session, block=state.block, hold=hold, until=until)


# --- a customer's message -------------------------------------------------------------------

RESUME = BackToBot("the customer wrote in a snoozed conversation: the flow resumes", "menu")
MESSAGES: list[tuple[str, State, str, bool, Decision]] = [
    ("a running flow", RUNNING, "pending", False, Decision(Act.ENGINE, "message")),
    ("no session yet", NONE, "pending", False, Decision(Act.ENGINE, "message")),
    ("humans hold it", HELD, "pending", False, Decision(Act.QUIET, "humans")),
    (
        "humans took it with no flow",
        held(NONE, Hold.HUMANS),
        "pending",
        False,
        Decision(Act.QUIET, "humans", hold=Hold.HUMANS),
    ),
    (
        "paused",
        held(RUNNING, Hold.PAUSED, SOON),
        "pending",
        True,
        Decision(Act.QUIET, "paused", hold=Hold.PAUSED, until=SOON),
    ),
    (
        "a pause that ran out",
        held(RUNNING, Hold.PAUSED, NOW),
        "pending",
        False,
        Decision(Act.ENGINE, "message"),
    ),
    (
        "the customer wakes a snoozed flow",
        held(RUNNING, Hold.SNOOZED),
        "open",
        False,
        Decision(Act.ENGINE, "resumed", hold=Hold.RESUMING, actions=(RESUME,)),
    ),
    (
        "a second message before pending comes back",
        held(RUNNING, Hold.RESUMING),
        "open",
        False,
        Decision(Act.ENGINE, "resumed", hold=Hold.RESUMING),
    ),
    (
        "a snoozed flow an agent set pending again",
        held(RUNNING, Hold.SNOOZED),
        "pending",
        False,
        Decision(Act.ENGINE, "resumed"),
    ),
    (
        "an open conversation the flow no longer holds",
        RUNNING,
        "open",
        False,
        Decision(Act.QUIET, "conversation is open"),
    ),
    (
        "obrigado right after the flow's end",
        held(DONE, Hold.RESTING, SOON),
        "pending",
        False,
        Decision(Act.QUIET, "after_end", hold=Hold.RESTING, until=SOON),
    ),
    (
        "a keyword right after the flow's end",
        held(DONE, Hold.RESTING, SOON),
        "pending",
        True,
        Decision(Act.ENGINE, "message"),
    ),
    (
        "a message after the rest",
        held(DONE, Hold.RESTING, PAST),
        "pending",
        False,
        Decision(Act.ENGINE, "message"),
    ),
]


@pytest.mark.parametrize(
    ("state", "status", "keyword", "expected"),
    [c[1:] for c in MESSAGES],
    ids=[c[0] for c in MESSAGES],
)
def test_customer_message(state: State, status: str, keyword: bool, expected: Decision) -> None:
    """Whether a customer's message reaches the engine, and what the hold becomes."""
    assert on_message(state, status, NOW, keyword=keyword) == expected


# --- agents and Chatwoot --------------------------------------------------------------------


def reply(status: str) -> AgentMessage:
    return AgentMessage(conv(status), message_id=9, agent_id=3)


def note(text: str, status: str = "pending") -> AgentNote:
    return AgentNote(conv(status), message_id=9, agent_id=3, text=text)


def change(
    status: str,
    *,
    status_changed: bool = True,
    previous: str | None = None,
    assignee_type: str | None = None,
    labels: tuple[str, ...] = (),
) -> ConversationChanged:
    return ConversationChanged(
        conv(status),
        status_changed=status_changed,
        assignee_type=assignee_type,
        assignee_id=3 if assignee_type else None,
        assigned=assignee_type is not None,
        previous_status=previous,
        labels_added=labels,
    )


def assigned(status: str, kind: str = "User") -> ConversationChanged:
    return change(status, status_changed=False, assignee_type=kind)


REPLIED = Handoff("an agent replied", "menu")
ASSIGNED = Handoff("the conversation was assigned to an agent", "menu")
BACK = BackToBot("an agent gave the conversation back to the bot (bot)", "humano")
PAUSE_BACK = BackToBot("an agent gave the conversation back to the bot (paused)", "humano")
LATER = NOW + timedelta(minutes=30)
RECORDED = Decision(Act.RECORDED, "")

NOTICES: list[tuple[str, State, AgentMessage | AgentNote | ConversationChanged, Decision]] = [
    # an agent's public reply
    (
        "reply mid-flow",
        RUNNING,
        reply("pending"),
        Decision(Act.HUMANS, "agent_replied", end="handed_off", actions=(REPLIED,)),
    ),
    (
        "reply mid-flow, already open",
        RUNNING,
        reply("open"),
        Decision(Act.HUMANS, "agent_replied", end="handed_off"),
    ),
    (
        "reply after the flow's end",
        held(DONE, Hold.RESTING, SOON),
        reply("pending"),
        Decision(
            Act.HUMANS,
            "agent_replied",
            hold=Hold.HUMANS,
            actions=(Handoff("an agent replied", "tchau"),),
        ),
    ),
    (
        "reply with no session at all",
        NONE,
        reply("pending"),
        Decision(
            Act.HUMANS,
            "agent_replied",
            hold=Hold.HUMANS,
            actions=(Handoff("an agent replied", ""),),
        ),
    ),
    ("reply in an open conversation, no flow", NONE, reply("open"), RECORDED),
    ("reply when humans hold it", HELD, reply("open"), RECORDED),
    (
        "reply during a pause",
        held(RUNNING, Hold.PAUSED, SOON),
        reply("pending"),
        Decision(Act.RECORDED, "", hold=Hold.PAUSED, until=SOON),
    ),
    # an agent's private note
    (
        "/bot after humans",
        HELD,
        note("/bot", "open"),
        Decision(Act.BOT, "bot", end="closed", actions=(BACK,)),
    ),
    ("/bot mid-flow, pending", RUNNING, note("/BOT"), Decision(Act.BOT, "bot")),
    (
        "/bot ends a pause",
        held(RUNNING, Hold.PAUSED, SOON),
        note("/bot"),
        Decision(Act.BOT, "bot"),
    ),
    (
        "/pause 30 mid-flow",
        RUNNING,
        note("/pause 30"),
        Decision(Act.PAUSED, "paused", hold=Hold.PAUSED, until=LATER, stop_timers=True),
    ),
    (
        "/pause 30 after humans",
        HELD,
        note(" /pause  30 ", "open"),
        Decision(
            Act.PAUSED,
            "paused",
            end="closed",
            hold=Hold.PAUSED,
            until=LATER,
            actions=(PAUSE_BACK,),
        ),
    ),
    (
        "/pause without minutes",
        RUNNING,
        note("/pause"),
        Decision(Act.RECORDED, "bad_command", actions=(PrivateNote(PAUSE_USAGE, "menu"),)),
    ),
    ("an ordinary note", RUNNING, note("cliente VIP"), RECORDED),
    # resolves
    (
        "resolved mid-flow",
        RUNNING,
        change("resolved"),
        Decision(Act.CLOSED, "resolved", end="closed"),
    ),
    (
        "resolved after humans",
        HELD,
        change("resolved"),
        Decision(Act.CLOSED, "resolved", end="closed"),
    ),
    (
        "resolved after the flow's end",
        held(DONE, Hold.RESTING, SOON),
        change("resolved"),
        Decision(Act.RECORDED, "resolved"),
    ),
    # assignments
    (
        "assigned mid-flow, pending: opened too",
        RUNNING,
        assigned("pending"),
        Decision(Act.HUMANS, "assigned", end="handed_off", actions=(ASSIGNED,)),
    ),
    (
        "assigned mid-flow, open",
        RUNNING,
        assigned("open"),
        Decision(Act.HUMANS, "assigned", end="handed_off"),
    ),
    (
        "assigned with no flow, pending",
        NONE,
        assigned("pending"),
        Decision(
            Act.HUMANS,
            "assigned",
            hold=Hold.HUMANS,
            actions=(Handoff("the conversation was assigned to an agent", ""),),
        ),
    ),
    ("assigned when humans hold it", HELD, assigned("open"), RECORDED),
    ("assigned to a bot", RUNNING, assigned("pending", "AgentBot"), RECORDED),
    ("assigned after the end, open", DONE, assigned("open"), RECORDED),
    # pending again
    (
        "pending again after humans",
        HELD,
        change("pending"),
        Decision(Act.CLOSED, "pending_again", end="closed"),
    ),
    (
        "pending again, humans with no flow",
        held(NONE, Hold.HUMANS),
        change("pending"),
        Decision(Act.RECORDED, "pending_again"),
    ),
    (
        "pending after a snoozed flow woke",
        held(RUNNING, Hold.RESUMING),
        change("pending"),
        Decision(Act.RECORDED, "pending_again"),
    ),
    (
        "pending during a pause",
        held(NONE, Hold.PAUSED, SOON),
        change("pending"),
        Decision(Act.RECORDED, "", hold=Hold.PAUSED, until=SOON),
    ),
    ("pending, nothing held", RUNNING, change("pending"), RECORDED),
    # snoozes
    (
        "snoozed mid-flow",
        RUNNING,
        change("snoozed"),
        Decision(Act.SNOOZED, "snoozed", hold=Hold.SNOOZED, stop_timers=True),
    ),
    (
        "snoozed during a pause",
        held(RUNNING, Hold.PAUSED, SOON),
        change("snoozed"),
        Decision(Act.RECORDED, "", hold=Hold.PAUSED, until=SOON),
    ),
    ("snoozed with no flow", NONE, change("snoozed"), RECORDED),
    # opened
    (
        "opened from snoozed",
        held(RUNNING, Hold.SNOOZED),
        change("open", previous="snoozed"),
        Decision(Act.RECORDED, "", hold=Hold.SNOOZED),
    ),
    (
        "opened after the customer woke the flow",
        held(RUNNING, Hold.RESUMING),
        change("open"),
        Decision(Act.RECORDED, "", hold=Hold.RESUMING),
    ),
    ("snooze ended, nothing held", RUNNING, change("open", previous="snoozed"), RECORDED),
    (
        "opened mid-flow",
        RUNNING,
        change("open"),
        Decision(Act.HUMANS, "opened", end="handed_off"),
    ),
    (
        "opened during a pause",
        held(NONE, Hold.PAUSED, SOON),
        change("open"),
        Decision(Act.HUMANS, "opened", hold=Hold.HUMANS),
    ),
    ("opened with no flow", NONE, change("open"), RECORDED),
    # labels
    (
        "the label bot added",
        HELD,
        change("open", status_changed=False, labels=("vip", "bot")),
        Decision(Act.BOT, "bot", end="closed", actions=(BACK,)),
    ),
    ("another label", RUNNING, change("pending", status_changed=False, labels=("vip",)), RECORDED),
]


@pytest.mark.parametrize(
    ("state", "notice", "expected"),
    [c[1:] for c in NOTICES],
    ids=[c[0] for c in NOTICES],
)
def test_notice(
    state: State, notice: AgentMessage | AgentNote | ConversationChanged, expected: Decision
) -> None:
    """What an agent's reply or note, or a change in Chatwoot, does to who holds the chat."""
    assert on_notice(state, notice, NOW) == expected


COMMANDS = [
    ("/bot", BotCommand()),
    ("  /Bot agora  ", BotCommand()),
    ("/pause 30", PauseCommand(30)),
    ("/pause 1440", PauseCommand(1440)),
    ("/pause", BadCommand(PAUSE_USAGE)),
    ("/pause 0", BadCommand(PAUSE_USAGE)),
    ("/pause 1441", BadCommand(PAUSE_USAGE)),
    ("/pause meia hora", BadCommand(PAUSE_USAGE)),
    ("/pause 30 min", BadCommand(PAUSE_USAGE)),
    ("/bottle", None),
    ("cliente VIP", None),
    ("", None),
]


@pytest.mark.parametrize(("text", "expected"), COMMANDS)
def test_command(text: str, expected: object) -> None:
    """The bot's commands in a private note; any other note is no command."""
    assert command(text) == expected


def test_holds_run_out() -> None:
    """A pause or a rest ends at its `until`; the other holds last until an event ends them."""
    assert current_hold(held(RUNNING, Hold.PAUSED, SOON), NOW) is Hold.PAUSED
    assert current_hold(held(RUNNING, Hold.PAUSED, NOW), NOW) is None
    assert current_hold(held(RUNNING, Hold.SNOOZED), NOW) is Hold.SNOOZED
    assert current_hold(NONE, NOW) is None


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (NONE, True),
        (held(NONE, Hold.RESTING, SOON), True),
        (held(NONE, Hold.PAUSED, PAST), True),
        (held(NONE, Hold.PAUSED, SOON), False),
        (held(NONE, Hold.HUMANS), False),
        (DONE, False),
    ],
)
def test_may_greet(state: State, expected: bool) -> None:
    """The widget's greeting is for a conversation with no session that nobody holds."""
    assert may_greet(state, NOW) is expected


FLOW = parse_flow(
    """
name: vendas
trigger: {default: true, keywords: [comercial, "Vendas!"]}
keywords: {restart: [menu]}
blocks:
  inicio:
    message: "Oi!"
""",
    "flows/vendas.yaml",
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("comercial", True), ("VENDAS!", True), ("Menu", True), ("obrigado", False), ("", False)],
)
def test_names_a_flow(text: str, expected: bool) -> None:
    """A trigger keyword or a restart word names a flow; a courtesy does not."""
    assert names_a_flow([FLOW], text) is expected


def session(status: Status) -> engine.Session:
    return engine.Session(flow="vendas", version="v1", block="inicio", status=status)


REST_CASES = [
    ("completed with the bot", session(Status.COMPLETED), (SendText("Oi!", "inicio"),), True),
    ("completed with a resolve", session(Status.COMPLETED), (Resolve("inicio"),), False),
    ("completed with a handoff", session(Status.COMPLETED), (Handoff("x", "inicio"),), False),
    ("still running", session(Status.ACTIVE), (), False),
    ("no session", None, (), False),
]


@pytest.mark.parametrize(
    ("result", "actions", "expected"), [c[1:] for c in REST_CASES], ids=[c[0] for c in REST_CASES]
)
def test_rests(
    result: engine.Session | None, actions: tuple[engine.Action, ...], expected: bool
) -> None:
    """A flow that completed and left the conversation pending rests for QUIET_AFTER_END."""
    step = engine.Step(result, actions, engine.Outcome.CHOSE, "inicio")
    assert rests(step) is expected
    assert timedelta(minutes=10) == QUIET_AFTER_END
