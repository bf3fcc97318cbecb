"""JSON from outside made fit for PostgreSQL: cleaned where nothing is lost, refused otherwise."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentbot import jsonsafe
from agentbot.jsonsafe import MAX_DEPTH, NotJson, Unfit, ascii_int, bigint, clean, loads

CLEANED = [
    ('{"a": "x\\u0000y"}', {"a": "xy"}),
    ('{"a\\u0000": 1}', {"a": 1}),
    ('["\\ud800", "\\ud83d\\ude00"]', ["\ufffd", "😀"]),
    ('{"n": 1.5, "i": -3, "b": true, "z": null}', {"n": 1.5, "i": -3, "b": True, "z": None}),
    ("[" * MAX_DEPTH + "]" * MAX_DEPTH, json.loads("[" * MAX_DEPTH + "]" * MAX_DEPTH)),
]


@pytest.mark.parametrize(("text", "expected"), CLEANED)
def test_cleaned(text: str, expected: Any) -> None:
    """NUL is dropped, a lone surrogate becomes U+FFFD; the rest is kept as it was."""
    assert loads(text) == expected


REFUSED = [
    ('{"x": NaN}', Unfit, "not finite"),
    ('{"x": -Infinity}', Unfit, "not finite"),
    ("[1e999]", Unfit, "not finite"),
    ("[" + "9" * 41 + "]", Unfit, "more than 40 digits"),
    ("[" * 50_000 + "]" * 50_000, Unfit, "nested deeper"),
    ('{"a": ' * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1), Unfit, "nested deeper"),
    ("{", NotJson, "not JSON"),
    (b"\x80{}", NotJson, "not UTF-8"),
]


@pytest.mark.parametrize(("text", "error", "message"), REFUSED)
def test_refused(text: str | bytes, error: type[Exception], message: str) -> None:
    """Non-finite numbers, huge integers, deep nesting and non-JSON are refused with why."""
    with pytest.raises(error, match=message):
        loads(text)


def test_deep_brackets_inside_strings_are_text() -> None:
    """Brackets inside strings (escaped quotes too) do not count as nesting."""
    text = json.dumps(["[" * 100, '\\"' + "{" * 100])
    assert loads(text) == ["[" * 100, '\\"' + "{" * 100]


def test_clean_refuses_python_values_too() -> None:
    """clean() applies the same rules to values built in Python."""
    assert clean({"a": ["b\x00"]}) == {"a": ["b"]}
    with pytest.raises(Unfit):
        clean([float("nan")])
    deep: Any = 1
    for _ in range(MAX_DEPTH + 2):
        deep = [deep]
    with pytest.raises(Unfit):
        clean(deep)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("42", 42), ("²", None), ("፩", None), ("", None), ("1" * 20, None), ("-1", None)],
)
def test_ascii_int(text: str, expected: int | None) -> None:
    """Only ASCII digits, and not too many of them, make a number."""
    assert ascii_int(text) == expected


def test_bigint() -> None:
    """Integers PostgreSQL's bigint holds pass; larger ones do not."""
    assert bigint(2**63 - 1) == 2**63 - 1
    assert bigint(-(2**63)) == -(2**63)
    assert bigint(2**63) is None


@given(
    st.recursive(
        st.none() | st.booleans() | st.floats() | st.integers() | st.text(),
        lambda kids: st.lists(kids) | st.dictionaries(st.text(), kids),
        max_leaves=30,
    )
)
def test_any_value_is_cleaned_or_refused(value: Any) -> None:
    """Whatever JSON-like value: clean() gives text PostgreSQL takes, or raises Unfit."""
    try:
        cleaned = clean(value)
    except Unfit:
        return
    text = json.dumps(cleaned, allow_nan=False)
    assert "\\u0000" not in text
    text.encode("utf-8")
    assert jsonsafe.loads(text) == cleaned
