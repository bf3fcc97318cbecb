"""Conditions: the tokenizer, the parser's trees and errors, and evaluation over variables."""

from __future__ import annotations

from typing import Any

import pytest

from agentbot.expressions import (
    And,
    Compare,
    Exists,
    ExpressionError,
    ListOf,
    Literal,
    Not,
    Or,
    Path,
    evaluate,
    holds,
    lookup,
    parse_expression,
    position,
    to_text,
    tokenize,
)

TREES = [
    ("idade", Path(("idade",))),
    ("crm.protocolo", Path(("crm", "protocolo"))),
    ("crm.itens.0", Path(("crm", "itens", "0"))),
    ("18", Literal(18)),
    ("-2.5", Literal(-2.5)),
    ("'pro'", Literal("pro")),
    ('"a \\"b\\" \\\\ \\n"', Literal('a "b" \\ \\n')),
    ("true", Literal(True)),
    ("false", Literal(False)),
    ("null", Literal(None)),
    ("[]", ListOf(())),
    ("['a', 1]", ListOf((Literal("a"), Literal(1)))),
    ("exists(crm.id)", Exists(Path(("crm", "id")))),
    ("idade >= 18", Compare(">=", Path(("idade",)), Literal(18))),
    ("plano in ['pro']", Compare("in", Path(("plano",)), ListOf((Literal("pro"),)))),
    ("nome contains 'a'", Compare("contains", Path(("nome",)), Literal("a"))),
    ("plano not in planos", Not(Compare("in", Path(("plano",)), Path(("planos",))))),
    ("not a == 1", Not(Compare("==", Path(("a",)), Literal(1)))),
    ("not not a", Not(Not(Path(("a",))))),
    ("a or b and c", Or(Path(("a",)), And(Path(("b",)), Path(("c",))))),
    ("a and b and c", And(And(Path(("a",)), Path(("b",))), Path(("c",)))),
    ("(a or b) and c", And(Or(Path(("a",)), Path(("b",))), Path(("c",)))),
    ("endereço != ''", Compare("!=", Path(("endereço",)), Literal(""))),
    ("a<1", Compare("<", Path(("a",)), Literal(1))),
]


@pytest.mark.parametrize(("text", "tree"), TREES, ids=[t[0] for t in TREES])
def test_parse_builds_the_tree(text: str, tree: object) -> None:
    """Each construct of the grammar parses into its frozen dataclass, with precedence."""
    assert parse_expression(text) == tree


ERRORS = [
    ("", "expected a value at column 1"),
    ("idade >= 18 and", "expected a value at column 16"),
    ("idade >= ", "expected a value at column 10"),
    ("idade = 18", "unexpected '=' (use == to compare) at column 7"),
    ("idade 18", "unexpected '18' at column 7"),
    ("plano == 'pro", "unterminated string starting at column 10"),
    ("a && b", "unexpected character '&' at column 3"),
    ("(a or b", "expected ')' at column 8"),
    ("1 < x < 5", "comparisons cannot be chained (join them with and) at column 7"),
    ("a in b contains c", "comparisons cannot be chained (join them with and) at column 8"),
    ("[1, 2", "expected ',' or ']' at column 6"),
    ("[1 2]", "expected ',' or ']' at column 4"),
    ("exists crm", "expected '(' at column 8"),
    ("exists('crm')", "exists() takes a variable name at column 8"),
    ("exists(and)", "exists() takes a variable name at column 8"),
    ("exists(crm", "expected ')' at column 11"),
    ("a == and", "expected a value at column 6"),
    ("a | b", "unexpected '|' at column 3"),
    ("a == 1\nor b ==", "expected a value at line 2, column 8"),
]


@pytest.mark.parametrize(("text", "message"), ERRORS, ids=[e[1] for e in ERRORS])
def test_syntax_errors_name_their_column(text: str, message: str) -> None:
    """A malformed expression raises ExpressionError saying what and where."""
    with pytest.raises(ExpressionError) as info:
        parse_expression(text)
    assert str(info.value) == message


SCOPE: dict[str, Any] = {
    "idade": 30,
    "texto_idade": "30",
    "plano": "pro",
    "nome": "Ana Maria",
    "vazio": "",
    "nada": None,
    "sim": True,
    "planos": ["pro", "max"],
    "numeros": [1, 2.5],
    "crm": {"protocolo": "X1", "itens": [{"id": 7}], "ok": False},
    "data": "2024-05-01",
}

