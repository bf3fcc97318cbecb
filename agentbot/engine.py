"""The conversation engine: `step(flow, session, event, now)` -> the new session and the actions.

This module does no I/O: it never reads the clock (the time is an argument), never touches the
network or the database and never logs. Decisions come back as data; `service.py` stores them and
`outbox.py` carries them out. A flow author's whole world is testable here in milliseconds.

Entering a block does, in this order (docs/flows.md §2): its `set`, its labels, its message (with
buttons), its webhook, then its handoff or end. A block is *done* when its input is accepted,
its webhook answers, or at once when it waits for nothing; then the first condition that holds
wins, else `else`, else `next_block`, else the flow ends (the session completes).

Decisions where docs/flows.md leaves room:

- A chosen button's `next_block` (and tags) win; a button without `next_block` leaves the block
  done, so the block's conditions, `else` or `next_block` decide, and without them the flow ends.
- What the customer sends is tried as a button of the current question first (title, value,
  alias or, when the block takes no free text, position number), then as a global word, then,
  in a block without input, in the customer's own words (matching.py: a reply naming one
  option, or one with a typo; an ambiguous reply is a miss), then as the block's input. A block
  with both buttons and input takes the buttons as exact shortcuts only.
- The misses limit is the input's `retries` (default 2), or 2 for buttons. Past it the customer
  goes to the flow's `fallback` block, or is handed off.
- A `save_to` is carried out (a `SaveAttribute` action) when the input is accepted, the only
  moment there is a value; the session's context sees the new attribute at once.
- `set:` values are rendered against the variables as they were before the block, so their
  order does not matter. A value that is exactly one `{{placeholder}}` keeps its type.
- Every handoff posts a private note for the agent when there is something to say: the block's
  `note`, then "Dados coletados:" with the answers to the flow's inputs, in flow order.
- Timers: a block timeout is set on entering a block that waits and restarts on every customer
  message while the session rests there; inactivity counts from the start and from each
  customer message. Both are cleared when the session stops being active. A `TimerFired` that
  is not yet due by `now`, or whose deadline is gone, is ignored, so the shell may deliver one
  late or twice.
- A restart word clears the variables (initial data included) and enters the start block.
- A `split:` block goes on at once to one arm, picked from the flow, the block and the Chatwoot
  conversation (account and id, from the session's context), so a conversation always takes the
  same arm. The arm's name is saved as the variable named after the block and listed in
  `Step.splits`, which the shell records in the history.
- A condition reading `open_now` sees whether `now` falls in the flow's `hours`.
- A burst of customer messages (the flow's `debounce`, held by the shell) is answered as one
  event: `burst_answer` picks the last message the flow takes on its own, else joins the texts
  into one (one miss); `burst_opening` picks the message that starts a new session.
- Media (a photo, a voice note, a location, a contact card: `CustomerMessage.attachments`): at
  a question that wants a button, a message with media and no text gets the question again and
  counts no miss. A free-text (`text`) input takes media as its answer: the variable holds the
  caption (empty when there is none) and `<save_as>_attachments` the list of attachments (type,
  URL, and a location's coordinates). A `phone` input takes a contact card's phone number. The
  `image`, `audio`, `file` and `location` inputs take a message with that kind of attachment,
  kept the same way; text alone is a miss there.
- A message that would render empty is not sent (Chatwoot and WhatsApp refuse an empty body).
- WhatsApp's 24-hour window: WhatsApp takes plain messages only within 24 hours of the
  customer's last message (the session's context keeps its time as `customer_wrote_at`; a
  session started by the API counts from its start if Chatwoot could reply then). Outside it,
  what a timer or the inactivity says goes out as the flow's `template:` (the first message;
  the rest are withheld), or, without a template, is withheld: `Step.withheld` lists what was
  not sent, for the history. Labels, notes, handoffs and resolves are not messages and go on.
- An abandoned session (inactivity) does what the flow's `inactivity.then` says: "handoff"
  hands the conversation to humans (with the note of the collected answers), "resolve"
  resolves it; without it the conversation is left as it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import quote

from agentbot.answers import DEFAULT_ERRORS, MEDIA_KINDS, InputType, parse_answer, parse_phone
from agentbot.events import Contact, Conversation, CustomerMessage, OptionSubmitted
from agentbot.expressions import holds, to_text
from agentbot.flows import (
    OPEN_NOW,
    Block,
    Button,
    Flow,
    InputSpec,
    attachments_variable,
    captured_variables,
    normalize,
)
from agentbot.hours import is_open
from agentbot.matching import match
from agentbot.splits import pick, split_key
from agentbot.templates import render, render_value

MAX_MISSES = 2  # the second unmatched reply hands off
WHATSAPP = "Channel::Whatsapp"
WHATSAPP_WINDOW = timedelta(hours=24)  # plain messages only this long after the customer's
CUSTOMER_WROTE_AT = "customer_wrote_at"  # context key: ISO time of the customer's last message
SUMMARY_TITLE = "Dados coletados:"
_EMPTY: Mapping[str, Any] = MappingProxyType({})


class Status(StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    HANDED_OFF = "handed_off"
    ABANDONED = "abandoned"


class Waiting(StrEnum):
    """What an active session rests on."""

    NOTHING = "nothing"
    BUTTONS = "buttons"
    INPUT = "input"  # free text (the block's buttons, if any, are shortcuts)
    WEBHOOK = "webhook"


@dataclass(frozen=True, slots=True)
class Session:
    flow: str
    version: str
    block: str
    status: Status
    # captured inputs, `set` values, webhook answers and a start's initial data (JSON values)
    variables: Mapping[str, Any] = field(default_factory=dict)
    misses: int = 0
    started_at: datetime | None = None
    waiting: Waiting = Waiting.NOTHING
    timeout_at: datetime | None = None  # the current block's timeout deadline
    inactive_at: datetime | None = None  # the flow's inactivity deadline
    # {"contact": {...}, "conversation": {...}} from the last Chatwoot event (see `snapshot`),
    # so that webhook replies and timers render templates with the same data
    context: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WebhookReply:
    """The outcome of a `CallWebhook`, handed back to the engine by the shell."""

    block: str
    ok: bool
    status: int | None
    data: Any  # the parsed JSON answer, or its text when it is not JSON
    error: str | None = None


@dataclass(frozen=True, slots=True)
class TimerFired:
    """A deadline of the session passed (the shell polls `timeout_at` and `inactive_at`)."""

    kind: Literal["timeout", "inactivity"]
    block: str


Input = CustomerMessage | OptionSubmitted | WebhookReply | TimerFired


@dataclass(frozen=True, slots=True)
class Option:
    title: str
    value: str


@dataclass(frozen=True, slots=True)
class SendText:
    text: str
    block: str


@dataclass(frozen=True, slots=True)
class SendOptions:
    text: str
    options: tuple[Option, ...]
    block: str


@dataclass(frozen=True, slots=True)
class AddLabels:
    labels: tuple[str, ...]
    block: str


@dataclass(frozen=True, slots=True)
class Handoff:
    reason: str
    block: str


@dataclass(frozen=True, slots=True)
class BackToBot:
    """The conversation is the bot's again: its status goes back to `pending` in Chatwoot."""

    reason: str
    block: str


