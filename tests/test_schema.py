"""flows/schema.json: the editors' view of the flow format, kept in step with loader.py."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator  # type: ignore[import-untyped, unused-ignore]

from agentbot import loader
from agentbot.answers import InputType
from agentbot.errors import FlowError
from agentbot.loader import parse_flow
from tests.harness import SALES_FLOW

FLOWS = Path(__file__).resolve().parent.parent / "flows"
SCHEMA: dict[str, Any] = json.loads((FLOWS / "schema.json").read_text(encoding="utf-8"))
VALIDATOR = Draft202012Validator(SCHEMA)
SHIPPED = sorted(FLOWS.glob("*.yaml"))

# loader.py's table of allowed keys -> where the schema describes that mapping
TABLES = {
    "TOP_KEYS": "#",
    "TRIGGER_KEYS": "#/$defs/trigger",
    "WORDS_KEYS": "#/$defs/keywords",
    "TEXTS_KEYS": "#/$defs/messages",
    "INACTIVITY_KEYS": "#/$defs/inactivity",
    "TEMPLATE_KEYS": "#/$defs/template",
    "BLOCK_KEYS": "#/$defs/block",
    "BUTTON_KEYS": "#/$defs/button",
    "INPUT_KEYS": "#/$defs/input",
    "CONDITION_KEYS": "#/$defs/condition",
    "WEBHOOK_KEYS": "#/$defs/webhook",
    "HANDOFF_KEYS": "#/$defs/handoff",
    "END_KEYS": "#/$defs/end",
    "TIMEOUT_KEYS": "#/$defs/timeout",
}
NOT_KEY_TABLES = {"ACTION_KEYS", "AFTER_KEYS"}  # which keys act, which a terminal block ignores


def at(pointer: str) -> dict[str, Any]:
    node: Any = SCHEMA
    for part in pointer.removeprefix("#").split("/")[1:]:
        node = node[part]
    assert isinstance(node, dict)
    return node


def errors(definition: Any) -> list[str]:
    return sorted(error.message for error in VALIDATOR.iter_errors(definition))


def test_schema_is_valid_draft_2020_12() -> None:
    """The schema is itself valid JSON Schema 2020-12, and its patterns compile in Python."""
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"

    def patterns(node: Any) -> list[str]:
        if isinstance(node, dict):
            found = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
            return found + [p for value in node.values() for p in patterns(value)]
        if isinstance(node, list):
            return [p for value in node for p in patterns(value)]
        return []

    for pattern in patterns(SCHEMA):
        re.compile(pattern)


@pytest.mark.parametrize("path", SHIPPED, ids=[path.stem for path in SHIPPED])
def test_shipped_flows_match_the_schema_and_point_at_it(path: Path) -> None:
    """Every example flow validates, and tells editors where the schema is on its first line."""
    text = path.read_text(encoding="utf-8")
    assert text.splitlines()[0] == "# yaml-language-server: $schema=./schema.json"
    assert errors(yaml.safe_load(text)) == []


FULL = """
name: completo
title: Completo
start: a
trigger: {default: true, keywords: [oi], inboxes: [1, 2]}
keywords: {handoff: [humano], restart: [menu]}
messages: {retry: De novo, handoff: Transferindo}
fallback: h
inactivity: {after: 1h30m, message: Tchau}
template: {name: boas_vindas, language: pt_BR, category: UTILITY, params: {body: {"1": "{{nome}}"}}}
blocks:
  a:
    set: {x: 1, lista: [1, "{{nome}}"]}
    message: "Idade?"
    tags: [a-b, ação]
    input: {save_as: idade, type: number, error_message: Número, retries: 3}
    save_to: conversation.custom_attributes.idade
    conditions: [{if: "idade >= 18", next_block: b}]
    else: c
    timeout: {after: 10m, next_block: h}
  b:
    webhook:
      url: "https://crm.example/x?id={{idade}}"
      method: post
      headers: {X-Id: "{{idade}}"}
      body: {idade: "{{idade}}"}
      timeout: 5
      save_as: crm
      on_error: h
      retry: true
    next_block: c
  c:
    message: Escolha
    buttons:
      - {text: Um, value: um, next_block: d, tag: um, tags: [x]}
      - {text: Dois}
    next_block: d
  d:
    message: Código?
    input: {save_as: codigo, type: regex, pattern: 'A\\d+'}
    next_block: e
  e:
    end: {resolve: true}
  h:
    handoff: {team_id: 1, assignee_id: 2, note: "Nota {{nome}}"}
