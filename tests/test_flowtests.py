"""Conversation tests: reading a test file (every problem, with its line) and running its steps."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from agentbot.errors import FlowError
from agentbot.events import Contact
from agentbot.flowtests import Failure, Setup, Step, _same, parse_suite, run_suite
from agentbot.loader import parse_flow

FILE = "flows/tests/mini.yaml"

FLOW = parse_flow(
    textwrap.dedent(
        """
        name: mini
        inactivity: {after: 1h, message: "Encerrado por inatividade."}
        blocks:
          inicio:
            message: "Oi {{nome}}! Quer ajuda?"
            buttons:
              - {text: Sim, next_block: email, tag: quer_ajuda}
              - {text: Não, value: nao, next_block: tchau}
          email:
            message: "Seu e-mail?"
            input: {save_as: email, type: email}
            save_to: conversation.custom_attributes.email
            next_block: crm
          crm:
            webhook:
              url: "https://crm.example/leads"
              headers: {X-Origem: agentbot}
              body: {email: "{{email}}"}
              save_as: crm
              on_error: humano
            next_block: pronto
          pronto:
            message: "Protocolo {{crm.id}}.\\nPosso ajudar em mais algo?"
            buttons: [{text: Não, next_block: fim}]
            timeout: {after: 10m, next_block: fim}
          fim:
            message: "Tchau!"
            end: {resolve: true}
          humano:
            message: "Vou chamar alguém."
            handoff: {team_id: 3, assignee_id: 9, note: "O CRM falhou."}
          tchau:
            message: "Até mais."
        """
    ),
    "flows/mini.yaml",
)

HAPPY = """
- user: Oi
- bot: "Oi Ana! Quer ajuda?"
- buttons: [Sim, Não]
- status: active
- block: inicio
- user: sim
- labels: [quer_ajuda]
- bot: "Seu e-mail?"
- quiet: true
- user: ana@x.com
- attribute: {conversation.custom_attributes.email: ana@x.com}
- variables: {email: ana@x.com}
- call:
    url: https://crm.example/leads
    method: POST
    headers: {X-Origem: agentbot}
    body: {email: ana@x.com}
