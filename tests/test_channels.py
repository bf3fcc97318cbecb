"""Each channel's way of showing options and sending the answer back, pure and end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentbot.channels import (
    delivery_channel,
    expand_reply,
    liquid_safe,
    messages,
    sent_titles,
    shows_buttons,
)
from tests.fakes import render_liquid
from tests.harness import incoming, running, widget_answer, write_flow

LONG = ["Rastrear meu pedido agora", "Trocar ou devolver um item", "Falar com um atendente"]


def items(body: dict[str, Any]) -> list[str]:
    return [i["title"] for i in body["content_attributes"]["items"]]


SHOWS = [
    ("Channel::Whatsapp", True),
    ("Channel::WebWidget", True),
    ("Channel::Telegram", True),
    ("Channel::FacebookPage", True),
    ("Channel::Line", True),
    ("Channel::Api", True),
    ("Channel::Sms", False),
    ("Channel::TwilioSms", False),
    ("Channel::Email", False),
    ("Channel::Instagram", False),
    (None, True),
]


@pytest.mark.parametrize(("channel", "shows"), SHOWS, ids=[str(c) for c, _ in SHOWS])
def test_shows_buttons(channel: str | None, shows: bool) -> None:
    """Only channels Chatwoot renders input_select for get buttons."""
    assert shows_buttons(channel) is shows


def test_numbered_list() -> None:
    """Channels without buttons get one text: the question, a blank line, `1. Sim` lines."""
    [body] = messages("Channel::Sms", "Tudo certo?", [("Sim", "sim"), ("Não", "nao")])
    assert body == {
        "content": "Tudo certo?\n\n1. Sim\n2. Não",
        "message_type": "outgoing",
        "private": False,
    }


def test_whatsapp_buttons_are_shortened_uniquely() -> None:
    """Three or fewer: titles fit 20 characters, and stay distinct."""
    [body] = messages(
        "Channel::Whatsapp", "Como posso ajudar?", [(t, str(i)) for i, t in enumerate(LONG)]
    )
    assert items(body) == ["Rastrear meu pedido…", "Trocar ou devolver…", "Falar com um atende…"]
    assert all(len(t) <= 20 for t in items(body))
    same = sent_titles(
        "Channel::Whatsapp", ["Plano empresarial mensal", "Plano empresarial mensal B"]
    )
    assert same == ["Plano empresarial m…", "Plano empresarial 2"]


def test_whatsapp_lists_split_over_ten() -> None:
    """More than ten options become several lists; rows fit 24 characters."""
    options = [(f"Opção número {i} com nome comprido", f"v{i}") for i in range(12)]
    first, second = messages("Channel::Whatsapp", "Escolha", options)
    assert first["content"] == "Escolha"
    assert len(first["content_attributes"]["items"]) == 10
    assert len(second["content_attributes"]["items"]) == 2
    assert second["content"] == "⋯"
    assert all(len(t) <= 24 for t in items(first) + items(second))


def test_other_channels_keep_titles() -> None:
    """Only WhatsApp is shortened; the widget shows the full title."""
    [body] = messages("Channel::WebWidget", "Q", [(t, str(i)) for i, t in enumerate(LONG)])
    assert items(body) == LONG


def test_expand_reply() -> None:
    """A WhatsApp reply with the shortened title maps back to the full one."""
    assert expand_reply("Channel::Whatsapp", "rastrear meu pedido…", LONG) == LONG[0]
    assert expand_reply("Channel::Whatsapp", "outra coisa", LONG) == "outra coisa"
    assert expand_reply("Channel::Telegram", "Rastrear meu pedido…", LONG) == "Rastrear meu pedido…"


QUESTION = "Olá Maria Silva! Você já é nosso cliente?"
NEXT = "Qual produto te interessa?"
REPLIES = [
    # (channel, what the customer's reply carries)
    ("Channel::Whatsapp", "Não"),  # the title
    ("Channel::FacebookPage", "Não"),  # the title (quick reply payload = title)
    ("Channel::Telegram", "nao"),  # callback_data = the value
    ("Channel::Line", "nao"),  # the button sends the value as text
    ("Channel::Api", "nao"),
    ("Channel::Sms", "2"),  # a numbered list: the number
    ("Channel::TwilioSms", "não"),
    ("Channel::Email", "2"),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("channel", "reply"), REPLIES, ids=[c for c, _ in REPLIES])
async def test_channel_end_to_end(db_dsn: str, tmp_path: Path, channel: str, reply: str) -> None:
    """Question shown the channel's way; the answer as that channel sends it is matched."""
    async with running(db_dsn, write_flow(tmp_path)) as h:
        first = incoming(40, 1, "Oi")
        first["conversation"]["channel"] = channel
        await h.post(first)
        await h.until(lambda: len(h.sent(40)) == 1)
        [question] = h.sent(40)
        if shows_buttons(channel):
            assert question["content"] == QUESTION
            assert question["content_attributes"]["items"][1] == {"title": "Não", "value": "nao"}
        else:
            assert question["content"] == f"{QUESTION}\n\n1. Sim\n2. Não"
            assert question["content_type"] == "text"
        answer = incoming(40, 2, reply)
        answer["conversation"]["channel"] = channel
        await h.post(answer)
        await h.until(lambda: len(h.sent(40)) == 2)
        assert h.sent(40)[1]["content"].startswith(NEXT)
        assert h.fake.labels(40) == ["lead_novo"]
        assert h.fake.violations == []


