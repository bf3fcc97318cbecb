"""Chatwoot webhook JSON -> a typed event the engine acts on, or `Ignored` with the reason.

This module does no I/O: no network, no database, no clock, no logging. It only reads the
mapping it is given. Shapes are those of docs/chatwoot.md §1 (Chatwoot 4.15.1): the top-level
`message_type` is a string, the sender of a contact's message has no `type`, and `conversation.id`
is the display id used in REST paths.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from agentbot.jsonsafe import ascii_int, bigint

ACTIONABLE_STATUS = "pending"
# A customer's message on a snoozed conversation comes with status open (Chatwoot reopens it).
REACHABLE_STATUSES = (ACTIONABLE_STATUS, "open")


@dataclass(frozen=True, slots=True)
class Contact:
    id: int | None
    name: str
    phone_number: str | None = None
    email: str | None = None
    identifier: str | None = None
    custom_attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Conversation:
    account_id: int
    id: int  # the display id
    inbox_id: int | None
    status: str
    channel: str | None = None
    labels: tuple[str, ...] = ()
    can_reply: bool = True
    custom_attributes: Mapping[str, Any] = field(default_factory=dict)
    # additional_attributes.type: "instagram_direct_message" for Instagram through a Facebook
    # Page (Channel::FacebookPage), absent elsewhere
    kind: str | None = None
    # Chatwoot's `additional_attributes.conversation_language`, else the web widget's
    # `browser_language` ("en", "pt-BR"); None when Chatwoot names none
    language: str | None = None


@dataclass(frozen=True, slots=True)
class Attachment:
    """One item of a message's `attachments` (Chatwoot's Attachment#push_event_data)."""

    kind: str  # file_type: image, audio, video, file, location, contact, fallback, share, ...
    url: str | None = None  # data_url: the file, or a location's map link
    title: str | None = None  # fallback_title: a location's name, a contact card's phone number
    latitude: float | None = None  # coordinates_lat, for a location
    longitude: float | None = None  # coordinates_long, for a location

    def as_value(self) -> dict[str, Any]:
        """The attachment as a flow variable holds it (JSON)."""
        value: dict[str, Any] = {"type": self.kind, "url": self.url}
        if self.title is not None:
            value["title"] = self.title
        if self.kind == "location":
            value["latitude"] = self.latitude
            value["longitude"] = self.longitude
        return value


@dataclass(frozen=True, slots=True)
class CustomerMessage:
    """An incoming, public message from the contact in a conversation the bot may act on.

    `text` is what the customer wrote: for an e-mail, the reply without the quoted history.
    A photo, voice note, location or contact card comes as `attachments`, with the caption (or
    nothing) as `text`.
    """

    conversation: Conversation
    contact: Contact
    message_id: int
    text: str
    in_reply_to: int | None = None
    attachments: tuple[Attachment, ...] = ()

    @property
    def dedupe_key(self) -> str:
        # Chatwoot sometimes sends one message twice under two delivery ids.
        return f"message:{self.message_id}"


@dataclass(frozen=True, slots=True)
class OptionSubmitted:
    """A web-widget visitor clicked an option of the bot's `input_select` question."""

    conversation: Conversation
    contact: Contact
    message_id: int  # the bot's question
    title: str
    value: str

    @property
    def dedupe_key(self) -> str:
        # The question keeps its submitted_values through later updates: act on it once.
        return f"submitted:{self.message_id}"


@dataclass(frozen=True, slots=True)
class AgentMessage:
    """A human agent wrote to the customer: the bot's turn in this conversation is over."""

    conversation: Conversation
    message_id: int
    agent_id: int | None

    @property
    def dedupe_key(self) -> str:
        return f"message:{self.message_id}"


@dataclass(frozen=True, slots=True)
class AgentNote:
    """A human agent wrote a private note: it may be a command to the bot (`/bot`, `/pause 30`)."""

    conversation: Conversation
    message_id: int
    agent_id: int | None
    text: str

    @property
    def dedupe_key(self) -> str:
        return f"message:{self.message_id}"


@dataclass(frozen=True, slots=True)
class ConversationChanged:
    """A conversation event: its status, its assignee or another attribute changed."""

    conversation: Conversation
    status_changed: bool  # a transition to `conversation.status`, not just a mention of it
    assignee_type: str | None  # "User", "AgentBot" or None
    assignee_id: int | None
    assigned: bool  # the assignee changed in this event
    previous_status: str | None = None  # from `changed_attributes`, when it says
    labels_added: tuple[str, ...] = ()  # labels in `changed_attributes.label_list` that are new
    # A hash of the whole payload: its `updated_at` (to the microsecond) makes every real
    # change unique, while a captured event replayed under a new delivery id is the same.
    fingerprint: str = ""

    @property
    def dedupe_key(self) -> str:
        return f"conversation:{self.fingerprint}"


