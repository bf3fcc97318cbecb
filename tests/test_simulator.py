"""`agentbot simulate`: a terminal chat driven by lines, the bot's side written as a transcript."""

from __future__ import annotations

import io
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from agentbot.events import Contact
from agentbot.flows import Flow
from agentbot.loader import parse_flow
from agentbot.simulator import Reply, Simulation, parse_reply, parse_variable
from tests.test_flowtests import FLOW

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


def lines(*texts: str) -> Iterator[str]:
    return iter(f"{text}\n" for text in texts)


def simulate(flow: Flow, *texts: str, prompt: bool = False, **options: Any) -> str:
    out = io.StringIO()
    simulation = Simulation(flow, NOW, out, contact=Contact(id=1, name="Ana"), **options)
    assert simulation.run(lines(*texts), prompt=prompt) == 0
    return out.getvalue()


def test_a_whole_conversation_reads_as_a_transcript() -> None:
    """Messages, numbered options, notes, a webhook answered from the input, the clock moved
    and the commands: piped input is echoed so that the transcript reads on its own."""
    transcript = simulate(
        FLOW,
        "Oi",
        "talvez",
        "Sim",
        "ana@x.com",
        '201 {"id": 7}',
        "/vars",
        "/wait 11m",
        "/restart",
        "/help",
        "atendente",
        "oi",
        "/wait x",
        "/quit",
        "never read",
    )
    assert transcript == textwrap.dedent(
        """\
        [flow mini (mini) on Channel::Whatsapp; /help for help]
        > Oi
        bot: Oi Ana! Quer ajuda?
          1) Sim
          2) Não
        > talvez
        bot: Não entendi. Por favor, escolha uma das opções:

             Oi Ana! Quer ajuda?
          1) Sim
          2) Não
        > Sim
        [labels +quer_ajuda]
        bot: Seu e-mail?
        > ana@x.com
        [saved conversation.custom_attributes.email = "ana@x.com"]
        [webhook POST https://crm.example/leads {"email": "ana@x.com"}]
        [webhook answer? JSON, STATUS [JSON], error [TEXT], or empty for 200]
        > 201 {"id": 7}
        bot: Protocolo 7.
             Posso ajudar em mais algo?
          1) Não
        > /vars
        [{"crm": {"id": 7}, "email": "ana@x.com"}]
        > /wait 11m
        bot: Tchau!
        [resolved]
        [end: completed]
        > /restart
        [a new conversation]
        > /help
        [commands: /wait 30m, /vars, /restart, /quit; anything else is the customer's message]
        > atendente
        bot: Vou te transferir para um atendente.
        [handoff: the customer asked for a human]
        [end: handed_off]
        > oi
        [quiet: humans hold the conversation; /restart to start over]
        > /wait x
        [expected a duration like 30s, 10m, 2h or 1d, got 'x']
        > /quit
        """
    )


def test_fixed_webhook_reply_variables_and_a_failed_call() -> None:
    """`--var` starts the flow at once; `--webhook-reply` answers every call; a failed call
    goes to on_error, whose handoff assigns and leaves a private note."""
    transcript = simulate(
        FLOW,
        "Sim",
        "ana@x.com",
        variables={"origem": "site"},
        webhook_reply=Reply(500, "erro"),
    )
    assert transcript.splitlines()[1:] == [
        "bot: Oi Ana! Quer ajuda?",
        "  1) Sim",
        "  2) Não",
        "> Sim",
        "[labels +quer_ajuda]",
        "bot: Seu e-mail?",
        "> ana@x.com",
        '[saved conversation.custom_attributes.email = "ana@x.com"]',
        '[webhook POST https://crm.example/leads {"email": "ana@x.com"}]',
        "bot: Vou chamar alguém.",
        "[assign: team 3, agent 9]",
        "[private note:",
        " O CRM falhou.",
        "",
        " Dados coletados:",
        " - email: ana@x.com]",
        "[handoff: the flow hands off here]",
        "[end: handed_off]",
    ]


