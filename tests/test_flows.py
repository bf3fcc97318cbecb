"""Flow files: parsing, validation messages, defaults, versions and checks across files."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentbot.errors import FlowError
from agentbot.flows import (
    Block,
    Button,
    Flow,
    GlobalWords,
    Problem,
    Texts,
    Trigger,
    _unique_slug,
    check_flow_set,
    flow_from_definition,
    flow_version,
    parse_flow,
    slugify,
)

FILE = "flows/teste.yaml"
FLOWS_DIR = Path(__file__).parent.parent / "flows"


def yml(text: str) -> str:
    """The YAML in a test, dedented so that its first line is line 1."""
    return textwrap.dedent(text).lstrip("\n")


def problems_of(text: str, filename: str = FILE) -> list[str]:
    """The problems parse_flow raises for `text`, as the CLI prints them."""
    with pytest.raises(FlowError) as info:
        parse_flow(text, filename)
    return [str(problem) for problem in info.value.problems]


def buttons_block(*buttons: str) -> str:
    """A one-block flow whose buttons are the given flow-style mappings, one per line."""
    rows = "".join(f"      - {button}\n" for button in buttons)
    return f"blocks:\n  inicio:\n    message: Escolha\n    buttons:\n{rows}"


# --- a valid flow ------------------------------------------------------------------------------

VALID = yml(
    """
    # o comentário não conta
    blocks:
      inicio:
        message: "Olá {{nome}}! Quer continuar?"
        tag: novo
        tags: [novo, visitante]
        buttons:
          - text: Sim
            next_block: fim
          - text: Não
            value: nao
            tag: lead_frio
            tags: [lead_frio, sem_interesse]
      fim:
        handoff: true
    """
)


def test_valid_flow_builds_frozen_dataclasses_with_defaults() -> None:
    """Name, title, start, trigger, keywords and messages default; tags keep order, once each."""
    flow = parse_flow(VALID, "flows/boas_vindas.yaml")
    definition = yaml.safe_load(VALID)
    assert flow == Flow(
        name="boas_vindas",
        title="boas_vindas",
        start="inicio",
        trigger=Trigger(),
        blocks={
            "inicio": Block(
                id="inicio",
                message="Olá {{nome}}! Quer continuar?",
                buttons=(
                    Button(text="Sim", value="sim", next_block="fim", tags=()),
                    Button(
                        text="Não",
                        value="nao",
                        next_block=None,
                        tags=("lead_frio", "sem_interesse"),
                    ),
                ),
                next_block=None,
                tags=("novo", "visitante"),
                handoff=False,
            ),
            "fim": Block(
                id="fim", message=None, buttons=(), next_block=None, tags=(), handoff=True
            ),
        },
        keywords=GlobalWords(),
        messages=Texts(),
        version=flow_version(definition),
        definition=definition,
    )
    assert list(flow.blocks) == ["inicio", "fim"]
    with pytest.raises(AttributeError):
        flow.name = "outro"  # type: ignore[misc]


def test_explicit_top_level_keys_override_the_defaults() -> None:
    """name, title, start, trigger, keywords and messages are taken as written."""
    text = yml(
        """
        name: vendas
        title: Vendas
        start: fim
        trigger:
          default: true
          keywords: [Comercial, vendas]
          inboxes: [7, 9]
        keywords:
          handoff: [Falar com alguém]
          restart: []
        messages:
          retry: Escolha uma opção, por favor.
          handoff: Já chamo alguém.
        blocks:
          inicio:
            message: Oi
          fim:
            message: Tchau
        """
    )
    flow = parse_flow(text, "flows/sub/x.yml")
    assert (flow.name, flow.title, flow.start) == ("vendas", "Vendas", "fim")
    assert flow.trigger == Trigger(default=True, keywords=("Comercial", "vendas"), inboxes=(7, 9))
    assert flow.keywords == GlobalWords(handoff=("Falar com alguém",), restart=())
    assert flow.messages == Texts(retry="Escolha uma opção, por favor.", handoff="Já chamo alguém.")


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("flows/fluxo_comercial.yaml", "fluxo_comercial"),
        ("flows/sub/pos_venda.yml", "pos_venda"),
        ("boas_vindas.flow.yaml", "boas_vindas.flow"),
    ],
    ids=["yaml", "yml-in-subfolder", "two-suffixes"],
)
def test_name_defaults_to_the_file_stem(filename: str, expected: str) -> None:
    """Without `name:`, the flow is named after its file, and titled after its name."""
    flow = parse_flow("blocks: {inicio: {message: Oi}}", filename)
    assert (flow.name, flow.title) == (expected, expected)


@pytest.mark.parametrize(
    ("buttons", "values"),
    [
        (["{text: Não}", "{text: 'Olá, mundo!'}"], ["nao", "ola_mundo"]),
        (["{text: Sim!}", "{text: 'Sim?'}", "{text: sim.}"], ["sim", "sim_2", "sim_3"]),
        (["{text: Sim}", "{text: Ok, value: sim}"], ["sim_2", "sim"]),
        (["{text: '👍'}", "{text: '👎'}"], ["opcao", "opcao_2"]),
        (["{text: Straße}", "{text: Ação/Promoção 50%}"], ["strasse", "acao_promocao_50"]),
    ],
    ids=["accents", "slug-collision", "explicit-value-wins", "no-ascii", "casefold"],
)
def test_button_values(buttons: list[str], values: list[str]) -> None:
    """A button's value is its `value:` or a unique slug of its text."""
    flow = parse_flow(buttons_block(*buttons), FILE)
    assert [button.value for button in flow.blocks["inicio"].buttons] == values