@pytest.mark.anyio
async def test_whatsapp_reply_with_context(db_dsn: str, tmp_path: Path) -> None:
    """A WhatsApp button reply carries in_reply_to (our question's id) and the title."""
    async with running(db_dsn, write_flow(tmp_path)) as h:
        await h.post(incoming(41, 1, "Oi"))
        await h.until(lambda: len(h.sent(41)) == 1)
        answer = incoming(41, 2, "Sim")
        answer["content_attributes"] = {
            "in_reply_to": h.sent(41)[0]["id"],
            "in_reply_to_external_id": "wamid.X",
        }
        await h.post(answer)
        await h.until(lambda: len(h.sent(41)) == 2)
        assert h.sent(41)[1]["content"] == NEXT


@pytest.mark.anyio
async def test_web_widget_submitted_values(db_dsn: str, tmp_path: Path) -> None:
    """The widget's click arrives as an update of our question; acted on once."""
    async with running(db_dsn, write_flow(tmp_path)) as h:
        first = incoming(42, 1, "Oi")
        first["conversation"]["channel"] = "Channel::WebWidget"
        await h.post(first)
        await h.until(lambda: len(h.sent(42)) == 1)
        question_id = h.sent(42)[0]["id"]
        answered = widget_answer(42, question_id, "Não", "nao")
        assert (await h.post(answered)).json() == {"status": "acted"}
        # Later updates of the same message (read receipts) still carry submitted_values.
        assert (await h.post(answered)).json() == {"status": "duplicate"}
        await h.until(lambda: len(h.sent(42)) == 2)
        await h.settled()
        assert h.contents(42) == [QUESTION, NEXT]
        assert h.fake.labels(42) == ["lead_novo"]


def test_fit_keeps_short_titles() -> None:
    """A title within the limit is sent as it is."""
    assert sent_titles("Channel::Whatsapp", ["Sim", "Não"]) == ["Sim", "Não"]


@pytest.mark.anyio
async def test_whatsapp_reply_to_an_older_question(db_dsn: str, tmp_path: Path) -> None:
    """A tap on a button of an earlier menu (in_reply_to) is not taken as an answer to the
    current question: that question is asked again, with no miss counted."""
    async with running(db_dsn, write_flow(tmp_path)) as h:
        await h.post(incoming(44, 1, "Oi"))
        await h.until(lambda: len(h.sent(44)) == 1)
        await h.post(incoming(44, 2, "Sim"))
        await h.until(lambda: len(h.sent(44)) == 2)
        old, current = (m["id"] for m in h.sent(44))
        stale = incoming(44, 3, "Não")
        stale["content_attributes"] = {"in_reply_to": old}
        assert (await h.post(stale)).json() == {"status": "acted"}
        await h.until(lambda: len(h.sent(44)) == 3)
        assert h.contents(44) == [QUESTION, NEXT, NEXT]
        assert h.query("select current_block, misses from workflow_conversations") == [
            ("produto", 0)
        ]
        answer = incoming(44, 4, "Só olhando")
        answer["content_attributes"] = {"in_reply_to": current}
        await h.post(answer)
        await h.until(lambda: len(h.sent(44)) == 4)
        assert h.contents(44)[-1] == "Tudo bem! Estamos aqui quando precisar."


