"""Flow files: parsing, validation messages, defaults, versions and checks across files."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentbot.answers import InputType
from agentbot.errors import FlowError
from agentbot.expressions import parse_expression
from agentbot.flowchecks import check_flow_set, flow_warnings
from agentbot.flows import (
    Block,
    Button,
    Condition,
    EndSpec,
    Flow,
    GlobalWords,
    HandoffSpec,
    Inactivity,
    InputSpec,
    SaveTarget,
    Texts,
    TimeoutSpec,
    Trigger,
    WebhookSpec,
    captured_variables,
    exits,
    flow_uses_contact_attributes,
    flow_version,
    slugify,
)
from agentbot.loader import _unique_slug, flow_from_definition, parse_flow
from agentbot.templates import parse_template
from agentbot.validation import Problem

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
                message=parse_template("Olá {{nome}}! Quer continuar?"),
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
                handoff=None,
            ),
            "fim": Block(id="fim", handoff=HandoffSpec()),
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
            <<: {next_block: inicio}
            message: *oi
            tags: *marcas
            buttons: [*sim]
        """
    )
    fim = parse_flow(text, FILE).blocks["fim"]
    assert fim.message is not None
    assert (fim.message.source, fim.tags, fim.next_block) == ("Oi!", ("novo",), "inicio")
    assert fim.buttons == (Button(text="Sim", value="sim", next_block="fim", tags=()),)


FEATURES = yml(
    """
    variables: [plano, email]
    fallback: ajuda
    inactivity: {after: 1d, message: "Até mais, {{nome | first_name}}!"}
    blocks:
      idade:
        set: {origem: whatsapp, tentativas: 0, lista: ["{{nome}}", 1]}
        message: "Quantos anos você tem?"
        input: {save_as: idade, type: number, error_message: "Digite só números.", retries: 3}
        save_to: conversation.custom_attributes.idade
        conditions:
          - if: 'idade >= 18 and plano == "pro"'
            next_block: crm
        else: ajuda
      crm:
        webhook:
          url: "https://crm.example/leads/{{idade}}"
          method: put
          headers: {Authorization: "Bearer abc", X-Nome: "{{nome}}"}
          body: {email: "{{email}}", tags: [a, 1, true, null]}
          timeout: 5s
          save_as: crm
          on_error: ajuda
        next_block: espera
      espera:
        message: Ainda está aí?
        buttons: [{text: Sim, next_block: idade}, {text: Não}]
        timeout: {after: 1h30m, next_block: fim}
      codigo:
        message: Código?
        input: {save_as: codigo, type: regex, pattern: 'AB\\d+'}
        save_to: contact.custom_attributes.codigo
        next_block: fim
      de_novo:
        message: Idade de novo?
        input: {save_as: idade, type: number}
        next_block: fim
      ajuda:
        message: Um atendente vai ajudar.
        handoff: {team_id: 3, assignee_id: 7, note: "Cliente {{nome}}"}
      fim:
        end: {resolve: true}
    """
)


def test_every_block_key_builds_its_model() -> None:
    """input, save_to, set, conditions, else, webhook, timeout, handoff and end are parsed."""
    flow = parse_flow(FEATURES, FILE)
    blocks = flow.blocks
    assert blocks["idade"] == Block(
        id="idade",
        message=parse_template("Quantos anos você tem?"),
        input=InputSpec("idade", InputType.NUMBER, None, parse_template("Digite só números."), 3),
        save_to=SaveTarget("conversation", "idade"),
        assign={
            "origem": parse_template("whatsapp"),
            "tentativas": 0,
            "lista": (parse_template("{{nome}}"), 1),
        },
        conditions=(Condition(parse_expression('idade >= 18 and plano == "pro"'), "crm"),),
        else_block="ajuda",
    )
    assert blocks["crm"].webhook == WebhookSpec(
        url=parse_template("https://crm.example/leads/{{idade}}"),
        method="PUT",
        headers={
            "Authorization": parse_template("Bearer abc"),
            "X-Nome": parse_template("{{nome}}"),
        },
        body={"email": parse_template("{{email}}"), "tags": (parse_template("a"), 1, True, None)},
        timeout=5.0,
        save_as="crm",
        on_error="ajuda",
        retry=True,
    )
    assert blocks["espera"].timeout == TimeoutSpec(timedelta(hours=1, minutes=30), "fim")
    codigo = blocks["codigo"]
    assert codigo.input is not None
    assert codigo.input.pattern is not None
    assert codigo.input.pattern.pattern == r"AB\d+"  # type: ignore[attr-defined]
    assert codigo.input == InputSpec("codigo", InputType.REGEX, codigo.input.pattern)
    assert codigo.save_to == SaveTarget("contact", "codigo")
    assert blocks["ajuda"].handoff == HandoffSpec(3, 7, parse_template("Cliente {{nome}}"))
    assert blocks["fim"].end == EndSpec(resolve=True)
    assert (flow.fallback, flow.inactivity) == (
        "ajuda",
        Inactivity(timedelta(days=1), parse_template("Até mais, {{nome | first_name}}!")),
    )
    assert [(b.id, b.waits, b.terminal) for b in blocks.values()] == [
        ("idade", True, False),
        ("crm", True, False),
        ("espera", True, False),
        ("codigo", True, False),
        ("de_novo", True, False),
        ("ajuda", False, True),
        ("fim", False, True),
    ]