"""


@pytest.mark.parametrize(
    "text",
    [FULL, SALES_FLOW, "blocks: {a: {handoff: true}}", "blocks: {a: {message: oi, end: true}}"],
    ids=["every-key", "sales", "handoff-true", "end-true"],
)
def test_valid_flows_match_the_schema(text: str) -> None:
    """Flows that loader.py accepts, every key among them, validate against the schema."""
    parse_flow(text, "valid.yaml")
    assert errors(yaml.safe_load(text)) == []


INVALID = [
    ("title: sem blocos", ["'blocks' is a required property"]),
    ("blocks: {}", ["{} should be non-empty"]),
    (
        "blocks: {a: {mesage: oi}}",
        ["Additional properties are not allowed ('mesage' was unexpected)"],
    ),
    (
        "nome: x\nblocks: {a: {message: oi}}",
        ["Additional properties are not allowed ('nome' was unexpected)"],
    ),
    ("blocks: {a: {buttons: [{text: Sim}]}}", ["'message' is a dependency of 'buttons'"]),
    (
        "blocks: {a: {message: oi, buttons: [{value: x}]}}",
        ["'text' is a required property"],
    ),
    (
        "blocks: {a: {message: oi, tag: Quente}}",
        ["'Quente' does not match '^[^\\\\sA-Z!-,./:-@\\\\[-^`{-~]+$'"],
    ),
    (
        "blocks: {a: {message: oi, input: {save_as: nome}}}",
        [
            "'nome' should not be valid under {'enum': ['and', 'contact', 'contains',"
            " 'conversation', 'exists', 'false', 'in', 'nome', 'not', 'null', 'or', 'true']}"
        ],
    ),
    (
        "blocks: {a: {message: oi, input: {save_as: x, type: regex}}}",
        ["'pattern' is a required property"],
    ),
    (
        "blocks: {a: {message: oi, input: {save_as: x, type: cep}}}",
        ["'cep' is not one of ['text', 'email', 'phone', 'number', 'date', 'cpf', 'regex']"],
    ),
    (
        "blocks: {a: {message: oi, timeout: {after: logo, next_block: a}}}",
        ["'logo' does not match '^\\\\s*(?:\\\\d+\\\\s*[smhd]\\\\s*)+$'"],
    ),
    (
        "blocks: {a: {webhook: {url: 'https://{{host}}/x'}}}",
        ["'https://{{host}}/x' does not match '^[Hh][Tt][Tt][Pp][Ss]?://[^/?#{}\\\\s]+([/?#]|$)'"],
    ),
    (
        "blocks: {a: {webhook: {url: 'https://x.example', method: FETCH}}}",
        [
            "'FETCH' is not one of ['GET', 'POST', 'PUT', 'PATCH', 'DELETE',"
            " 'get', 'post', 'put', 'patch', 'delete']"
        ],
    ),
    (
        "blocks: {a: {handoff: {team: 1}}}",
        ["{'team': 1} is not valid under any of the given schemas"],
    ),
    (
        "blocks: {a: {message: oi, save_to: contact.email}}",
        [
            "'input' is a dependency of 'save_to'",
            "'contact.email' does not match"
            " '^(contact|conversation)\\\\.custom_attributes\\\\.\\\\w+$'",
        ],
    ),
    ("blocks: {a: {message: oi, else: a}}", ["'conditions' is a dependency of 'else'"]),
    ("trigger: {inboxes: [0]}\nblocks: {a: {message: oi}}", ["0 is less than the minimum of 1"]),
]


@pytest.mark.parametrize(
    ("text", "messages"),
    INVALID,
    ids=[
        "no-blocks",
        "empty-blocks",
        "unknown-block-key",
        "unknown-top-key",
        "buttons-without-message",
        "button-without-text",
        "uppercase-tag",
        "reserved-variable",
        "regex-without-pattern",
        "unknown-input-type",
        "bad-duration",
        "host-from-variable",
        "unknown-method",
        "unknown-handoff-key",
        "save-to",
        "else-without-conditions",
        "inbox-zero",
    ],
)
def test_invalid_flows_are_rejected_by_schema_and_flows(text: str, messages: list[str]) -> None:
    """What the schema rejects, loader.py rejects too; the schema says why, as editors show it."""
    assert errors(yaml.safe_load(text)) == sorted(messages)
    with pytest.raises(FlowError):
        parse_flow(text, "invalid.yaml")


def test_every_key_table_of_flows_py_is_in_the_schema() -> None:
    """Each allowed-key table in loader.py has its place in the schema, with exactly its keys,
    a description for each, and no other key allowed: a key added on one side fails here."""
    tables = {
        name
        for name in dir(loader)
        if name.endswith("_KEYS") and isinstance(getattr(loader, name), tuple)
    } - NOT_KEY_TABLES
    assert tables == set(TABLES), "map the new table of loader.py to its place in the schema"
    for name, pointer in TABLES.items():
        node = at(pointer)
        assert set(node["properties"]) == set(getattr(loader, name)), name
        assert node["additionalProperties"] is False, pointer
        for key, spec in node["properties"].items():
            assert spec.get("description"), f"{pointer}: {key} has no description"


def test_enumerations_match_flows_py() -> None:
    """Input types, webhook methods and reserved names are the ones loader.py knows."""
    assert at("#/$defs/input")["properties"]["type"]["enum"] == [kind.value for kind in InputType]
    methods = at("#/$defs/webhook")["properties"]["method"]["enum"]
    assert {method.upper() for method in methods} == set(loader.METHODS)
    assert set(at("#/$defs/variable")["not"]["enum"]) == set(loader.RESERVED_NAMES)


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("lead_frio", True),
        ("a-b", True),
        ("ação", True),
        ("Lead", False),
        ("a b", False),
        ("a.b", False),
        ("a/b", False),
        ("a:b", False),
        ("a@b", False),
        ("a[b", False),
        ("a`b", False),
        ("a{b", False),
        ("a~b", False),
    ],
    ids=[
        "underscore",
        "hyphen",
        "accents",
        "upper",
        "space",
        "dot",
        "slash",
        "colon",
        "at",
        "bracket",
        "backtick",
        "brace",
        "tilde",
    ],
)
def test_label_pattern_follows_flows_py(value: str, valid: bool) -> None:
    """The schema's label pattern accepts and refuses what loader.py's label rule does."""
    text = textwrap.dedent(
        f"""
        blocks:
          a: {{message: oi, tag: {json.dumps(value)}}}
        """
    )
    assert (errors(yaml.safe_load(text)) == []) is valid
    try:
        parse_flow(text, "label.yaml")
    except FlowError:
        accepted = False
    else:
        accepted = True
    assert accepted is valid