@pytest.mark.parametrize(
    ("text", "slug"),
    [
        ("Não", "nao"),
        ("  Olá,  Mundo!! ", "ola_mundo"),
        ("Straße", "strasse"),
        ("👍", "opcao"),
        ("", "opcao"),
        ("a" * 70, "a" * 64),
        ("a" * 63 + " b", "a" * 63),
    ],
    ids=["accent", "punctuation", "casefold", "emoji", "empty", "long", "no-trailing-underscore"],
)
def test_slugify(text: str, slug: str) -> None:
    """Slugs are ASCII, lowercase, `_`-joined, at most 64 bytes and never empty."""
    assert slugify(text) == slug


@pytest.mark.parametrize(
    ("slug", "used", "expected"),
    [
        ("sim", set(), "sim"),
        ("sim", {"sim", "sim_2"}, "sim_3"),
        ("a" * 64, {"a" * 64}, "a" * 62 + "_2"),
        ("a" * 61 + "_bb", {"a" * 61 + "_bb"}, "a" * 61 + "_2"),
    ],
    ids=["free", "third", "truncated", "no-double-underscore"],
)
def test_unique_slug_stays_within_64_bytes(slug: str, used: set[str], expected: str) -> None:
    """Suffixes cut the slug rather than overflow; titles are too short to reach this in a flow."""
    assert _unique_slug(slug, used) == expected


@pytest.mark.parametrize(
    ("count", "length"),
    [(3, 20), (4, 24), (10, 24)],
    ids=["3-reply-buttons", "4-list-rows", "10-list-rows"],
)
def test_button_text_at_the_limit_is_accepted(count: int, length: int) -> None:
    """20 characters fit a reply button, 24 a list row."""
    buttons = [f"{{text: '{i}{'x' * (length - 1)}'}}" for i in range(count)]
    flow = parse_flow(buttons_block(*buttons), FILE)
    assert len(flow.blocks["inicio"].buttons) == count


def test_yaml_anchors_aliases_and_merge_keys_are_understood() -> None:
    """Aliases and `<<` merges work, and are neither repeats nor endless walks."""
    text = yml(
        """
        blocks:
          inicio:
            message: &oi "Oi!"
            tags: &marcas [novo]
            buttons:
              - &sim {text: Sim, next_block: fim}
          fim:
            <<: {handoff: true}
            message: *oi
            tags: *marcas
            buttons: [*sim]
        """
    )
    fim = parse_flow(text, FILE).blocks["fim"]
    assert (fim.message, fim.tags, fim.handoff) == ("Oi!", ("novo",), True)
    assert fim.buttons == (Button(text="Sim", value="sim", next_block="fim", tags=()),)