def test_flow_helpers_for_the_shell() -> None:
    """Exits, captured variables and contact attributes are read off the model."""
    flow = parse_flow(FEATURES, FILE)
    assert {block_id: exits(block) for block_id, block in flow.blocks.items()} == {
        "idade": (('idade >= 18 and plano == "pro"', "crm"), ("else", "ajuda")),
        "crm": (("next", "espera"), ("error", "ajuda")),
        "espera": (("Sim", "idade"), ("timeout", "fim")),
        "codigo": (("next", "fim"),),
        "de_novo": (("next", "fim"),),
        "ajuda": (),
        "fim": (),
    }
    assert captured_variables(flow) == ("idade", "codigo")
    assert flow_uses_contact_attributes(flow)
    assert not flow_uses_contact_attributes(parse_flow(VALID, FILE))


def test_warnings_for_unreachable_blocks_and_silent_ends() -> None:
    """check warns about blocks nothing leads to and answers that end the flow in silence."""
    text = yml(
        """
        fallback: ajuda
        blocks:
          inicio:
            message: Escolha
            buttons: [{text: Sim, next_block: email}, {text: Não}]
          email:
            message: E-mail?
            input: {save_as: email, type: email}
            timeout: {after: 1h, next_block: crm}
          crm:
            webhook: {url: "https://crm.example"}
          ajuda:
            handoff: true
          perdido:
            message: Ninguém chega aqui
            next_block: inicio
        """
    )
    flow = parse_flow(text, FILE)
    assert [str(problem) for problem in flow_warnings(flow, FILE)] == [
        f"{FILE}:5: blocks.inicio.buttons[1]: choosing this button ends the flow without a"
        " reply to the customer",
        f"{FILE}:6: blocks.email: the flow ends after this block's answer without a reply to"
        " the customer",
        f"{FILE}:10: blocks.crm: the flow ends after this block's answer without a reply to"
        " the customer",
        f"{FILE}:14: blocks.perdido: no way leads to this block from the start",
    ]
    assert flow_warnings(parse_flow(example_text(), FILE), FILE) == []


def test_warning_for_a_question_longer_than_whatsapp_shows() -> None:
    """check warns when a question's own text (placeholders aside) is over 1,024 characters;
    text that placeholders may make longer is cut when sent, without a warning."""
    long_text = "a" * 1025
    text = yml(
        f"""
        blocks:
          inicio:
            message: "{long_text}"
            buttons: [{{text: Sim, next_block: fim}}]
          fim:
            message: "{{{{nome}}}}{"b" * 1020}"
            buttons: [{{text: Ok, next_block: inicio}}]
        """
    )
    flow = parse_flow(text, FILE)
    assert [str(problem) for problem in flow_warnings(flow, FILE)] == [
        f"{FILE}:3: blocks.inicio.message: the question's own text is 1025 characters: WhatsApp"
        " shows at most 1024 with buttons, so it is cut there",
    ]


def test_warning_for_a_template_without_category() -> None:
    """A `template:` without `category` loads (Chatwoot's own code defaults it), but its API
    document requires one: check says so, and is quiet once it is there."""
    text = yml(
        """
        template:
          name: retomada
          language: pt_BR
        blocks:
          inicio:
            message: Oi
        """
    )
    flow = parse_flow(text, FILE)
    assert flow.template is not None
    assert flow.template.category is None
    assert [str(problem) for problem in flow_warnings(flow, FILE)] == [
        f"{FILE}:1: template: no category: Chatwoot's API documents template_params.category"
        " as required (UTILITY, MARKETING, ...); give the category the template was approved"
        " under",
    ]
    with_category = text.replace("language: pt_BR", "language: pt_BR\n  category: UTILITY")
    assert flow_warnings(parse_flow(with_category, FILE), FILE) == []


