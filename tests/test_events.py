"""events.parse(): recorded Chatwoot payloads -> typed events, or Ignored with the reason."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentbot.events import (
    AgentMessage,
    AgentNote,
    Contact,
    ConversationChanged,
    CustomerMessage,
    DeliveryFailed,
    Ignored,
    OptionSubmitted,
    WidgetOpened,
    parse,
)
from tests.conftest import SAMPLES


def sample(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SAMPLES / f"{name}.json").read_text())
    return data


TEXT = sample("message_created_whatsapp_incoming_text")
BUTTON = sample("message_created_whatsapp_button_reply")
WIDGET = sample("message_updated_webwidget_input_select")


def changed(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(base)
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return data


def test_incoming_whatsapp_text():
    """An incoming WhatsApp text in a pending conversation is a CustomerMessage."""
    event = parse(TEXT)
    assert isinstance(event, CustomerMessage)
    assert event.text == "Oi, quero saber do meu pedido 4417"
    assert event.message_id == 90321
    assert event.dedupe_key == "message:90321"
    assert (event.conversation.account_id, event.conversation.id) == (1, 1287)
    assert event.conversation.inbox_id == 7
    assert event.conversation.channel == "Channel::Whatsapp"
    assert event.contact == Contact(
        id=4821, name="Maria Silva", phone_number="+5511987654321", email=None, identifier=None
    )


def test_button_reply_carries_in_reply_to():
    """A WhatsApp button reply is text (the title) tied to the question it answers."""
    event = parse(BUTTON)
    assert isinstance(event, CustomerMessage)
    assert event.text == "Rastrear pedido"
    assert event.in_reply_to == 90325


def test_widget_submitted_values():
    """The widget's answer arrives as an update of the bot's own input_select message."""
    event = parse(WIDGET)
    assert isinstance(event, OptionSubmitted)
    assert (event.title, event.value) == ("Track my order", "track_order")
    assert event.dedupe_key == "submitted:90410"
    assert event.contact.name == "billowing-frog-482"


IGNORED = [
    (
        "outgoing (the bot's own or an agent's)",
        changed(TEXT, "message_type", "outgoing"),
        "message_type 'outgoing'",
    ),
    ("template message", changed(TEXT, "message_type", "template"), "message_type 'template'"),
    ("private note", changed(TEXT, "private", True), "private note"),
    (
        "snoozed conversation",
        changed(TEXT, "conversation.status", "snoozed"),
        "conversation is snoozed",
    ),
    (
        "widget answer in an open conversation",
        changed(WIDGET, "conversation.status", "open"),
        "conversation is open",
    ),
    (
        "resolved conversation",
        changed(TEXT, "conversation.status", "resolved"),
        "conversation is resolved",
    ),
    (
        "agent sender",
        changed(TEXT, "sender", {"id": 3, "name": "Ana", "type": "user"}),
        "sender type 'user'",
    ),
    (
        "delivery status update",
        changed(WIDGET, "content_attributes", {}),
        "message update without submitted_values",
    ),
    (
        "widget answer in a resolved conversation",
        changed(WIDGET, "conversation.status", "resolved"),
        "conversation is resolved",
    ),
    ("unknown event", {"event": "contact_created", "id": 5140}, "event not handled"),
]


@pytest.mark.parametrize(
    ("payload", "reason"), [c[1:] for c in IGNORED], ids=[c[0] for c in IGNORED]
)
def test_ignored(payload, reason):
    """What docs/guarantees.md §1 does not let the bot act on is Ignored, with the reason."""
    event = parse(payload)
    assert isinstance(event, Ignored)
    assert event.reason == reason
    assert not event.malformed


MALFORMED = [
    ("not an object", [1, 2], "the body is not a JSON object"),
    ("no event", {"id": 1}, "no 'event' field"),
    (
        "no conversation",
        changed(TEXT, "conversation", KeyError),
        "unexpected shape: no 'conversation' object",
    ),
    (
        "no account",
        changed(changed(TEXT, "account", KeyError), "conversation.account", KeyError),
        "unexpected shape: no 'account.id'",
    ),
    (
        "no status",
        changed(TEXT, "conversation.status", KeyError),
        "unexpected shape: no 'conversation.status'",
    ),
    ("id not a number", changed(TEXT, "id", "abc"), "unexpected shape: 'id' is not an integer"),
    (
        "content not text",
        changed(TEXT, "content", {"a": 1}),
        "unexpected shape: 'content' is not a string",
    ),
    (
        "submitted_values not objects",
        changed(WIDGET, "content_attributes.submitted_values", ["x"]),
        "unexpected shape: 'submitted_values' is not a list of objects",
    ),
]


@pytest.mark.parametrize(
    ("payload", "reason"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_malformed(payload, reason):
    """JSON of the wrong shape is Ignored as malformed, naming what is wrong."""
    event = parse(payload)
    assert isinstance(event, Ignored)
    assert event.malformed
    assert event.reason == reason


def test_account_from_conversation_and_string_ids():
    """The account may come from the conversation; numeric strings are accepted as ids."""
    payload = changed(changed(TEXT, "account", KeyError), "id", "90321")
    event = parse(payload)
    assert isinstance(event, CustomerMessage)
    assert event.conversation.account_id == 1
    assert event.message_id == 90321


@pytest.mark.parametrize(
    ("attributes", "language"),
    [
        ({"conversation_language": "en", "browser_language": "pt-BR"}, "en"),
        ({"browser_language": "pt-BR"}, "pt-BR"),
        ({"conversation_language": ""}, None),
        ("nada", None),
    ],
)
def test_the_conversation_language_chatwoot_gives(attributes: Any, language: str | None) -> None:
    """Chatwoot's conversation_language, else the widget's browser_language, is the language."""
    event = parse(changed(TEXT, "conversation.additional_attributes", attributes))
    assert isinstance(event, CustomerMessage)
    assert event.conversation.language == language


def test_missing_optional_parts():
    """No sender, no content and no inbox_id still make a message (an attachment, say)."""
    payload = changed(
        changed(changed(TEXT, "sender", KeyError), "content", None),
        "conversation.inbox_id",
        KeyError,
    )
    payload["conversation"]["meta"] = {}
    event = parse(payload)
    assert isinstance(event, CustomerMessage)
    assert event.text == ""
    assert event.contact == Contact(id=None, name="")
    assert event.conversation.inbox_id == 7  # from the top-level inbox


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)


@given(JSON)
def test_parse_never_raises(payload: Any) -> None:
    """Any JSON at all gives an event or Ignored, never an exception."""
    assert isinstance(parse(payload), CustomerMessage | OptionSubmitted | Ignored)


@given(st.sampled_from(["message_created", "message_updated"]), JSON, JSON, JSON)
def test_parse_message_shapes_never_raise(event: str, conversation: Any, sender: Any, attrs: Any):
    """Message events with any conversation, sender or attributes never raise."""
    payload = {
        **TEXT,
        "event": event,
        "conversation": conversation,
        "sender": sender,
        "content_attributes": attrs,
        "content_type": "input_select",
    }
    assert isinstance(parse(payload), CustomerMessage | OptionSubmitted | Ignored)


def test_agent_message() -> None:
    """An agent's public reply is an AgentMessage, whatever the status."""
    payload = changed(changed(TEXT, "message_type", "outgoing"), "conversation.status", "open")
    payload["sender"] = {"id": 3, "name": "Ana", "type": "user"}
    event = parse(payload)
    assert isinstance(event, AgentMessage)
    assert (event.message_id, event.agent_id, event.dedupe_key) == (90321, 3, "message:90321")


