"""The toolkit that reads YAML documents and validates what was read, shared by the flow
loader (loader.py) and the conversation tests (flowtests.py).

This module does no I/O: it is handed the text and the file name. It gives the data, the line
of every YAML path (so each problem reads `file:line: path: message`), the keys written twice,
and small checks (a string, a flag, a list, a mapping with known keys, a duration...) that
collect every problem in a `Report` instead of stopping at the first.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import yaml

from agentbot.errors import FlowError

DURATION = re.compile(r"\s*(?:\d+\s*[smhd]\s*)+", re.ASCII)
DURATION_PART = re.compile(r"(\d+)\s*([smhd])", re.ASCII)
MAX_DURATION_DAYS = 366
MAX_TEXT = 1024 * 1024  # characters of one flow document
MAX_NODES = 20_000  # values in one flow document, aliases expanded
DURATION_UNITS: Mapping[str, int] = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MERGE_TAG = "tag:yaml.org,2002:merge"
ALIAS_CYCLE = "a YAML alias refers to its own anchor: write the value out"


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.path}: {self.message}"


def read_yaml(text: str, filename: str) -> tuple[Any, yaml.Node | None]:
    """The data (`yaml.safe_load`) and the node tree (for line numbers) of a YAML text; a
    syntax error is a `FlowError` with one problem at its line, path `(yaml)`."""
    if len(text) > MAX_TEXT:
        message = f"the file is {len(text)} characters long: a flow is at most {MAX_TEXT}"
        raise FlowError([Problem(filename, 1, "(yaml)", message)])
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if root is not None and expanded_size(root) > MAX_NODES:
            # Aliases repeat what their anchor holds: a few bytes can stand for gigabytes.
            message = (
                f"the document holds more than {MAX_NODES} values once its aliases (*name) "
                "are expanded: write it with fewer aliases or split the flow"
            )
            raise FlowError([Problem(filename, 1, "(yaml)", message)])
        return yaml.safe_load(text), root
    except RecursionError as exc:
        message = "the document is nested too deeply"
        raise FlowError([Problem(filename, 1, "(yaml)", message)]) from exc
    except yaml.reader.ReaderError as exc:
        # A character YAML refuses; the reader knows only its offset in the text.
        line = text.count("\n", 0, exc.position) + 1
        message = f"character #x{exc.character:04x} is not allowed in YAML: {exc.reason}"
        raise FlowError([Problem(filename, line, "(yaml)", message)]) from exc
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        message = ", ".join(part for part in (exc.context, exc.problem) if part)
        raise FlowError([Problem(filename, line, "(yaml)", message)]) from exc


def expanded_size(root: yaml.Node) -> int:
    """How many values the node tree holds with every alias expanded; counting stops a little
    past MAX_NODES. An alias that refers to its own anchor counts once (read_document refuses
    it)."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = _children(node)
        if done:
            on_path.discard(key)
            total = 1 + sum(sizes.get(id(c), 1) for c in children)
            sizes[key] = min(total, MAX_NODES + 1)
            continue
        if key in sizes or key in on_path:
            continue
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children)
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


# --- where things are in the file ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Document:
    """A YAML document read: its data, the line of every path in it, the keys written twice."""

    data: Any
    lines: Mapping[str, int]
    repeats: list[Problem]


def read_document(text: str, file: str) -> Document:
    """Read a YAML text with the line of every path; a syntax error, or an alias that refers to
    its own anchor (data with no end), is a `FlowError`. Paths read `a.b[0].c`; `""` is the root.
    """
    data, root = read_yaml(text, file)
    lines: dict[str, int] = {"": 1}
    index = _Index(file, lines, [], set(), set(), [])
    if root is not None:
        lines[""] = _line(root)
        _index(root, "", index)
    if index.cycles:
        raise FlowError(index.cycles[:1])  # the data cannot be walked: one problem is enough
    return Document(data, lines, index.repeats)


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _parent(path: str) -> str:
    cut = max(path.rfind("."), path.rfind("["))
    return path[:cut] if cut > 0 else ""


def line_at(lines: Mapping[str, int], path: str) -> int:
    """The line of `path`, or of its nearest ancestor when the value is absent; 0 if unknown."""
    while path and path not in lines:
        path = _parent(path)
    return lines.get(path, 0)


@dataclass(frozen=True, slots=True)
class _Index:
    """What the walk over the composed YAML fills in: lines, repeated keys, nodes visited, the
    nodes being walked (the ancestors of the current one) and aliases of an ancestor."""

    file: str
    lines: dict[str, int]
    repeats: list[Problem]
    visited: set[int]
    walking: set[int]
    cycles: list[Problem]


def _index(node: yaml.Node, path: str, index: _Index) -> None:
    """Record the line of every path under `node`, and report keys written twice."""
    index.visited.add(id(node))
    index.walking.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == MERGE_TAG:
                continue  # `<<: *base` keys may be overridden on purpose; not a repeat
            key = str(key_node.value)
            key_line = _line(key_node)
            child = f"{path}.{key}" if path else key
            if key in first:
                # safe_load silently keeps the last one, so the author must hear about it
                message = (
                    f"key {key!r} is repeated (first at line {first[key]}); only the last counts"
                )
                index.repeats.append(Problem(index.file, key_line, child, message))
            else:
                first[key] = key_line
            _place(value_node, child, key_line, index)
    elif isinstance(node, yaml.SequenceNode):
        for position, item in enumerate(node.value):
            _place(item, f"{path}[{position}]", None, index)
    index.walking.discard(id(node))