@pytest.mark.parametrize(
    ("webhook", "method", "retry", "timeout"),
    [
        ("{url: 'https://x.example'}", "GET", True, 10.0),
        ("{url: 'https://x.example', body: {a: 1}}", "POST", False, 10.0),
        ("{url: 'https://x.example', method: delete, timeout: 2.5}", "DELETE", True, 2.5),
        ("{url: 'https://x.example', method: PATCH, retry: true, timeout: 60}", "PATCH", True, 60),
        ("{url: 'http://x.example:8080/a?b={{nome}}', method: PUT, retry: no}", "PUT", False, 10),
    ],
    ids=["get-by-default", "post-with-a-body", "delete", "patch-retry-on", "put-retry-off"],
)
def test_webhook_defaults(webhook: str, method: str, retry: bool, timeout: float) -> None:
    """method is GET, or POST with a body; retry defaults on for GET, PUT and DELETE."""
    flow = parse_flow(f"blocks:\n  a:\n    webhook: {webhook}\n", FILE)
    spec = flow.blocks["a"].webhook
    assert spec is not None
    assert (spec.method, spec.retry, spec.timeout) == (method, retry, timeout)


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
    assert first.message.source.startswith("Olá {{nome}}!")
    no = first.buttons[1]
    assert (no.text, no.value, no.tags) == ("Não", "nao", ("lead_frio",))
    blocks = list(flow.blocks.values())
    assert any(len(block.buttons) >= 4 for block in blocks)
    assert any(block.handoff is not None and "lead_quente" in block.tags for block in blocks)
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
            " keywords, messages, fallback, inactivity, template, hours, debounce, variables,"
            " languages), got a list"
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
        [
            "4: blocks.inicio.handoff: expected true, false or a mapping with team_id,"
            " assignee_id, note, got the string 'yes'"
        ],
        id="handoff-not-a-bool",
    ),
    pytest.param(
        """
        blocks:
          inicio:
            handoff: "yes"
        """,
        [
            "3: blocks.inicio.handoff: expected true, false or a mapping with team_id,"
            " assignee_id, note, got the string 'yes'"
        ],
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
            " tag, tags, input, save_to, set, conditions, else, webhook, handoff, end, timeout,"
            " split), got the string 'Oi'",
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
            "1: trigger: expected a mapping with default, keywords, inboxes, widget, got a list",
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
            "1: trigger: expected a mapping with default, keywords, inboxes, widget, got nothing",
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
        ["4: (yaml): a YAML alias refers to its own anchor: write the value out"],
        id="recursive-alias",
    ),
]


# --- the flow language: input, save_to, set, conditions, webhook, handoff, end, timeouts ------

