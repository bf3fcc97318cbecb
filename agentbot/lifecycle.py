"""Who holds a conversation (the bot, humans, or nobody for a while), decided as data.

This module does no I/O and never reads the clock (`now` is an argument). The shell (service.py,
and the sandbox that `agentbot test` runs) hands it the conversation's `State` and what happened,
and carries out the `Decision` it returns: the session to end, the hold to keep, the actions to
queue. The rules, also in the README ("Who holds the conversation"):

- The bot holds a *pending* conversation. A customer's message there goes to the engine: it
  steps the running session, or starts a flow.
- An agent's public reply, or an assignment to an agent, whenever the conversation is pending
  (a flow running, finished, or none at all) sets it `open` and silences the bot until the
  conversation is resolved or set back to pending. The running session ends `handed_off`; with
  no running session the conversation keeps a `humans` hold.
- A snooze of a conversation whose flow runs stops the flow's timers. The customer's message that
  wakes it (Chatwoot sets a snoozed conversation `open` on an incoming message, even with a bot)
  resumes the flow where it was, and the bot sets the conversation back to pending. A snooze
  that ends on its own (`open` with nothing from the customer) leaves the flow waiting.
- A customer's "obrigado" within `QUIET_AFTER_END` of a flow that completed without a handoff
  or a resolve (the conversation still pending) gets no answer: the flow is not started over on
  a courtesy. A flow's trigger keyword or restart word starts it at once; any message after that
  window, or after the conversation was resolved, starts a flow as in a new conversation.
- An agent's private note `/bot` (or adding the label `bot`) gives the conversation back to the
  bot: a session that humans held is closed, a pause or snooze ends, the status is set back to
  pending, and the customer's next message continues the running flow, or starts one.
  Removing the label does nothing: the label is a trigger, not a switch.
- `/pause N` (1 to 1440 minutes) gives the conversation to the bot as `/bot` does, but keeps the
  bot silent for N minutes: the customer's messages are not answered, an agent may write without
  taking the conversation over, and the running flow's timers are stopped. After the pause, the
  customer's next message goes to the flow again, and restarts its timers. An assignment to an
  agent, an `open` or a resolve ends the pause as usual; `/bot` ends it at once.
- The web widget's greeting (`trigger.widget`) is for a conversation that never had a session,
  and waits while humans or a pause hold it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from agentbot.engine import Action, BackToBot, Handoff, PrivateNote, Resolve, Status, Step
from agentbot.events import AgentMessage, AgentNote, Conversation, ConversationChanged
from agentbot.flows import Flow, normalize
from agentbot.jsonsafe import ascii_int

QUIET_AFTER_END = timedelta(minutes=10)
MAX_PAUSE_MINUTES = 24 * 60
BOT_LABEL = "bot"
PAUSE_USAGE = (
    f"agentbot: /pause takes a number of minutes from 1 to {MAX_PAUSE_MINUTES}, "
    "e.g. /pause 30 (or /bot to give the conversation back to the bot now)."
)


class Hold(StrEnum):
    """What holds a conversation apart from its latest session's status."""

    HUMANS = "humans"  # an agent took a conversation no flow was running in
    SNOOZED = "snoozed"  # Chatwoot snoozed it while a flow ran: the timers are stopped
    RESUMING = "resuming"  # the customer woke the snoozed flow; pending is on its way
    PAUSED = "paused"  # an agent paused the bot (`/pause N`) until `until`
    RESTING = "resting"  # a flow just completed: courtesy replies get no answer until `until`


class Act(StrEnum):
    """What the shell does, and answers the webhook with."""

    ENGINE = "engine"  # the engine takes the customer's message (steps or starts a flow)
    QUIET = "quiet"  # the customer's message gets no answer
    HUMANS = "humans"  # humans take the conversation
    CLOSED = "closed"  # the session ends with the conversation's resolve or a new pending
    BOT = "bot"  # an agent gave the conversation back to the bot
    PAUSED = "paused"  # an agent paused the bot
    SNOOZED = "snoozed"  # the flow's timers stopped for a snooze
    RECORDED = "recorded"  # nothing changes who holds the conversation


