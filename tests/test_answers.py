"""Free-text answers: each input type accepts what people type and keeps a clean value."""

from __future__ import annotations

import re

import pytest

from agentbot.answers import DEFAULT_ERRORS, InputType, parse_answer

CASES = [
    # text
    (InputType.TEXT, "  Ana Maria  ", "Ana Maria"),
    (InputType.TEXT, "   ", None),
    (InputType.TEXT, "", None),
    # email
    (InputType.EMAIL, " Ana.Silva+loja@Exemplo.COM.br ", "Ana.Silva+loja@exemplo.com.br"),
    (InputType.EMAIL, "ana@exemplo", None),
    (InputType.EMAIL, "ana@@exemplo.com", None),
    (InputType.EMAIL, "ana..silva@exemplo.com", None),
    (InputType.EMAIL, "ana silva@exemplo.com", None),
    (InputType.EMAIL, "ana@-exemplo.com", None),
    (InputType.EMAIL, "a" * 250 + "@x.com", None),
    # phone: Brazil
    (InputType.PHONE, "(11) 98765-4321", "+5511987654321"),
    (InputType.PHONE, "11 8765-4321", "+5511987654321"),
    (InputType.PHONE, "+55 11 98765-4321", "+5511987654321"),
    (InputType.PHONE, "+55 (11) 8765-4321", "+5511987654321"),
    (InputType.PHONE, "5511987654321", "+5511987654321"),
    (InputType.PHONE, "55 11 8765 4321", "+5511987654321"),
    (InputType.PHONE, "0055 11 98765.4321", "+5511987654321"),
    (InputType.PHONE, "011 98765-4321", "+5511987654321"),
    (InputType.PHONE, "(11) 3333-4444", "+551133334444"),
    (InputType.PHONE, "55 98765-4321", "+5555987654321"),
    (InputType.PHONE, "98765-4321", None),
    (InputType.PHONE, "(10) 98765-4321", None),
    (InputType.PHONE, "(11) 88765-4321", None),
    (InputType.PHONE, "(11) 1765-4321", None),
    (InputType.PHONE, "+55 11 987", None),
    (InputType.PHONE, "11 9876-54321 ramal 2", None),
    (InputType.PHONE, "11+98765-4321", None),
    # phone: elsewhere
    (InputType.PHONE, "+1 (415) 555-2671", "+14155552671"),
    (InputType.PHONE, "00 351 912 345 678", "+351912345678"),
    (InputType.PHONE, "+0 415 555 2671", None),
    (InputType.PHONE, "+1 234", None),
    # number
    (InputType.NUMBER, "42", 42),
    (InputType.NUMBER, "፩", None),  # a digit, but not an ASCII one
    (InputType.NUMBER, "١٢", None),
    (InputType.NUMBER, "9" * 402, None),  # would be infinity as a float
    (InputType.NUMBER, "1" * 5000, None),  # too long to print as an int
    (InputType.NUMBER, "1" * 30, 111111111111111111111111111111),
    (InputType.NUMBER, "-7", -7),
    (InputType.NUMBER, "+3", 3),
    (InputType.NUMBER, "1234.5", 1234.5),
    (InputType.NUMBER, "1234,5", 1234.5),
    (InputType.NUMBER, "1.234,5", 1234.5),
    (InputType.NUMBER, "1,234.5", 1234.5),
    (InputType.NUMBER, "1.500", 1500),
    (InputType.NUMBER, "0.500", 0.5),
    (InputType.NUMBER, "1234.567", 1234.567),
    (InputType.NUMBER, "1.234.567", 1234567),
    (InputType.NUMBER, "1,234,567", 1234567),
    (InputType.NUMBER, "10,00", 10),
    (InputType.NUMBER, "R$ 1.500,90", 1500.9),
    (InputType.NUMBER, "12,34,5", None),
    (InputType.NUMBER, "1.2.3,4", None),
    (InputType.NUMBER, "5.", None),
    (InputType.NUMBER, ",5", None),
    (InputType.NUMBER, "dez", None),
    (InputType.NUMBER, "1e5", None),
    # date
    (InputType.DATE, "31/12/2024", "2024-12-31"),
    (InputType.DATE, "1/2/2024", "2024-02-01"),
    (InputType.DATE, "01-02-2024", "2024-02-01"),
    (InputType.DATE, "01.02.2024", "2024-02-01"),
    (InputType.DATE, "2024-02-29", "2024-02-29"),
    (InputType.DATE, "29/02/2023", None),
    (InputType.DATE, "2024-13-01", None),
    (InputType.DATE, "01/02-2024", None),
    (InputType.DATE, "01/02/24", None),
    (InputType.DATE, "amanhã", None),
    # cpf
    (InputType.CPF, "529.982.247-25", "52998224725"),
    (InputType.CPF, "52998224725", "52998224725"),
    (InputType.CPF, "529.982.247-24", None),
    (InputType.CPF, "529.982.247-15", None),
    (InputType.CPF, "111.111.111-11", None),
    (InputType.CPF, "529.982.247", None),
    (InputType.CPF, "529 982 247 25", None),
]


@pytest.mark.parametrize(
    ("kind", "text", "expected"), CASES, ids=[f"{c[0]}:{c[1]!r}" for c in CASES]
)
def test_parse_answer(kind: InputType, text: str, expected: object) -> None:
    """Each type accepts the usual ways of writing its value and refuses the rest (None)."""
    assert parse_answer(kind, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [(" AB123 ", "AB123"), ("AB123x", None), ("ab123", None)],
    ids=["trimmed-match", "whole-text-only", "case-sensitive"],
)
def test_regex_answers_match_the_whole_trimmed_text(text: str, expected: object) -> None:
    """A regex input keeps the trimmed text when the pattern matches all of it."""
    assert parse_answer(InputType.REGEX, text, re.compile(r"AB\d+")) == expected


def test_every_type_has_a_portuguese_error_message() -> None:
    """A bad answer without error_message gets a default for its type."""
    assert set(DEFAULT_ERRORS) == set(InputType)
    assert all(message.endswith((".", "?")) for message in DEFAULT_ERRORS.values())


@pytest.mark.parametrize("kind", ["image", "audio", "file", "location"])
def test_media_types_take_no_text(kind: str) -> None:
    """Text alone never answers a media input: only an attachment does (engine.py)."""
    assert parse_answer(InputType(kind), "segue a foto") is None
