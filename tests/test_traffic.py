"""Real Chatwoot traffic end to end: e-mail replies, media, quote-replies, Instagram through a
Facebook Page and channel limits, posted as the payloads in tests/samples/ (built from
Chatwoot's source, named in each file's `_source`)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from agentbot.events import CustomerMessage, parse
from tests.conftest import SAMPLES
from tests.harness import incoming, running, write_flow

QUESTION = "Olá Maria Silva! Você já é nosso cliente?"
PRODUCT = "Qual produto te interessa?"


def sample(name: str, conversation_id: int, message_id: int) -> dict[str, Any]:
    """A sample payload with these ids."""
    data: dict[str, Any] = copy.deepcopy(json.loads((SAMPLES / name).read_text()))
    data["id"] = message_id
    data["conversation"]["id"] = conversation_id
    data["conversation"]["messages"][0].update(id=message_id, conversation_id=conversation_id)
    return data


def variables(h: Any, conversation_id: int) -> dict[str, Any]:
    [(found,)] = h.query(
        "select variables from workflow_conversations where conversation_id = %s",
        (conversation_id,),
    )
    return dict(found)


INPUT_FLOW = """
name: {name}
trigger: {{default: true}}
blocks:
  pergunta:
    message: "Descreva o problema"
    input: {{type: {kind}, save_as: resposta}}
    next_block: fim
  fim:
    message: "Recebido: {{{{resposta}}}}"
"""


def input_flow(kind: str) -> str:
    return INPUT_FLOW.format(name=f"entrada_{kind}", kind=kind)


def test_samples_name_their_source() -> None:
    """Every webhook payload sample names the Chatwoot source it was built from; the message
    samples built for real traffic are customer messages."""
    for path in SAMPLES.glob("*.json"):
        if path.name.startswith(("message_", "conversation_", "webwidget_")):
            source = json.loads(path.read_text())["_source"]
            assert source.startswith("Chatwoot "), path.name
    names = [
        "message_created_email_reply.json",
        "message_created_email_html_only.json",
        "message_created_whatsapp_image.json",
        "message_created_whatsapp_audio.json",
        "message_created_whatsapp_location.json",
        "message_created_whatsapp_contact.json",
        "message_created_instagram_via_facebook_page.json",
    ]
    for name in names:
        data = json.loads((SAMPLES / name).read_text())
        assert "Chatwoot" in data["_source"], name
        assert isinstance(parse(data), CustomerMessage), name


@pytest.mark.anyio
async def test_email_reply_is_read_without_the_quoted_history(db_dsn: str, tmp_path: Path) -> None:
    """An e-mail "1" above the quoted question answers it (text_content.quoted), not a miss."""
    async with running(db_dsn, write_flow(tmp_path)) as h:
        first = sample("message_created_email_reply.json", 60, 1)
        first["content_attributes"] = {}
        first["content"] = "Olá"
        await h.post(first)
        await h.until(lambda: len(h.sent(60)) == 1)
        assert h.contents(60) == [f"{QUESTION}\n\n1. Sim\n2. Não"]
        await h.post(sample("message_created_email_reply.json", 60, 2))
        await h.until(lambda: len(h.sent(60)) == 2)
        assert h.contents(60)[1].startswith(PRODUCT)
        assert h.fake.violations == []


@pytest.mark.anyio
async def test_html_only_email_is_read_as_text(db_dsn: str, tmp_path: Path) -> None:
    """An HTML-only e-mail's trimmed reply (html_content.quoted) is the answer, as text."""
    async with running(db_dsn, write_flow(tmp_path, input_flow("text"), "t.yaml")) as h:
        await h.post(incoming(61, 1, "Oi"))
        await h.until(lambda: len(h.sent(61)) == 1)
        await h.post(sample("message_created_email_html_only.json", 61, 2))
        await h.until(lambda: len(h.sent(61)) == 2)
        assert h.contents(61)[1] == "Recebido: Quero o Plano Pro"


@pytest.mark.anyio
async def test_photo_at_a_buttons_question_asks_again(db_dsn: str, tmp_path: Path) -> None:
    """Photos where a button is wanted get the question again and never count toward the
    handoff: two photos do not hand off."""
    async with running(db_dsn, write_flow(tmp_path)) as h:
        await h.post(incoming(62, 1, "Oi"))
        await h.until(lambda: len(h.sent(62)) == 1)
        for message_id in (2, 3, 4):
            await h.post(sample("message_created_whatsapp_image.json", 62, message_id))
        await h.until(lambda: len(h.sent(62)) == 4)
        assert h.contents(62) == [QUESTION] * 4
        assert h.query("select status, misses from workflow_conversations") == [("active", 0)]
        assert h.fake.status(62) == "pending"
        await h.post(incoming(62, 5, "Sim"))
        await h.until(lambda: len(h.sent(62)) == 5)
        assert h.contents(62)[-1] == PRODUCT


