"""Conditions: a small, safe expression language, parsed once at load and evaluated on data.

This module does no I/O: no network, no database, no clock, no logging, and never `eval`. A
hand-written tokenizer and a recursive-descent parser turn the text into frozen dataclasses;
`evaluate` walks them over a mapping of variables. It is the language of docs/flows.md §5.

Grammar, loosest first::

    expression := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | comparison
    comparison := value [operator value]
    operator   := "==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not" "in" | "contains"
    value      := "(" expression ")" | "[" [value ("," value)*] "]" | "exists" "(" path ")"
                | 'text' | "text" | number | "true" | "false" | "null" | path
    path       := name ("." (name | digits))*     e.g. crm.protocolo, contact.custom_attributes.x

Meaning:

- A path names a variable, then keys inside it (a digit segment indexes a list). Anything missing
  along the way is null; nothing raises.
- `==` and `!=` compare equal values; a number and a numeric string compare as numbers ("18" == 18),
  and `true`/`false` equal only themselves (true is not 1).
- `< <= > >=` compare numbers (numeric strings included) as numbers and two texts in alphabetical
  order (so ISO dates compare as dates); anything else (null, a list, a text against a number) is
  false.
- `a in b`: b a list, a equals one of its items; b a text, a (text or number) is a part of it;
  b an object, a is one of its keys. `a contains b` is `b in a`; `a not in b` is `not (a in b)`.
- `exists(path)` is true when the path leads to a value other than null (an empty text exists).
- `and`, `or`, `not` and a bare value use truth: null, false, 0, "", [] and {} are false.
- Comparisons do not chain: `1 < x < 5` is a syntax error; write `1 < x and x < 5`.
- Strings take `\\'`, `\\"` and `\\\\` as escapes; any other backslash is kept as written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

KEYWORDS = frozenset({"and", "or", "not", "in", "contains", "exists", "true", "false", "null"})
LITERALS: Mapping[str, Any] = {"true": True, "false": False, "null": None}

NUMERIC = re.compile(r"\s*-?\d+(?:\.\d+)?\s*")

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
    | (?P<number>-?\d+(?:\.\d+)?)
    | (?P<name>[^\W\d]\w*(?:\.\w+)*)
    | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<op>==|!=|<=|>=|<|>)
    | (?P<punct>[()\[\],|])
    """,
    re.VERBOSE | re.DOTALL,
)
_ESCAPE = re.compile(r"\\([\\'\"])")


def position(text: str, offset: int) -> str:
    """Where `offset` is in `text`, for messages: `column 7`, or `line 2, column 3` when the text
    has several lines. Columns and lines count from 1."""
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return f"column {column}" if "\n" not in text else f"line {line}, column {column}"


class ExpressionError(ValueError):
    """A syntax error, with the offset where it was found."""

    def __init__(self, reason: str, text: str, offset: int) -> None:
        self.reason = reason
        self.offset = offset
        super().__init__(f"{reason} at {position(text, offset)}")


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # space, number, name, string, op, punct or end
    text: str
    offset: int


@dataclass(frozen=True, slots=True)
class Literal:
    value: Any


@dataclass(frozen=True, slots=True)
class Path:
    parts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ListOf:
    items: tuple[Expression, ...]


@dataclass(frozen=True, slots=True)
class Exists:
    path: Path


@dataclass(frozen=True, slots=True)
class Not:
    operand: Expression


@dataclass(frozen=True, slots=True)
class And:
    left: Expression
    right: Expression


@dataclass(frozen=True, slots=True)
class Or:
    left: Expression
    right: Expression


@dataclass(frozen=True, slots=True)
class Compare:
    op: str  # ==, !=, <, <=, >, >=, "in" or "contains"
    left: Expression
    right: Expression


Expression = Literal | Path | ListOf | Exists | Not | And | Or | Compare


