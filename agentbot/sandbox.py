"""One conversation with a flow, run in memory: the pure engine plus a stand-in for the shell.

This module does no I/O: no network, no database, no files, no logging, and it never reads the
clock (the sandbox's clock is a value that `wait` moves forward). It is what `agentbot test`
and `agentbot simulate` share: the engine decides, and the sandbox does with the actions what
the service, the outbox and Chatwoot would do:

- messages are shown as the customer's channel shows them (channels.py): buttons on WhatsApp,
  the widget, Telegram…; a numbered list in the text on the others;
- labels are added to the conversation's, attributes merged into the contact's or the
  conversation's (so that the next event sees them, as Chatwoot's payload would carry them);
- who holds the conversation is decided by lifecycle.py, as in the service: a handoff sets the
  conversation `open` and the bot stays quiet from then on; a resolve sets it `resolved`, and the
  customer's next message reopens it and starts over; an agent's reply, an assignment, a snooze,
  `/bot` and `/pause N` do what they do in the service (see lifecycle.py);
- a webhook call waits, in order, until `answer` hands back its outcome;
- `wait` moves the clock, firing each deadline at its own time, as the timers loop would.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal, assert_never

from agentbot import channels, engine, lifecycle
from agentbot.events import (
    AgentMessage,
    AgentNote,
    Attachment,
    Contact,
    Conversation,
    ConversationChanged,
    CustomerMessage,
)
from agentbot.flows import Flow

TimerKind = Literal["timeout", "inactivity"]
# The attachments a customer can send in `agentbot test` and `simulate` (Chatwoot's file_type).
MEDIA_TYPES = ("image", "audio", "video", "file", "location", "contact")
WHATSAPP = "Channel::Whatsapp"
# Short names for the channels, as authors write them in test files and on the command line.
CHANNELS: dict[str, str] = {
    "whatsapp": WHATSAPP,
    "web_widget": "Channel::WebWidget",
    "telegram": "Channel::Telegram",
    "facebook": "Channel::FacebookPage",
    "line": "Channel::Line",
    "api": "Channel::Api",
    "sms": "Channel::Sms",
    "email": "Channel::Email",
    "instagram": "Channel::Instagram",
    "twilio": "Channel::TwilioSms",
}


def channel_name(name: str) -> str:
    """`whatsapp` -> `Channel::Whatsapp`; a full `Channel::…` name is kept as it is."""
    return CHANNELS.get(name.strip().lower(), name.strip())


@dataclass(frozen=True, slots=True)
class Said:
    """One message as the customer sees it: its text and the options offered with it."""

    text: str
    options: tuple[str, ...]  # titles as shown (buttons, or the numbered list in the text)
    block: str


@dataclass(slots=True)
class Sandbox:
    """The conversation's state on both sides: the bot's session and Chatwoot's view of it."""

    flow: Flow
    now: datetime
    contact: Contact = field(default_factory=lambda: Contact(id=1, name=""))
    conversation: Conversation = field(
        default_factory=lambda: Conversation(
            account_id=1, id=1, inbox_id=1, status="pending", channel=WHATSAPP
        )
    )
    session: engine.Session | None = None
    labels: list[str] = field(default_factory=list)  # those the bot added, in order
    notes: list[str] = field(default_factory=list)
    assignments: list[engine.Assign] = field(default_factory=list)
    calls: deque[engine.CallWebhook] = field(default_factory=deque)  # waiting for an answer
    history: list[engine.Action] = field(default_factory=list)
    next_message_id: int = 1
    hold: lifecycle.Hold | None = None  # lifecycle.py's hold on the conversation
    until: datetime | None = None  # when a pause or a rest ends
    closed: bool = False  # the latest session ended with a resolve or a new pending

    @property
    def status(self) -> str:
        """The conversation's status in Chatwoot: pending (the bot's), open, resolved, snoozed."""
        return self.conversation.status

    @property
    def quiet(self) -> bool:
        """Humans (or a pause) hold the conversation: the customer's messages get no answer."""
        session = self.session
        if not self.closed and session is not None and session.status is engine.Status.HANDED_OFF:
            return True
        return lifecycle.current_hold(self.lifecycle_state(), self.now) in (
            lifecycle.Hold.HUMANS,
            lifecycle.Hold.PAUSED,
        )

    @property
    def waits_for_webhook(self) -> bool:
        session = self.session
        return (
            session is not None
            and session.status is engine.Status.ACTIVE
            and session.waiting is engine.Waiting.WEBHOOK
        )

    def start(self, variables: dict[str, Any]) -> tuple[engine.Action, ...]:
        """Start the flow proactively with its initial data (POST /api/workflow/start)."""
        context = engine.snapshot(self.contact, self.conversation)
        result = engine.start(self.flow, self.now, variables=variables, context=context)
        return self._apply(result)

    def say(self, text: str, attachments: tuple[Attachment, ...] = ()) -> tuple[engine.Action, ...]:
        """The customer sends `text` (with `attachments`: a photo and its caption, a location);
        what the bot does in answer (nothing while humans hold it, or a pause, or right after a
        completed flow: lifecycle.py decides)."""
        actions: list[engine.Action] = []
        if self.conversation.status == "resolved":
            # Chatwoot reopens a resolved conversation as pending for the bot's inbox.
            self.conversation = replace(self.conversation, status="pending")
        elif self.conversation.status == "snoozed":
            # ... and a snoozed one as open, even with a bot, telling the bot so.
            actions.extend(self._set_status("open"))
        event = CustomerMessage(
            conversation=self.conversation,
            contact=self.contact,
            message_id=self.next_message_id,
            text=self._expand(text),
            attachments=attachments,
        )
        self.next_message_id += 1
        keyword = lifecycle.names_a_flow([self.flow], text)
        decision = lifecycle.on_message(
            self.lifecycle_state(), self.status, self.now, keyword=keyword
        )
        actions.extend(self._decide(decision))
        if decision.act is lifecycle.Act.ENGINE:
            self.closed = False
            actions.extend(self._apply(engine.step(self.flow, self.session, event, self.now)))
        return tuple(actions)

    def agent_reply(self) -> tuple[engine.Action, ...]:
        """An agent answers the customer in public."""
        return self._notice(AgentMessage(self.conversation, self._message_id(), agent_id=1))

    def assign(self, agent_id: int = 1) -> tuple[engine.Action, ...]:
        """The conversation is assigned to an agent (its status does not change)."""
        return self._notice(
            ConversationChanged(
                self.conversation,
                status_changed=False,
                assignee_type="User",
                assignee_id=agent_id,
                assigned=True,
            )
        )

    def note(self, text: str) -> tuple[engine.Action, ...]:
        """An agent writes a private note (`/bot`, `/pause 30`, or anything else)."""
        return self._notice(AgentNote(self.conversation, self._message_id(), 1, text))

    def label(self, name: str) -> tuple[engine.Action, ...]:
        """An agent adds a label to the conversation (the label `bot` gives it to the bot)."""
        if name in self.conversation.labels:
            return ()
        labels = (*self.conversation.labels, name)
        self.conversation = replace(self.conversation, labels=labels)
        change = ConversationChanged(
            self.conversation,
            status_changed=False,
            assignee_type=None,
            assignee_id=None,
            assigned=False,
            labels_added=(name,),
        )
        return self._notice(change)

    def set_status(self, status: str) -> tuple[engine.Action, ...]:
        """An agent sets the conversation's status: open, pending, resolved or snoozed."""
        return tuple(self._set_status(status))

    def _set_status(self, status: str) -> list[engine.Action]:
        previous = self.conversation.status
        if status == previous:
            return []
        self.conversation = replace(self.conversation, status=status)
        change = ConversationChanged(
            self.conversation,
            status_changed=True,
            assignee_type=None,
            assignee_id=None,
            assigned=False,
            previous_status=previous,
        )
        return list(self._notice(change))

    def _message_id(self) -> int:
        self.next_message_id += 1
        return self.next_message_id - 1

    def _notice(
        self, notice: AgentMessage | AgentNote | ConversationChanged
    ) -> tuple[engine.Action, ...]:
        return tuple(self._decide(lifecycle.on_notice(self.lifecycle_state(), notice, self.now)))

    def lifecycle_state(self) -> lifecycle.State:
        """What lifecycle.py knows of this conversation."""
        session = self.session
        status = None if session is None else session.status.value
        return lifecycle.State(
            session="closed" if self.closed else status,
            block="" if session is None else session.block,
            hold=self.hold,
            until=self.until,
        )

    def _decide(self, decision: lifecycle.Decision) -> list[engine.Action]:
        """Carry out lifecycle.py's decision as the service and Chatwoot would."""
        self.hold, self.until = decision.hold, decision.until
        session = self.session
        if session is not None and decision.end == "handed_off":
            self.session = replace(
                session, status=engine.Status.HANDED_OFF, timeout_at=None, inactive_at=None
            )
        elif decision.end == "closed":
            self.closed = True
        if session is not None and decision.stop_timers:
            self.session = replace(session, timeout_at=None, inactive_at=None)
        actions: list[engine.Action] = []
        for action in decision.actions:
            self.history.append(action)
            actions.append(action)
            if isinstance(action, engine.BackToBot):
                # Chatwoot tells the bot of the new status, as it does the service.
                actions.extend(self._set_status("pending"))
            else:
                self._carry_out(action)
        return actions

    def answer(
        self, *, status: int | None, data: Any, error: str | None = None
    ) -> tuple[engine.Action, ...]:
        """The oldest webhook call waiting gets its outcome: ok when there is no error and the
        status is below 400 (the outbox's rule). IndexError when no call waits."""
        call = self.calls.popleft()
        ok = error is None and status is not None and status < 400
        if not ok and error is None:
            error = f"answered {status}"
        reply = engine.WebhookReply(call.block, ok, status, data, None if ok else error)
        return self._apply(engine.step(self.flow, self.session, reply, self.now))

    def wait(self, delta: timedelta) -> tuple[engine.Action, ...]:
        """Move the clock by `delta`, firing each deadline that passes at its own time."""
        until = self.now + delta
        actions: list[engine.Action] = []
        while (due := self._next_deadline()) is not None and due[1] <= until:
            kind, when = due
            self.now = max(self.now, when)
            assert self.session is not None
            result = engine.step(
                self.flow, self.session, engine.TimerFired(kind, self.session.block), self.now
            )
            if result.outcome is engine.Outcome.IGNORED:
                break  # cannot happen for a due deadline; never loop on it
            actions.extend(self._apply(result))
        self.now = until
        return tuple(actions)

    def shown(self, action: engine.Action) -> list[Said]:
        """The messages the customer sees for an action (none for labels, notes…)."""
        channel = self.conversation.channel
        if isinstance(action, engine.SendText):
            return [Said(action.text, (), action.block)]
        if not isinstance(action, engine.SendOptions):
            return []
        pairs = [(option.title, option.value) for option in action.options]
        if not channels.shows_buttons(channel):
            # one text message with the options numbered in it
            body = channels.messages(channel, action.text, pairs)[0]
            titles = tuple(title for title, _ in pairs)
            return [Said(str(body["content"]), titles, action.block)]
        said = []
        for body in channels.messages(channel, action.text, pairs):
            items = body["content_attributes"]["items"]
            titles = tuple(str(item["title"]) for item in items)
            said.append(Said(str(body["content"]), titles, action.block))
        return said

    def attribute(self, path: str) -> Any:
        """`contact.custom_attributes.X` or `conversation.custom_attributes.X` as Chatwoot has
        it now; None when unset."""
        scope, _, key = path.partition(".custom_attributes.")
        holder = self.contact if scope == "contact" else self.conversation
        return holder.custom_attributes.get(key)

    def _next_deadline(self) -> tuple[TimerKind, datetime] | None:
        """The deadline the timers loop would fire next: a block timeout before inactivity."""
        session = self.session
        if session is None or session.status is not engine.Status.ACTIVE:
            return None
        deadlines: list[tuple[datetime, int, TimerKind]] = []
        if session.timeout_at is not None:
            deadlines.append((session.timeout_at, 0, "timeout"))
        if session.inactive_at is not None:
            deadlines.append((session.inactive_at, 1, "inactivity"))
        if not deadlines:
            return None
        when, _, kind = min(deadlines)
        return kind, when

    def _expand(self, text: str) -> str:
        """A title as the channel shortened it stands for the whole title (service.py does so)."""
        session = self.session
        block = self.flow.blocks.get(session.block) if session is not None else None
        if block is None or not block.buttons:
            return text
        speak = engine.language(self.flow, engine.scope(session)) if session is not None else None
        titles = [button.title(speak) for button in block.buttons]  # as they were sent
        return channels.expand_reply(self.conversation.channel, text, titles)

    def _apply(self, result: engine.Step) -> tuple[engine.Action, ...]:
        self.session = result.session
        if lifecycle.rests(result):
            self.hold, self.until = lifecycle.Hold.RESTING, self.now + lifecycle.QUIET_AFTER_END
        for action in result.actions:
            self._carry_out(action)
        self.history.extend(result.actions)
        return result.actions

    def _carry_out(self, action: engine.Action) -> None:
        match action:
            case engine.AddLabels(labels=labels):
                self.labels.extend(label for label in labels if label not in self.labels)
                merged = self.conversation.labels + tuple(
                    label for label in labels if label not in self.conversation.labels
                )
                self.conversation = replace(self.conversation, labels=merged)
            case engine.Handoff():
                self.conversation = replace(self.conversation, status="open")
            case engine.Resolve():
                self.conversation = replace(self.conversation, status="resolved")
            case engine.BackToBot():
                self.conversation = replace(self.conversation, status="pending")
            case engine.Assign():
                self.assignments.append(action)
            case engine.PrivateNote(text=text):
                self.notes.append(text)
            case engine.SaveAttribute(scope="contact", key=key, value=value):
                attributes = {**self.contact.custom_attributes, key: value}
                self.contact = replace(self.contact, custom_attributes=attributes)
            case engine.SaveAttribute(key=key, value=value):
                attributes = {**self.conversation.custom_attributes, key: value}
                self.conversation = replace(self.conversation, custom_attributes=attributes)
            case engine.CallWebhook():
                self.calls.append(action)
            case engine.SendText() | engine.SendOptions():
                pass  # shown by `shown`, as the caller wants them
            case _:
                assert_never(action)