@pytest.mark.anyio
async def test_voice_note_answers_a_free_text_question(db_dsn: str, tmp_path: Path) -> None:
    """A voice note answers "Descreva o problema": the caption (none) in the variable, the
    audio in `resposta_attachments`."""
    async with running(db_dsn, write_flow(tmp_path, input_flow("text"), "t.yaml")) as h:
        await h.post(incoming(63, 1, "Oi"))
        await h.until(lambda: len(h.sent(63)) == 1)
        await h.post(sample("message_created_whatsapp_audio.json", 63, 2))
        await h.until(lambda: len(h.sent(63)) == 2)
        assert h.contents(63)[1] == "Recebido: "
        saved = variables(h, 63)
        assert saved["resposta"] == ""
        [audio] = saved["resposta_attachments"]
        assert audio["type"] == "audio"
        assert audio["url"].endswith("/audio.ogg")


@pytest.mark.anyio
async def test_location_keeps_its_coordinates(db_dsn: str, tmp_path: Path) -> None:
    """A location sent at a free-text question keeps its coordinates and name."""
    async with running(db_dsn, write_flow(tmp_path, input_flow("text"), "t.yaml")) as h:
        await h.post(incoming(64, 1, "Oi"))
        await h.until(lambda: len(h.sent(64)) == 1)
        await h.post(sample("message_created_whatsapp_location.json", 64, 2))
        await h.until(lambda: len(h.sent(64)) == 2)
        [place] = variables(h, 64)["resposta_attachments"]
        assert place == {
            "type": "location",
            "url": "https://maps.google.com/?q=-23.5614,-46.6559",
            "title": "Av. Paulista, 1578, São Paulo",
            "latitude": -23.5614,
            "longitude": -46.6559,
        }


@pytest.mark.anyio
async def test_contact_card_answers_a_phone_question(db_dsn: str, tmp_path: Path) -> None:
    """A contact card at a phone question answers with the card's number, not its name."""
    async with running(db_dsn, write_flow(tmp_path, input_flow("phone"), "p.yaml")) as h:
        await h.post(incoming(65, 1, "Oi"))
        await h.until(lambda: len(h.sent(65)) == 1)
        await h.post(sample("message_created_whatsapp_contact.json", 65, 2))
        await h.until(lambda: len(h.sent(65)) == 2)
        assert h.contents(65)[1] == "Recebido: +5511912345678"


@pytest.mark.anyio
async def test_quote_reply_with_other_text_is_an_ordinary_message(
    db_dsn: str, tmp_path: Path
) -> None:
    """Quoting an older menu and typing "atendente" reaches a human; quoting it and typing an
    answer to the current question answers it."""
    async with running(db_dsn, write_flow(tmp_path)) as h:
        for conversation_id, typed in ((66, "atendente"), (67, "Plano Pro")):
            first = conversation_id * 10
            await h.post(incoming(conversation_id, first + 1, "Oi"))
            await h.until(lambda: len(h.sent(conversation_id)) == 1)  # noqa: B023
            await h.post(incoming(conversation_id, first + 2, "Sim"))
            await h.until(lambda: len(h.sent(conversation_id)) == 2)  # noqa: B023
            quoted = incoming(conversation_id, first + 3, typed)
            quoted["content_attributes"] = {"in_reply_to": h.sent(conversation_id)[0]["id"]}
            await h.post(quoted)
        await h.until(lambda: h.fake.status(66) == "open")
        await h.until(lambda: h.contents(67)[-1] == "Perfeito! Vou chamar um especialista.")
        assert h.fake.labels(67) == ["plano_pro", "lead_quente"]


