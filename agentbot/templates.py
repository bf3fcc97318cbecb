"""Templates in flow text: `{{nome}}`, `{{contact.custom_attributes.plano | default('free')}}`.

This module does no I/O: no network, no database, no clock, no logging. A template is parsed
once, when the flow is loaded, into literal text and placeholders; rendering fills the
placeholders in one pass, so a value (customer text among them) is never read as a template.

Syntax, the one and only::

    {{ path }}                      a variable, or a key inside one: crm.protocolo, contact.email
    {{ path | filter | filter }}    filters apply left to right
    {{ path | default('texto') }}   the value when the variable is missing or empty; the
                                    argument is a quoted text ('...' or "...") or a number

Filters: `default(x)`, `first_name` (the first word), `upper`, `lower`, `title` (Each Word
Capitalised). A missing variable renders as empty text, never as raw braces; null is empty,
true/false are `true`/`false`, lists and objects are JSON. A `{{` that is never closed, an empty
placeholder or an unknown filter is an error with its column, reported when the flow is loaded.
There is no way to write a literal `{{` in flow text.

`value()` keeps the type of a template that is exactly one placeholder (`"{{idade}}"` gives the
number 30, not "30"), for `set:` values and webhook bodies; any other template gives text.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agentbot.expressions import (
    ExpressionError,
    Parser,
    lookup,
    to_text,
    tokenize,
    unquote,
)

OPEN = "{{"
CLOSE = "}}"
# filter name -> whether it takes a value in parentheses
FILTERS: Mapping[str, bool] = {
    "default": True,
    "first_name": False,
    "upper": False,
    "lower": False,
    "title": False,
}

TemplateError = ExpressionError  # same shape: a reason and the column where it was found


@dataclass(frozen=True, slots=True)
class Filter:
    name: str
    argument: str | int | float | None = None


@dataclass(frozen=True, slots=True)
class Placeholder:
    path: tuple[str, ...]
    filters: tuple[Filter, ...] = ()


@dataclass(frozen=True, slots=True)
class Template:
    source: str
    parts: tuple[str | Placeholder, ...]


def parse_template(text: str) -> Template:
    """The template `text` describes; `TemplateError` with its column when malformed."""
    parts: list[str | Placeholder] = []
    pos = 0
    while (start := text.find(OPEN, pos)) >= 0:
        if start > pos:
            parts.append(text[pos:start])
        placeholder, pos = _placeholder(text, start)
        parts.append(placeholder)
    if pos < len(text):
        parts.append(text[pos:])
    return Template(text, tuple(parts))


def _placeholder(text: str, start: int) -> tuple[Placeholder, int]:
    """The placeholder opened at `start`, and the offset just after its `}}`."""
    parser = Parser(text, tokenize(text, start + len(OPEN), until=CLOSE))
    token = parser.advance()
    if token.kind == "end" and not token.text:
        raise TemplateError("'{{' is never closed", text, start)
    if token.kind != "name":
        raise parser.error("expected a variable name", token)
    path = tuple(token.text.split("."))
    filters: list[Filter] = []
    while True:
        token = parser.advance()
        if token.kind == "end":
            if not token.text:
                raise TemplateError("'{{' is never closed", text, start)
            return Placeholder(path, tuple(filters)), token.offset + len(CLOSE)
        if token.text != "|":
            raise parser.error("expected '|' or '}}'", token)
        filters.append(_filter(parser))


def _filter(parser: Parser) -> Filter:
    token = parser.advance()
    if token.kind != "name":
        raise parser.error("expected a filter name", token)
    if token.text not in FILTERS:
        close = difflib.get_close_matches(token.text, list(FILTERS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise parser.error(f"unknown filter {token.text!r}{hint}", token)
    opens = parser.peek().kind == "punct" and parser.peek().text == "("
    if not FILTERS[token.text]:
        if opens:
            raise parser.error(f"{token.text} takes no value")
        return Filter(token.text)
    if not opens:
        raise parser.error(f"expected '(' after {token.text}")
    parser.advance()
    argument = parser.advance()
    if argument.kind not in ("string", "number"):
        raise parser.error("expected a quoted text or a number", argument)
    parser.expect(")")
    if argument.kind == "string":
        return Filter(token.text, unquote(argument.text))
    return Filter(token.text, float(argument.text) if "." in argument.text else int(argument.text))


def render(
    template: Template, scope: Mapping[str, Any], escape: Callable[[str], str] | None = None
) -> str:
    """The template's text with every placeholder filled from `scope`.

    `escape` is applied to each filled-in value (never to the flow's own text): webhook URLs
    percent-encode values so that a variable cannot change the URL's structure.
    """
    out: list[str] = []
    for part in template.parts:
        if isinstance(part, str):
            out.append(part)
        else:
            text = to_text(_fill(part, scope))
            out.append(escape(text) if escape is not None else text)
    return "".join(out)


def value(template: Template, scope: Mapping[str, Any]) -> Any:
    """A lone placeholder's value with its type kept; otherwise the rendered text."""
    if len(template.parts) == 1 and isinstance(template.parts[0], Placeholder):
        return _fill(template.parts[0], scope)
    return render(template, scope)


def render_value(tree: Any, scope: Mapping[str, Any]) -> Any:
    """A JSON-like value whose string leaves are templates, filled in (`set:`, webhook bodies).

    Mappings become dicts, sequences lists; numbers, booleans and null stay as they are.
    """
    if isinstance(tree, Template):
        return value(tree, scope)
    if isinstance(tree, Mapping):
        return {key: render_value(item, scope) for key, item in tree.items()}
    if isinstance(tree, list | tuple):
        return [render_value(item, scope) for item in tree]
    return tree


def _fill(placeholder: Placeholder, scope: Mapping[str, Any]) -> Any:
    current = lookup(scope, placeholder.path)
    for item in placeholder.filters:
        current = _apply(item, current)
    return current


def _apply(item: Filter, current: Any) -> Any:
    if item.name == "default":
        return item.argument if current is None or current == "" else current
    text = to_text(current)
    if item.name == "first_name":
        words = text.split()
        return words[0] if words else ""
    if item.name == "upper":
        return text.upper()
    if item.name == "lower":
        return text.lower()
    return text.title()
