"""JSON from outside (Chatwoot, the API, a flow's CRM) made fit for PostgreSQL, or refused.

PostgreSQL's `jsonb` and `text` refuse NUL characters, lone UTF-16 surrogates and the non-finite
numbers Python's `json` module accepts (`NaN`, `Infinity`); `bigint` stops at 2^63 - 1; and
deep nesting costs recursion. `loads` reads a body with those rules: text is cleaned (NUL
removed, a lone surrogate becomes U+FFFD: nothing anyone could have meant is lost), and what
cannot be cleaned (a non-finite number, nesting deeper than `MAX_DEPTH`, an integer longer than
`MAX_INT_DIGITS`) raises `Unfit` with what is wrong. Pure: no I/O.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 64
MAX_INT_DIGITS = 40  # far beyond any id or amount; Python's own limit is 4,300
BIGINT_MAX = 2**63 - 1


class Unfit(ValueError):
    """The JSON cannot be taken in: the message says why."""


class NotJson(Unfit):
    """The text is not JSON at all."""


def loads(text: str | bytes) -> Any:
    """Parse JSON as `json.loads` does, then `clean` it; `Unfit` for anything it refuses."""
    try:
        data = json.loads(text, parse_constant=_constant, parse_int=_int)
    except RecursionError as exc:  # json's C parser stops at Python's recursion limit
        raise Unfit(f"the JSON is nested deeper than {MAX_DEPTH} levels") from exc
    except UnicodeDecodeError as exc:
        raise NotJson(f"the body is not UTF-8: {exc}") from exc
    except Unfit:
        raise
    except ValueError as exc:
        raise NotJson(f"the body is not JSON: {exc}") from exc
    return clean(data)


def clean(value: Any, depth: int = 0) -> Any:
    """The same JSON value with its text made storable; `Unfit` when it cannot be."""
    if depth > MAX_DEPTH:
        raise Unfit(f"the JSON is nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise Unfit(f"a number is not finite: {value}")
    if isinstance(value, dict):
        return {clean_text(str(k)): clean(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [clean(v, depth + 1) for v in value]
    return value


def clean_text(text: str) -> str:
    """Text without NUL characters, a lone surrogate replaced by U+FFFD."""
    text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in text)
    return text


def ascii_int(text: str, *, max_digits: int = 19) -> int | None:
    """The number written with ASCII digits only, at most `max_digits` of them, else None.

    `str.isdigit` is true for "²" and "፩", which `int` refuses or reads unexpectedly.
    """
    if not text or len(text) > max_digits or not (text.isascii() and text.isdigit()):
        return None
    return int(text)


def bigint(value: int) -> int | None:
    """The value when a PostgreSQL bigint holds it, else None."""
    return value if -BIGINT_MAX - 1 <= value <= BIGINT_MAX else None


def _constant(name: str) -> Any:
    raise Unfit(f"a number is not finite: {name}")


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise Unfit(f"an integer has more than {MAX_INT_DIGITS} digits")
    return int(text)