def example_text() -> str:
    """The text of the shipped example, flows/fluxo_comercial.yaml."""
    return (FLOWS_DIR / "fluxo_comercial.yaml").read_text(encoding="utf-8")


def test_shipped_example_flow_is_valid() -> None:
    """flows/fluxo_comercial.yaml parses cleanly and is the default sales funnel."""
    flow = parse_flow(example_text(), "flows/fluxo_comercial.yaml")
    assert flow.name == "fluxo_comercial"
    assert flow.trigger == Trigger(default=True, keywords=("comercial", "vendas"))
    first = flow.blocks[flow.start]
    assert first.message is not None
    assert first.message.startswith("Olá {{nome}}!")
    no = first.buttons[1]
    assert (no.text, no.value, no.tags) == ("Não", "nao", ("lead_frio",))
    blocks = list(flow.blocks.values())
    assert any(len(block.buttons) >= 4 for block in blocks)
    assert any(block.handoff and "lead_quente" in block.tags for block in blocks)
    assert check_flow_set([("flows/fluxo_comercial.yaml", flow)]) == []


# --- every rule, with its exact message ----------------------------------------------------------

RULES = [
    pytest.param(
        """
        blocks:
          bloco_1:
            message: Oi
            next_block: bloco_3x
          bloco_3:
            message: Fim
        """,
        ["4: blocks.bloco_1.next_block: unknown block 'bloco_3x' (did you mean 'bloco_3'?)"],
        id="unknown-next-block-suggests",
    ),
    pytest.param(
        """
        blocks:
          inicio:
            message: Oi
            buttons:
              - text: Sim
                next_block: zzz
        """,
        ["6: blocks.inicio.buttons[0].next_block: unknown block 'zzz'"],
        id="unknown-button-next-block",
    ),
    pytest.param(
        """
        start: bloco_2x
        blocks:
          bloco_2:
            message: Oi
        """,
        ["1: start: unknown block 'bloco_2x' (did you mean 'bloco_2'?)"],
        id="unknown-start",
    ),
    pytest.param(
        """
        # sem blocos
        title: Vazio
        """,
        ["2: blocks: a flow needs at least one block"],
        id="blocks-missing",
    ),
    pytest.param(
        """
        title: Vazio
        blocks: {}
        """,
        ["2: blocks: a flow needs at least one block"],
        id="blocks-empty",
    ),
    pytest.param(
        """
        blocks: [inicio]
        """,
        ["1: blocks: expected a mapping of block id to block, got a list"],
        id="blocks-not-a-mapping",
    ),
    pytest.param(
        "",
        ["1: (root): the flow is empty: it needs at least blocks"],
        id="empty-file",
    ),
    pytest.param(
        """
        - inicio
        """,
        [
            "1: (root): expected a mapping of flow keys (name, title, start, trigger, blocks,"
            " keywords, messages), got a list"
        ],
        id="root-not-a-mapping",
    ),
    pytest.param(
        "blocks:\n  inicio:\n    message: Escolha\n    buttons: ["
        + ", ".join(f"{{text: Opção {i}}}" for i in range(1, 12))
        + "]\n",
        ["4: blocks.inicio.buttons: 11 buttons, but WhatsApp lists show at most 10"],
        id="more-than-10-buttons",
    ),
    pytest.param(
        buttons_block("{text: Quero falar com alguém}", "{text: Não}"),
        [
            "5: blocks.inicio.buttons[0].text: text is 22 characters;"
            " WhatsApp reply buttons (3 or fewer) allow at most 20"
        ],
        id="reply-button-text-too-long",
    ),
    pytest.param(
        buttons_block(
            "{text: A}", "{text: B}", "{text: C}", "{text: Quero falar com um atendente}"
        ),
        [
            "8: blocks.inicio.buttons[3].text: text is 28 characters;"
            " WhatsApp list rows (4 or more buttons) allow at most 24"
        ],
        id="list-row-text-too-long",
    ),
    pytest.param(
        """
        blocks:
          inicio:
            message: ""
        """,
        ["3: blocks.inicio.message: message is empty"],
        id="message-empty-string",
    ),
    pytest.param(
        """
        blocks:
          inicio:
            message: "   "
        """,
        ["3: blocks.inicio.message: message is empty"],
        id="message-only-spaces",
    ),
    pytest.param(
        """
        blocks:
          inicio:
            message:
              ""
        """,
        ["4: blocks.inicio.message: message is empty"],
        id="message-on-next-line",
    ),
    pytest.param(
        """
        blocks:
          inicio:
            message:
            tag: novo
        """,
        ["3: blocks.inicio.message: message is empty"],
        id="message-null",
    ),
    pytest.param(
        """
        blocks:
          inicio:
            buttons:
              - text: Sim
        """,
        ["2: blocks.inicio.message: message is missing: WhatsApp shows buttons under a message"],
        id="buttons-without-message",
    ),
    pytest.param(
        buttons_block("{text: Sim}", "{text: ' SÍM'}"),
        [
            "6: blocks.inicio.buttons[1].text: same text as buttons[0]"
            " once case, accents and spaces are ignored"
        ],
        id="same-text-normalized",
    ),
    pytest.param(
        buttons_block("{text: Sim, value: " + "ã" * 33 + "}"),
        [
            "5: blocks.inicio.buttons[0].value: value is 66 bytes,"
            " more than 64 (Telegram callback data)"
        ],
        id="value-over-64-bytes",
    ),
    pytest.param(
        buttons_block("{text: Sim, value: sim}", "{text: Claro, value: Sim}"),
        ["6: blocks.inicio.buttons[1].value: value 'Sim' is already used by buttons[0]"],
        id="duplicate-explicit-value",
    ),
    pytest.param(
        buttons_block("{text: Sim, value: ''}"),
        ["5: blocks.inicio.buttons[0].value: value is empty"],
        id="value-empty",
    ),
    pytest.param(
        """
        blocks:
          inicio:
            message: Oi
            tag: Lead_Quente
            tags: [lead quente, "", ok-1, 5]
        """,
        [
            "4: blocks.inicio.tag: tag 'Lead_Quente' is not a valid Chatwoot label:"
            " use lowercase letters, digits, - and _",
            "5: blocks.inicio.tags[0]: tag 'lead quente' is not a valid Chatwoot label:"
            " use lowercase letters, digits, - and _",
            "5: blocks.inicio.tags[1]: tag '' is not a valid Chatwoot label:"
            " use lowercase letters, digits, - and _",
            "5: blocks.inicio.tags[3]: expected a string, got the number 5 (quote it)",
        ],
        id="bad-tags",
    ),
    pytest.param(
        """
        blocks:
          inicio:
            message: Oi
            tags: lead_quente
        """,
        ["4: blocks.inicio.tags: expected a list of tags, got the string 'lead_quente'"],
        id="tags-not-a-list",
    ),
    pytest.param(
        buttons_block("{text: Sim, tag: Quente}"),
        [
            "5: blocks.inicio.buttons[0].tag: tag 'Quente' is not a valid Chatwoot label:"
            " use lowercase letters, digits, - and _"
        ],
        id="bad-button-tag",
    ),
    pytest.param(
        """
        blocks:
          inicio:
            message: Oi
            buttons: "Sim"
        """,
        ["4: blocks.inicio.buttons: expected a list of buttons, got the string 'Sim'"],
        id="buttons-not-a-list",
    ),
    pytest.param(
        """
        blocks:
          inicio:
            message: Oi
            buttons: []
        """,
        ["4: blocks.inicio.buttons: buttons is empty: add a button or remove the key"],
        id="buttons-empty",
    ),
    pytest.param(
        buttons_block("Sim", "{value: nao}", "{text: No}", "{text: 10}"),
        [
            "5: blocks.inicio.buttons[0]: expected a button (a mapping with text:),"
            " got the string 'Sim'",
            "6: blocks.inicio.buttons[1].text: text is missing",
            "7: blocks.inicio.buttons[2].text: expected a string, got false"
            " (quote it: YAML reads yes, no, on and off as true or false)",
            "8: blocks.inicio.buttons[3].text: expected a string, got the number 10 (quote it)",
        ],
        id="bad-buttons",
    ),
    pytest.param(
        """
        blocks:
          inicio:
            message: Oi
            handoff: "yes"
        """,
        ["4: blocks.inicio.handoff: expected true or false, got the string 'yes'"],
        id="handoff-not-a-bool",
    ),
    pytest.param(
        """
        blocks:
          inicio:
            handoff: "yes"
        """,
        ["3: blocks.inicio.handoff: expected true or false, got the string 'yes'"],
        id="handoff-not-a-bool-alone-is-not-also-idle",
    ),
    pytest.param(
        """
        blocks:
          inicio: Oi
          1:
            message: Um
        """,
        [
            "2: blocks.inicio: expected a mapping of block keys (message, buttons, next_block,"
            " tag, tags, handoff), got the string 'Oi'",
            "3: blocks.1: block id 1 must be a string: quote it",
        ],
        id="block-not-a-mapping-and-id-not-a-string",
    ),
    pytest.param(
        """
        blocks:
          inicio:
            message: Oi
            next_block: [fim]
        """,
        ["4: blocks.inicio.next_block: expected a string, got a list"],
        id="next-block-not-a-string",
    ),
    pytest.param(
        """
        trigger:
          default: sim
          keywords: ["", vendas, 3]
          inboxes: ["7", 0, true, 8]
        blocks:
          inicio:
            message: Oi
        """,
        [
            "2: trigger.default: expected true or false, got the string 'sim'",
            "3: trigger.keywords[0]: keyword is empty",
            "3: trigger.keywords[2]: expected a string, got the number 3 (quote it)",
            "4: trigger.inboxes[0]: expected an inbox id (a positive whole number),"
            " got the string '7'",
            "4: trigger.inboxes[1]: expected an inbox id (a positive whole number),"
            " got the number 0",
            "4: trigger.inboxes[2]: expected an inbox id (a positive whole number), got true",
        ],
        id="bad-trigger-values",
    ),
    pytest.param(
        """
        trigger: [vendas]
        keywords:
          handoff: atendente
        messages: Oi
        blocks:
          inicio:
            message: Oi
        """,
        [
            "1: trigger: expected a mapping with default, keywords, inboxes, got a list",
            "3: keywords.handoff: expected a list of words, got the string 'atendente'",
            "4: messages: expected a mapping with retry, handoff, got the string 'Oi'",
        ],
        id="bad-sections",
    ),
    pytest.param(
        """
        trigger:
          inboxes: 7
        messages:
          retry: 3
          handoff: ""
        blocks:
          inicio:
            message: Oi
        """,
        [
            "2: trigger.inboxes: expected a list of inbox ids, got the number 7",
            "4: messages.retry: expected a string, got the number 3 (quote it)",
            "5: messages.handoff: handoff is empty",
        ],
        id="bad-messages-and-inboxes",
    ),
    pytest.param(
        """
        name: 12
        title: 2024-01-01
        blocks:
          inicio:
            message: 1.5
        """,
        [
            "1: name: expected a string, got the number 12 (quote it)",
            "2: title: expected a string, got a date",
            "5: blocks.inicio.message: expected a string, got the number 1.5 (quote it)",
        ],
        id="top-level-types",
    ),
    pytest.param(
        """
        trigger:
        blocks:
          inicio:
            message: [Oi]
            tag: {a: b}
            tags: "uma lista escrita como texto, longa demais para mostrar inteira"
        """,
        [
            "1: trigger: expected a mapping with default, keywords, inboxes, got nothing",
            "4: blocks.inicio.message: expected a string, got a list",
            "5: blocks.inicio.tag: expected a string, got a mapping",
            "6: blocks.inicio.tags: expected a list of tags,"
            " got the string 'uma lista escrita como texto, longa d...'",
        ],
        id="collection-types",
    ),
    pytest.param(
        """
        titel: Vendas
        xyz: 1
        1: um
        trigger:
          inbox: [7]
        blocks:
          inicio:
            mesage: Oi
          fim:
            message: Tchau
            buttons:
              - txt: Sim
        """,
        [
            "1: titel: unknown key 'titel' (did you mean 'title'?)",
            "2: xyz: unknown key 'xyz'",
            "3: 1: unknown key 1",
            "5: trigger.inbox: unknown key 'inbox' (did you mean 'inboxes'?)",
            "8: blocks.inicio.mesage: unknown key 'mesage' (did you mean 'message'?)",
            "12: blocks.fim.buttons[0].txt: unknown key 'txt' (did you mean 'text'?)",
            "12: blocks.fim.buttons[0].text: text is missing",
        ],
        id="unknown-keys",
    ),
    pytest.param(
        """
        blocks:
          inicio: {}
          fim:
            handoff: false
        """,
        [
            "2: blocks.inicio: block does nothing: give it a message, buttons, tags,"
            " a next_block or handoff: true",
            "3: blocks.fim: block does nothing: give it a message, buttons, tags,"
            " a next_block or handoff: true",
        ],
        id="block-does-nothing",
    ),
    pytest.param(
        """
        blocks:
          inicio:
            message: Oi
            next_block: a
          a:
            message: A
            next_block: b
          b:
            message: B
            next_block: a
        """,
        ["7: blocks.a.next_block: loops back to 'a' without waiting for the customer"],
        id="loop-of-two",
    ),
    pytest.param(
        """
        blocks:
          inicio:
            message: Oi
            next_block: a
          b:
            tag: b
            next_block: a
          a:
            tag: a
            next_block: b
        """,
        ["7: blocks.b.next_block: loops back to 'b' without waiting for the customer"],
        id="loop-reported-at-its-first-block-in-the-file",
    ),
    pytest.param(
        """
        blocks:
          inicio:
            message: Oi
            next_block: inicio
        """,
        ["4: blocks.inicio.next_block: loops back to 'inicio' without waiting for the customer"],
        id="loop-to-itself",
    ),
    pytest.param(
        """
        blocks:
          inicio:
            message: Oi
            tags: &t [*t]
        """,
        ["4: blocks.inicio.tags[0]: expected a string, got a list"],
        id="recursive-alias",
    ),
]


