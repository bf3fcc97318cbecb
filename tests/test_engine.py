"""engine.step(): each branch as a table row, (session, event) -> (session, actions)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from agentbot.engine import (
    AddLabels,
    Handoff,
    Option,
    Outcome,
    SendOptions,
    SendText,
    Session,
    Status,
    choose_flow,
    render,
    step,
)
from agentbot.events import Contact, Conversation, CustomerMessage, OptionSubmitted
from agentbot.flows import DEFAULT_HANDOFF_MESSAGE, DEFAULT_RETRY_MESSAGE, Flow, parse_flow

NOW = datetime(2026, 6, 20, 14, 2, 11, tzinfo=UTC)

FLOW_YAML = """
name: vendas
trigger: {default: true}
blocks:
  inicio:
    message: "Oi {{nome}}! Quer um orçamento?"
    buttons:
      - {text: Sim, next_block: email}
      - {text: Não, value: nao, next_block: tchau, tag: lead_frio}
      - {text: Falar com humano, next_block: humano}
  email:
    message: "Qual produto?"
    tags: [interessado]
    buttons:
      - {text: Camiseta, next_block: fim}
      - {text: Caneca}
  tchau:
    message: "Tudo bem, até logo!"
  humano:
    message: "Chamando um atendente."
    tags: [quer_humano]
    handoff: true
  fim:
    message: "Anotado, {{contact.name}}."
    next_block: obrigado
  obrigado:
    message: "Obrigado!"