def test_customer_message_in_open_conversation() -> None:
    """A customer's message in an open conversation reaches lifecycle.py, which decides."""
    event = parse(changed(TEXT, "conversation.status", "open"))
    assert isinstance(event, CustomerMessage)
    assert event.conversation.status == "open"


def test_agent_note() -> None:
    """An agent's private note is an AgentNote with its text (a command, maybe)."""
    payload = changed(changed(TEXT, "message_type", "outgoing"), "private", True)
    payload["sender"] = {"id": 3, "name": "Ana", "type": "user"}
    payload["content"] = " /pause 30 "
    event = parse(payload)
    assert isinstance(event, AgentNote)
    assert (event.message_id, event.agent_id, event.text) == (90321, 3, " /pause 30 ")
    assert event.dedupe_key == "message:90321"
    payload["content"] = None
    empty = parse(payload)
    assert isinstance(empty, AgentNote)
    assert empty.text == ""
    payload["sender"] = {"id": 2, "name": "Acme Bot", "type": "agent_bot"}
    assert isinstance(parse(payload), Ignored)  # the bot's own note (its handoff summary)


TRANSITIONS: list[tuple[str, Any, str | None, tuple[str, ...]]] = [
    (
        "snoozed to open",
        [{"status": {"previous_value": "snoozed", "current_value": "open"}}],
        "snoozed",
        (),
    ),
    ("label added to a list", [{"label_list": {"previous_value": ["vip"]}}], None, ("bot",)),
    ("label added to a string", [{"label_list": {"previous_value": "vip, x"}}], None, ("bot",)),
    ("labels from nothing", [{"label_list": {"previous_value": None}}], None, ("vip", "bot")),
    ("no label change", [{"assignee_id": {}}], None, ()),
    ("no changed attributes", None, None, ()),
]