- webhook: {status: 201, json: {id: 7}}
- variables: {crm.id: 7, crm: {id: 7}}
- bot_contains: "Protocolo 7."
- user: "1"
- bot: "Tchau!"
- resolved: true
- status: completed
- handoff: false
"""


def suite_text(steps: str, settings: str = "contact: {name: Ana}") -> str:
    indented = textwrap.indent(textwrap.dedent(steps).strip(), "      ")
    return f"flow: mini\n{settings}\ntests:\n  - name: caso\n    steps:\n{indented}\n"


def run(steps: str, settings: str = "contact: {name: Ana}") -> str | None:
    """The failure of a one-test suite over FLOW, as printed; None when it passes."""
    suite = parse_suite(suite_text(steps, settings), FILE)
    (result,) = run_suite(suite, FLOW)
    return None if result.failure is None else str(result.failure)


def problems(text: str) -> list[str]:
    with pytest.raises(FlowError) as caught:
        parse_suite(textwrap.dedent(text), FILE)
    return [str(problem) for problem in caught.value.problems]


# --- reading --------------------------------------------------------------------------------


def test_parse_reads_settings_steps_and_lines() -> None:
    """A test inherits the file's settings and overrides them; steps keep their number, line
    and value; unquoted dates and numbers become the text the engine compares them with."""
    suite = parse_suite(
        textwrap.dedent(
            """
            flow: ../mini.yaml
            contact: {name: Ana, phone_number: "+5511999990000", custom_attributes: {plano: pro}}
            conversation: {custom_attributes: {origem: site}, labels: [vip]}
            tests:
              - name: um
                channel: sms
                inbox_id: 7
                initial_data: {origem: campanha}
                steps:
                  - user: 1
                  - variables: {desde: 2026-01-05}
              - steps:
                  - wait: 1h30m
            """
        ),
        FILE,
    )
    assert (suite.flow, suite.flow_is_path, suite.flow_line) == ("../mini.yaml", True, 2)
    first, second = suite.cases
    assert first.setup == Setup(
        contact=Contact(
            id=1, name="Ana", phone_number="+5511999990000", custom_attributes={"plano": "pro"}
        ),
        channel="Channel::Sms",
        inbox_id=7,
        conversation_attributes={"origem": "site"},
        labels=("vip",),
        initial_data={"origem": "campanha"},
    )
    assert first.steps == (
        Step(1, 11, "user", "1"),
        Step(2, 12, "variables", {"desde": "2026-01-05"}),
    )
    assert (second.name, second.line, second.setup.channel) == ("test 2", 13, "Channel::Whatsapp")
    assert second.steps[0].value.total_seconds() == 5400
    assert not parse_suite("flow: mini\ntests: [{steps: [{user: oi}]}]", FILE).flow_is_path


PROBLEMS = [
    (
        "- a list",
        ["flows/tests/mini.yaml:1: (root): expected a mapping with flow and tests, got a list"],
    ),
    (
        "flow: [a]\ntests: []\n",
        [
            "flows/tests/mini.yaml:1: flow: flow is missing: name the flow (or its file)"
            " these tests run",
            "flows/tests/mini.yaml:2: tests: expected a list of tests, got a list",
        ],
    ),
    (
        "tests: [{steps: [{user: oi}]}]\n",
        [
            "flows/tests/mini.yaml:1: flow: flow is missing: name the flow (or its file)"
            " these tests run"
        ],
    ),
    (
        "flow: mini\ncontat: {name: Ana}\ntests: [{steps: [{user: oi}]}]\n",
        ["flows/tests/mini.yaml:2: contat: unknown key 'contat' (did you mean 'contact'?)"],
    ),
    (
        "flow: mini\ntests: [{steps: [{bott: oi}]}]\n",
        ["flows/tests/mini.yaml:2: tests[0].steps[0]: unknown step 'bott' (did you mean 'bot'?)"],
    ),
    (
        "flow: mini\ntests:\n  - steps:\n      - {user: oi, bot: ola}\n",
        [
            "flows/tests/mini.yaml:4: tests[0].steps[0]: a step has one key, this one has user,"
            " bot: write one step for each"
        ],
    ),
    (
        "flow: mini\ntests: [{steps: [oi]}]\n",
        [
            "flows/tests/mini.yaml:2: tests[0].steps[0]: expected a step like `user: Oi` or"
            " `bot: ...`, got the string 'oi'"
        ],
    ),
    (
        "flow: mini\ntests:\n  - steps:\n      - user: no\n",
        [
            "flows/tests/mini.yaml:4: tests[0].steps[0].user: expected text, got false"
            " (quote it: YAML reads yes, no, on and off as true or false)"
        ],
    ),
    (
        "flow: mini\ntests:\n  - steps:\n      - wait: logo\n      - quiet: false\n"
        "      - status: feito\n      - status: complete\n      - labels: a\n      - handoff: 1\n",
        [
            "flows/tests/mini.yaml:4: tests[0].steps[0].wait: expected a duration like 30s, 10m,"
            " 2h or 1d, got the string 'logo'",
            "flows/tests/mini.yaml:5: tests[0].steps[1].quiet: expected true, got false",
            "flows/tests/mini.yaml:6: tests[0].steps[2].status: unknown status 'feito'",
            "flows/tests/mini.yaml:7: tests[0].steps[3].status: unknown status 'complete'"
            " (did you mean 'completed'?)",
            "flows/tests/mini.yaml:8: tests[0].steps[4].labels: expected a list,"
            " got the string 'a'",
            "flows/tests/mini.yaml:9: tests[0].steps[5].handoff: expected true or false,"
            " got the number 1",
        ],
    ),
    (
        "flow: mini\ntests:\n  - steps:\n      - attribute: {email: x}\n"
        "      - webhook: {json: {}, text: x, status: 42, error: [x], tempo: 1}\n"
        "      - assign: {team: 1}\n      - call: [url]\n      - call: {headers: [a]}\n",
        [
            "flows/tests/mini.yaml:4: tests[0].steps[0].attribute.email: expected"
            " contact.custom_attributes.<key> or conversation.custom_attributes.<key>",
            "flows/tests/mini.yaml:5: tests[0].steps[1].webhook.tempo: unknown key 'tempo'",
            "flows/tests/mini.yaml:5: tests[0].steps[1].webhook: give json or text, not both",
            "flows/tests/mini.yaml:5: tests[0].steps[1].webhook.status: expected an HTTP status,"
            " got the number 42",
            "flows/tests/mini.yaml:5: tests[0].steps[1].webhook.error: expected text, got a list",
            "flows/tests/mini.yaml:6: tests[0].steps[2].assign.team: unknown key 'team'"
            " (did you mean 'team_id'?)",
            "flows/tests/mini.yaml:7: tests[0].steps[3].call: expected a mapping, got a list",
            "flows/tests/mini.yaml:8: tests[0].steps[4].call.headers: expected a mapping,"
            " got a list",
        ],
    ),
    (
        "flow: mini\ncontact: Ana\nconversation: [a]\ninbox_id: 0\ninitial_data: 3\n"
        "tests:\n  - name: a\n    contact: {nome: Ana, name: true}\n    steps: [{user: oi}]\n"
        "  - name: a\n    steps: []\n  - name: ''\n    steps: [{user: oi}]\n  - 7\n",
        [
            "flows/tests/mini.yaml:2: contact: expected a mapping, got the string 'Ana'",
            "flows/tests/mini.yaml:3: conversation: expected a mapping, got a list",
            "flows/tests/mini.yaml:4: inbox_id: expected a positive whole number, got the number 0",
            "flows/tests/mini.yaml:5: initial_data: expected a mapping, got the number 3",
            "flows/tests/mini.yaml:8: tests[0].contact.nome: unknown key 'nome'"
            " (did you mean 'name'?)",
            "flows/tests/mini.yaml:8: tests[0].contact.name: expected text, got true"
            " (quote it: YAML reads yes, no, on and off as true or false)",
            "flows/tests/mini.yaml:11: tests[1].steps: expected a list of steps, got a list",
            "flows/tests/mini.yaml:12: tests[2].name: expected a name, got the string ''",
            "flows/tests/mini.yaml:14: tests[3]: expected a test (a mapping with name and steps),"
            " got the number 7",
        ],
    ),
    (
        "flow: mini\ntests:\n  - {name: a, steps: [{user: oi}]}\n"
        "  - {name: a, steps: [{user: oi}]}\n",
        ["flows/tests/mini.yaml:4: tests[1].name: name 'a' is used by tests[0]"],
    ),
    (
        "flow: mini\ntests: [\n",
        [
            "flows/tests/mini.yaml:3: (yaml): while parsing a flow node,"
            " expected the node content, but found '<stream end>'"
        ],
    ),
    (
        "flow: mini\ntests: [{steps: [{user: 'a\x07'}]}]\n",
        [
            "flows/tests/mini.yaml:2: (yaml): character #x0007 is not allowed in YAML:"
            " special characters are not allowed"
        ],
    ),
    (
        "flow: mini\ntests: &t [{steps: *t}]\n",
        [
            "flows/tests/mini.yaml:2: (yaml): a YAML alias refers to its own anchor:"
            " write the value out"
        ],
    ),
    (
        "flow: mini\ntests:\n  - name: a\n    name: b\n    steps:\n      - wait: 0s\n",
        [
            "flows/tests/mini.yaml:4: tests[0].name: key 'name' is repeated (first at line 3);"
            " only the last counts",
            "flows/tests/mini.yaml:6: tests[0].steps[0].wait: a duration must be more than zero",
        ],
    ),
    (
        "flow: mini\nnow: 2026-12-01T09:00:00\nconversation_id: 0\ntests:\n"
        "  - {name: a, now: 'amanhã', steps: [{user: oi}]}\n"
        "  - {name: b, now: 20261201, steps: [{user: oi}]}\n",
        [
            "flows/tests/mini.yaml:2: now: expected a moment with its offset, like"
            " 2026-12-01T09:00:00-03:00, got the string '2026-12-01T09:00:00'",
            "flows/tests/mini.yaml:3: conversation_id: expected a positive whole number,"
            " got the number 0",
            "flows/tests/mini.yaml:5: tests[0].now: expected a moment with its offset, like"
            " 2026-12-01T09:00:00-03:00, got the string 'amanhã'",
            "flows/tests/mini.yaml:6: tests[1].now: expected a moment with its offset, like"
            " 2026-12-01T09:00:00-03:00, got the number 20261201",
        ],
    ),
    (
        "name: mini\nblocks: {a: {message: Oi}}\n",
        [
            "flows/tests/mini.yaml:1: (root): this is a flow (it has blocks:), not a conversation"
            " test file: check it with `agentbot check`"
        ],
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    PROBLEMS,
    ids=[
        "not-a-mapping",
        "no-flow-no-tests",
        "no-flow",
        "unknown-key",
        "unknown-step",
        "two-keys",
        "step-not-mapping",
        "yaml-boolean",
        "bad-values",
        "bad-mappings",
        "bad-settings",
        "repeated-name",
        "yaml-syntax",
        "yaml-character",
        "yaml-recursive",
        "same-rules-as-flows",
        "bad-clock-and-conversation",
        "a-flow-given-as-a-test",
    ],
)
def test_problems(text: str, expected: list[str]) -> None:
    """Every problem of a test file is reported at once, with its line, path and a hint."""
    assert problems(text) == expected


# --- running --------------------------------------------------------------------------------


def test_happy_path_passes() -> None:
    """Every kind of check passes on a conversation that goes as the test says."""
    assert run(HAPPY) is None


def test_a_different_message_shows_expected_actual_and_a_diff() -> None:
    """A `bot:` mismatch names file, line, test and step, and shows both texts and a diff."""
    assert run("- user: Oi\n- bot: 'Oi Ana! Quer um café?'") == "\n".join(
        [
            "flows/tests/mini.yaml:7: caso: step 2 (bot): the message differs",
            "    expected: 'Oi Ana! Quer um café?'",
            "    actual:   'Oi Ana! Quer ajuda?'",
            "    diff (- expected, + actual):",
            "      - Oi Ana! Quer um café?",
            "      ?               ^^^ --",
            "      + Oi Ana! Quer ajuda?",
            "      ?              ++ ^",
        ]
    )


def test_a_different_multiline_message_is_shown_as_blocks() -> None:
    """Texts of several lines are shown line by line, and the diff points at the line."""
    failure = run(
        """
        - user: Oi
        - user: Sim
        - user: ana@x.com
        - webhook: {json: {id: 7}}
        - bot: "Protocolo 8.\\nPosso ajudar em mais algo?"
        """
    )
    assert failure == "\n".join(
        [
            "flows/tests/mini.yaml:10: caso: step 5 (bot): the message differs",
            "    expected:",
            "      | Protocolo 8.",
            "      | Posso ajudar em mais algo?",
            "    actual:",
            "      | Protocolo 7.",
            "      | Posso ajudar em mais algo?",
            "    diff (- expected, + actual):",
            "      - Protocolo 8.",
            "      ?           ^",
            "      + Protocolo 7.",
            "      ?           ^",
            "        Posso ajudar em mais algo?",
        ]
    )


FAILURES = [
    (
        "- user: Oi\n- bot: 'Oi Ana! Quer ajuda?'\n- bot: mais",
        "flows/tests/mini.yaml:8: caso: step 3 (bot): the bot said nothing more\n"
        "    expected: 'mais'\n"
        "    in this turn the bot said:\n"
        "      | Oi Ana! Quer ajuda?\n"
        "      options: Sim, Não",
    ),
    (
        "- bot: oi",
        "flows/tests/mini.yaml:6: caso: step 1 (bot): the bot said nothing more\n"
        "    expected: 'oi'\n"
        "    in this turn the bot said nothing",
    ),
    (
        "- user: Oi\n- bot_contains: tchau",
        "flows/tests/mini.yaml:7: caso: step 2 (bot_contains): the message does not contain"
        " 'tchau'\n    actual:   'Oi Ana! Quer ajuda?'",
    ),
    (
        "- bot_contains: tchau",
        "flows/tests/mini.yaml:6: caso: step 1 (bot_contains): the bot said nothing more\n"
        "    expected a message with 'tchau'\n"
        "    in this turn the bot said nothing",
    ),
    (
        "- user: Oi\n- quiet: true",
        "flows/tests/mini.yaml:7: caso: step 2 (quiet): the bot said 1 more message(s)\n"
        "    said:     'Oi Ana! Quer ajuda?'",
    ),
    (
        "- user: Oi\n- buttons: [Sim, Nao]",
        "flows/tests/mini.yaml:7: caso: step 2 (buttons): the options differ\n"
        "    expected: ['Sim', 'Nao']\n"
        "    actual:   ['Sim', 'Não']",
    ),
    (
        "- user: Oi\n- user: Não\n- buttons: [Sim]",
        "flows/tests/mini.yaml:8: caso: step 3 (buttons): the bot asked no question with options"
        " in this turn\n"
        "    in this turn the bot said:\n"
        "      | Até mais.",
    ),
    (
        "- user: Oi\n- user: Sim\n- labels: [quer]",
        "flows/tests/mini.yaml:8: caso: step 3 (labels): the labels differ\n"
        "    expected: ['quer']\n"
        "    actual:   ['quer_ajuda']",
    ),
    (
        "- handoff: true",
        "flows/tests/mini.yaml:6: caso: step 1 (handoff): no handoff\n    no session has started",
    ),
    (
        "- user: Oi\n- handoff: true",
        "flows/tests/mini.yaml:7: caso: step 2 (handoff): no handoff\n"
        "    the session is active, at block 'inicio'",
    ),
    (
        "- user: atendente\n- handoff: false",
        "flows/tests/mini.yaml:7: caso: step 2 (handoff): the conversation was handed off\n"
        "    the session is handed_off, at block 'inicio'",
    ),
    (
        "- user: Oi\n- resolved: true",
        "flows/tests/mini.yaml:7: caso: step 2 (resolved): the conversation is not resolved\n"
        "    its status in Chatwoot is pending",
    ),
    (
        "- status: active",
        "flows/tests/mini.yaml:6: caso: step 1 (status): the session's status differs\n"
        "    expected: active\n"
        "    actual:   none (no session yet)",
    ),
    (
        "- user: Oi\n- block: inico",
        "flows/tests/mini.yaml:7: caso: step 2 (block): the session is at another block\n"
        "    expected: inico\n"
        "    actual:   inicio\n"
        "    the flow has no block 'inico' (did you mean 'inicio'?)",
    ),
    (
        "- block: inicio",
        "flows/tests/mini.yaml:6: caso: step 1 (block): the session is at another block\n"
        "    expected: inicio\n"
        "    actual:   none (no session yet)",
    ),
    (
        "- user: Oi\n- user: Sim\n- user: ana@x.com\n- variables: {email: ana@y.com, crm.id: 1}",
        "flows/tests/mini.yaml:9: caso: step 4 (variables): variables differ\n"
        "    email: expected 'ana@y.com', got 'ana@x.com'\n"
        "    crm.id: expected 1, got None",
    ),
    (
        "- variables: {email: null}\n- attribute: {contact.custom_attributes.plano: pro}",
        "flows/tests/mini.yaml:7: caso: step 2 (attribute): attributes differ\n"
        "    contact.custom_attributes.plano: expected 'pro', got None",
    ),
    (
        "- note_contains: falhou",
        "flows/tests/mini.yaml:6: caso: step 1 (note_contains): no private note contains"
        " 'falhou'\n    no note was posted",
    ),
    (
        "- assign: {team_id: 3}",
        "flows/tests/mini.yaml:6: caso: step 1 (assign): the conversation was not assigned",
    ),
    (
        "- call: {url: x}",
        "flows/tests/mini.yaml:6: caso: step 1 (call): no webhook call is waiting",
    ),
    (
        "- user: Oi\n- webhook: {json: {}}",
        "flows/tests/mini.yaml:7: caso: step 2 (webhook): no webhook call is waiting for an"
        " answer\n"
        "    in this turn the bot said:\n"
        "      | Oi Ana! Quer ajuda?\n"
        "      options: Sim, Não",
    ),
    (
        "- user: Oi\n- user: Sim\n- user: ana@x.com\n"
        "- call: {url: 'https://crm.example/lead', method: POST, headers: {X-Origem: bot, X-B: b}}",
        "flows/tests/mini.yaml:9: caso: step 4 (call): the webhook call differs\n"
        "    url: expected 'https://crm.example/lead', got 'https://crm.example/leads'\n"
        "    headers.X-Origem: expected 'bot', got 'agentbot'\n"
        "    headers.X-B: expected 'b', got None",
    ),
]


@pytest.mark.parametrize(
    ("steps", "expected"),
    FAILURES,
    ids=[
        "bot-nothing-more",
        "bot-before-any-turn",
        "bot-contains-differs",
        "bot-contains-nothing",
        "quiet-but-said",
        "buttons-differ",
        "buttons-no-question",
        "labels-differ",
        "handoff-no-session",
        "handoff-missing",
        "handoff-unexpected",
        "resolved-missing",
        "status-no-session",
        "block-typo",
        "block-no-session",
        "variables-differ",
        "attribute-differs",
        "note-none",
        "assign-none",
        "call-none",
        "webhook-none-waiting",
        "call-differs",
    ],
)
def test_failures(steps: str, expected: str) -> None:
    """Each check, when it fails, says what it expected and what happened instead."""
    assert run(steps) == expected


ANA = "contact: {name: Ana}"
PASSES = [
    (
        "- user: Oi\n- user: atendente\n- handoff: true\n- user: oi?\n- quiet: true\n"
        "- status: handed_off",
        ANA,
    ),
    # a webhook error goes to on_error: the handoff block assigns and leaves a note
    (
        "- user: Oi\n- user: Sim\n- user: ana@x.com\n- webhook: {status: 500, text: erro}\n"
        "- bot: Vou chamar alguém.\n- handoff: true\n- assign: {team_id: 3, assignee_id: 9}\n"
        "- note_contains: O CRM falhou.\n- note_contains: '- email: ana@x.com'",
        ANA,
    ),
    (
        "- user: Oi\n- user: Sim\n- user: ana@x.com\n- webhook: {error: timed out}\n"
        "- block: humano",
        ANA,
    ),
    # a block timeout fires at its own time; the resolved conversation reopens on a message
    (
        "- user: Oi\n- user: Sim\n- user: ana@x.com\n- webhook: {json: {id: 1}}\n- wait: 9m\n"
        "- quiet: true\n- wait: 2m\n- bot: Tchau!\n- resolved: true\n- user: Oi\n"
        "- resolved: false\n- bot_contains: Quer ajuda?",
        ANA,
    ),
    (
        "- user: Oi\n- wait: 59m\n- status: active\n- wait: 1m\n"
        "- bot: Encerrado por inatividade.\n- status: abandoned",
        ANA,
    ),
    ("- user: Oi\n- user: talvez\n- bot_contains: Não entendi.\n- buttons: [Sim, Não]", ANA),
    (
        "- bot: Oi ! Quer ajuda?\n- variables: {origem: site}\n- user: 2\n- bot: Até mais.\n"
        "- status: completed\n- labels: []",
        "initial_data: {origem: site}",
    ),
]


@pytest.mark.parametrize(
    ("steps", "settings"),
    PASSES,
    ids=[
        "quiet-after-handoff",
        "webhook-error-status",
        "webhook-no-answer",
        "timeout-then-reopen",
        "inactivity",
        "miss-repeats-question",
        "initial-data-then-position",
    ],
)
def test_passes(steps: str, settings: str) -> None:
    """Events (messages, webhook answers, waiting) drive the flow as the service would."""
    assert run(steps, settings) is None


def test_text_channel_numbers_options_in_the_message() -> None:
    """On a channel without buttons the question carries its numbered options."""
    steps = '- user: Oi\n- bot: "Oi Ana! Quer ajuda?\\n\\n1. Sim\\n2. Não"\n- buttons: [Sim, Não]'
    assert run(steps, "contact: {name: Ana}\nchannel: sms") is None


VALUES: list[tuple[Any, Any, bool]] = [
    (True, 1, False),
    (1, True, False),
    (30, 30.0, True),
    ([1, "a"], (1, "a"), True),
    ([1], [1, 2], False),
    ({"a": 1}, {"a": 1}, True),
    ({"a": 1}, {"a": 2}, False),
    ({"a": 1}, {"b": 1}, False),
    ("1", 1, False),
    (None, None, True),
]


@pytest.mark.parametrize(
    ("expected", "actual", "same"),
    VALUES,
    ids=[
        "true-not-1",
        "1-not-true",
        "int-float",
        "list-tuple",
        "list-length",
        "dict",
        "dict-value",
        "dict-keys",
        "text-not-number",
        "null",
    ],
)
def test_variables_compare_as_json_values(expected: Any, actual: Any, same: bool) -> None:
    """`variables:` compares JSON values: true is not 1, 30 is 30.0, a list is a list."""
    assert _same(expected, actual) is same


def test_failure_reads_as_one_block() -> None:
    """A failure is its location and message, then its details indented under it."""
    failure = Failure(FILE, 3, "um", 2, "bot", "the message differs", ("a", "b"))
    assert str(failure) == f"{FILE}:3: um: step 2 (bot): the message differs\n    a\n    b"


def test_lifecycle_steps_are_checked() -> None:
    """The agents' and Chatwoot's steps refuse wrong values, and their checks name the unknown."""
    text = (
        "flow: mini\ntests:\n  - steps:\n      - agent: [x]\n      - assign_agent: ana\n"
        "      - resolve: false\n      - hold: pausado\n      - conversation_status: aberto\n"
    )
    assert problems(text) == [
        "flows/tests/mini.yaml:4: tests[0].steps[0].agent: expected text, got a list",
        "flows/tests/mini.yaml:5: tests[0].steps[1].assign_agent: expected a positive whole"
        " number, got the string 'ana'",
        "flows/tests/mini.yaml:6: tests[0].steps[2].resolve: expected true, got false",
        "flows/tests/mini.yaml:7: tests[0].steps[3].hold: unknown hold 'pausado'"
        " (did you mean 'paused'?)",
        "flows/tests/mini.yaml:8: tests[0].steps[4].conversation_status: unknown conversation"
        " status 'aberto'",
    ]


def test_lifecycle_checks_fail_with_what_happened() -> None:
    """`hold` and `conversation_status` say what they expected and what is so."""
    assert run("- user: Oi\n- agent: Oi Ana\n- hold: paused") == (
        "flows/tests/mini.yaml:8: caso: step 3 (hold): the hold differs\n"
        "    expected: paused\n"
        "    actual:   none"
    )
    assert run("- user: Oi\n- snooze: true\n- conversation_status: open") == (
        "flows/tests/mini.yaml:8: caso: step 3 (conversation_status): the conversation's status"
        " in Chatwoot differs\n"
        "    expected: open\n"
        "    actual:   snoozed"
    )


def test_lifecycle_steps_run_the_service_rules() -> None:
    """An agent's reply, a pause, /bot, a label, an assignment, a snooze and a resolve do in
    `agentbot test` what they do in the service."""
    steps = (
        "- user: Oi\n- agent: Oi Ana\n- handoff: true\n- conversation_status: open\n"
        "- agent_note: /pause 5\n- hold: paused\n- conversation_status: pending\n"
        "- user: Sim\n- quiet: true\n- wait: 5m\n- user: Oi\n- bot: 'Oi Ana! Quer ajuda?'\n"
        "- snooze: true\n- hold: snoozed\n- user: Sim\n- conversation_status: pending\n"
        "- hold: none\n- assign_agent: 7\n- handoff: true\n- label: bot\n"
        "- conversation_status: pending\n- label: bot\n- resolve: true\n"
        "- conversation_status: resolved\n- user: Oi\n- bot: 'Oi Ana! Quer ajuda?'"
    )
    assert run(steps) is None


MEDIA_FLOW = parse_flow(
    textwrap.dedent(
        """
        name: fotos
        blocks:
          foto:
            message: "Mande uma foto do produto."
            input: {save_as: foto, type: image}
            next_block: onde
          onde:
            message: "Onde você está?"
            input: {save_as: local, type: location}
            next_block: fone
          fone:
            message: "Seu telefone?"
            input: {save_as: fone, type: phone}
            next_block: fim
          fim:
            message: "Obrigado!"
        """
    ),
    "flows/fotos.yaml",
)
MEDIA_STEPS = """
- user: Oi
- bot: Mande uma foto do produto.
- user: não tenho foto agora
- bot_contains: Por favor, envie uma foto.
- media: {type: image, url: "https://chat.example/foto.jpg", caption: "a caixa amassada"}
- bot: Onde você está?
- media: {type: location, latitude: -23.56, longitude: -46.65, title: Av. Paulista}
- bot: Seu telefone?
- media: {type: contact, title: "+55 11 98765-4321"}
- bot: Obrigado!
- variables:
    foto: a caixa amassada
    foto_attachments: [{type: image, url: "https://chat.example/foto.jpg"}]
    local_attachments:
      - {type: location, url: null, title: Av. Paulista, latitude: -23.56, longitude: -46.65}
    fone: "+5511987654321"