LANGUAGE_RULES = [
    pytest.param(
        """
        blocks:
          inicio:
            message: Seu e-mail?
            input: email
        """,
        [
            "4: blocks.inicio.input: expected a mapping with save_as, type, pattern,"
            " error_message, retries, got the string 'email'"
        ],
        id="input-not-a-mapping",
    ),
    pytest.param(
        """
        blocks:
          inicio:
            message: Seu e-mail?
            input:
              tipo: email
        """,
        [
            "4: blocks.inicio.input.save_as: save_as is missing",
            "5: blocks.inicio.input.tipo: unknown key 'tipo'",
        ],
        id="input-unknown-key-and-no-save-as",
    ),
    pytest.param(
        """
        blocks:
          inicio:
            message: Seu e-mail?
            input: {save_as: 1email, type: emial}
          outro:
            message: Seu nome?
            input: {save_as: nome, type: 3}
          mais:
            message: Sua idade?
            input: {save_as: "", retries: 0}
        """,
        [
            "4: blocks.inicio.input.save_as: '1email' is not a valid variable name:"
            " use letters, digits and _, not starting with a digit",
            "4: blocks.inicio.input.type: unknown input type 'emial' (did you mean 'email'?)",
            "7: blocks.outro.input.save_as: 'nome' is a reserved name: choose another",
            "7: blocks.outro.input.type: expected a string, got the number 3 (quote it)",
            "10: blocks.mais.input.save_as: save_as is empty",
            "10: blocks.mais.input.retries: expected a whole number of 1 or more, got the number 0",
        ],
        id="input-bad-values",
    ),
    pytest.param(
        """
        blocks:
          inicio:
            message: Código?
            input: {save_as: codigo, type: regex}
          outro:
            message: Código?
            input: {save_as: codigo, type: number, pattern: '\\d+'}
          mais:
            message: Código?
            input: {save_as: codigo, type: regex, pattern: 'AB(\\d+', retries: true}
          ultimo:
            message: Código?
            input: {save_as: codigo, type: regx, pattern: '\\d+'}
        """,
        [
            "4: blocks.inicio.input.pattern: pattern is missing: type regex needs one",
            "7: blocks.outro.input.pattern: pattern only applies to type: regex",
            "10: blocks.mais.input.pattern: invalid pattern: missing ),"
            " unterminated subpattern at column 3",
            "10: blocks.mais.input.retries: expected a whole number of 1 or more, got true",
            "13: blocks.ultimo.input.type: unknown input type 'regx' (did you mean 'regex'?)",
        ],
        id="input-patterns",
    ),
    pytest.param(
        """
        blocks:
          inicio:
            input: {save_as: email, type: email, pattern: "", error_message: "Oi {{nome"}
        """,
        [
            "2: blocks.inicio.message: message is missing: the customer needs a question to answer",
            "3: blocks.inicio.input.pattern: pattern is empty",
            "3: blocks.inicio.input.error_message: '{{' is never closed at column 4",
        ],
        id="input-without-message",
    ),
    pytest.param(
        """
        blocks:
          inicio:
            message: Plano?
            input: {save_as: plano}
            save_to: contact.plano
          outro:
            message: Oi
            save_to: conversation.custom_attributes.plano
            next_block: inicio
          mais:
            message: Oi
            input: {save_as: x}
            save_to: [contact]
        """,
        [
            "5: blocks.inicio.save_to: expected contact.custom_attributes.<key> or"
            " conversation.custom_attributes.<key>, got 'contact.plano'",
            "8: blocks.outro.save_to: save_to keeps the answer to the block's input,"
            " and it has none",
            "13: blocks.mais.save_to: expected a string, got a list",
        ],
        id="save-to",
    ),
    pytest.param(
        """
        blocks:
          inicio:
            message: Oi
            set: [a, b]
          outro:
            message: Oi
            set:
              2x: um
              contact: dois
              ok: "{{nome | uper}}"
              data: 2024-01-01
              corpo: {1: um, lista: ["{{x"]}
        """,
        [
            "4: blocks.inicio.set: expected a mapping of variable name to value, got a list",
            "8: blocks.outro.set.2x: '2x' is not a valid variable name:"
            " use letters, digits and _, not starting with a digit",
            "9: blocks.outro.set.contact: 'contact' is a reserved name: choose another",
            "10: blocks.outro.set.ok: unknown filter 'uper' (did you mean 'upper'?) at column 10",
            "11: blocks.outro.set.data: expected text, a number, true, false, null, a list or"
            " a mapping, got a date",
            "12: blocks.outro.set.corpo.1: key 1 must be a string: quote it",
            "12: blocks.outro.set.corpo.lista[0]: '{{' is never closed at column 1",
        ],
        id="set",
    ),
    pytest.param(
        """
        blocks:
          idade:
            message: Idade?
            input: {save_as: idade, type: number}
            conditions:
              - if: 'idade >= 18 and'
                next_block: adulto
              - if: idade > 60
                next_block: idso
              - next_block: adulto
              - if: 18
              - idade
            else: menorr
          adulto:
            message: Adulto
          idoso:
            message: Idoso
          menor:
            message: Menor
        """,
        [
            "6: blocks.idade.conditions[0].if: expected a value at column 16",
            "9: blocks.idade.conditions[1].next_block: unknown block 'idso'"
            " (did you mean 'idoso'?)",
            "10: blocks.idade.conditions[2].if: if is missing",
            "11: blocks.idade.conditions[3].if: expected a string, got the number 18 (quote it)",
            "11: blocks.idade.conditions[3].next_block: next_block is missing",
            "12: blocks.idade.conditions[4]: expected a mapping with if, next_block,"
            " got the string 'idade'",
            "13: blocks.idade.else: unknown block 'menorr' (did you mean 'menor'?)",
        ],
        id="conditions",
    ),
    pytest.param(
        """
        blocks:
          inicio:
            message: Oi
            input: {save_as: x}
            conditions: {if: x, next_block: inicio}
          outro:
            message: Oi
            input: {save_as: x}
            conditions: []
          mais:
            message: Oi
            input: {save_as: x}
            conditions: [{if: 'x == 1', next_block: inicio, than: mais}]
        """,
        [
            "5: blocks.inicio.conditions: expected a list of conditions, got a mapping",
            "9: blocks.outro.conditions: conditions is empty: add a condition or remove the key",
            "13: blocks.mais.conditions[0].than: unknown key 'than'",
        ],
        id="conditions-shape",
    ),
    pytest.param(
        """
        blocks:
          inicio:
            message: Oi
            else: fim
          meio:
            message: Oi
            conditions: [{if: 'true', next_block: fim}]
            else: fim
            next_block: fim
          fim:
            message: Tchau
        """,
        [
            "4: blocks.inicio.else: else needs conditions: use next_block instead",
            "9: blocks.meio.next_block: next_block is never used: the block has else",
        ],
        id="else",
    ),
    pytest.param(
        """
        blocks:
          inicio:
            webhook: https://crm.example/leads
          outro:
            webhook: {method: POST}
          mais:
            webhook: {url: "ftp://crm.example/x"}
          base:
            webhook: {url: "{{base}}/leads"}
          host:
            webhook: {url: "https://{{tenant}}.crm.example/leads"}
          template:
            webhook: {url: "https://crm.example/{{ id | lower('x') }}"}
        """,
        [
            "3: blocks.inicio.webhook: expected a mapping with url, method, headers, body,"
            " timeout, save_as, on_error, retry, got the string 'https://crm.example/leads'",
            "5: blocks.outro.webhook.url: url is missing",
            "7: blocks.mais.webhook.url: url must start with http:// or https:// and the host",
            "9: blocks.base.webhook.url: url must start with http:// or https:// and the host",
            "11: blocks.host.webhook.url: the scheme and host of a url must be written in the"
            " flow, not taken from a variable",
            "13: blocks.template.webhook.url: lower takes no value at column 34",
        ],
        id="webhook-url",
    ),
    pytest.param(
        """
        blocks:
          inicio:
            webhook:
              url: https://crm.example/leads
              method: PSOT
              headers: {"Bad Header": x, X-Token: "", X-Id: 5, Authorization: "Bearer {{t"}
              timeout: 0
              save_as: contact
              on_error: falah
              retry: sim
              body: {email: "{{email"}
            next_block: falha
          falha:
            message: Falhou
          outro:
            webhook: {url: "https://crm.example", headers: [a], timeout: 61}
            next_block: falha
          mais:
            webhook: {url: "https://crm.example", timeout: soon}
            next_block: falha
        """,
        [
            "5: blocks.inicio.webhook.method: unknown method 'PSOT' (did you mean 'POST'?)",
            "6: blocks.inicio.webhook.headers.Bad Header: 'Bad Header' is not a valid header name",
            "6: blocks.inicio.webhook.headers.X-Token: X-Token is empty",
            "6: blocks.inicio.webhook.headers.X-Id: expected a string, got the number 5 (quote it)",
            "6: blocks.inicio.webhook.headers.Authorization: '{{' is never closed at column 8",
            "7: blocks.inicio.webhook.timeout: timeout must be more than 0 and at most 60 seconds",
            "8: blocks.inicio.webhook.save_as: 'contact' is a reserved name: choose another",
            "9: blocks.inicio.webhook.on_error: unknown block 'falah' (did you mean 'falha'?)",
            "10: blocks.inicio.webhook.retry: expected true or false, got the string 'sim'",
            "11: blocks.inicio.webhook.body.email: '{{' is never closed at column 1",
            "16: blocks.outro.webhook.headers: expected a mapping of header name to value,"
            " got a list",
            "16: blocks.outro.webhook.timeout: timeout must be more than 0 and at most 60 seconds",
            "19: blocks.mais.webhook.timeout: expected a duration like 30s, 10m, 2h or 1d,"
            " got the string 'soon'",
        ],
        id="webhook-fields",
    ),
    pytest.param(
        """
        blocks:
          inicio:
            message: Escolha
            buttons: [{text: Sim}]
            webhook: {url: "https://crm.example"}
          outro:
            message: Oi
            tag: x
            timeout: {after: 10m, next_block: inicio}
        """,
        [
            "5: blocks.inicio.webhook: a block waits for the customer (buttons, input) or for"
            " a webhook, not both: move the webhook to a block of its own",
            "9: blocks.outro.timeout: timeout is never used: the block does not wait for the"
            " customer or a webhook",
        ],
        id="waiting-conflicts",
    ),
    pytest.param(
        """
        blocks:
          inicio:
            message: Oi
            handoff: {team_id: "3", assignee_id: 0, note: "{{", equipe: 3}
          outro:
            message: Oi
            end: sim
          mais:
            message: Oi
            end: {resolve: sim, fechar: true}
          ambos:
            message: Oi
            handoff: true
            end: true
        """,
        [
            "4: blocks.inicio.handoff.equipe: unknown key 'equipe'",
            "4: blocks.inicio.handoff.team_id: expected an id (a positive whole number),"
            " got the string '3'",
            "4: blocks.inicio.handoff.assignee_id: expected an id (a positive whole number),"
            " got the number 0",
            "4: blocks.inicio.handoff.note: '{{' is never closed at column 1",
            "7: blocks.outro.end: expected true, false or a mapping with resolve,"
            " got the string 'sim'",
            "10: blocks.mais.end.fechar: unknown key 'fechar'",
            "10: blocks.mais.end.resolve: expected true or false, got the string 'sim'",
            "14: blocks.ambos.end: a block cannot both hand off and end: keep one",
        ],
        id="handoff-and-end",
    ),
    pytest.param(
        """
        blocks:
          inicio:
            message: Oi
            buttons: [{text: Sim}]
            input: {save_as: x}
            next_block: fim
            conditions: [{if: x, next_block: fim}]
            else: fim
            timeout: {after: 1m, next_block: fim}
            handoff: true
          fim:
            webhook: {url: "https://crm.example", save_as: crm, on_error: inicio}
            end: {resolve: true}
        """,
        [
            "4: blocks.inicio.buttons: buttons is never used: the block hands off",
            "5: blocks.inicio.input: input is never used: the block hands off",
            "6: blocks.inicio.next_block: next_block is never used: the block hands off",
            "7: blocks.inicio.conditions: conditions is never used: the block hands off",
            "8: blocks.inicio.else: else is never used: the block hands off",
            "9: blocks.inicio.timeout: timeout is never used: the block hands off",
            "12: blocks.fim.webhook.save_as: save_as is never used: the block ends right after"
            " the call",
            "12: blocks.fim.webhook.on_error: on_error is never used: the block ends right"
            " after the call",
        ],
        id="nothing-after-handoff-or-end",
    ),
    pytest.param(
        """
        blocks:
          inicio:
            message: Oi
            buttons: [{text: Sim}]
            timeout: 10m
          outro:
            message: Oi
            buttons: [{text: Sim}]
            timeout: {after: 10 minutos}
          mais:
            message: Oi
            buttons: [{text: Sim}]
            timeout: {after: 0s, next_block: fimm, depois: 1}
          ultimo:
            message: Oi
            buttons: [{text: Sim}]
            timeout: {after: 30, next_block: inicio}
          sem_prazo:
            message: Oi
            buttons: [{text: Sim}]
            timeout: {next_block: inicio}
        """,
        [
            "5: blocks.inicio.timeout: expected a mapping with after, next_block,"
            " got the string '10m'",
            "9: blocks.outro.timeout.after: expected a duration like 30s, 10m, 2h or 1d,"
            " got the string '10 minutos'",
            "9: blocks.outro.timeout.next_block: next_block is missing",
            "13: blocks.mais.timeout.depois: unknown key 'depois'",
            "13: blocks.mais.timeout.after: a duration must be more than zero",
            "13: blocks.mais.timeout.next_block: unknown block 'fimm'",
            "17: blocks.ultimo.timeout.after: expected a duration like 30s, 10m, 2h or 1d,"
            " got the number 30",
            "21: blocks.sem_prazo.timeout.after: after is missing",
        ],
        id="timeout",
    ),
    pytest.param(
        """
        fallback: ajdua
        inactivity: 24h
        blocks:
          ajuda:
            message: Oi
        """,
        [
            "1: fallback: unknown block 'ajdua' (did you mean 'ajuda'?)",
            "2: inactivity: expected a mapping with after, message, then, got the string '24h'",
        ],
        id="fallback-and-inactivity-shape",
    ),
    pytest.param(
        """
        inactivity:
          message: "Tchau {{nome | first_name('x')}}"
        blocks:
          ajuda:
            message: "Oi {{ }}"
        """,
        [
            "1: inactivity.after: after is missing",
            "2: inactivity.message: first_name takes no value at column 26",
            "5: blocks.ajuda.message: expected a variable name at column 7",
        ],
        id="inactivity-fields-and-templates",
    ),
    pytest.param(
        """
        inactivity: {after: 1x}
        blocks:
          ajuda:
            message: "Oi {{nome | default}}"
        """,
        [
            "1: inactivity.after: expected a duration like 30s, 10m, 2h or 1d, got the string '1x'",
            "4: blocks.ajuda.message: expected '(' after default at column 20",
        ],
        id="inactivity-bad-duration",
    ),
    pytest.param(
        """
        blocks:
          inicio:
            message: Oi
            next_block: a
          a:
            set: {visto: true}
            conditions:
              - if: visto
                next_block: b
            else: inicio
          b:
            message: B
            conditions:
              - if: 'false'
                next_block: fim
            next_block: a
          fim:
            message: Fim
        """,
        [
            "4: blocks.inicio.next_block: loops back to 'inicio' without waiting for the customer",
            "9: blocks.a.conditions[0].next_block: loops back to 'a' without waiting for the"
            " customer",
        ],
        id="loops-through-conditions-and-else",
    ),
    pytest.param(
        """
        blocks:
          a:
            message: A
            next_block: b
          b:
            tag: b
            conditions: [{if: x, next_block: a}]
            next_block: a
        """,
        ["4: blocks.a.next_block: loops back to 'a' without waiting for the customer"],
        id="loop-found-twice-reported-once",
    ),
    pytest.param(
        """
        blocks:
          inicio:
            end: false
            handoff: false
        """,
        [
            "2: blocks.inicio: block does nothing: give it a message, buttons, tags,"
            " a next_block or handoff: true",
        ],
        id="end-false-does-nothing",
    ),
]