def tokenize(text: str, start: int = 0, *, until: str | None = None) -> list[Token]:
    """The tokens of `text` from `start`, spaces dropped, ending with an `end` token.

    With `until`, stop where that text begins outside a string: the `end` token then carries it
    (templates use `until="}}"`); reaching the end of `text` instead gives an `end` token with
    empty text.
    """
    tokens: list[Token] = []
    pos = start
    while pos < len(text):
        if until is not None and text.startswith(until, pos):
            tokens.append(Token("end", until, pos))
            return tokens
        match = _TOKEN.match(text, pos)
        if match is None:
            char = text[pos]
            if char in "'\"":
                raise ExpressionError("unterminated string starting", text, pos)
            if char == "=":
                raise ExpressionError("unexpected '=' (use == to compare)", text, pos)
            raise ExpressionError(f"unexpected character {char!r}", text, pos)
        kind = match.lastgroup
        assert kind is not None  # every alternative is a named group
        if kind != "space":
            tokens.append(Token(kind, match.group(), pos))
        pos = match.end()
    tokens.append(Token("end", "", pos))
    return tokens


def parse_expression(text: str) -> Expression:
    """The expression `text` describes; `ExpressionError` with its column when malformed."""
    parser = Parser(text, tokenize(text))
    expression = parser.expression()
    parser.finish()
    return expression


class Parser:
    """A recursive-descent parser over a list of tokens (also used by templates.py)."""

    __slots__ = ("index", "text", "tokens")

    def __init__(self, text: str, tokens: Sequence[Token]) -> None:
        self.text = text
        self.tokens = tokens
        self.index = 0

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.index + ahead, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.peek()
        self.index += 1
        return token

    def error(self, reason: str, token: Token | None = None) -> ExpressionError:
        return ExpressionError(reason, self.text, (token or self.peek()).offset)

    def is_word(self, word: str, ahead: int = 0) -> bool:
        token = self.peek(ahead)
        return token.kind == "name" and token.text == word

    def expect(self, punct: str) -> None:
        token = self.peek()
        if token.kind != "punct" or token.text != punct:
            raise self.error(f"expected {punct!r}")
        self.advance()

    def finish(self) -> None:
        token = self.peek()
        if token.kind != "end":
            raise self.error(f"unexpected {token.text!r}")

    def expression(self) -> Expression:
        left = self._and()
        while self.is_word("or"):
            self.advance()
            left = Or(left, self._and())
        return left

    def _and(self) -> Expression:
        left = self._not()
        while self.is_word("and"):
            self.advance()
            left = And(left, self._not())
        return left

    def _not(self) -> Expression:
        if self.is_word("not"):
            self.advance()
            return Not(self._not())
        return self._comparison()

    def _comparison(self) -> Expression:
        left = self.value()
        negated = self.is_word("not") and self.is_word("in", 1)
        if negated:
            self.advance()
        op = self._operator()
        if op is None:
            return left
        compared = Compare(op, left, self.value())
        if self._operator() is not None:
            raise self.error("comparisons cannot be chained (join them with and)", self.peek(-1))
        return Not(compared) if negated else compared

    def _operator(self) -> str | None:
        """The comparison operator at the current token, consumed; None if there is none."""
        token = self.peek()
        if token.kind == "op" or self.is_word("in") or self.is_word("contains"):
            self.advance()
            return token.text
        return None

    def value(self) -> Expression:
        token = self.peek()
        if token.kind == "punct" and token.text == "(":
            self.advance()
            inner = self.expression()
            self.expect(")")
            return inner
        if token.kind == "punct" and token.text == "[":
            return self._list()
        if token.kind == "number":
            self.advance()
            return Literal(_number(token.text))
        if token.kind == "string":
            self.advance()
            return Literal(unquote(token.text))
        if token.kind == "name" and token.text in LITERALS:
            self.advance()
            return Literal(LITERALS[token.text])
        if token.kind == "name" and token.text == "exists":
            self.advance()
            self.expect("(")
            path = self.peek()
            if path.kind != "name" or path.text in KEYWORDS:
                raise self.error("exists() takes a variable name")
            self.advance()
            self.expect(")")
            return Exists(Path(tuple(path.text.split("."))))
        if token.kind == "name" and token.text not in KEYWORDS:
            self.advance()
            return Path(tuple(token.text.split(".")))
        raise self.error("expected a value")

    def _list(self) -> ListOf:
        self.advance()  # the "["
        items: list[Expression] = []
        if self.peek().text == "]" and self.peek().kind == "punct":
            self.advance()
            return ListOf(())
        while True:
            items.append(self.value())
            token = self.advance()
            if token.kind == "punct" and token.text == "]":
                return ListOf(tuple(items))
            if token.kind != "punct" or token.text != ",":
                raise self.error("expected ',' or ']'", token)