"""


def test_media_steps_answer_media_questions() -> None:
    """`media:` sends an attachment as Chatwoot does (a photo with its caption, a location, a
    contact card): media inputs take it, text alone gets the input's error."""
    suite = parse_suite(suite_text(MEDIA_STEPS, "contact: {name: Ana}"), FILE)
    (result,) = run_suite(suite, MEDIA_FLOW)
    assert result.failure is None, str(result.failure)
    wrong = MEDIA_STEPS.replace("type: image, url", "type: audio, url")
    (result,) = run_suite(parse_suite(suite_text(wrong, "contact: {name: Ana}"), FILE), MEDIA_FLOW)
    # An audio is not a photo: the second miss hands the conversation to a human.
    assert result.failure is not None
    assert str(result.failure).startswith(f"{FILE}:11: caso: step 6 (bot): the message differs")
    assert "+ Vou te transferir para um atendente." in str(result.failure)


def test_media_step_values_are_checked() -> None:
    """A media step needs a known type; coordinates are numbers; other keys are refused."""
    text = (
        "flow: fotos\ntests:\n  - steps:\n      - media: {caption: oi}\n"
        "      - media: {type: imagem}\n      - media: {type: location, latitude: norte}\n"
        "      - media: {type: image, size: 10}\n      - media: {type: location, longitude: .nan}\n"
    )
    assert problems(text) == [
        "flows/tests/mini.yaml:4: tests[0].steps[0].media: give the attachment's type: one of"
        " image, audio, video, file, location, contact",
        "flows/tests/mini.yaml:5: tests[0].steps[1].media.type: unknown attachment type 'imagem'"
        " (did you mean 'image'?)",
        "flows/tests/mini.yaml:6: tests[0].steps[2].media.latitude: expected a number, got the"
        " string 'norte'",
        "flows/tests/mini.yaml:7: tests[0].steps[3].media.size: unknown key 'size'",
        "flows/tests/mini.yaml:8: tests[0].steps[4].media.longitude: expected a number, got"
        " the number nan",
    ]