@pytest.mark.parametrize(("text", "expected"), RULES)
def test_each_rule_reports_its_exact_message(text: str, expected: list[str]) -> None:
    """Each invalid flow names every problem as `file:line: path: message`."""
    assert problems_of(yml(text)) == [f"{FILE}:{line}" for line in expected]


@pytest.mark.parametrize(
    "text",
    [
        """
        blocks:
          inicio:
            message: Oi
            next_block: a
          a:
            message: A
            buttons:
              - text: De novo
                next_block: inicio
        """,
        """
        blocks:
          inicio:
            message: Oi
            next_block: fim
          fim:
            message: Tchau
        """,
    ],
    ids=["loop-through-a-question", "chain-that-ends"],
)
def test_chains_that_wait_or_end_are_not_loops(text: str) -> None:
    """A chain of next_blocks is fine when it reaches a question or the end."""
    assert parse_flow(yml(text), FILE).start == "inicio"


def test_every_problem_is_reported_at_once_in_file_order() -> None:
    """One run names every problem, repeated keys included, sorted by line."""
    text = yml(
        """
        blocks:
          inicio:
            message: ""
          inicio:
            message: Oi
            next_block: fimm
          fim:
            tag: Fim
        start: nada
        """
    )
    assert problems_of(text) == [
        f"{FILE}:4: blocks.inicio: key 'inicio' is repeated (first at line 2);"
        " only the last counts",
        f"{FILE}:6: blocks.inicio.next_block: unknown block 'fimm' (did you mean 'fim'?)",
        f"{FILE}:8: blocks.fim.tag: tag 'Fim' is not a valid Chatwoot label:"
        " use lowercase letters, digits, - and _",
        f"{FILE}:9: start: unknown block 'nada'",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            """
            blocks:
              inicio:
                message: Oi
              inicio:
                message: Olá
            """,
            ["4: blocks.inicio: key 'inicio' is repeated (first at line 2); only the last counts"],
        ),
        (
            """
            blocks:
              inicio:
                message: Oi
                tag: a
                message: Olá
                tag: b
                message: Oi de novo
            """,
            [
                "5: blocks.inicio.message: key 'message' is repeated (first at line 3);"
                " only the last counts",
                "6: blocks.inicio.tag: key 'tag' is repeated (first at line 4);"
                " only the last counts",
                "7: blocks.inicio.message: key 'message' is repeated (first at line 3);"
                " only the last counts",
            ],
        ),
    ],
    ids=["block-id", "block-keys-three-times"],
)
def test_repeated_keys_are_problems(text: str, expected: list[str]) -> None:
    """A key written twice in one mapping is reported, though YAML would keep the last."""
    assert problems_of(yml(text)) == [f"{FILE}:{line}" for line in expected]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "blocks:\n  inicio: [a\n  fim: b\n",
            "3: (yaml): while parsing a flow sequence, expected ',' or ']', but got ':'",
        ),
        (
            "blocks:\n  inicio:\n\tmessage: Oi\n",
            "3: (yaml): while scanning for the next token, found character '\\t'"
            " that cannot start any token",
        ),
        (
            "title: !!python/object:os.system x\nblocks: {}\n",
            "1: (yaml): could not determine a constructor for the tag"
            " 'tag:yaml.org,2002:python/object:os.system'",
        ),
        (
            "blocks: {}\n---\nblocks: {}\n",
            "2: (yaml): expected a single document in the stream, but found another document",
        ),
        (
            "title: a\nblocks: b\x00\n",
            "2: (yaml): character #x0000 is not allowed in YAML:"
            " special characters are not allowed",
        ),
    ],
    ids=["syntax", "tab", "unsafe-tag", "two-documents", "control-character"],
)
def test_yaml_errors_become_one_problem(text: str, expected: str) -> None:
    """A file YAML cannot read gives one problem at the line YAML names, path `(yaml)`."""
    assert problems_of(text) == [f"{FILE}:{expected}"]