def _place(node: yaml.Node, path: str, key_line: int | None, index: _Index) -> None:
    if id(node) in index.visited:
        # An alias of a node seen before (or of its own ancestor): PyYAML keeps no position
        # for the alias itself, and walking it again could be endless or exponential.
        line = key_line if key_line is not None else line_at(index.lines, path)
        if key_line is not None:
            index.lines[path] = key_line
        if id(node) in index.walking:
            index.cycles.append(Problem(index.file, line, "(yaml)", ALIAS_CYCLE))
        return
    # A scalar's own line; a collection's key line, since a block mapping starts a line later.
    scalar = isinstance(node, yaml.ScalarNode)
    index.lines[path] = key_line if key_line is not None and not scalar else _line(node)
    _index(node, path, index)


# --- validation and building ----------------------------------------------------------------


class Report:
    """The problems found in one document, each placed at the line of its YAML path."""

    __slots__ = ("file", "line_of", "problems")

    def __init__(self, file: str, line_of: Callable[[str], int]) -> None:
        self.file = file
        self.line_of = line_of
        self.problems: list[Problem] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(self.file, self.line_of(path), path, message))


def describe(value: object) -> str:
    """A value as the author wrote it, for 'expected X, got Y' messages."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {shown!r}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return f"a {type(value).__name__}"  # dates, timestamps, !!binary, !!set


def expected_string(value: object) -> str:
    message = f"expected a string, got {describe(value)}"
    if isinstance(value, bool):
        # the classic YAML 1.1 trap: `text: No` is false, not "No"
        return f"{message} (quote it: YAML reads yes, no, on and off as true or false)"
    if isinstance(value, int | float):
        return f"{message} (quote it)"
    return message


def suggest(word: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def unknown_keys(
    mapping: Mapping[Any, Any], allowed: Sequence[str], path: str, report: Report
) -> bool:
    """Report every key not in `allowed`; True if there was one."""
    found = False
    for key in mapping:
        if key not in allowed:
            hint = suggest(key, allowed) if isinstance(key, str) else ""
            report.add(join(path, key), f"unknown key {key!r}{hint}")
            found = True
    return found


def text(value: object, path: str, label: str, report: Report) -> str | None:
    """`value` if it is a string with something in it; else report why and return None."""
    if value is None or (isinstance(value, str) and not value.strip()):
        report.add(path, f"{label} is empty")
        return None
    if not isinstance(value, str):
        report.add(path, expected_string(value))
        return None
    return value


def optional_text(mapping: Mapping[str, Any], key: str, path: str, report: Report) -> str | None:
    return text(mapping[key], join(path, key), key, report) if key in mapping else None


def flag(
    mapping: Mapping[str, Any], key: str, path: str, report: Report, *, default: bool = False
) -> bool:
    value = mapping.get(key, default)
    if not isinstance(value, bool):
        report.add(join(path, key), f"expected true or false, got {describe(value)}")
        return False
    return value


def list_at(
    mapping: Mapping[str, Any], key: str, path: str, what: str, report: Report
) -> list[Any] | None:
    """The list at `key`; None when absent, or when it is not a list (reported)."""
    if key not in mapping:
        return None
    value = mapping[key]
    if not isinstance(value, list):
        report.add(join(path, key), f"expected a list of {what}, got {describe(value)}")
        return None
    return value


def mapping(
    value: object, path: str, keys: Sequence[str], report: Report
) -> Mapping[str, Any] | None:
    """`value` when it is a mapping (its unknown keys reported); else report it, give None."""
    if not isinstance(value, Mapping):
        report.add(path, f"expected a mapping with {', '.join(keys)}, got {describe(value)}")
        return None
    unknown_keys(value, keys, path, report)
    return value


def required(mapping: Mapping[str, Any], key: str, path: str, report: Report) -> bool:
    if key in mapping:
        return True
    report.add(join(path, key), f"{key} is missing")
    return False


def switch(
    block: Mapping[str, Any], key: str, path: str, keys: Sequence[str], report: Report
) -> Mapping[str, Any] | None:
    """`key: true` gives {}, `key: {...}` the mapping; absent, false or wrong gives None."""
    value = block.get(key, False)
    if value is False:
        return None
    if value is True:
        return {}
    if not isinstance(value, Mapping):
        names = ", ".join(keys)
        report.add(
            f"{path}.{key}",
            f"expected true, false or a mapping with {names}, got {describe(value)}",
        )
        return None
    unknown_keys(value, keys, f"{path}.{key}", report)
    return value


def positive_id(mapping: Mapping[str, Any], key: str, path: str, report: Report) -> int | None:
    if key not in mapping:
        return None
    value = mapping[key]
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    got = describe(value)
    report.add(f"{path}.{key}", f"expected an id (a positive whole number), got {got}")
    return None


def count(mapping: Mapping[str, Any], key: str, path: str, default: int, report: Report) -> int:
    value = mapping.get(key, default)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    report.add(f"{path}.{key}", f"expected a whole number of 1 or more, got {describe(value)}")
    return default


def duration(value: object, path: str, report: Report) -> timedelta | None:
    if not isinstance(value, str) or not DURATION.fullmatch(value):
        report.add(path, f"expected a duration like 30s, 10m, 2h or 1d, got {describe(value)}")
        return None
    parts = DURATION_PART.findall(value)
    if any(len(n) > 9 for n, _ in parts):
        report.add(path, f"a duration is at most {MAX_DURATION_DAYS}d")
        return None
    seconds = sum(int(n) * DURATION_UNITS[unit] for n, unit in parts)
    if seconds == 0:
        report.add(path, "a duration must be more than zero")
        return None
    if seconds > MAX_DURATION_DAYS * 86400:
        report.add(path, f"a duration is at most {MAX_DURATION_DAYS}d")
        return None
    return timedelta(seconds=seconds)