def unquote(literal: str) -> str:
    """The text inside a quoted string token, escapes resolved."""
    return _ESCAPE.sub(r"\1", literal[1:-1])


def _number(text: str) -> int | float:
    return float(text) if "." in text else int(text)


# --- evaluation -----------------------------------------------------------------------------


def lookup(scope: Mapping[str, Any], parts: Sequence[str]) -> Any:
    """The value at a dotted path; None when any step is missing (a digit step indexes a list)."""
    current: Any = scope
    for part in parts:
        if isinstance(current, Mapping):
            current = current.get(part)
        elif isinstance(current, list | tuple) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return None
    return current


def evaluate(expression: Expression, scope: Mapping[str, Any]) -> Any:
    """The value of `expression` over `scope`; comparisons and logic give True or False."""
    match expression:
        case Literal(value=value):
            return value
        case Path(parts=parts):
            return lookup(scope, parts)
        case ListOf(items=items):
            return [evaluate(item, scope) for item in items]
        case Exists(path=path):
            return lookup(scope, path.parts) is not None
        case Not(operand=operand):
            return not evaluate(operand, scope)
        case And(left=left, right=right):
            return bool(evaluate(left, scope)) and bool(evaluate(right, scope))
        case Or(left=left, right=right):
            return bool(evaluate(left, scope)) or bool(evaluate(right, scope))
    # the only kind left is Compare (mypy checks it): no arm that can never run
    compared: Compare = expression
    return compare(compared.op, evaluate(compared.left, scope), evaluate(compared.right, scope))


def holds(expression: Expression, scope: Mapping[str, Any]) -> bool:
    """Whether a condition is true over `scope`."""
    return bool(evaluate(expression, scope))


def compare(op: str, left: Any, right: Any) -> bool:
    if op == "==":
        return equal(left, right)
    if op == "!=":
        return not equal(left, right)
    if op == "in":
        return contains(right, left)
    if op == "contains":
        return contains(left, right)
    return _order(op, left, right)


def as_number(value: Any) -> int | float | None:
    """A number, or a numeric string read as one; None for anything else (true is no number)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str) and NUMERIC.fullmatch(value):
        return _number(value.strip())
    return None


def equal(left: Any, right: Any) -> bool:
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if isinstance(left, int | float) or isinstance(right, int | float):
        a, b = as_number(left), as_number(right)
        return a is not None and b is not None and a == b
    return bool(left == right)


def contains(container: Any, item: Any) -> bool:
    if isinstance(container, list | tuple):
        return any(equal(item, element) for element in container)
    if isinstance(container, str):
        if isinstance(item, str):
            return item in container
        number = as_number(item)
        return number is not None and str(number) in container
    if isinstance(container, Mapping):
        return isinstance(item, str) and item in container
    return False


def _order(op: str, left: Any, right: Any) -> bool:
    a, b = as_number(left), as_number(right)
    if a is not None and b is not None:
        pair: tuple[Any, Any] = (a, b)
    elif isinstance(left, str) and isinstance(right, str):
        pair = (left, right)
    else:
        return False
    if op == "<":
        return bool(pair[0] < pair[1])
    if op == "<=":
        return bool(pair[0] <= pair[1])
    if op == ">":
        return bool(pair[0] > pair[1])
    return bool(pair[0] >= pair[1])


def to_text(value: Any) -> str:
    """How a value reads in a message: null empty, booleans true/false, objects as JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def paths_read(expression: Expression) -> Iterator[tuple[str, ...]]:
    """Every variable path an expression reads, as its parts (`crm.plano` -> ("crm", "plano"))."""
    if isinstance(expression, Path):
        yield expression.parts
    elif isinstance(expression, Exists):
        yield expression.path.parts
    elif isinstance(expression, Not):
        yield from paths_read(expression.operand)
    elif isinstance(expression, And | Or | Compare):
        yield from paths_read(expression.left)
        yield from paths_read(expression.right)
    elif isinstance(expression, ListOf):
        for item in expression.items:
            yield from paths_read(item)