@dataclass(frozen=True, slots=True)
class Assign:
    team_id: int | None
    assignee_id: int | None
    block: str


@dataclass(frozen=True, slots=True)
class PrivateNote:
    text: str
    block: str


@dataclass(frozen=True, slots=True)
class Resolve:
    block: str


@dataclass(frozen=True, slots=True)
class SaveAttribute:
    """Merge `{key: value}` into the contact's or the conversation's custom attributes."""

    scope: Literal["conversation", "contact"]
    key: str
    value: Any
    block: str


@dataclass(frozen=True, slots=True)
class CallWebhook:
    url: str
    method: str
    headers: Mapping[str, str]
    body: Any  # JSON to send; None for no body
    timeout: float  # seconds
    retry: bool  # the call may be repeated (idempotent, or the author said so)
    block: str


Action = (
    SendText
    | SendOptions
    | AddLabels
    | Handoff
    | BackToBot
    | Assign
    | PrivateNote
    | Resolve
    | SaveAttribute
    | CallWebhook
)


class Outcome(StrEnum):
    """What the inbound event meant, for the history and the funnel."""

    STARTED = "started"
    CHOSE = "chose"
    ANSWERED = "answered"  # free-text input accepted
    MISSED = "missed"
    HANDOFF_WORD = "handoff_word"
    RESTARTED = "restarted"
    BLOCK_GONE = "block_gone"
    NOT_WAITING = "not_waiting"
    WEBHOOK_OK = "webhook_ok"
    WEBHOOK_FAILED = "webhook_failed"
    TIMED_OUT = "timed_out"
    ABANDONED = "abandoned"
    IGNORED = "ignored"  # a webhook reply or timer that no longer applies
    MEDIA = "media"  # media without text at a question that wants a button: asked again