@dataclass(frozen=True, slots=True)
class State:
    """What the shell knows of the conversation before the event."""

    # the latest session's status (active, completed, handed_off, abandoned, closed), if any
    session: str | None = None
    block: str = ""  # the latest session's block
    hold: Hold | None = None
    until: datetime | None = None  # when a pause or a rest ends


@dataclass(frozen=True, slots=True)
class Decision:
    act: Act
    reason: str  # the history's name for what happened ("agent_replied", "paused"...)
    end: Literal["handed_off", "closed"] | None = None  # the latest session ends so
    hold: Hold | None = None  # the conversation's hold afterwards
    until: datetime | None = None
    actions: tuple[Action, ...] = ()  # to queue: Handoff (open), BackToBot (pending), a note
    stop_timers: bool = False  # the running session's deadlines are cleared


@dataclass(frozen=True, slots=True)
class BotCommand:
    """`/bot`: the bot takes the conversation back now."""


@dataclass(frozen=True, slots=True)
class PauseCommand:
    """`/pause N`: the bot takes the conversation back after N minutes of silence."""

    minutes: int


@dataclass(frozen=True, slots=True)
class BadCommand:
    """A command of the bot's that cannot be carried out; `message` tells the agent why."""

    message: str


Command = BotCommand | PauseCommand | BadCommand


def command(text: str) -> Command | None:
    """The bot's command in an agent's private note, or None for an ordinary note."""
    words = text.strip().split()
    name = words[0].lower() if words else ""
    if name == "/bot":
        return BotCommand()
    if name != "/pause":
        return None
    minutes = ascii_int(words[1], max_digits=4) if len(words) == 2 else None
    if minutes is not None and 1 <= minutes <= MAX_PAUSE_MINUTES:
        return PauseCommand(minutes)
    return BadCommand(PAUSE_USAGE)


def names_a_flow(flows: Iterable[Flow], text: str) -> bool:
    """The text is a trigger keyword or a restart word of one of the flows."""
    said = normalize(text)
    return bool(said) and any(
        said == normalize(word)
        for flow in flows
        for word in (*flow.trigger.keywords, *flow.keywords.restart)
    )


def current_hold(state: State, now: datetime) -> Hold | None:
    """The hold as it stands at `now`: a pause or a rest that has run out is no hold."""
    if state.until is not None and state.until <= now:
        return None
    return state.hold


def rests(step: Step) -> bool:
    """The step completed the flow and left the conversation with the bot: a rest follows."""
    return (
        step.session is not None
        and step.session.status is Status.COMPLETED
        and not any(isinstance(action, Handoff | Resolve) for action in step.actions)
    )


def may_greet(state: State, now: datetime) -> bool:
    """A visitor opened the web widget: the widget flow may greet only a conversation that never
    had a session and that neither humans nor a pause hold."""
    return state.session is None and current_hold(state, now) not in (Hold.HUMANS, Hold.PAUSED)


def on_message(state: State, status: str, now: datetime, *, keyword: bool) -> Decision:
    """A customer's message (or widget answer) in a conversation with this `status`."""
    hold = current_hold(state, now)
    until = None if hold is None else state.until
    running = state.session == "active"
    if hold is Hold.PAUSED:
        return Decision(Act.QUIET, "paused", hold=hold, until=until)
    if state.session == "handed_off" or hold is Hold.HUMANS:
        return Decision(Act.QUIET, "humans", hold=hold, until=until)
    if running and hold in (Hold.SNOOZED, Hold.RESUMING):
        if status == "pending":
            return Decision(Act.ENGINE, "resumed")
        actions: tuple[Action, ...] = ()
        if hold is Hold.SNOOZED:
            reason = "the customer wrote in a snoozed conversation: the flow resumes"
            actions = (BackToBot(reason, state.block),)
        return Decision(Act.ENGINE, "resumed", hold=Hold.RESUMING, actions=actions)
    if status != "pending":
        return Decision(Act.QUIET, f"conversation is {status}", hold=hold, until=until)
    if hold is Hold.RESTING and not keyword:
        return Decision(Act.QUIET, "after_end", hold=hold, until=until)
    return Decision(Act.ENGINE, "message")


