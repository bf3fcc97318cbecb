"""WhatsApp's 24-hour window and abandoned sessions, decided in the pure engine: what a timer
or the inactivity says outside the window goes out as the flow's template or is withheld, and
`inactivity.then` hands off or resolves."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentbot.engine import (
    CUSTOMER_WROTE_AT,
    Handoff,
    Option,
    PrivateNote,
    Resolve,
    SendOptions,
    SendText,
    Session,
    Status,
    TimerFired,
    Waiting,
    snapshot,
    step,
    window_closed,
)
from agentbot.errors import FlowError
from agentbot.events import Contact, Conversation
from agentbot.loader import parse_flow

START = datetime(2026, 6, 20, 14, 0, tzinfo=UTC)
FLOW_YAML = """
name: janela
inactivity: {{after: 30h, message: "Encerrando, {{{{nome}}}}."{then}}}
{template}
blocks:
  nome:
    message: "Seu nome?"
    input: {{save_as: cliente}}
    timeout: {{after: 25h, next_block: lembrete}}
    next_block: fim
  lembrete:
    message: "Ainda está aí?"
    next_block: pergunta
  pergunta:
    message: "Quer continuar?"
    buttons: [{{text: Sim, next_block: fim}}]
  fim:
    message: Ok.
"""
TEMPLATE = 'template: {name: retomada, language: pt_BR, params: {body: {"1": "{{nome}}"}}}'
TEMPLATE_PARAMS = {
    "name": "retomada",
    "language": "pt_BR",
    "processed_params": {"body": {"1": "Maria Silva"}},
}


def flow(*, then: str = "", template: str = "") -> Any:
    text = FLOW_YAML.format(then=f", then: {then}" if then else "", template=template)
    return parse_flow(text, "flows/janela.yaml")


def waiting(
    channel: str = "Channel::Whatsapp",
    wrote: object = START.isoformat(),
    can_reply: bool = True,
    **changes: Any,
) -> Session:
    """A session resting on the name question, the customer's last message at START."""
    conversation = Conversation(1, 9, 7, "pending", channel=channel, can_reply=can_reply)
    context: dict[str, Any] = snapshot(Contact(1, "Maria Silva"), conversation)
    if wrote is not None:
        context[CUSTOMER_WROTE_AT] = wrote
    session = Session(
        "janela",
        flow().version,
        "nome",
        Status.ACTIVE,
        variables={"cliente": "Maria"},
        started_at=START,
        waiting=Waiting.INPUT,
        timeout_at=START + timedelta(hours=25),
        inactive_at=START + timedelta(hours=30),
        context=context,
    )
    return replace(session, **changes)


TIMEOUT = TimerFired("timeout", "nome")
INACTIVITY = TimerFired("inactivity", "nome")
LATE = START + timedelta(hours=30)
REMINDER = SendText("Ainda está aí?", "lembrete")
QUESTION = SendOptions("Quer continuar?", (Option("Sim", "sim"),), "pergunta")
BYE = SendText("Encerrando, Maria Silva.", "nome")


def test_inside_the_window_messages_go_as_they_are() -> None:
    """A timer within 24 hours of the customer's message says its messages as usual."""
    result = step(
        flow(), waiting(timeout_at=START + timedelta(hours=1)), TIMEOUT, START + timedelta(hours=1)
    )
    assert result.actions == (REMINDER, QUESTION)
    assert (result.template, result.withheld) == (None, ())


def test_outside_the_window_without_template_nothing_is_sent() -> None:
    """Past 24 hours, without a template, the timer's messages are withheld (listed, not sent)
    and the flow still moves on."""
    result = step(flow(), waiting(), TIMEOUT, START + timedelta(hours=25))
    assert result.actions == ()
    assert result.withheld == (REMINDER, QUESTION)
    assert result.session is not None
    assert result.session.block == "pergunta"


def test_outside_the_window_the_first_message_is_the_template() -> None:
    """Past 24 hours, with a template: the first message goes out as the template (rendered),
    the rest is withheld until the customer answers."""
    result = step(flow(template=TEMPLATE), waiting(), TIMEOUT, START + timedelta(hours=25))
    assert result.actions == (REMINDER,)
    assert result.template == TEMPLATE_PARAMS
    assert result.withheld == (QUESTION,)