@dataclass(frozen=True, slots=True)
class Step:
    session: Session | None
    actions: tuple[Action, ...]
    outcome: Outcome
    block: str | None  # the block the event answered (None for a start)
    choice: str | None = None  # the chosen button's value
    # (block, arm name) of each `split:` passed while handling the event, for the history
    splits: tuple[tuple[str, str], ...] = ()
    # The blocks entered while handling the event, in order (the funnel's "entered").
    entered: tuple[str, ...] = field(default=(), compare=False)
    # outside WhatsApp's 24-hour window: Chatwoot's template_params for the first message
    template: Mapping[str, Any] | None = None
    withheld: tuple[Action, ...] = ()  # messages not sent (outside the window), for the history


def choose_flow(flows: Sequence[Flow], inbox_id: int | None, text: str) -> Flow | None:
    """The flow a new conversation starts: a keyword trigger first, else the default flow.

    A flow limited to inboxes wins over an unlimited one for those inboxes.
    """
    candidates = [f for f in flows if not f.trigger.inboxes or inbox_id in f.trigger.inboxes]
    candidates.sort(key=lambda f: (not f.trigger.inboxes, f.name))
    said = normalize(text)
    for flow in candidates:
        if said and any(normalize(k) == said for k in flow.trigger.keywords):
            return flow
    for flow in candidates:
        if flow.trigger.default:
            return flow
    return None


def choose_widget_flow(flows: Sequence[Flow], inbox_id: int | None) -> Flow | None:
    """The flow that greets a visitor opening the web widget (`trigger.widget`), if any.

    A flow limited to inboxes wins over an unlimited one for those inboxes.
    """
    candidates = [
        f
        for f in flows
        if f.trigger.widget and (not f.trigger.inboxes or inbox_id in f.trigger.inboxes)
    ]
    candidates.sort(key=lambda f: (not f.trigger.inboxes, f.name))
    return candidates[0] if candidates else None


def snapshot(contact: Contact, conversation: Conversation) -> dict[str, Any]:
    """What templates and conditions see as `contact.*` and `conversation.*` (JSON values)."""
    return {
        "contact": {
            "id": contact.id,
            "name": contact.name,
            "phone_number": contact.phone_number,
            "email": contact.email,
            "identifier": contact.identifier,
            "custom_attributes": dict(contact.custom_attributes),
        },
        "conversation": {
            "id": conversation.id,
            "account_id": conversation.account_id,
            "inbox_id": conversation.inbox_id,
            "channel": conversation.channel,
            "can_reply": conversation.can_reply,
            "labels": list(conversation.labels),
            "custom_attributes": dict(conversation.custom_attributes),
            "language": conversation.language,
        },
    }


def scope(session: Session) -> dict[str, Any]:
    """The names templates and conditions see: the variables, `nome`, `contact`, `conversation`.

    The contact and the conversation win over variables of the same name (loader.py forbids
    such names, but a start's initial data may carry them). `nome` is the contact's name only
    when the variables (a start's initialData, the flow itself) give none.
    """
    contact = session.context.get("contact")
    contact = contact if isinstance(contact, Mapping) else {}
    conversation = session.context.get("conversation")
    given = session.variables.get("nome")
    return {
        **session.variables,
        "nome": given if given is not None else contact.get("name") or "",
        "contact": contact,
        "conversation": conversation if isinstance(conversation, Mapping) else {},
    }


def start(
    flow: Flow,
    now: datetime,
    *,
    variables: Mapping[str, Any] = _EMPTY,
    context: Mapping[str, Any] = _EMPTY,
) -> Step:
    """Start `flow` with no customer event (a proactive start with its initial data)."""
    turn = _Turn(flow, now)
    session = turn.enter(_new_session(flow, now, variables, context), flow.start)
    return turn.step(session, Outcome.STARTED, None)


def step(flow: Flow, session: Session | None, event: Input, now: datetime) -> Step:
    """Advance one conversation by one event."""
    if isinstance(event, WebhookReply):
        return _on_webhook(flow, session, event, now)
    if isinstance(event, TimerFired):
        return _on_timer(flow, session, event, now)
    return _on_message(flow, session, event, now)