@pytest.mark.parametrize(
    ("attributes", "previous", "added"),
    [c[1:] for c in TRANSITIONS],
    ids=[c[0] for c in TRANSITIONS],
)
def test_conversation_transitions(
    attributes: Any, previous: str | None, added: tuple[str, ...]
) -> None:
    """changed_attributes give the previous status and the labels just added."""
    payload = {**sample("conversation_status_changed_bot_handoff"), "event": "conversation_updated"}
    payload["changed_attributes"] = attributes
    payload["labels"] = ["vip", "bot"]
    event = parse(payload)
    assert isinstance(event, ConversationChanged)
    assert (event.previous_status, event.labels_added) == (previous, added)


def test_delivery_failed() -> None:
    """The bot's own message updated with external_error is a DeliveryFailed."""
    payload = changed(TEXT, "event", "message_updated")
    payload.update(
        message_type="outgoing",
        sender={"id": 2, "name": "Acme Bot", "type": "agent_bot"},
        content_attributes={"external_error": "(#131047) Re-engagement message"},
    )
    event = parse(payload)
    assert isinstance(event, DeliveryFailed)
    assert event.error == "(#131047) Re-engagement message"
    assert event.dedupe_key == "failed:90321"


CHANGES: list[tuple[str, str, Any, bool, bool]] = [
    ("status changed", "conversation_status_changed", None, True, False),
    ("opened", "conversation_opened", None, True, False),
    ("resolved", "conversation_resolved", None, True, False),
    ("updated: status", "conversation_updated", [{"status": {}}, "junk"], True, False),
    ("updated: assignee", "conversation_updated", [{"assignee_id": {}}], False, True),
    ("updated: labels", "conversation_updated", [{"label_list": {}}], False, False),
]


@pytest.mark.parametrize(
    ("name", "attributes", "status_changed", "assigned"),
    [c[1:] for c in CHANGES],
    ids=[c[0] for c in CHANGES],
)
def test_conversation_changed(
    name: str, attributes: Any, status_changed: bool, assigned: bool
) -> None:
    """Conversation events say whether the status or the assignee changed in them."""
    payload = {**sample("conversation_status_changed_bot_handoff"), "event": name}
    payload["changed_attributes"] = attributes
    payload["meta"] = {**payload["meta"], "assignee": {"id": 3}, "assignee_type": "User"}
    event = parse(payload)
    assert isinstance(event, ConversationChanged)
    assert (event.status_changed, event.assigned) == (status_changed, assigned)
    assert (event.assignee_type, event.assignee_id) == ("User", 3)
    assert event.conversation.id == 1287
    # A replay under a new delivery id is the same content: the same key.
    same = parse(dict(reversed(payload.items())))
    assert isinstance(same, ConversationChanged)
    assert event.dedupe_key == same.dedupe_key
    other = parse({**payload, "updated_at": payload["updated_at"] + 0.000001})
    assert isinstance(other, ConversationChanged)
    assert event.dedupe_key != other.dedupe_key


def test_conversation_changed_without_meta() -> None:
    """No meta: no assignee; a conversation event without an id is malformed."""
    payload = {**sample("conversation_status_changed_bot_handoff"), "meta": None}
    event = parse(payload)
    assert isinstance(event, ConversationChanged)
    assert (event.assignee_type, event.assignee_id) == (None, None)
    broken = parse({**payload, "id": None})
    assert isinstance(broken, Ignored)
    assert broken.malformed
    assert broken.conversation_id is None


def test_boolean_ids_are_not_ids() -> None:
    """JSON true is not the number 1."""
    event = parse(changed(TEXT, "id", True))
    assert isinstance(event, Ignored)
    assert event.reason == "unexpected shape: 'id' is not an integer"


def test_in_reply_to_needs_attributes() -> None:
    """A message whose content_attributes is not an object has no in_reply_to."""
    event = parse(changed(BUTTON, "content_attributes", "x"))
    assert isinstance(event, CustomerMessage)
    assert event.in_reply_to is None