def test_input_ending_while_a_webhook_waits_stops_cleanly() -> None:
    """The input may end at any line, a webhook's answer included."""
    transcript = simulate(FLOW, "Oi", "Sim", "ana@x.com")
    assert transcript.endswith(
        "[webhook answer? JSON, STATUS [JSON], error [TEXT], or empty for 200]\n"
    )


def test_interactive_prompt_does_not_echo() -> None:
    """At a terminal a prompt is shown and what the person typed is not repeated."""
    transcript = simulate(FLOW, "Oi", prompt=True)
    assert transcript.splitlines()[1:] == [
        "> bot: Oi Ana! Quer ajuda?",
        "  1) Sim",
        "  2) Não",
        "> ",
    ]


CALLING = parse_flow(
    textwrap.dedent(
        """
        name: aviso
        blocks:
          inicio:
            message: Avisando a equipe
            webhook: {url: "https://x.example/aviso"}
            handoff: true
        """
    ),
    "aviso.yaml",
)


def test_a_call_the_flow_does_not_wait_for_is_not_asked_about() -> None:
    """A block that calls and hands off at once needs no answer: none is asked for."""
    transcript = simulate(CALLING, "Oi", channel="Channel::Sms")
    assert transcript.splitlines() == [
        "[flow aviso (aviso) on Channel::Sms; /help for help]",
        "> Oi",
        "bot: Avisando a equipe",
        "[webhook GET https://x.example/aviso]",
        "[handoff: the flow hands off here]",
        "[end: handed_off]",
    ]


def test_text_channels_get_the_options_in_the_text_only() -> None:
    """On a channel without buttons the numbered list is part of the message, not repeated."""
    transcript = simulate(FLOW, "Oi", channel="Channel::Sms")
    assert transcript.splitlines()[2:] == [
        "bot: Oi Ana! Quer ajuda?",
        "",
        "     1. Sim",
        "     2. Não",
    ]


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        ("", Reply(200)),
        ('{"id": 7}', Reply(200, {"id": 7})),
        ("404", Reply(404)),
        ('201 {"id": 7}', Reply(201, {"id": 7})),
        ("500 falhou", Reply(500, "falhou")),
        ("error", Reply(None, None, "no answer")),
        ("ERROR timed out", Reply(None, None, "timed out")),
        ("ok", Reply(200, "ok")),
        ("[1, 2]", Reply(200, [1, 2])),
    ],
    ids=[
        "empty",
        "json",
        "status",
        "status-json",
        "status-text",
        "error",
        "error-text",
        "text",
        "list",
    ],
)
def test_parse_reply(text: str, reply: Reply) -> None:
    """A webhook answer as typed: JSON, a status with an optional body, or an error."""
    assert parse_reply(text) == reply


@pytest.mark.parametrize(
    ("item", "pair"),
    [
        ("idade=30", ("idade", 30)),
        ("plano=pro", ("plano", "pro")),
        ("cpf=01234", ("cpf", "01234")),
        ("vip=true", ("vip", True)),
        ('dados={"a": 1}', ("dados", {"a": 1})),
        (" nome = Ana ", ("nome", " Ana ")),
        ("vazio=", ("vazio", "")),
    ],
    ids=["number", "text", "leading-zero", "boolean", "object", "spaces", "empty"],
)
def test_parse_variable(item: str, pair: tuple[str, Any]) -> None:
    """`--var NAME=VALUE`: JSON when the value is JSON, else the text as written."""
    assert parse_variable(item) == pair


@pytest.mark.parametrize("item", ["idade", "=30"], ids=["no-equals", "no-name"])
def test_parse_variable_needs_a_name_and_equals(item: str) -> None:
    """A `--var` without NAME= is refused with the expected form."""
    with pytest.raises(ValueError, match="expected NAME=VALUE"):
        parse_variable(item)
