"""Templates: parsing at load (with positions), rendering in one pass, filters and typed values."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from agentbot.templates import (
    Filter,
    Placeholder,
    Template,
    TemplateError,
    parse_template,
    render,
    render_value,
    value,
)

SCOPE: dict[str, Any] = {
    "nome": "ana maria silva",
    "idade": 30,
    "vazio": "",
    "nada": None,
    "sim": True,
    "msg": "{{nome}}",
    "crm": {"protocolo": "X1", "itens": [{"id": 7}]},
    "contact": {
        "name": "Ana Maria Silva",
        "phone_number": "+5511987654321",
        "email": None,
        "custom_attributes": {"plano": "pro"},
    },
    "conversation": {"id": 1287},
}


def test_parse_splits_text_and_placeholders() -> None:
    """Literal text and placeholders alternate; filters keep their arguments."""
    assert parse_template("Oi {{ nome | first_name | default('você') }}!") == Template(
        "Oi {{ nome | first_name | default('você') }}!",
        (
            "Oi ",
            Placeholder(("nome",), (Filter("first_name"), Filter("default", "você"))),
            "!",
        ),
    )
    assert parse_template("{{a}}{{b.c|default(0)}}{{d|default(1.5)}}").parts == (
        Placeholder(("a",)),
        Placeholder(("b", "c"), (Filter("default", 0),)),
        Placeholder(("d",), (Filter("default", 1.5),)),
    )
    assert parse_template("sem nada").parts == ("sem nada",)
    assert parse_template("").parts == ()


RENDERS = [
    ("Oi {{nome}}!", "Oi ana maria silva!"),
    ("{{ contact.phone_number }}", "+5511987654321"),
    ("{{contact.name}} / {{conversation.id}}", "Ana Maria Silva / 1287"),
    ("{{contact.custom_attributes.plano}}", "pro"),
    ("[{{faltando}}][{{contact.nada.x}}][{{contact.email}}]", "[][][]"),
    ("{{msg}}", "{{nome}}"),
    ("{{crm.itens.0.id}}", "7"),
    ("{{crm}}", '{"protocolo": "X1", "itens": [{"id": 7}]}'),
    ("{{sim}}", "true"),
    ("{{nome | first_name}}", "ana"),
    ("{{vazio | first_name}}", ""),
    ("{{nome | upper}}", "ANA MARIA SILVA"),
    ("{{contact.name | lower}}", "ana maria silva"),
    ("{{nome | title}}", "Ana Maria Silva"),
    ("{{nome | first_name | title}}", "Ana"),
    ("{{faltando | default('cliente')}}", "cliente"),
    ('{{vazio | default("cliente")}}', "cliente"),
    ("{{nada | default(0)}}", "0"),
    ("{{idade | default(0)}}", "30"),
    ("{{ faltando | default('}}') }}", "}}"),
    ("a }} b {", "a }} b {"),
]


@pytest.mark.parametrize(("source", "out"), RENDERS, ids=[r[0] for r in RENDERS])
def test_render(source: str, out: str) -> None:
    """Placeholders are filled once from the scope, with filters; missing ones vanish."""
    assert render(parse_template(source), SCOPE) == out


def test_render_escapes_only_values() -> None:
    """An escape applies to filled-in values, never to the flow's own text."""
    template = parse_template("https://x.example/a?q={{msg}}&n={{nome}}")
    escaped = render(template, SCOPE, escape=lambda v: quote(v, safe=""))
    assert escaped == "https://x.example/a?q=%7B%7Bnome%7D%7D&n=ana%20maria%20silva"


VALUES = [
    ("{{idade}}", 30),
    ("{{ sim }}", True),
    ("{{nada}}", None),
    ("{{crm.itens}}", [{"id": 7}]),
    ("{{faltando | default(0)}}", 0),
    ("{{idade | upper}}", "30"),
    ("idade {{idade}}", "idade 30"),
    ("texto", "texto"),
]


@pytest.mark.parametrize(("source", "expected"), VALUES, ids=[v[0] for v in VALUES])
def test_value_keeps_the_type_of_a_lone_placeholder(source: str, expected: object) -> None:
    """Exactly one placeholder gives the variable's own value; anything else gives text."""
    assert value(parse_template(source), SCOPE) == expected


def test_render_value_fills_a_tree() -> None:
    """Strings in mappings and sequences are filled; other leaves stay as they are."""
    tree = {
        "idade": parse_template("{{idade}}"),
        "nome": parse_template("Sr. {{nome | title}}"),
        "itens": (parse_template("{{crm.protocolo}}"), 1, None, False),
        "aninhado": {"x": 2.5},
    }
    assert render_value(tree, SCOPE) == {
        "idade": 30,
        "nome": "Sr. Ana Maria Silva",
        "itens": ["X1", 1, None, False],
        "aninhado": {"x": 2.5},
    }
    assert render_value(None, SCOPE) is None


ERRORS = [
    ("Oi {{", "'{{' is never closed at column 4"),
    ("Oi {{nome", "'{{' is never closed at column 4"),
    ("Oi {{nome | upper", "'{{' is never closed at column 4"),
    ("{{ }}", "expected a variable name at column 4"),
    ("{{ 'nome' }}", "expected a variable name at column 4"),
    ("{{nome nome}}", "expected '|' or '}}' at column 8"),
    ("{{nome | }}", "expected a filter name at column 10"),
    ("{{nome | uper}}", "unknown filter 'uper' (did you mean 'upper'?) at column 10"),
    ("{{nome | xyz}}", "unknown filter 'xyz' at column 10"),
    ("{{nome | upper()}}", "upper takes no value at column 15"),
    ("{{nome | default}}", "expected '(' after default at column 17"),
    ("{{nome | default(x)}}", "expected a quoted text or a number at column 18"),
    ("{{nome | default('x'}}", "expected ')' at column 21"),
    ("{{nome = 1}}", "unexpected '=' (use == to compare) at column 8"),
    ("linha 1\n{{ a b }}", "expected '|' or '}}' at line 2, column 6"),
]


@pytest.mark.parametrize(("source", "message"), ERRORS, ids=[e[1] for e in ERRORS])
def test_malformed_templates_name_their_position(source: str, message: str) -> None:
    """Unclosed braces, empty placeholders and unknown filters are errors with a column."""
    with pytest.raises(TemplateError) as info:
        parse_template(source)
    assert str(info.value) == message