@pytest.mark.parametrize(("text", "expected"), RULES + LANGUAGE_RULES)
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
    [
        (lambda: VALID, "boas_vindas"),
        (example_text, "fluxo_comercial"),
        (lambda: FEATURES, "recursos"),
    ],
    ids=["small", "shipped-example", "every-feature"],
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


def test_whatsapp_template_builds_its_model() -> None:
    """`template:` keeps name, language, category and params whose strings are templates."""
    flow = parse_flow(
        yml(
            """
            template:
              name: retomada
              language: pt_BR
              params: {body: {"1": "{{nome}}"}, buttons: [{type: url, parameter: x}]}
            blocks:
              a: {message: oi}
            """
        ),
        FILE,
    )
    assert flow.template is not None
    assert (flow.template.name, flow.template.language, flow.template.category) == (
        "retomada",
        "pt_BR",
        None,
    )
    body = flow.template.params["body"]["1"]
    assert body.source == "{{nome}}"


TEMPLATE_RULES = [
    pytest.param(
        "template: {language: pt_BR, nam: x}\nblocks: {a: {message: oi}}\n",
        [
            "flows/teste.yaml:1: template.nam: unknown key 'nam' (did you mean 'name'?)",
            "flows/teste.yaml:1: template.name: name is missing",
        ],
        id="missing-name",
    ),
    pytest.param(
        "template: {name: x}\nblocks: {a: {message: oi}}\n",
        ["flows/teste.yaml:1: template.language: language is missing"],
        id="missing-language",
    ),
    pytest.param(
        "template: retomada\nblocks: {a: {message: oi}}\n",
        [
            "flows/teste.yaml:1: template: expected a mapping with name, language, category,"
            " params, got the string 'retomada'"
        ],
        id="not-a-mapping",
    ),
]