def test_inactivity_outside_the_window_is_withheld() -> None:
    """The inactivity message after 30 hours of silence is withheld; the session is abandoned."""
    result = step(flow(), waiting(), INACTIVITY, LATE)
    assert (result.actions, result.withheld) == ((), (BYE,))
    assert result.session is not None
    assert result.session.status is Status.ABANDONED


def test_other_channels_have_no_window() -> None:
    """Only WhatsApp has the window: an e-mail conversation gets the message after 30 hours."""
    result = step(flow(), waiting("Channel::Email"), INACTIVITY, LATE)
    assert result.actions == (BYE,)


@pytest.mark.parametrize(
    ("then", "actions", "status"),
    [
        (
            "handoff",
            (
                PrivateNote("Dados coletados:\n- cliente: Maria", "nome"),
                Handoff("the customer stopped answering", "nome"),
            ),
            Status.HANDED_OFF,
        ),
        ("resolve", (Resolve("nome"),), Status.ABANDONED),
    ],
)
def test_abandoned_session_hands_off_or_resolves(
    then: str, actions: tuple[Any, ...], status: Status
) -> None:
    """`inactivity.then` hands the conversation to humans (with the collected answers) or
    resolves it; the message outside the window is withheld, the rest still happens."""
    result = step(flow(then=then), waiting(), INACTIVITY, LATE)
    assert result.actions == actions
    assert result.withheld == (BYE,)
    assert result.session is not None
    assert result.session.status is status


@pytest.mark.parametrize(
    ("wrote", "can_reply", "now", "closed"),
    [
        (START.isoformat(), True, START + timedelta(hours=23), False),
        (START.isoformat(), True, START + timedelta(hours=24), True),
        (None, True, START + timedelta(hours=23), False),  # an API start, window open then
        (None, False, START + timedelta(minutes=1), True),  # an API start outside the window
        ("not a time", True, START + timedelta(hours=1), False),  # unreadable: the start
        (42, True, START + timedelta(hours=25), True),
    ],
)
def test_window_closed(wrote: object, can_reply: bool, now: datetime, closed: bool) -> None:
    """The window counts 24 hours from the customer's last message, else from an API start
    that Chatwoot said could reply."""
    assert window_closed(waiting(wrote=wrote, can_reply=can_reply), now) is closed


def test_window_without_a_conversation_in_the_context() -> None:
    """A session with no conversation in its context is not held to WhatsApp's window."""
    assert not window_closed(waiting(context={}), LATE)


def test_inactivity_then_must_be_handoff_or_resolve() -> None:
    """`inactivity.then` takes handoff or resolve only, with a hint for a near miss."""
    with pytest.raises(FlowError) as caught:
        flow(then="handof")
    assert "inactivity.then: expected 'handoff' or 'resolve', got 'handof'" in str(caught.value)
    assert "did you mean 'handoff'" in str(caught.value)


def test_template_params_carry_the_category() -> None:
    """A template with a category sends it in template_params (Chatwoot's API requires it)."""
    template = (
        "template: {name: retomada, language: pt_BR, category: UTILITY,"
        ' params: {body: {"1": "{{nome}}"}}}'
    )
    result = step(flow(template=template), waiting(), TIMEOUT, START + timedelta(hours=25))
    assert result.template == {**TEMPLATE_PARAMS, "category": "UTILITY"}


def test_inactivity_deadline_of_a_flow_without_inactivity() -> None:
    """A stored inactivity deadline of a flow version without `inactivity` abandons quietly."""
    bare = parse_flow("name: janela\nblocks:\n  nome:\n    message: Oi\n", "flows/j.yaml")
    result = step(bare, waiting(), INACTIVITY, START + timedelta(hours=30))
    assert (result.actions, result.withheld) == ((), ())
    assert result.session is not None
    assert result.session.status is Status.ABANDONED


def test_inactivity_without_a_message_only_resolves() -> None:
    """An `inactivity` without a message says nothing and does what `then` says."""
    text = "name: janela\ninactivity: {after: 30h, then: resolve}\nblocks: {nome: {message: Oi}}\n"
    result = step(parse_flow(text, "flows/j.yaml"), waiting(), INACTIVITY, LATE)
    assert (result.actions, result.withheld) == ((Resolve("nome"),), ())