EVALS = [
    ("idade >= 18", True),
    ("idade < 18", False),
    ("idade > 30", False),
    ("idade <= 30", True),
    ("texto_idade == 30", True),
    ("30 == texto_idade", True),
    ("texto_idade > 29.5", True),
    ("idade == '30.0'", True),
    ("idade == 'trinta'", False),
    ("plano == 'pro'", True),
    ("plano != 'pro'", False),
    ('plano == "max"', False),
    ("sim == true", True),
    ("sim == 1", False),
    ("1 == true", False),
    ("nada == null", True),
    ("faltando == null", True),
    ("faltando.x.y == null", True),
    ("faltando != null", False),
    ("faltando > 1", False),
    ("plano > 1", False),
    ("data >= '2024-01-01'", True),
    ("data < '2024-01-01'", False),
    ("plano in planos", True),
    ("'free' in planos", False),
    ("plano not in planos", False),
    ("2.5 in numeros", True),
    ("'2.5' in numeros", True),
    ("planos contains 'max'", True),
    ("'Maria' in nome", True),
    ("nome contains 'Ana'", True),
    ("nome contains 'Bia'", False),
    ("3 in 'abc123'", True),
    ("sim in 'true'", False),
    ("'protocolo' in crm", True),
    ("1 in crm", False),
    ("1 in idade", False),
    ("plano in ['pro', 'max']", True),
    ("crm.protocolo == 'X1'", True),
    ("crm.itens.0.id == 7", True),
    ("crm.itens.1.id == null", True),
    ("crm.itens.x == null", True),
    ("exists(crm.protocolo)", True),
    ("exists(vazio)", True),
    ("exists(nada)", False),
    ("exists(crm.ok)", True),
    ("not exists(faltando)", True),
    ("idade >= 18 and plano == 'pro'", True),
    ("idade < 18 and plano == 'pro'", False),
    ("idade < 18 or plano == 'pro'", True),
    ("idade < 18 or plano == 'free'", False),
    ("vazio", False),
    ("nome", True),
    ("crm.ok", False),
    ("not planos", False),
    ("[] == []", True),
    ("[1] == [1]", True),
]


@pytest.mark.parametrize(("text", "expected"), EVALS, ids=[e[0] for e in EVALS])
def test_evaluate(text: str, expected: bool) -> None:
    """Comparisons, membership, existence and logic follow docs/flows.md §5; nothing raises."""
    assert holds(parse_expression(text), SCOPE) is expected


def test_evaluate_gives_values_for_values() -> None:
    """A bare value evaluates to itself; a list literal to a list."""
    assert evaluate(parse_expression("crm.itens.0"), SCOPE) == {"id": 7}
    assert evaluate(parse_expression("[plano, 1]"), SCOPE) == ["pro", 1]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (("crm", "itens", "0", "id"), 7),
        (("crm", "itens", "5"), None),
        (("planos", "-1"), None),
        (("idade", "x"), None),
        ((), SCOPE),
    ],
    ids=["nested", "index-past-the-end", "no-negative-index", "into-a-number", "empty-path"],
)
def test_lookup(path: tuple[str, ...], expected: object) -> None:
    """A dotted path walks mappings and lists; anything missing is None."""
    assert lookup(SCOPE, path) == expected


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, ""),
        (True, "true"),
        (False, "false"),
        ("olá", "olá"),
        (30, "30"),
        (2.5, "2.5"),
        ({"a": "ç"}, '{"a": "ç"}'),
        (["a", 1], '["a", 1]'),
    ],
    ids=["null", "true", "false", "text", "int", "float", "object", "list"],
)
def test_to_text(value: object, text: str) -> None:
    """Values read in messages as people expect: null is empty, objects are JSON."""
    assert to_text(value) == text


@pytest.mark.parametrize(
    ("text", "offset", "expected"),
    [("abc", 0, "column 1"), ("abc", 3, "column 4"), ("ab\ncd", 4, "line 2, column 2")],
    ids=["start", "end", "second-line"],
)
def test_position(text: str, offset: int, expected: str) -> None:
    """Positions count from 1, with the line only for text of several lines."""
    assert position(text, offset) == expected


def test_tokenize_until_stops_outside_strings() -> None:
    """With `until`, a `}}` inside a string does not end the tokens; the one after does."""
    tokens = tokenize("{{ a | default('}}') }} resto", 2, until="}}")
    assert [(t.kind, t.text) for t in tokens] == [
        ("name", "a"),
        ("punct", "|"),
        ("name", "default"),
        ("punct", "("),
        ("string", "'}}'"),
        ("punct", ")"),
        ("end", "}}"),
    ]
    assert tokens[-1].offset == 21
    assert tokenize("a", until="}}")[-1].text == ""