@pytest.mark.parametrize(("text", "expected"), TEMPLATE_RULES)
def test_template_rules(text: str, expected: list[str]) -> None:
    """A malformed `template:` is reported with its path and line."""
    assert problems_of(text) == expected


def _problems(text: str, filename: str = "flows/x.yaml") -> list[str]:
    with pytest.raises(FlowError) as info:
        parse_flow(textwrap.dedent(text), filename)
    return [str(p) for p in info.value.problems]


MINIMAL = "blocks:\n  a:\n    message: Oi\n"


def test_alias_bomb_is_refused_fast() -> None:
    """A few hundred bytes of nested aliases (millions of values) are refused before expanding."""
    lines = ["x: &a0 [v, v, v, v, v, v, v, v, v, v]"]
    lines += [f"x{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    [problem] = _problems("\n".join(lines) + "\n" + MINIMAL)
    assert "more than 20000 values once its aliases" in problem


def test_deep_nesting_and_huge_files_are_refused() -> None:
    """A document nested thousands deep, or over a mebibyte, is one problem, not a crash."""
    [deep] = _problems("a: " + "[" * 5000 + "]" * 5000 + "\n")
    assert deep.endswith("the document is nested too deeply")
    [big] = _problems(MINIMAL + "#" * (1024 * 1024))
    assert "a flow is at most 1048576" in big


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", "a" * 65, "com espaço", "nul\x00", "-x", ".hidden"]
)
def test_flow_names_are_slugs(name: str) -> None:
    """A flow name is a slug: no path, no spaces, no control characters, at most 64 long."""
    definition = {"name": name, "blocks": {"a": {"message": "Oi"}}}
    with pytest.raises(FlowError, match="is not a slug"):
        flow_from_definition(definition, name="x")