def burst_answer(
    flow: Flow,
    session: Session | None,
    burst: Sequence[CustomerMessage | OptionSubmitted],
    now: datetime,
) -> CustomerMessage | OptionSubmitted:
    """The one event a burst of customer messages (a flow's `debounce`) is answered as.

    The last message the flow takes on its own (a button, an accepted answer, a global word, a
    start) wins; when it takes none, all the texts as one message, so that the customer hears
    one "not understood" rather than one per message. `burst` is never empty.
    """
    for event in reversed(burst):
        if step(flow, session, event, now).outcome is not Outcome.MISSED:
            return event
    last = burst[-1]
    text = "\n".join(_text(event) for event in burst)
    return CustomerMessage(last.conversation, last.contact, last.message_id, text)


def burst_opening(
    flows: Sequence[Flow],
    inbox_id: int | None,
    burst: Sequence[CustomerMessage | OptionSubmitted],
) -> CustomerMessage | OptionSubmitted:
    """The message of a burst that opens a new session: the first that is a flow's trigger
    keyword ("Oi", "suporte" starts the support flow), else the first. `burst` is never empty."""
    for event in burst:
        said = normalize(_text(event))
        chosen = choose_flow(flows, inbox_id, said)
        if chosen is not None and said in _words(chosen.trigger.keywords):
            return event
    return burst[0]


def options(block: Block, language: str | None = None) -> tuple[Option, ...]:
    return tuple(Option(b.title(language), b.value) for b in block.buttons)


def language(flow: Flow, names: Mapping[str, Any]) -> str | None:
    """The language the bot speaks, for a flow with `languages:` (None without): the variable
    `language` (the flow's choice: `set:` or an input), else the conversation's, else the
    contact's custom attribute `language`, else the language Chatwoot gives the conversation
    (its `conversation_language`, or the web widget's browser language), when it names one of
    the flow's languages (`en`, `en-US` and `en_us` name `en`); else the flow's first."""
    if not flow.languages:
        return None
    conversation = names.get("conversation") or {}
    contact = names.get("contact") or {}
    for value in (
        names.get("language"),
        (conversation.get("custom_attributes") or {}).get("language"),
        (contact.get("custom_attributes") or {}).get("language"),
        conversation.get("language"),
    ):
        code = _language_code(flow.languages, value)
        if code is not None:
            return code
    return flow.languages[0]