@pytest.mark.anyio
async def test_web_widget_opened_greets_once(db_dsn: str, tmp_path: Path) -> None:
    """A flow with `trigger: {widget: true}` greets a visitor who opens the widget, once per
    conversation; without a conversation yet there is nothing to do."""
    import json

    from tests.conftest import SAMPLES

    opened = json.loads((SAMPLES / "webwidget_triggered.json").read_text())
    flow = (
        "trigger: {widget: true, inboxes: [3]}\nblocks:\n  oi:\n"
        "    message: 'Oi {{nome}}! Posso ajudar?'\n"
        "    buttons: [{text: Sim, next_block: fim}, {text: Não, next_block: fim}]\n"
        "  fim:\n    message: Combinado.\n"
    )
    async with running(db_dsn, write_flow(tmp_path, flow, "widget.yaml")) as h:
        assert (await h.post(opened)).json() == {"status": "acted"}
        await h.until(lambda: len(h.sent(1290)) == 1)
        assert h.sent(1290)[0]["content"] == "Oi billowing-frog-482! Posso ajudar?"
        assert (await h.post(opened)).json() == {"status": "recorded"}
        nothing = {**opened, "current_conversation": None}
        assert (await h.post(nothing)).json()["status"] == "ignored"
        await h.post(widget_answer(1290, h.sent(1290)[0]["id"], "Sim", "sim"))
        await h.until(lambda: len(h.sent(1290)) == 2)
        assert h.contents(1290)[1] == "Combinado."


LIQUID_TEXTS = [
    "{{contact.phone_number}}",
    "{% if true %}sim{% endif %}",
    "`{% endraw %}{{contact.phone_number}}`",
    "preço {R$ 10} `código` {{",
    "}}{{{%%}` ` `",
    "texto comum, sem nada",
]


@pytest.mark.parametrize("text", LIQUID_TEXTS)
def test_liquid_safe_renders_back_to_the_text(text: str) -> None:
    """Chatwoot's Liquid rendering of liquid_safe(text) is exactly the text."""
    drops = {"contact": {"phone_number": "+5511987654321", "name": "Ana"}}
    assert render_liquid(liquid_safe(text), drops) == text


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("{}%`- abx|\"'\n")), max_size=40))
def test_liquid_safe_any_text(text: str) -> None:
    """Any text, Liquid-looking or not, comes out of Chatwoot's Liquid as it went in."""
    assert render_liquid(liquid_safe(text), {"contact": {"name": "Ana"}}) == text


def test_liquid_safe_leaves_plain_text_alone() -> None:
    """Text without Liquid markup is posted as it is (backtick spans included)."""
    assert liquid_safe("use `codigo` {x}") == "use `codigo` {x}"


LIQUID_FLOW = """
name: eco
trigger: {default: true}
blocks:
  pergunta:
    message: "Oi {{nome}}, qual seu recado?"
    input: {type: text, save_as: recado}
    next_block: eco
  eco:
    message: "Recebido: {{recado}}"
"""


@pytest.mark.anyio
async def test_customer_liquid_is_never_evaluated(db_dsn: str, tmp_path: Path) -> None:
    """A name and an answer that look like Liquid come back as typed after Chatwoot renders
    the bot's messages; the fake renders every message it receives with Liquid."""
    async with running(db_dsn, write_flow(tmp_path, LIQUID_FLOW, "eco.yaml")) as h:
        first = incoming(45, 1, "Oi")
        first["sender"]["name"] = "{{agent.name}}"
        await h.post(first)
        await h.until(lambda: len(h.sent(45)) == 1)
        typed = "{{contact.phone_number}} `{% endraw %}{{inbox.name}}` {% raw %}"
        await h.post(incoming(45, 2, typed))
        await h.until(lambda: len(h.sent(45)) == 2)
        assert h.contents(45) == ["Oi {{agent.name}}, qual seu recado?", f"Recebido: {typed}"]
        assert h.sent(45)[1]["posted_content"] != typed  # it had to be written for Liquid
        assert h.fake.violations == []


def test_delivery_channel() -> None:
    """Instagram through a Facebook Page is delivered as Instagram (numbered options); other
    Facebook Page conversations and other channels keep their channel."""
    page = "Channel::FacebookPage"
    assert delivery_channel(page, "instagram_direct_message") == "Channel::Instagram"
    assert not shows_buttons(delivery_channel(page, "instagram_direct_message"))
    assert delivery_channel(page, None) == page
    assert delivery_channel("Channel::Whatsapp", "instagram_direct_message") == "Channel::Whatsapp"


def test_whatsapp_body_is_cut_and_never_empty() -> None:
    """A WhatsApp interactive body is cut to 1,024 characters and an empty one becomes "⋯";
    other channels keep the text."""
    [long] = messages("Channel::Whatsapp", "x" * 2000, [("Sim", "sim")])
    assert len(long["content"]) == 1024
    [empty] = messages("Channel::Whatsapp", " ", [("Sim", "sim")])
    assert empty["content"] == "⋯"
    [widget] = messages("Channel::WebWidget", "x" * 2000, [("Sim", "sim")])
    assert len(widget["content"]) == 2000