WIDGET_OPENED = sample("webwidget_triggered")


def test_widget_opened() -> None:
    """The widget opened on a pending conversation: its contact and conversation."""
    event = parse(WIDGET_OPENED)
    assert isinstance(event, WidgetOpened)
    assert (event.conversation.id, event.conversation.inbox_id) == (1290, 3)
    assert event.conversation.channel == "Channel::WebWidget"
    assert (event.contact.id, event.contact.name) == (4830, "billowing-frog-482")
    assert event.dedupe_key is None


WIDGET_IGNORED = [
    (
        "no conversation yet",
        {**WIDGET_OPENED, "current_conversation": None},
        "no conversation yet",
        False,
    ),
    (
        "resolved conversation",
        changed(WIDGET_OPENED, "current_conversation.status", "resolved"),
        "conversation is resolved",
        False,
    ),
    (
        "conversation not an object",
        {**WIDGET_OPENED, "current_conversation": "x"},
        "unexpected shape: 'current_conversation' is not an object",
        True,
    ),
]


@pytest.mark.parametrize(
    ("payload", "reason", "malformed"),
    [c[1:] for c in WIDGET_IGNORED],
    ids=[c[0] for c in WIDGET_IGNORED],
)
def test_widget_opened_ignored(payload: dict[str, Any], reason: str, malformed: bool) -> None:
    """A widget opened with no conversation, or on one not pending, needs nothing."""
    event = parse(payload)
    assert isinstance(event, Ignored)
    assert (event.reason, event.malformed) == (reason, malformed)


def test_email_reads_the_trimmed_reply() -> None:
    """An e-mail's text is text_content.quoted, without the quoted history under it."""
    event = parse(sample("message_created_email_reply"))
    assert isinstance(event, CustomerMessage)
    assert event.text == "1"


@pytest.mark.parametrize(
    ("html", "content", "text"),
    [
        ("<p>Quero o <b>Plano&nbsp;Pro</b></p>", "x", "Quero o Plano Pro"),
        (
            "<style>p {color: red}</style><div>Oi</div><br><br><br><div>tudo &amp; bem?</div>",
            "x",
            "Oi\n\ntudo & bem?",
        ),
        ("<style>só estilo</style></style>", "o conteúdo", "o conteúdo"),
        ("   ", "o conteúdo", "o conteúdo"),
    ],
)
def test_email_html_only_is_read_as_text(html: str, content: str, text: str) -> None:
    """An HTML-only e-mail's trimmed reply is read as text (tags and styles out, entities
    decoded); when nothing readable is left, the message's content is used."""
    data = sample("message_created_email_html_only")
    data["content"] = content
    data["content_attributes"]["email"]["html_content"]["quoted"] = html
    event = parse(data)
    assert isinstance(event, CustomerMessage)
    assert event.text == text


def test_attachments_become_part_of_the_event() -> None:
    """Attachments come with the message: type, URL, a location's coordinates and title; an
    item without a file_type is skipped and bad coordinates are left out."""
    location = parse(sample("message_created_whatsapp_location"))
    assert isinstance(location, CustomerMessage)
    assert location.text == ""
    [place] = location.attachments
    assert place.as_value() == {
        "type": "location",
        "url": "https://maps.google.com/?q=-23.5614,-46.6559",
        "title": "Av. Paulista, 1578, São Paulo",
        "latitude": -23.5614,
        "longitude": -46.6559,
    }
    data = sample("message_created_whatsapp_image")
    data["attachments"] = [{"id": 1}, "x", {**data["attachments"][0], "coordinates_lat": True}]
    image = parse(data)
    assert isinstance(image, CustomerMessage)
    [photo] = image.attachments
    assert (photo.kind, photo.latitude, photo.title) == ("image", None, None)
    assert photo.as_value() == {"type": "image", "url": data["attachments"][2]["data_url"]}
    assert parse({**data, "attachments": "nenhum"}).attachments == ()  # type: ignore[union-attr]


def test_instagram_through_a_facebook_page_is_marked() -> None:
    """A Facebook Page conversation of Instagram direct messages carries its type."""
    event = parse(sample("message_created_instagram_via_facebook_page"))
    assert isinstance(event, CustomerMessage)
    assert (event.conversation.channel, event.conversation.kind) == (
        "Channel::FacebookPage",
        "instagram_direct_message",
    )
