"""The conversation engine: `step(flow, session, event, now)` -> the new session and the actions.

This module does no I/O: it never reads the clock (the time is an argument), never touches the
network or the database and never logs. Decisions come back as data; `service.py` stores them and
`outbox.py` carries them out. A flow author's whole world is testable here in milliseconds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, assert_never

from agentbot.events import Contact, Conversation, CustomerMessage, Event, OptionSubmitted
from agentbot.flows import Block, Button, Flow, normalize

MAX_MISSES = 2  # design §7: the second unmatched reply hands off


class Status(StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    HANDED_OFF = "handed_off"
    ABANDONED = "abandoned"


@dataclass(frozen=True, slots=True)
class Session:
    flow: str
    version: str
    block: str
    status: Status
    variables: Mapping[str, Any] = field(default_factory=dict)
    misses: int = 0
    started_at: datetime | None = None


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


Action = SendText | SendOptions | AddLabels | Handoff


class Outcome(StrEnum):
    """What the inbound event meant, for the history and the funnel."""

    STARTED = "started"
    CHOSE = "chose"
    MISSED = "missed"
    HANDOFF_WORD = "handoff_word"
    RESTARTED = "restarted"
    BLOCK_GONE = "block_gone"
    NOT_WAITING = "not_waiting"


@dataclass(frozen=True, slots=True)
class Step:
    session: Session | None
    actions: tuple[Action, ...]
    outcome: Outcome
    block: str | None  # the block the event answered (None for a start)
    choice: str | None = None  # the chosen button's value


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


def step(flow: Flow, session: Session | None, event: Event, now: datetime) -> Step:
    """Advance one conversation by one customer event."""
    if session is None or session.status is not Status.ACTIVE:
        return _start(flow, event, now)
    block = flow.blocks.get(session.block)
    if block is None:
        # The flow was edited and this block is gone from the version the session runs on.
        return Step(
            replace(session, status=Status.HANDED_OFF),
            (Handoff(f"block '{session.block}' no longer exists", session.block),),
            Outcome.BLOCK_GONE,
            session.block,
        )
    if not block.buttons:
        return Step(session, (), Outcome.NOT_WAITING, block.id)
    ctx = _context(session.variables, event)
    button = match_button(block.buttons, event)
    if button is not None:
        actions: list[Action] = []
        if button.tags:
            actions.append(AddLabels(button.tags, block.id))
        moved = replace(session, misses=0)
        if button.next_block is None:
            moved = replace(moved, status=Status.COMPLETED)
        else:
            moved = _enter(flow, moved, button.next_block, ctx, actions)
        return Step(moved, tuple(actions), Outcome.CHOSE, block.id, button.value)

    said = normalize(_text(event))
    if said in {normalize(w) for w in flow.keywords.handoff}:
        return _handoff(
            flow, session, block.id, "the customer asked for a human", Outcome.HANDOFF_WORD
        )
    if said in {normalize(w) for w in flow.keywords.restart}:
        restarted = replace(session, misses=0, variables={})
        actions = []
        restarted = _enter(flow, restarted, flow.start, _context({}, event), actions)
        return Step(restarted, tuple(actions), Outcome.RESTARTED, block.id)

    misses = session.misses + 1
    if misses >= MAX_MISSES:
        return _handoff(
            flow,
            replace(session, misses=misses),
            block.id,
            f"no option matched {misses} times",
            Outcome.MISSED,
        )
    question = render(block.message or "", ctx)
    hint = f"{flow.messages.retry}\n\n{question}" if question else flow.messages.retry
    return Step(
        replace(session, misses=misses),
        (SendOptions(hint, options(block), block.id),),
        Outcome.MISSED,
        block.id,
    )


def options(block: Block) -> tuple[Option, ...]:
    return tuple(Option(b.text, b.value) for b in block.buttons)


def match_button(buttons: Sequence[Button], event: Event) -> Button | None:
    """Title (WhatsApp, Messenger), value (Telegram, LINE, widget) or position, case- and
    accent-insensitively."""
    match event:
        case OptionSubmitted(value=value, title=title):
            candidates = [value, title]
        case CustomerMessage(text=text):
            candidates = [text]
        case _:
            assert_never(event)
    for said in (normalize(c) for c in candidates if c):
        for button in buttons:
            if said in (normalize(button.text), normalize(button.value)):
                return button
        if said.isdigit() and 1 <= int(said) <= len(buttons):
            return buttons[int(said) - 1]
    return None


_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][\w.]*)\s*\}\}")


def render(template: str, context: Mapping[str, Any]) -> str:
    """Fill `{{name}}` and `{{a.b}}` from the context; a missing name renders as nothing.

    One pass over the flow's own text: values (customer text among them) are never re-read as
    templates.
    """

    def value(match: re.Match[str]) -> str:
        current: Any = context
        for part in match.group(1).split("."):
            if not isinstance(current, Mapping) or part not in current:
                return ""
            current = current[part]
        return "" if current is None else str(current)

    return _PLACEHOLDER.sub(value, template)


def _start(flow: Flow, event: Event, now: datetime) -> Step:
    session = Session(
        flow=flow.name,
        version=flow.version,
        block=flow.start,
        status=Status.ACTIVE,
        variables={},
        started_at=now,
    )
    said = normalize(_text(event))
    if said and said in {normalize(w) for w in flow.keywords.handoff}:
        return _handoff(flow, session, None, "the customer asked for a human", Outcome.HANDOFF_WORD)
    actions: list[Action] = []
    session = _enter(flow, session, flow.start, _context({}, event), actions)
    return Step(session, tuple(actions), Outcome.STARTED, None)


def _enter(
    flow: Flow, session: Session, block_id: str, ctx: Mapping[str, Any], actions: list[Action]
) -> Session:
    """Enter blocks until one waits for the customer, hands off or ends the flow."""
    seen: set[str] = set()
    while True:
        block = flow.blocks.get(block_id)
        if block is None or block_id in seen:
            # Validation forbids both; a stored old version is the only way here.
            actions.append(Handoff(f"cannot enter block '{block_id}'", session.block))
            return replace(session, status=Status.HANDED_OFF)
        seen.add(block_id)
        session = replace(session, block=block_id)
        if block.tags:
            actions.append(AddLabels(block.tags, block_id))
        if block.message is not None:
            text = render(block.message, ctx)
            if block.buttons:
                actions.append(SendOptions(text, options(block), block_id))
            else:
                actions.append(SendText(text, block_id))
        if block.handoff:
            actions.append(Handoff("the flow hands off here", block_id))
            return replace(session, status=Status.HANDED_OFF)
        if block.buttons:
            return session
        if block.next_block is None:
            return replace(session, status=Status.COMPLETED)
        block_id = block.next_block


def _handoff(
    flow: Flow, session: Session, block: str | None, reason: str, outcome: Outcome
) -> Step:
    at = block or session.block
    actions = (SendText(flow.messages.handoff, at), Handoff(reason, at))
    return Step(replace(session, status=Status.HANDED_OFF), actions, outcome, block)


def _text(event: Event) -> str:
    match event:
        case CustomerMessage(text=text):
            return text
        case OptionSubmitted(title=title, value=value):
            return title or value
        case _:
            assert_never(event)


def _context(variables: Mapping[str, Any], event: Event) -> dict[str, Any]:
    contact: Contact = event.contact
    conversation: Conversation = event.conversation
    return {
        **variables,
        "nome": contact.name,
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
            "inbox_id": conversation.inbox_id,
            "custom_attributes": dict(conversation.custom_attributes),
        },
    }