@dataclass(frozen=True, slots=True)
class DeliveryFailed:
    """The channel refused one of the bot's messages (`content_attributes.external_error`)."""

    conversation: Conversation
    message_id: int
    error: str

    @property
    def dedupe_key(self) -> str:
        # The failed message is updated again later (status, translations): act once.
        return f"failed:{self.message_id}"


@dataclass(frozen=True, slots=True)
class WidgetOpened:
    """A visitor opened the web widget of a conversation (`webwidget_triggered`)."""

    conversation: Conversation
    contact: Contact

    @property
    def dedupe_key(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class Ignored:
    event: str
    reason: str
    account_id: int | None = None
    conversation_id: int | None = None
    malformed: bool = False


Event = CustomerMessage | OptionSubmitted  # what the engine acts on
# what changes who holds the chat
Notice = AgentMessage | AgentNote | ConversationChanged | DeliveryFailed
CONVERSATION_EVENTS = (
    "conversation_status_changed",
    "conversation_updated",
    "conversation_opened",
    "conversation_resolved",
)
# Events that always mean the status changed (conversation_updated may be about anything).
STATUS_EVENTS = ("conversation_status_changed", "conversation_opened", "conversation_resolved")


class _Malformed(Exception):
    pass


def parse(payload: object) -> Event | Notice | WidgetOpened | Ignored:
    """Decide what an Agent Bot webhook payload means for the bot."""
    if not isinstance(payload, Mapping):
        return Ignored("?", "the body is not a JSON object", malformed=True)
    name = payload.get("event")
    if not isinstance(name, str):
        return Ignored("?", "no 'event' field", malformed=True)
    try:
        if name == "message_created":
            return _message_created(payload)
        if name == "message_updated":
            return _message_updated(payload)
        if name in CONVERSATION_EVENTS:
            return _conversation_changed(name, payload)
        if name == "webwidget_triggered":
            return _widget_opened(payload)
    except _Malformed as exc:
        conv = payload if name in CONVERSATION_EVENTS else payload.get("conversation")
        return Ignored(
            name,
            f"unexpected shape: {exc}",
            account_id=_maybe_int(_get(payload, "account", "id")),
            conversation_id=_maybe_int(conv.get("id")) if isinstance(conv, Mapping) else None,
            malformed=True,
        )
    return Ignored(name, "event not handled")


def _message_created(payload: Mapping[str, Any]) -> Event | Notice | Ignored:
    conversation = _conversation(payload)
    sender = payload.get("sender")
    sender_type = sender.get("type") if isinstance(sender, Mapping) else None
    message_type = payload.get("message_type")
    if message_type == "outgoing" and sender_type == "user" and payload.get("private") is not True:
        # An agent answered the customer, whatever the status: humans hold the chat now.
        return AgentMessage(
            conversation=conversation,
            message_id=_int(payload.get("id"), "id"),
            agent_id=_maybe_int(sender.get("id")) if isinstance(sender, Mapping) else None,
        )
    if message_type == "outgoing" and sender_type == "user" and payload.get("private") is True:
        # An agent's private note: lifecycle.py reads the bot's commands in it.
        return AgentNote(
            conversation=conversation,
            message_id=_int(payload.get("id"), "id"),
            agent_id=_maybe_int(_get(payload, "sender", "id")),
            text=_str(payload.get("content")) or "",
        )
    ignored = _gate(payload, conversation, REACHABLE_STATUSES)
    if ignored is not None:
        return ignored
    if message_type != "incoming":
        return _ignored(payload, conversation, f"message_type {message_type!r}")
    if sender_type not in (None, "contact"):
        return _ignored(payload, conversation, f"sender type {sender_type!r}")
    content = payload.get("content")
    if content is not None and not isinstance(content, str):
        raise _Malformed("'content' is not a string")
    attributes = payload.get("content_attributes")
    in_reply_to = None
    text = content or ""
    if isinstance(attributes, Mapping):
        in_reply_to = _maybe_int(attributes.get("in_reply_to"))
        email = attributes.get("email")
        if isinstance(email, Mapping):
            text = email_reply(email, text)
    return CustomerMessage(
        conversation=conversation,
        contact=_contact(payload, sender),
        message_id=_int(payload.get("id"), "id"),
        text=text,
        in_reply_to=in_reply_to,
        attachments=_attachments(payload.get("attachments")),
    )


def email_reply(email: Mapping[str, Any], content: str) -> str:
    """What the customer wrote in an e-mail, without the quoted history.

    Chatwoot's MailPresenter keeps the mail in `content_attributes.email`; `text_content.quoted`
    and `html_content.quoted` are the reply trimmed of the quoted history (EmailReplyTrimmer).
    The text part wins; an HTML-only mail's trimmed reply is read as text; else `content`.
    """
    text = _get(email, "text_content", "quoted")
    if isinstance(text, str) and text.strip():
        return text.strip()
    html = _get(email, "html_content", "quoted")
    if isinstance(html, str) and html.strip():
        reader = _HtmlText()
        reader.feed(html)
        reader.close()
        read = reader.text()
        if read:
            return read
    return content


class _HtmlText(HTMLParser):
    """The text of an HTML fragment: tags dropped, entities decoded, blocks on their own lines."""

    BREAKS = frozenset({"br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "blockquote"})
    HIDDEN = frozenset({"style", "script", "head", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.HIDDEN:
            self.hidden += 1
        elif tag in self.BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in self.BREAKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)

    def text(self) -> str:
        lines = (" ".join(line.split()) for line in "".join(self.parts).splitlines())
        kept: list[str] = []
        for line in lines:
            if line or (kept and kept[-1]):
                kept.append(line)
        return "\n".join(kept).strip()


def _attachments(raw: object) -> tuple[Attachment, ...]:
    """The message's attachments; an item without a `file_type` is skipped."""
    if not isinstance(raw, list):
        return ()
    found = []
    for item in raw:
        if not isinstance(item, Mapping) or not isinstance(item.get("file_type"), str):
            continue
        found.append(
            Attachment(
                kind=item["file_type"],
                url=_str(item.get("data_url")),
                title=_str(item.get("fallback_title")),
                latitude=_float(item.get("coordinates_lat")),
                longitude=_float(item.get("coordinates_long")),
            )
        )
    return tuple(found)


def _message_updated(payload: Mapping[str, Any]) -> Event | Notice | Ignored:
    conversation = _conversation(payload)
    attributes = payload.get("content_attributes")
    sender = payload.get("sender")
    from_bot = isinstance(sender, Mapping) and sender.get("type") == "agent_bot"
    failure = attributes.get("external_error") if isinstance(attributes, Mapping) else None
    if from_bot and failure:
        return DeliveryFailed(
            conversation=conversation,
            message_id=_int(payload.get("id"), "id"),
            error=str(failure),
        )
    submitted = attributes.get("submitted_values") if isinstance(attributes, Mapping) else None
    if payload.get("content_type") != "input_select" or not submitted:
        return _ignored(payload, conversation, "message update without submitted_values")
    ignored = _gate(payload, conversation)
    if ignored is not None:
        return ignored
    if not isinstance(submitted, list) or not isinstance(submitted[0], Mapping):
        raise _Malformed("'submitted_values' is not a list of objects")
    choice = submitted[0]
    title = choice.get("title")
    value = choice.get("value")
    return OptionSubmitted(
        conversation=conversation,
        contact=_contact(payload, None),
        message_id=_int(payload.get("id"), "id"),
        title=title if isinstance(title, str) else "",
        value=value if isinstance(value, str) else str(value) if value is not None else "",
    )


def _conversation_changed(name: str, payload: Mapping[str, Any]) -> ConversationChanged:
    conversation = _conversation_of(payload, payload)
    changed: set[str] = set()
    raw = payload.get("changed_attributes")
    if isinstance(raw, list):
        for item in raw:
            if isinstance(item, Mapping):
                changed.update(str(k) for k in item)
    previous = _previous(raw, "status")
    before = _previous(raw, "label_list")
    added: tuple[str, ...] = ()
    if "label_list" in changed:
        old = set(_label_names(before))
        added = tuple(label for label in conversation.labels if label not in old)
    meta = payload.get("meta")
    assignee = meta.get("assignee") if isinstance(meta, Mapping) else None
    assignee_type = meta.get("assignee_type") if isinstance(meta, Mapping) else None
    return ConversationChanged(
        conversation=conversation,
        status_changed=name in STATUS_EVENTS or "status" in changed,
        assignee_type=assignee_type if isinstance(assignee_type, str) else None,
        assignee_id=_maybe_int(assignee.get("id")) if isinstance(assignee, Mapping) else None,
        assigned="assignee_id" in changed,
        previous_status=previous if isinstance(previous, str) else None,
        labels_added=added,
        fingerprint=fingerprint(payload),
    )


def _previous(raw: object, key: str) -> object:
    """`changed_attributes: [{key: {previous_value: X, current_value: Y}}]` -> X (or None)."""
    if not isinstance(raw, list):
        return None
    for item in raw:
        change = item.get(key) if isinstance(item, Mapping) else None
        if isinstance(change, Mapping):
            return change.get("previous_value")
    return None


def _label_names(value: object) -> list[str]:
    """A label list as Chatwoot gives it: a list of names or one comma-separated string."""
    if isinstance(value, list):
        return [x for x in value if isinstance(x, str)]
    if isinstance(value, str):
        return [x.strip() for x in value.split(",") if x.strip()]
    return []


def fingerprint(payload: Mapping[str, Any]) -> str:
    """A hash of the payload's content, the same however its keys are ordered."""
    text = json.dumps(payload, sort_keys=True, ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _widget_opened(payload: Mapping[str, Any]) -> WidgetOpened | Ignored:
    current = payload.get("current_conversation")
    if current is None:
        # The widget opened before any conversation exists: there is nowhere to write yet.
        return Ignored(
            "webwidget_triggered",
            "no conversation yet",
            account_id=_maybe_int(_get(payload, "account", "id")),
        )
    if not isinstance(current, Mapping):
        raise _Malformed("'current_conversation' is not an object")
    conversation = _conversation_of(payload, current)
    if conversation.status != ACTIONABLE_STATUS:
        return _ignored(payload, conversation, f"conversation is {conversation.status}")
    return WidgetOpened(conversation, _contact(payload, payload.get("contact")))


def _gate(
    payload: Mapping[str, Any],
    conversation: Conversation,
    statuses: tuple[str, ...] = (ACTIONABLE_STATUS,),
) -> Ignored | None:
    """Act only on public messages of pending conversations (and, for a customer's message,
    of open ones too: lifecycle.py decides whether a snoozed flow wakes up or humans hold it)."""
    if payload.get("private") is True:
        return _ignored(payload, conversation, "private note")
    if conversation.status not in statuses:
        return _ignored(payload, conversation, f"conversation is {conversation.status}")
    return None


def _ignored(payload: Mapping[str, Any], conversation: Conversation, reason: str) -> Ignored:
    return Ignored(
        str(payload.get("event")),
        reason,
        account_id=conversation.account_id,
        conversation_id=conversation.id,
    )


def _conversation(payload: Mapping[str, Any]) -> Conversation:
    conv = payload.get("conversation")
    if not isinstance(conv, Mapping):
        raise _Malformed("no 'conversation' object")
    return _conversation_of(payload, conv)


def _conversation_of(payload: Mapping[str, Any], conv: Mapping[str, Any]) -> Conversation:
    account_id = _maybe_int(_get(payload, "account", "id"))
    if account_id is None:
        account_id = _maybe_int(_get(conv, "account", "id"))
    if account_id is None:
        raise _Malformed("no 'account.id'")
    status = conv.get("status")
    if not isinstance(status, str):
        raise _Malformed("no 'conversation.status'")
    labels = conv.get("labels")
    custom = conv.get("custom_attributes")
    inbox_id = _maybe_int(conv.get("inbox_id"))
    if inbox_id is None:
        inbox_id = _maybe_int(_get(payload, "inbox", "id"))
    channel = conv.get("channel")
    extra = conv.get("additional_attributes")
    kind = extra.get("type") if isinstance(extra, Mapping) else None
    language = _str(_get(conv, "additional_attributes", "conversation_language")) or _str(
        _get(conv, "additional_attributes", "browser_language")
    )
    return Conversation(
        account_id=account_id,
        id=_int(conv.get("id"), "conversation.id"),
        inbox_id=inbox_id,
        status=status,
        channel=channel if isinstance(channel, str) else None,
        labels=tuple(x for x in labels if isinstance(x, str)) if isinstance(labels, list) else (),
        can_reply=conv.get("can_reply") is not False,
        custom_attributes=dict(custom) if isinstance(custom, Mapping) else {},
        kind=kind if isinstance(kind, str) else None,
        language=language,
    )


def _contact(payload: Mapping[str, Any], sender: object) -> Contact:
    # The top-level sender is the contact for incoming messages; for the widget's update of
    # the bot's own message, the contact is the conversation's meta.sender.
    if not isinstance(sender, Mapping):
        sender = _get(payload, "conversation", "meta", "sender")
    if not isinstance(sender, Mapping):
        return Contact(id=None, name="")
    custom = sender.get("custom_attributes")
    return Contact(
        id=_maybe_int(sender.get("id")),
        name=_str(sender.get("name")) or "",
        phone_number=_str(sender.get("phone_number")),
        email=_str(sender.get("email")),
        identifier=_str(sender.get("identifier")),
        custom_attributes=dict(custom) if isinstance(custom, Mapping) else {},
    )


def _get(mapping: Mapping[str, Any], *keys: str) -> object:
    value: object = mapping
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _maybe_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return bigint(value)
    if isinstance(value, str):
        return ascii_int(value)
    return None


def _int(value: object, name: str) -> int:
    result = _maybe_int(value)
    if result is None:
        raise _Malformed(f"'{name}' is not an integer")
    return result