# --- versions and the database ---------------------------------------------------------------

REFORMATTED = """
# o mesmo conteúdo, escrito de outro jeito
blocks: {inicio: {message: "Olá {{nome}}! Quer continuar?", tags: [novo, visitante], tag: novo,
  buttons: [{text: Sim, next_block: fim},
            {tags: [lead_frio, sem_interesse], text: Não, value: nao, tag: lead_frio}]},
  fim: {handoff: true}}
"""


@pytest.mark.parametrize(
    ("other", "same"),
    [
        (REFORMATTED, True),
        (VALID + "# mais um comentário\n", True),
        (VALID.replace("Quer continuar?", "Vamos continuar?"), False),
        (VALID.replace("handoff: true", "handoff: true\n    tag: fim"), False),
    ],
    ids=["reformatted", "comment", "message-changed", "tag-added"],
)
def test_version_depends_on_content_only(other: str, same: bool) -> None:
    """Comments and formatting keep the version; any change of content changes it."""
    version = parse_flow(VALID, FILE).version
    assert (parse_flow(other, FILE).version == version) is same
    assert len(version) == 16


@pytest.mark.parametrize(
    ("read", "name"),
    [(lambda: VALID, "boas_vindas"), (example_text, "fluxo_comercial")],
    ids=["small", "shipped-example"],
)
def test_flow_from_definition_round_trip(read: Callable[[], str], name: str) -> None:
    """A definition stored in the database builds the same flow as its file."""
    flow = parse_flow(read(), f"flows/{name}.yaml")
    again = flow_from_definition(flow.definition, name=name)
    assert again == flow
    assert again.version == flow.version
    assert again.lines == {}