def on_notice(
    state: State, notice: AgentMessage | AgentNote | ConversationChanged, now: datetime
) -> Decision:
    """An agent wrote (a reply or a note), or the conversation changed in Chatwoot."""
    hold = current_hold(state, now)
    until = None if hold is None else state.until
    conv = notice.conversation
    running = state.session == "active"
    humans = state.session == "handed_off" or hold is Hold.HUMANS
    same = Decision(Act.RECORDED, "", hold=hold, until=until)
    match notice:
        case AgentMessage():
            if hold is Hold.PAUSED or humans:
                return same  # the agent writes during a pause, or already holds it
            if running or conv.status == "pending":
                return _to_humans(state, conv, "agent_replied", "an agent replied")
            return same
        case AgentNote(text=text):
            match command(text):
                case BotCommand():
                    return _to_bot(state, conv, Act.BOT, None, None)
                case PauseCommand(minutes=minutes):
                    pause_end = now + timedelta(minutes=minutes)
                    return _to_bot(state, conv, Act.PAUSED, Hold.PAUSED, pause_end)
                case BadCommand(message=message):
                    note = PrivateNote(message, state.block)
                    return Decision(
                        Act.RECORDED, "bad_command", hold=hold, until=until, actions=(note,)
                    )
                case _:
                    return same
        case ConversationChanged(status_changed=True) if conv.status == "resolved":
            if running or state.session == "handed_off":
                return Decision(Act.CLOSED, "resolved", end="closed")
            return Decision(Act.RECORDED, "resolved")
        case ConversationChanged(assigned=True, assignee_type="User") if not humans and (
            running or conv.status == "pending"
        ):
            return _to_humans(state, conv, "assigned", "the conversation was assigned to an agent")
        case ConversationChanged(status_changed=True) if conv.status == "pending":
            # Set back to the bot after humans had it: the next message starts over.
            if state.session == "handed_off":
                return Decision(Act.CLOSED, "pending_again", end="closed", hold=hold, until=until)
            if hold is Hold.PAUSED:
                return same
            return Decision(Act.RECORDED, "pending_again" if hold else "")
        case ConversationChanged(status_changed=True) if conv.status == "snoozed":
            if running and hold is None:
                return Decision(Act.SNOOZED, "snoozed", hold=Hold.SNOOZED, stop_timers=True)
            return same
        case ConversationChanged(status_changed=True) if conv.status == "open":
            if notice.previous_status == "snoozed" or hold in (Hold.SNOOZED, Hold.RESUMING):
                return same  # a snooze ended: the customer's message resumes the flow
            if running or hold is Hold.PAUSED:
                return _to_humans(state, conv, "opened", "the conversation was opened")
            return same
        case ConversationChanged(labels_added=added) if BOT_LABEL in added:
            return _to_bot(state, conv, Act.BOT, None, None)
        case _:
            return same


def _to_humans(state: State, conv: Conversation, kind: str, reason: str) -> Decision:
    """Humans hold the conversation: a running session ends, and a pending one is opened."""
    running = state.session == "active"
    actions: tuple[Action, ...] = ()
    if conv.status == "pending":
        actions = (Handoff(reason, state.block),)
    return Decision(
        Act.HUMANS,
        kind,
        end="handed_off" if running else None,
        hold=None if running else Hold.HUMANS,
        actions=actions,
    )


def _to_bot(
    state: State, conv: Conversation, act: Act, hold: Hold | None, until: datetime | None
) -> Decision:
    """The bot holds the conversation again (after a pause, when `hold` is one)."""
    actions: tuple[Action, ...] = ()
    if conv.status != "pending":
        reason = f"an agent gave the conversation back to the bot ({act})"
        actions = (BackToBot(reason, state.block),)
    return Decision(
        act,
        str(act),
        end="closed" if state.session == "handed_off" else None,
        hold=hold,
        until=until,
        actions=actions,
        stop_timers=hold is Hold.PAUSED and state.session == "active",
    )