@pytest.mark.anyio
async def test_instagram_through_a_facebook_page_gets_numbered_options(
    db_dsn: str, tmp_path: Path
) -> None:
    """Instagram through a Facebook Page is sent text only: the options are numbered in it,
    and a number answers."""
    async with running(db_dsn, write_flow(tmp_path)) as h:
        await h.post(sample("message_created_instagram_via_facebook_page.json", 68, 1))
        await h.until(lambda: len(h.sent(68)) == 1)
        [question] = h.sent(68)
        assert question["content"] == "Olá maria.silva! Você já é nosso cliente?\n\n1. Sim\n2. Não"
        assert question["content_type"] == "text"
        answer = sample("message_created_instagram_via_facebook_page.json", 68, 2)
        answer["content"] = "2"
        await h.post(answer)
        await h.until(lambda: len(h.sent(68)) == 2)
        assert h.contents(68)[1].startswith(PRODUCT)
        assert h.fake.violations == []


LONG_FLOW = """
name: longo
trigger: {default: true}
variables: [nada]             # declared, never given: its message renders empty
blocks:
  pergunta:
    message: "Conte tudo"
    input: {type: text, save_as: texto}
    next_block: vazio
  vazio:
    message: "{{nada}}"
    next_block: confirma
  confirma:
    message: "{{texto}}"
    buttons: [{text: Certo, next_block: fim}, {text: Errado, next_block: fim}]
  fim:
    message: Ok.
"""


@pytest.mark.anyio
async def test_whatsapp_body_cut_and_empty_message_never_sent(db_dsn: str, tmp_path: Path) -> None:
    """A 10,000-character echoed answer goes out as a 1,024-character interactive body, and a
    message that renders empty is not posted."""
    async with running(db_dsn, write_flow(tmp_path, LONG_FLOW, "l.yaml")) as h:
        await h.post(incoming(69, 1, "Oi"))
        await h.until(lambda: len(h.sent(69)) == 1)
        await h.post(incoming(69, 2, "x" * 10_000))
        await h.until(lambda: len(h.sent(69)) == 2)
        await h.settled()
        _, menu = h.sent(69)
        assert menu["content_type"] == "input_select"
        assert len(menu["content"]) == 1024
        assert menu["content"].endswith("…")
        assert all(m["content"].strip() for m in h.sent(69))


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("kind", "sent"),
    [
        ("image", "message_created_whatsapp_image.json"),
        ("audio", "message_created_whatsapp_audio.json"),
        ("file", "message_created_whatsapp_image.json"),
        ("location", "message_created_whatsapp_location.json"),
    ],
)
async def test_media_input_types(db_dsn: str, tmp_path: Path, kind: str, sent: str) -> None:
    """A media input counts text as a miss; a wrong kind of attachment is the second miss
    (handoff); a location input takes the location, kept in `resposta_attachments`."""
    async with running(db_dsn, write_flow(tmp_path, input_flow(kind), "m.yaml")) as h:
        await h.post(incoming(70, 1, "Oi"))
        await h.until(lambda: len(h.sent(70)) == 1)
        await h.post(incoming(70, 2, "segue"))
        await h.until(lambda: len(h.sent(70)) == 2)
        assert h.contents(70)[1].endswith("Descreva o problema")
        assert h.query("select misses from workflow_conversations") == [(1,)]
        if kind != "location":  # the location sample is a location: try a wrong kind too
            wrong = sample("message_created_whatsapp_location.json", 70, 3)
            await h.post(wrong)
            await h.until(lambda: len(h.sent(70)) == 3)
            await h.until(lambda: h.fake.status(70) == "open")
            return
        await h.post(sample(sent, 70, 3))
        await h.until(lambda: len(h.sent(70)) == 3)
        assert h.contents(70)[2] == "Recebido: "
        [item] = variables(h, 70)["resposta_attachments"]
        assert item["type"] == "location"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("kind", "sent", "file_type"),
    [
        ("image", "message_created_whatsapp_image.json", "image"),
        ("audio", "message_created_whatsapp_audio.json", "audio"),
        ("file", "message_created_whatsapp_audio.json", "audio"),
    ],
)
async def test_media_input_takes_its_kind(
    db_dsn: str, tmp_path: Path, kind: str, sent: str, file_type: str
) -> None:
    """A media input is answered by a message with its kind of attachment."""
    async with running(db_dsn, write_flow(tmp_path, input_flow(kind), "m.yaml")) as h:
        await h.post(incoming(71, 1, "Oi"))
        await h.until(lambda: len(h.sent(71)) == 1)
        await h.post(sample(sent, 71, 2))
        await h.until(lambda: len(h.sent(71)) == 2)
        assert h.contents(71)[1] == "Recebido: "
        [item] = variables(h, 71)["resposta_attachments"]
        assert item["type"] == file_type