def test_flow_from_definition_problems_have_line_zero() -> None:
    """Without a file, problems name the source and line 0."""
    definition: dict[str, Any] = {"blocks": {"inicio": {"next_block": "fin"}, "fim": {}}}
    with pytest.raises(FlowError) as info:
        flow_from_definition(definition, name="vendas", file="<database vendas@abc>")
    assert [str(problem) for problem in info.value.problems] == [
        "<database vendas@abc>:0: blocks.inicio.next_block: unknown block 'fin'"
        " (did you mean 'fim'?)",
        "<database vendas@abc>:0: blocks.fim: block does nothing: give it a message, buttons,"
        " tags, a next_block or handoff: true",
    ]


def test_flow_error_message_lists_every_problem() -> None:
    """FlowError's text has one line per problem, for the CLI and the logs."""
    with pytest.raises(FlowError, match=r"2 problem\(s\)") as info:
        parse_flow("titel: x\nblocks: {}\n", FILE)
    assert str(info.value).splitlines()[1:] == [
        f"{FILE}:1: titel: unknown key 'titel' (did you mean 'title'?)",
        f"{FILE}:2: blocks: a flow needs at least one block",
    ]


# --- checks across flow files ----------------------------------------------------------------


def flow_file(head: str, filename: str) -> tuple[str, Flow]:
    """A (filename, flow) pair: `head` then a one-block `blocks:`."""
    return filename, parse_flow(f"{head}\nblocks: {{inicio: {{message: Oi}}}}\n", filename)