def _language_code(languages: Sequence[str], value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    wanted = value.strip().replace("-", "_").casefold()
    for code in languages:
        if code.replace("-", "_").casefold() == wanted:
            return code
    base = wanted.split("_")[0]
    return next((code for code in languages if code.casefold() == base), None)


def summary(flow: Flow, variables: Mapping[str, Any]) -> str:
    """The captured answers for an agent: a title, then one line per answered input in the
    flow's order; empty when no input was answered."""
    lines = [
        f"- {name}: {to_text(variables[name])}"
        for name in captured_variables(flow)
        if variables.get(name) is not None
    ]
    return "\n".join([SUMMARY_TITLE, *lines]) if lines else ""


# --- the events ---------------------------------------------------------------------------


def _on_message(
    flow: Flow, session: Session | None, event: CustomerMessage | OptionSubmitted, now: datetime
) -> Step:
    context = {**snapshot(event.contact, event.conversation), CUSTOMER_WROTE_AT: now.isoformat()}
    said = normalize(_text(event))
    turn = _Turn(flow, now)
    if session is None or session.status is not Status.ACTIVE:
        fresh = _new_session(flow, now, _EMPTY, context)
        if said and said in _words(flow.keywords.handoff):
            session = turn.hand_off(fresh, flow.start, "the customer asked for a human")
            return turn.step(session, Outcome.HANDOFF_WORD, None)
        return turn.step(turn.enter(fresh, flow.start), Outcome.STARTED, None)
    session = replace(session, context=context)
    block = flow.blocks.get(session.block)
    if block is None:
        return _block_gone(session)
    session = _restart_timers(flow, block, session, now)
    replies = [event.value, event.title] if isinstance(event, OptionSubmitted) else [event.text]
    found = match(block.buttons, replies, positions=block.input is None, loose=False)
    if found.button is not None:
        return turn.choose(session, block, found.button)
    if said in _words(flow.keywords.handoff):
        session = turn.hand_off(session, block.id, "the customer asked for a human")
        return turn.step(session, Outcome.HANDOFF_WORD, block.id)
    if said in _words(flow.keywords.restart):
        session = replace(session, variables={}, inactive_at=_inactive_at(flow, now))
        return turn.step(turn.enter(session, flow.start), Outcome.RESTARTED, block.id)
    if block.input is None and isinstance(event, CustomerMessage):
        # the customer's own words: a reply naming one option, or with a typo; an ambiguous
        # one is a miss, asked again
        found = match(block.buttons, replies, positions=False)
        if found.button is not None:
            return turn.choose(session, block, found.button)
    if block.input is not None:
        answer = _answer(block.input, event)
        if answer is not None:
            session = turn.accept(session, block, *answer)
            return turn.step(session, Outcome.ANSWERED, block.id)
    elif block.buttons and not said and isinstance(event, CustomerMessage) and event.attachments:
        # A photo or a sticker where a button was wanted: ask again, it is not a wrong answer.
        return turn.ask_again(session, block)
    if block.buttons or block.input is not None:
        return turn.miss(session, block)
    return turn.step(session, Outcome.NOT_WAITING, block.id)


def _on_webhook(flow: Flow, session: Session | None, event: WebhookReply, now: datetime) -> Step:
    if (
        session is None
        or session.status is not Status.ACTIVE
        or session.waiting is not Waiting.WEBHOOK
        or session.block != event.block
    ):
        return Step(session, (), Outcome.IGNORED, event.block)
    block = flow.blocks.get(session.block)
    if block is None:
        return _block_gone(session)
    spec = block.webhook
    if spec is None:
        return Step(session, (), Outcome.IGNORED, event.block)
    turn = _Turn(flow, now)
    if event.ok:
        if spec.save_as is not None:
            session = replace(session, variables={**session.variables, spec.save_as: event.data})
        return turn.step(turn.done(session, block), Outcome.WEBHOOK_OK, block.id)
    if spec.on_error is not None:
        session = turn.enter(session, spec.on_error)
    else:
        status = f"status {event.status}" if event.status is not None else "no answer"
        session = turn.hand_off(session, block.id, f"webhook failed: {event.error or status}")
    return turn.step(session, Outcome.WEBHOOK_FAILED, block.id)


def _on_timer(flow: Flow, session: Session | None, event: TimerFired, now: datetime) -> Step:
    if session is None or session.status is not Status.ACTIVE:
        return Step(session, (), Outcome.IGNORED, event.block)
    step = _timer_step(flow, session, event, now)
    if not window_closed(session, now):
        return step
    return _outside_window(flow, step)


def _timer_step(flow: Flow, session: Session, event: TimerFired, now: datetime) -> Step:
    turn = _Turn(flow, now)
    if event.kind == "inactivity":
        if session.inactive_at is None or now < session.inactive_at:
            return Step(session, (), Outcome.IGNORED, event.block)
        inactivity = flow.inactivity
        then = None
        if inactivity is not None:
            if inactivity.message is not None:
                turn.say(render(inactivity.message, scope(session)), session.block)
            then = inactivity.then
        if then == "handoff":
            turn._note(session, "", session.block)
            turn.actions.append(Handoff("the customer stopped answering", session.block))
            return turn.step(_stop(session, Status.HANDED_OFF), Outcome.ABANDONED, session.block)
        if then == "resolve":
            turn.actions.append(Resolve(session.block))
        session = _stop(session, Status.ABANDONED)
        return turn.step(session, Outcome.ABANDONED, session.block)
    if session.block != event.block or session.timeout_at is None or now < session.timeout_at:
        return Step(session, (), Outcome.IGNORED, event.block)
    block = flow.blocks.get(session.block)
    if block is None:
        return _block_gone(session)
    if block.timeout is None:
        return Step(session, (), Outcome.IGNORED, event.block)
    session = turn.enter(session, block.timeout.next_block)
    return turn.step(session, Outcome.TIMED_OUT, block.id)


def window_closed(session: Session, now: datetime) -> bool:
    """WhatsApp's 24-hour window is closed at `now`: plain messages would be refused."""
    conversation = session.context.get("conversation")
    if not isinstance(conversation, Mapping) or conversation.get("channel") != WHATSAPP:
        return False
    wrote = _instant(session.context.get(CUSTOMER_WROTE_AT))
    if wrote is None and conversation.get("can_reply") is not False:
        wrote = session.started_at  # started by the API while the window was open
    return wrote is None or now >= wrote + WHATSAPP_WINDOW


def template_params(flow: Flow, names: Mapping[str, Any]) -> dict[str, Any] | None:
    """Chatwoot's `template_params` for the flow's `template:`, filled in; None without one."""
    spec = flow.template
    if spec is None:
        return None
    params: dict[str, Any] = {
        "name": spec.name,
        "language": spec.language,
        "processed_params": render_value(spec.params, names),
    }
    if spec.category is not None:
        params["category"] = spec.category
    return params


def _outside_window(flow: Flow, step: Step) -> Step:
    """The step as WhatsApp takes it outside the window: the first message as the flow's
    template, or none; the messages not sent are listed in `withheld`."""
    kept: list[Action] = []
    withheld: list[Action] = []
    assert step.session is not None  # a timer's step always has its session
    template = template_params(flow, scope(step.session))
    sent_template = None
    for action in step.actions:
        if not isinstance(action, SendText | SendOptions):
            kept.append(action)
        elif template is not None and sent_template is None:
            kept.append(action)
            sent_template = template
        else:
            withheld.append(action)
    return replace(step, actions=tuple(kept), template=sent_template, withheld=tuple(withheld))


def _instant(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


# --- carrying out one event ---------------------------------------------------------------


class _Turn:
    """The actions decided while handling one event, and the moves that decide them."""

    __slots__ = ("actions", "entered", "flow", "now", "splits")

    def __init__(self, flow: Flow, now: datetime) -> None:
        self.flow = flow
        self.now = now
        self.actions: list[Action] = []
        self.splits: list[tuple[str, str]] = []
        self.entered: list[str] = []

    def step(
        self, session: Session, outcome: Outcome, block: str | None, choice: str | None = None
    ) -> Step:
        return Step(
            session,
            tuple(self.actions),
            outcome,
            block,
            choice,
            tuple(self.splits),
            tuple(self.entered),
        )

    def route(self, session: Session, block: Block) -> tuple[Session, str | None]:
        """Where a done block leads: its first condition that holds, its split's arm (saved as
        the variable named after the block), `else`, `next_block`, or None (the flow ends).

        Conditions also see `open_now` when the flow has business hours, judged at `now`.
        """
        names = scope(session)
        if self.flow.hours is not None:
            names[OPEN_NOW] = is_open(self.flow.hours, self.now)
        for condition in block.conditions:
            if holds(condition.test, names):
                return session, condition.next_block
        if block.split:
            conversation = session.context.get("conversation")
            where = conversation if isinstance(conversation, Mapping) else {}
            key = split_key(self.flow.name, block.id, where.get("account_id"), where.get("id"))
            arm = block.split[pick([a.weight for a in block.split], key)]
            self.splits.append((block.id, arm.name))
            session = replace(session, variables={**session.variables, block.id: arm.name})
            return session, arm.next_block
        return session, block.else_block or block.next_block

    def say(self, text: str, block: str) -> None:
        if text.strip():  # an empty message is refused by Chatwoot's channels: never sent
            self.actions.append(SendText(text, block))

    def ask_again(self, session: Session, block: Block) -> Step:
        """The block's question again, with no miss counted."""
        assert block.message is not None  # loader.py: buttons always come with a message
        text = render(block.message, scope(session))
        self.actions.append(SendOptions(text, options(block), block.id))
        return self.step(session, Outcome.MEDIA, block.id)

    def labels(self, labels: tuple[str, ...], block: str) -> None:
        if labels:
            self.actions.append(AddLabels(labels, block))

    def enter(self, session: Session, block_id: str) -> Session:
        """Enter blocks until one waits, hands off or ends the flow."""
        seen: set[str] = set()
        while True:
            block = self.flow.blocks.get(block_id)
            if block is None or block_id in seen:
                # Validation forbids both; a stored old version is the only way here.
                self.actions.append(Handoff(f"cannot enter block '{block_id}'", session.block))
                return _stop(session, Status.HANDED_OFF)
            seen.add(block_id)
            self.entered.append(block_id)
            session = replace(
                session, block=block_id, misses=0, waiting=Waiting.NOTHING, timeout_at=None
            )
            if block.assign:
                values = {k: render_value(v, scope(session)) for k, v in block.assign.items()}
                session = replace(session, variables={**session.variables, **values})
            self._announce(block, scope(session))
            if block.handoff is not None:
                return self._hand_off_block(session, block)
            if block.end is not None:
                if block.end.resolve:
                    self.actions.append(Resolve(block.id))
                return _stop(session, Status.COMPLETED)
            if block.waits:
                waiting = (
                    Waiting.INPUT
                    if block.input is not None
                    else Waiting.BUTTONS
                    if block.buttons
                    else Waiting.WEBHOOK
                )
                deadline = self.now + block.timeout.after if block.timeout is not None else None
                return replace(session, waiting=waiting, timeout_at=deadline)
            session, target = self.route(session, block)
            if target is None:
                return _stop(session, Status.COMPLETED)
            block_id = target

    def _announce(self, block: Block, names: Mapping[str, Any]) -> None:
        """A block's labels, message and webhook call, in that order."""
        self.labels(block.tags, block.id)
        if block.message is not None:
            speak = language(self.flow, names)
            text = render(block.messages.get(speak or "", block.message), names)
            if block.buttons:
                self.actions.append(SendOptions(text, options(block, speak), block.id))
            else:
                self.say(text, block.id)
        if block.webhook is not None:
            spec = block.webhook
            self.actions.append(
                CallWebhook(
                    url=render(spec.url, names, escape=_url_part),
                    method=spec.method,
                    headers={
                        k: render(v, names, escape=_header_part) for k, v in spec.headers.items()
                    },
                    body=render_value(spec.body, names),
                    timeout=spec.timeout,
                    retry=spec.retry,
                    block=block.id,
                )
            )

    def _hand_off_block(self, session: Session, block: Block) -> Session:
        spec = block.handoff
        assert spec is not None
        if spec.team_id is not None or spec.assignee_id is not None:
            self.actions.append(Assign(spec.team_id, spec.assignee_id, block.id))
        note = render(spec.note, scope(session)) if spec.note is not None else ""
        self._note(session, note, block.id)
        self.actions.append(Handoff("the flow hands off here", block.id))
        return _stop(session, Status.HANDED_OFF)

    def _note(self, session: Session, note: str, block: str) -> None:
        text = "\n\n".join(part for part in (note, summary(self.flow, session.variables)) if part)
        if text:
            self.actions.append(PrivateNote(text, block))

    def hand_off(self, session: Session, block: str, reason: str) -> Session:
        """The bot gives up on its own: it says so, leaves a note for the agent and hands off."""
        texts = self.flow.messages
        speak = language(self.flow, scope(session)) or ""
        self.say(texts.handoffs.get(speak, texts.handoff), block)
        self._note(session, "", block)
        self.actions.append(Handoff(reason, block))
        return _stop(session, Status.HANDED_OFF)

    def choose(self, session: Session, block: Block, button: Button) -> Step:
        """The customer chose `button` of `block`: its labels, then its next_block or the
        block's own way out."""
        self.labels(button.tags, block.id)
        session = replace(session, misses=0)
        if button.next_block is not None:
            session = self.enter(session, button.next_block)
        else:
            session = self.done(session, block)
        return self.step(session, Outcome.CHOSE, block.id, button.value)

    def done(self, session: Session, block: Block) -> Session:
        """The block is done: follow its first true condition, else, next_block, or end."""
        session, target = self.route(session, block)
        if target is None:
            return _stop(session, Status.COMPLETED)
        return self.enter(session, target)

    def accept(
        self,
        session: Session,
        block: Block,
        answer: Any,
        attachments: list[dict[str, Any]] | None = None,
    ) -> Session:
        assert block.input is not None
        variables = {**session.variables, block.input.save_as: answer}
        if attachments is not None:
            variables[attachments_variable(block.input.save_as)] = attachments
        session = replace(session, variables=variables, misses=0)
        target = block.save_to
        if target is not None:
            self.actions.append(SaveAttribute(target.scope, target.key, answer, block.id))
            session = _remember_attribute(session, target.scope, target.key, answer)
        return self.done(session, block)

    def miss(self, session: Session, block: Block) -> Step:
        limit = block.input.retries if block.input is not None else MAX_MISSES
        misses = session.misses + 1
        if misses >= limit:
            if self.flow.fallback is not None:
                session = self.enter(replace(session, misses=0), self.flow.fallback)
                return self.step(session, Outcome.MISSED, block.id)
            reason = (
                f"the answer was not accepted {misses} times"
                if block.input is not None
                else f"no option matched {misses} times"
            )
            session = self.hand_off(replace(session, misses=misses), block.id, reason)
            return self.step(session, Outcome.MISSED, block.id)
        names = scope(session)
        speak = language(self.flow, names)
        message = block.messages.get(speak or "", block.message)
        question = render(message, names) if message is not None else ""
        if block.input is None:
            hint = self.flow.messages.retries.get(speak or "", self.flow.messages.retry)
        elif block.input.error_message is not None:
            error = block.input.error_messages.get(speak or "", block.input.error_message)
            hint = render(error, names)
        else:
            hint = DEFAULT_ERRORS[block.input.type]
        text = f"{hint}\n\n{question}" if question else hint
        if block.buttons:
            self.actions.append(SendOptions(text, options(block, speak), block.id))
        else:
            self.say(text, block.id)
        return self.step(replace(session, misses=misses), Outcome.MISSED, block.id)


def _answer(
    spec: InputSpec, event: CustomerMessage | OptionSubmitted
) -> tuple[Any, list[dict[str, Any]] | None] | None:
    """The value an input keeps for the event (and its attachments), or None when refused."""
    text = _text(event)
    attachments = event.attachments if isinstance(event, CustomerMessage) else ()
    media = MEDIA_KINDS.get(spec.type)
    if media is not None:
        if not any(item.kind in media for item in attachments):
            return None
        return text.strip(), [item.as_value() for item in attachments]
    if attachments and spec.type is InputType.TEXT:
        return text.strip(), [item.as_value() for item in attachments]
    answer = parse_answer(spec.type, text, spec.pattern)
    if answer is None and spec.type is InputType.PHONE:
        # A contact card: Chatwoot puts the card's phone number in its fallback_title.
        cards = (a.title for a in attachments if a.kind == "contact" and a.title)
        answer = next((phone for card in cards if (phone := parse_phone(card))), None)
    return None if answer is None else (answer, None)


def _new_session(
    flow: Flow, now: datetime, variables: Mapping[str, Any], context: Mapping[str, Any]
) -> Session:
    return Session(
        flow=flow.name,
        version=flow.version,
        block=flow.start,
        status=Status.ACTIVE,
        variables=dict(variables),
        started_at=now,
        inactive_at=_inactive_at(flow, now),
        context=dict(context),
    )


def _inactive_at(flow: Flow, now: datetime) -> datetime | None:
    return now + flow.inactivity.after if flow.inactivity is not None else None


def _restart_timers(flow: Flow, block: Block, session: Session, now: datetime) -> Session:
    """A customer message restarts the inactivity count and the current block's timeout."""
    timeout_at = now + block.timeout.after if block.timeout is not None else session.timeout_at
    return replace(session, inactive_at=_inactive_at(flow, now), timeout_at=timeout_at)


def _stop(session: Session, status: Status) -> Session:
    """The session is no longer active: it waits for nothing and has no deadlines."""
    return replace(
        session, status=status, waiting=Waiting.NOTHING, timeout_at=None, inactive_at=None
    )


def _block_gone(session: Session) -> Step:
    # The flow was edited and this block is gone from the version the session runs on.
    return Step(
        _stop(session, Status.HANDED_OFF),
        (Handoff(f"block '{session.block}' no longer exists", session.block),),
        Outcome.BLOCK_GONE,
        session.block,
    )


def _remember_attribute(
    session: Session, scope_name: Literal["conversation", "contact"], key: str, value: Any
) -> Session:
    """The session's context with a custom attribute just saved, as Chatwoot will have it.

    Only called while handling a Chatwoot event, so the context is a fresh `snapshot`.
    """
    part = dict(session.context[scope_name])
    part["custom_attributes"] = {**part["custom_attributes"], key: value}
    return replace(session, context={**session.context, scope_name: part})


def _words(words: Sequence[str]) -> set[str]:
    return {normalize(word) for word in words}


def _text(event: CustomerMessage | OptionSubmitted) -> str:
    return event.text if isinstance(event, CustomerMessage) else event.title or event.value


def _url_part(value: str) -> str:
    # a variable fills a part of the URL, never its structure: "/", "?", "&", "#" are escaped,
    # and so are the dots of "." and "..", which would otherwise move up the path
    if value.strip(".") == "":
        return value.replace(".", "%2E")
    return quote(value, safe="")


def _header_part(value: str) -> str:
    # a line break in a header value would start a new header; other control characters are
    # refused by HTTP: each becomes a space
    return "".join(" " if c < " " or c == "\x7f" else c for c in " ".join(value.splitlines()))
