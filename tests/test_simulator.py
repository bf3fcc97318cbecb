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
from agentbot.simulator import Reply, Simulation, parse_media, parse_reply, parse_variable
from tests.test_flowtests import FLOW, MEDIA_FLOW

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
        [commands: /wait 30m, /vars, /restart, /quit; anything else is the customer's message
         media: /media image CAPTION (audio, video, file), /media location LAT LONG TITLE,
         /media contact PHONE
         agents: /agent TEXT, /note TEXT (/note /bot, /note /pause 30), /assign, /label NAME,
         /resolve, /snooze]
        > atendente
        bot: Vou te transferir para um atendente.
        [handoff: the customer asked for a human]
        [end: handed_off]
        > oi
        [quiet: humans (or a pause) hold the conversation; /restart to start over]
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


def test_agents_and_chatwoot_in_the_simulator() -> None:
    """An agent's reply, a pause, the clock, /bot, a snooze, an assignment and a resolve, each
    followed by the conversation's status, the session's and what holds it."""
    transcript = simulate(
        FLOW,
        "Oi",
        "/agent Oi, sou a Ana",
        "Sim",
        "/note /pause 30",
        "Sim",
        "/wait 31m",
        "Oi",
        "/note /pause",
        "/snooze",
        "Sim",
        "/label",
        "/assign",
        "/resolve",
    )
    assert transcript.count("bot: Oi Ana! Quer ajuda?") == 2
    expected = [
        "[handoff: an agent replied]",
        "[conversation open; session handed_off; hold none]",
        "[quiet: humans (or a pause) hold the conversation; /restart to start over]",
        "[pending again: an agent gave the conversation back to the bot (paused)]",
        "[conversation pending; session closed; hold paused]",
        "[conversation pending; session active; hold none]",
        "[conversation snoozed; session active; hold snoozed]",
        "[pending again: the customer wrote in a snoozed conversation: the flow resumes]",
        "[conversation pending; session active; hold none]",
        "[handoff: the conversation was assigned to an agent]",
        "[conversation open; session handed_off; hold none]",
        "[conversation resolved; session closed; hold none]",
    ]
    for line in expected:
        assert line in transcript, line
    assert "/pause takes a number of minutes" in transcript


def test_var_nome_wins_over_the_contact() -> None:
    """`--var nome=...` is what {{nome}} says, as initialData does; without it, the contact's."""
    transcript = simulate(FLOW, variables={"nome": "João"})
    assert transcript.splitlines()[1] == "bot: Oi João! Quer ajuda?"
    assert simulate(FLOW, variables={"x": 1}).splitlines()[1] == "bot: Oi Ana! Quer ajuda?"


def test_media_in_the_simulator() -> None:
    """`/media` sends a photo with its caption, a location or a contact card; a malformed one
    shows the help; while humans hold the conversation it is not answered either."""
    transcript = simulate(
        MEDIA_FLOW,
        "Oi",
        "/media image a caixa amassada",
        "/media location -23.56 norte",
        "/media location -23.56 -46.65 Av. Paulista",
        "/media contact +55 11 98765-4321",
        "/vars",
        "/agent",
        "/media image",
    )
    assert transcript.splitlines()[1:8] == [
        "> Oi",
        "bot: Mande uma foto do produto.",
        "> /media image a caixa amassada",
        "bot: Onde você está?",
        "> /media location -23.56 norte",
        "[commands: /wait 30m, /vars, /restart, /quit; anything else is the customer's message",
        " media: /media image CAPTION (audio, video, file), /media location LAT LONG TITLE,",
    ]
    assert "> /media location -23.56 -46.65 Av. Paulista\nbot: Seu telefone?\n" in transcript
    assert "> /media contact +55 11 98765-4321\nbot: Obrigado!\n" in transcript
    assert '"fone": "+5511987654321"' in transcript
    assert '"local_attachments": [{"latitude": -23.56, "longitude": -46.65, "title":' in transcript
    assert transcript.endswith(
        "> /media image\n[quiet: humans (or a pause) hold the conversation; /restart to start"
        " over]\n"
    )


@pytest.mark.parametrize(
    "argument",
    ["sticker", "location 1", "location nan 2", "location 1 inf", "contact", ""],
)
def test_parse_media_refuses_what_chatwoot_would_not_send(argument: str) -> None:
    assert parse_media(argument) is None