"""
FLOW = parse_flow(FLOW_YAML, "flows/vendas.yaml")
CONV = Conversation(
    account_id=1, id=1287, inbox_id=7, status="pending", channel="Channel::Whatsapp"
)
CONTACT = Contact(id=4821, name="Maria Silva", phone_number="+5511987654321")
OPTIONS = (
    Option("Sim", "sim"),
    Option("Não", "nao"),
    Option("Falar com humano", "falar_com_humano"),
)


def said(text: str, message_id: int = 1) -> CustomerMessage:
    return CustomerMessage(CONV, CONTACT, message_id, text)


def at(block: str, misses: int = 0) -> Session:
    return Session("vendas", FLOW.version, block, Status.ACTIVE, {}, misses, NOW)


ASK = SendOptions("Oi Maria Silva! Quer um orçamento?", OPTIONS, "inicio")
ASK_PRODUCT = SendOptions(
    "Qual produto?", (Option("Camiseta", "camiseta"), Option("Caneca", "caneca")), "email"
)
HINT = SendOptions(
    f"{DEFAULT_RETRY_MESSAGE}\n\nOi Maria Silva! Quer um orçamento?", OPTIONS, "inicio"
)
BYE = (SendText(DEFAULT_HANDOFF_MESSAGE, "inicio"),)

CASES = [
    # (id, session, event, expected session (None: unchanged fields), actions, outcome)
    ("first message starts the flow", None, said("Oi"), at("inicio"), (ASK,), Outcome.STARTED),
    (
        "a handoff word as the first message hands off at once",
        None,
        said("Atendente"),
        replace(at("inicio"), status=Status.HANDED_OFF),
        (*BYE, Handoff("the customer asked for a human", "inicio")),
        Outcome.HANDOFF_WORD,
    ),
    (
        "title, case and accents ignored",
        at("inicio"),
        said("  NAO "),
        replace(at("tchau"), status=Status.COMPLETED),
        (AddLabels(("lead_frio",), "inicio"), SendText("Tudo bem, até logo!", "tchau")),
        Outcome.CHOSE,
    ),
    (
        "position number",
        at("inicio"),
        said("1"),
        at("email"),
        (AddLabels(("interessado",), "email"), ASK_PRODUCT),
        Outcome.CHOSE,
    ),
    (
        "value (Telegram, LINE)",
        at("inicio"),
        said("falar_com_humano"),
        replace(at("humano"), status=Status.HANDED_OFF),
        (
            AddLabels(("quer_humano",), "humano"),
            SendText("Chamando um atendente.", "humano"),
            Handoff("the flow hands off here", "humano"),
        ),
        Outcome.CHOSE,
    ),
    (
        "first miss repeats the question with a hint",
        at("inicio"),
        said("talvez"),
        at("inicio", misses=1),
        (HINT,),
        Outcome.MISSED,
    ),
    (
        "second miss hands off",
        at("inicio", misses=1),
        said("sei lá"),
        replace(at("inicio", misses=2), status=Status.HANDED_OFF),
        (*BYE, Handoff("no option matched 2 times", "inicio")),
        Outcome.MISSED,
    ),
    (
        "a match resets the misses",
        at("inicio", misses=1),
        said("Sim"),
        at("email"),
        (AddLabels(("interessado",), "email"), ASK_PRODUCT),
        Outcome.CHOSE,
    ),
    (
        "handoff word mid-flow",
        at("email"),
        said("humano"),
        replace(at("email"), status=Status.HANDED_OFF),
        (
            SendText(DEFAULT_HANDOFF_MESSAGE, "email"),
            Handoff("the customer asked for a human", "email"),
        ),
        Outcome.HANDOFF_WORD,
    ),
    (
        "restart word goes back to the start",
        at("email", misses=1),
        said("Menu"),
        at("inicio"),
        (ASK,),
        Outcome.RESTARTED,
    ),
    (
        "button without next_block completes the session",
        at("email"),
        said("caneca"),
        replace(at("email"), status=Status.COMPLETED),
        (),
        Outcome.CHOSE,
    ),
    (
        "blocks without buttons chain until the flow ends",
        at("email"),
        said("Camiseta"),
        replace(at("obrigado"), status=Status.COMPLETED),
        (SendText("Anotado, Maria Silva.", "fim"), SendText("Obrigado!", "obrigado")),
        Outcome.CHOSE,
    ),
    (
        "widget submitted value",
        at("inicio"),
        OptionSubmitted(CONV, CONTACT, 90410, "Não", "nao"),
        replace(at("tchau"), status=Status.COMPLETED),
        (AddLabels(("lead_frio",), "inicio"), SendText("Tudo bem, até logo!", "tchau")),
        Outcome.CHOSE,
    ),
    (
        "a completed session starts over",
        replace(at("tchau"), status=Status.COMPLETED),
        said("oi de novo"),
        at("inicio"),
        (ASK,),
        Outcome.STARTED,
    ),
    (
        "a block gone from the flow hands off",
        at("apagado"),
        said("Sim"),
        replace(at("apagado"), status=Status.HANDED_OFF),
        (Handoff("block 'apagado' no longer exists", "apagado"),),
        Outcome.BLOCK_GONE,
    ),
    (
        "a session resting on a block that waits for nothing stays put",
        at("tchau"),
        said("Sim"),
        at("tchau"),
        (),
        Outcome.NOT_WAITING,
    ),
]


@pytest.mark.parametrize(
    ("session", "event", "expected", "actions", "outcome"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_step(session, event, expected, actions, outcome):
    """Each transition of step() gives the expected session, actions and outcome."""
    result = step(FLOW, session, event, NOW)
    assert result.session == expected
    assert result.actions == actions
    assert result.outcome is outcome


def test_step_records_choice_and_block():
    """A chosen button is reported with the block it answered and its value."""
    result = step(FLOW, at("inicio"), said("Não"), NOW)
    assert (result.block, result.choice) == ("inicio", "nao")


def test_runtime_cycle_hands_off():
    """An old stored version that loops without waiting hands off instead of spinning."""
    flow = parse_flow(
        "blocks:\n  a:\n    message: x\n    buttons: [{text: Sim, next_block: b}]\n"
        "  b:\n    message: y\n    next_block: a\n",
        "f.yaml",
    )
    looping = replace(
        flow, blocks={**flow.blocks, "a": replace(flow.blocks["a"], buttons=(), next_block="b")}
    )
    result = step(looping, None, said("oi"), NOW)
    assert result.session is not None
    assert result.session.status is Status.HANDED_OFF
    assert result.actions[-1] == Handoff("cannot enter block 'a'", "b")


def _flow(name: str, trigger: str) -> Flow:
    return parse_flow(
        f"name: {name}\ntrigger: {trigger}\nblocks:\n  a: {{message: oi}}\n", "f.yaml"
    )


CHOICES = [
    ("keyword wins over default", "Vendas", 7, "vendas"),
    ("keyword case and accents ignored", "SUPORTÉ", 7, "suporte"),
    ("default when no keyword", "oi", 7, "geral"),
    ("inbox-limited default wins in its inbox", "oi", 9, "so9"),
    ("inbox-limited keyword flow is not used elsewhere", "nove", 7, "geral"),
    ("inbox-limited keyword flow in its inbox", "nove", 9, "so9"),
]
FLOWS = [
    _flow("geral", "{default: true}"),
    _flow("vendas", "{keywords: [vendas]}"),
    _flow("suporte", "{keywords: [suporte]}"),
    _flow("so9", "{default: true, keywords: [nove], inboxes: [9]}"),
]


@pytest.mark.parametrize(
    ("text", "inbox", "name"), [c[1:] for c in CHOICES], ids=[c[0] for c in CHOICES]
)
def test_choose_flow(text, inbox, name):
    """A new conversation starts the keyword's flow, else the default for its inbox."""
    chosen = choose_flow(FLOWS, inbox, text)
    assert chosen is not None
    assert chosen.name == name


def test_choose_flow_none():
    """With no default flow and no keyword match there is nothing to start."""
    assert choose_flow([_flow("vendas", "{keywords: [vendas]}")], 7, "oi") is None


RENDERS = [
    ("name", "Oi {{nome}}!", "Oi Ana!"),
    ("spaces and dots", "{{ contact.phone_number }}", "+55"),
    ("missing renders empty", "[{{nada}}][{{contact.nada.x}}]", "[][]"),
    ("customer text is not a template", "{{msg}}", "{{nome}}"),
    ("none renders empty", "[{{contact.email}}]", "[]"),
]


@pytest.mark.parametrize(("template", "out"), [r[1:] for r in RENDERS], ids=[r[0] for r in RENDERS])
def test_render(template, out):
    """Placeholders are filled once from the context, missing ones vanish."""
    ctx = {"nome": "Ana", "msg": "{{nome}}", "contact": {"phone_number": "+55", "email": None}}
    assert render(template, ctx) == out
