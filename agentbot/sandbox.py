"""One conversation with a flow, run in memory: the pure engine plus a stand-in for the shell.

This module does no I/O: no network, no database, no files, no logging, and it never reads the
clock (the sandbox's clock is a value that `wait` moves forward). It is what `agentbot test`
and `agentbot simulate` share: the engine decides, and the sandbox does with the actions what
the service, the outbox and Chatwoot would do:

- messages are shown as the customer's channel shows them (channels.py): buttons on WhatsApp,
  the widget, Telegram…; a numbered list in the text on the others;
- labels are added to the conversation's, attributes merged into the contact's or the
  conversation's (so that the next event sees them, as Chatwoot's payload would carry them);
- a handoff sets the conversation `open` and the bot stays quiet from then on; a resolve sets it
  `resolved`, and the customer's next message reopens it and starts over (design §7);
- a webhook call waits, in order, until `answer` hands back its outcome;
- `wait` moves the clock, firing each deadline at its own time, as the timers loop would.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal, assert_never

from agentbot import channels, engine
from agentbot.events import Contact, Conversation, CustomerMessage
from agentbot.flows import Flow

TimerKind = Literal["timeout", "inactivity"]
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

    @property
    def status(self) -> str:
        """The conversation's status in Chatwoot: pending (the bot's), open or resolved."""
        return self.conversation.status

    @property
    def quiet(self) -> bool:
        """Humans hold the conversation: the service ignores the customer's messages."""
        return self.session is not None and self.session.status is engine.Status.HANDED_OFF

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

    def say(self, text: str) -> tuple[engine.Action, ...]:
        """The customer sends `text`; what the bot does in answer (nothing while humans hold it)."""
        if self.quiet:
            return ()
        if self.conversation.status == "resolved":
            # Chatwoot reopens a resolved conversation as pending for the bot's inbox.
            self.conversation = replace(self.conversation, status="pending")
        event = CustomerMessage(
            conversation=self.conversation,
            contact=self.contact,
            message_id=self.next_message_id,
            text=self._expand(text),
        )
        self.next_message_id += 1
        return self._apply(engine.step(self.flow, self.session, event, self.now))

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