def default_for(filename: str, inboxes: str = "") -> tuple[str, Flow]:
    """A default flow, its `default: true` on line 3, for every inbox or for `inboxes`."""
    extra = f"\n  inboxes: {inboxes}" if inboxes else ""
    return flow_file(f"# {filename}\ntrigger:\n  default: true{extra}", filename)


EVERY_INBOX = "trigger.default: flows/a.yaml is already the default flow for every inbox"


@pytest.mark.parametrize(
    ("flows", "expected"),
    [
        (
            [
                flow_file("name: vendas", "flows/a.yaml"),
                flow_file("# b\nname: vendas", "flows/b.yaml"),
            ],
            ["flows/b.yaml:2: name: flow name 'vendas' is already used by flows/a.yaml"],
        ),
        (
            [flow_file("", "flows/vendas.yaml"), flow_file("name: vendas", "flows/outro.yml")],
            ["flows/outro.yml:1: name: flow name 'vendas' is already used by flows/vendas.yaml"],
        ),
        (
            [flow_file("", "flows/a.yaml"), flow_file("", "flows/b.yaml")],
            [],
        ),
        (
            [default_for("flows/a.yaml"), default_for("flows/b.yaml")],
            [f"flows/b.yaml:3: {EVERY_INBOX}"],
        ),
        (
            [default_for("flows/a.yaml", "[7, 8]"), default_for("flows/b.yaml", "[8, 9]")],
            [
                "flows/b.yaml:3: trigger.default:"
                " flows/a.yaml is already the default flow for inbox 8"
            ],
        ),
        (
            [default_for("flows/a.yaml", "[8, 7]"), default_for("flows/b.yaml", "[7, 8, 9]")],
            [
                "flows/b.yaml:3: trigger.default:"
                " flows/a.yaml is already the default flow for inboxes 7, 8"
            ],
        ),
        (
            [default_for("flows/a.yaml"), default_for("flows/b.yaml", "[7]")],
            [],
        ),
        (
            [default_for("flows/a.yaml", "[7]"), default_for("flows/b.yaml", "[8]")],
            [],
        ),
        (
            [default_for(f"flows/{name}.yaml") for name in "abc"],
            [f"flows/b.yaml:3: {EVERY_INBOX}", f"flows/c.yaml:3: {EVERY_INBOX}"],
        ),
        (
            [flow_file("trigger: {default: false}", "flows/a.yaml"), default_for("flows/b.yaml")],
            [],
        ),
    ],
    ids=[
        "same-name",
        "name-equal-to-another-stem",
        "different-names",
        "two-defaults-everywhere",
        "defaults-share-an-inbox",
        "defaults-share-inboxes",
        "specific-default-beside-a-global-one",
        "defaults-for-other-inboxes",
        "third-default-reported-once",
        "not-a-default",
    ],
)
def test_check_flow_set(flows: list[tuple[str, Flow]], expected: list[str]) -> None:
    """Names are unique across files, and each inbox has at most one default flow."""
    assert [str(problem) for problem in check_flow_set(flows)] == expected


def test_check_flow_set_on_database_flows_uses_line_zero() -> None:
    """Flows from the database have no lines, so their problems point at line 0."""
    definition = {"name": "vendas", "blocks": {"inicio": {"message": "Oi"}}}
    flows = [
        (source, flow_from_definition(definition, name="vendas", file=source))
        for source in ("<database 1>", "<database 2>")
    ]
    assert check_flow_set(flows) == [
        Problem("<database 2>", 0, "name", "flow name 'vendas' is already used by <database 1>")
    ]