def test_redos_pattern_runs_in_linear_time_or_is_refused() -> None:
    """`pattern:` runs on RE2: the classic catastrophic pattern answers at once; backreferences
    and lookaround, which RE2 cannot run, are refused at check."""
    flow = parse_flow(
        "blocks:\n  a:\n    message: Nome?\n"
        "    input: {save_as: n, type: regex, pattern: '([A-Za-z]+\\s?)+'}\n",
        "x.yaml",
    )
    spec = flow.blocks["a"].input
    assert spec is not None
    assert spec.pattern is not None
    assert spec.pattern.fullmatch("a" * 50_000 + "!") is None
    for pattern in ("(a)\\1", "a(?=b)"):
        [problem] = _problems(
            "blocks:\n  a:\n    message: C?\n"
            f"    input: {{save_as: c, type: regex, pattern: '{pattern}'}}\n"
        )
        assert "not supported by RE2" in problem


@pytest.mark.parametrize(
    ("after", "message"),
    [("99999999999d", "at most 366d"), ("367d", "at most 366d"), ("1" * 5000 + "s", "366d")],
)
def test_durations_are_bounded(after: str, message: str) -> None:
    """A duration longer than a year is a problem at check, not an overflow at run."""
    [problem] = _problems(
        "blocks:\n  a:\n    message: Oi\n    buttons: [{text: Sim, next_block: a}]\n"
        f"    timeout: {{after: {after}, next_block: a}}\n"
    )
    assert message in problem


def test_header_values_with_control_characters_are_refused() -> None:
    """A header value written with a control character is refused; non-ASCII is fine."""
    text = (
        "blocks:\n  a:\n    webhook:\n      url: https://crm.example/x\n"
        '      headers: {{X-A: "{value}"}}\n'
    )
    [problem] = _problems(text.format(value="um\\x01dois"))
    assert "control character" in problem
    flow = parse_flow(text.format(value="José {{nome}}"), "x.yaml")
    assert flow.blocks["a"].webhook is not None


# --- the flow language catches typos -----------------------------------------------------------

TYPOS = [
    pytest.param(
        """
        blocks:
          inicio:
            message: "Oi {{nmoe}}!"
        """,
        [
            "3: blocks.inicio.message: unknown variable 'nmoe' (did you mean 'nome'?): no input,"
            " set or webhook of the flow saves it (declare a start's initial data under"
            " variables:)"
        ],
        id="template",
    ),
    pytest.param(
        """
        blocks:
          idade:
            message: Idade?
            input: {save_as: idade, type: number}
            conditions:
              - {if: "idadee >= 18", next_block: adulto}
            else: menor
          adulto: {message: Adulto}
          menor: {message: Menor}
        """,
        [
            "6: blocks.idade.conditions[0].if: unknown variable 'idadee' (did you mean 'idade'?):"
            " no input, set or webhook of the flow saves it (declare a start's initial data"
            " under variables:)"
        ],
        id="condition",
    ),
    pytest.param(
        """
        blocks:
          inicio:
            message: Oi
            conditions: [{if: 'not (plano in ["a", tipo]) or 1 == 1', next_block: fim}]
          fim: {message: Fim}
        """,
        [
            "4: blocks.inicio.conditions[0].if: unknown variable 'plano'",
            "4: blocks.inicio.conditions[0].if: unknown variable 'tipo'",
        ],
        id="condition-inside-not-and-lists",
    ),
    pytest.param(
        """
        blocks:
          inicio:
            message: "{{contact.nmae}} / {{conversation.custom_attributes.plano}}"
            conditions: [{if: "exists(contact.emial)", next_block: fim}]
          fim: {message: Fim}
        """,
        [
            "3: blocks.inicio.message: contact has no field 'nmae' (did you mean 'name'?)",
            "4: blocks.inicio.conditions[0].if: contact has no field 'emial'"
            " (did you mean 'email'?)",
        ],
        id="contact-field",
    ),
    pytest.param(
        """
        inactivity: {after: 1h, message: "Tchau {{cliente}}"}
        blocks:
          inicio:
            set: {total: "{{valor}}"}
            webhook:
              url: "https://crm.example/{{pedid}}"
              headers: {X-Id: "{{idd}}"}
              body: {itens: ["{{itens}}"]}
            handoff: {note: "{{nota}}"}
        """,
        [
            "1: inactivity.message: unknown variable 'cliente'",
            "4: blocks.inicio.set.total: unknown variable 'valor'",
            "6: blocks.inicio.webhook.url: unknown variable 'pedid'",
            "7: blocks.inicio.webhook.headers.X-Id: unknown variable 'idd'",
            "8: blocks.inicio.webhook.body.itens[0]: unknown variable 'itens'",
            "9: blocks.inicio.handoff.note: unknown variable 'nota'",
        ],
        id="every-place-a-template-reads",
    ),
    pytest.param(
        """
        variables: [origem, 1x]
        blocks:
          inicio:
            message: "{{origem}} {{1x}}"
        """,
        [
            "1: variables[1]: '1x' is not a valid variable name: use letters, digits and _,"
            " not starting with a digit",
            "4: blocks.inicio.message: expected a variable name at column 14",
        ],
        id="declared-names-are-variable-names",
    ),
]


@pytest.mark.parametrize(("text", "expected"), TYPOS)
def test_variables_read_must_be_set_known_or_declared(text: str, expected: list[str]) -> None:
    """A variable a template or condition reads that the flow never sets, is not built in and is
    not declared under `variables:` is refused, with a suggestion: it is most often a typo."""
    found = [p.removeprefix(f"{FILE}:") for p in problems_of(yml(text))]
    assert len(found) == len(expected), found
    for line, start in zip(found, expected, strict=True):
        assert line.startswith(start), (line, start)


def test_variables_set_anywhere_or_declared_are_known() -> None:
    """Inputs, webhooks and `set:` anywhere in the flow, built-in names and declared variables
    may be read; a stored version is rebuilt without the rule (sessions on it keep running)."""
    text = yml(
        """
        variables: [origem]
        blocks:
          inicio:
            message: "{{nome}} {{contact.custom_attributes.x}} {{origem}} {{crm.id}} {{email}}"
            conditions: [{if: "total > 1 and exists(conversation.labels)", next_block: email}]
            next_block: email
          email:
            input: {save_as: email, type: email}
            message: E-mail?
            set: {total: 2}
            next_block: crm
          crm:
            webhook: {url: "https://crm.example", save_as: crm}
        """
    )
    assert parse_flow(text, FILE).variables == ("origem",)
    definition = yaml.safe_load("blocks: {a: {message: '{{nmoe}}'}}")
    assert flow_from_definition(definition, name="velho", strict=False).name == "velho"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("flow: vendas\ntests: []\n", "run it with `agentbot test`"),
        ("tests: [{steps: [{user: Oi}]}]\n", "run it with `agentbot test`"),
    ],
)
def test_a_test_file_given_as_a_flow_says_so(text: str, expected: str) -> None:
    """A conversation test file read as a flow is one problem naming the right command, not a
    list of unknown keys."""
    [problem] = problems_of(text)
    assert problem == (
        f"{FILE}:1: (root): this is a conversation test file (it has tests:), not a flow:"
        f" {expected}"
    )
