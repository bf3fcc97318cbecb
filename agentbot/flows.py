"""Flow files: YAML text -> a validated, frozen `Flow`.

This module does no I/O: it never opens a file, reads the clock or touches the network.
Callers hand it the text and the file name; `catalog.py` (the shell) reads the files.
Every problem is collected and reported at once, each as `file:line: path: message`.
Templates (templates.py), conditions (expressions.py) and input patterns are parsed here, at
load, so that a flow that loads never fails on its own text at run time.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import PurePosixPath
from typing import Any, Literal

import yaml

from agentbot.answers import InputType
from agentbot.errors import FlowError
from agentbot.expressions import KEYWORDS, Expression, ExpressionError, parse_expression
from agentbot.templates import Template, TemplateError, parse_template

DEFAULT_HANDOFF_WORDS: tuple[str, ...] = ("atendente", "humano", "agent")
DEFAULT_RESTART_WORDS: tuple[str, ...] = ("menu", "reiniciar", "restart")
DEFAULT_RETRY_MESSAGE = "Não entendi. Por favor, escolha uma das opções:"
DEFAULT_HANDOFF_MESSAGE = "Vou te transferir para um atendente."
DEFAULT_RETRIES = 2  # design §7: the second miss hands off (or goes to the fallback)
DEFAULT_WEBHOOK_TIMEOUT = 10.0
MAX_WEBHOOK_TIMEOUT = 60.0  # the outbox worker holds the conversation's queue while it waits

MAX_BUTTONS = 10
MAX_BUTTON_TITLE = 20  # WhatsApp reply buttons (3 or fewer items)
MAX_LIST_TITLE = 24  # WhatsApp list rows (more than 3 items)
MAX_VALUE_BYTES = 64  # Telegram's callback_data limit
MAX_REPLY_BUTTONS = 3  # WhatsApp shows up to 3 reply buttons; more become a list

FALLBACK_SLUG = "opcao"  # the value of a button whose text has no ASCII letter or digit

TOP_KEYS = (
    "name",
    "title",
    "start",
    "trigger",
    "blocks",
    "keywords",
    "messages",
    "fallback",
    "inactivity",
    "template",
)
TEMPLATE_KEYS = ("name", "language", "category", "params")
TRIGGER_KEYS = ("default", "keywords", "inboxes", "widget")
WORDS_KEYS = ("handoff", "restart")
TEXTS_KEYS = ("retry", "handoff")
INACTIVITY_KEYS = ("after", "message")
BLOCK_KEYS = (
    "message",
    "buttons",
    "next_block",
    "tag",
    "tags",
    "input",
    "save_to",
    "set",
    "conditions",
    "else",
    "webhook",
    "handoff",
    "end",
    "timeout",
)
BUTTON_KEYS = ("text", "value", "next_block", "tag", "tags")
INPUT_KEYS = ("save_as", "type", "pattern", "error_message", "retries")
CONDITION_KEYS = ("if", "next_block")
WEBHOOK_KEYS = ("url", "method", "headers", "body", "timeout", "save_as", "on_error", "retry")
HANDOFF_KEYS = ("team_id", "assignee_id", "note")
END_KEYS = ("resolve",)
TIMEOUT_KEYS = ("after", "next_block")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
IDEMPOTENT_METHODS = frozenset({"GET", "PUT", "DELETE"})  # design §6: retried by default
# The keys that make a block do something; `handoff` and `end` count only when true.
ACTION_KEYS = frozenset(
    {"message", "buttons", "next_block", "tag", "tags", "input", "set", "conditions", "else"}
    | {"webhook"}
)
# Keys with no effect in a block that hands off or ends: nothing comes after it.
AFTER_KEYS = ("buttons", "input", "next_block", "conditions", "else", "timeout")
# Names the templates and conditions give their own meaning (the contact, the conversation).
RESERVED_NAMES = frozenset({"nome", "contact", "conversation"}) | KEYWORDS

# Chatwoot labels are lowercase letters, digits, `-` and `_`.
LABEL = re.compile(r"[\w-]+")
VARIABLE = re.compile(r"[^\W\d]\w*")
ATTRIBUTE = re.compile(r"(contact|conversation)\.custom_attributes\.(\w+)")
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
URL_ORIGIN = re.compile(r"(https?)://([^/?#]+)", re.IGNORECASE)
DURATION = re.compile(r"\s*(?:\d+\s*[smhd]\s*)+")
DURATION_PART = re.compile(r"(\d+)\s*([smhd])")
DURATION_UNITS: Mapping[str, int] = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.path}: {self.message}"


@dataclass(frozen=True, slots=True)
class Button:
    text: str
    value: str
    next_block: str | None
    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class InputSpec:
    """`input:` free text, checked by type (answers.py) and kept as variable `save_as`."""

    save_as: str
    type: InputType = InputType.TEXT
    pattern: re.Pattern[str] | None = None
    error_message: Template | None = None
    retries: int = DEFAULT_RETRIES


@dataclass(frozen=True, slots=True)
class SaveTarget:
    """`save_to: contact.custom_attributes.X` or `conversation.custom_attributes.X`."""

    scope: Literal["contact", "conversation"]
    key: str


@dataclass(frozen=True, slots=True)
class Condition:
    test: Expression
    next_block: str
    source: str = field(default="", compare=False)  # the `if:` text, for graphs and messages


@dataclass(frozen=True, slots=True)
class WebhookSpec:
    url: Template
    method: str = "GET"
    headers: Mapping[str, Template] = field(default_factory=dict)
    body: Any = None  # JSON-like; its strings are Templates
    timeout: float = DEFAULT_WEBHOOK_TIMEOUT
    save_as: str | None = None
    on_error: str | None = None
    retry: bool = True


@dataclass(frozen=True, slots=True)
class HandoffSpec:
    """`handoff: true` or `handoff: {team_id, assignee_id, note}`."""

    team_id: int | None = None
    assignee_id: int | None = None
    note: Template | None = None


@dataclass(frozen=True, slots=True)
class EndSpec:
    """`end: true` or `end: {resolve: true}`."""

    resolve: bool = False


@dataclass(frozen=True, slots=True)
class TimeoutSpec:
    after: timedelta
    next_block: str


@dataclass(frozen=True, slots=True)
class Block:
    id: str
    message: Template | None = None
    buttons: tuple[Button, ...] = ()
    next_block: str | None = None
    tags: tuple[str, ...] = ()
    handoff: HandoffSpec | None = None
    input: InputSpec | None = None
    save_to: SaveTarget | None = None
    assign: Mapping[str, Any] = field(default_factory=dict)  # `set:`; strings are Templates
    conditions: tuple[Condition, ...] = ()
    else_block: str | None = None  # `else:`
    webhook: WebhookSpec | None = None
    end: EndSpec | None = None
    timeout: TimeoutSpec | None = None

    @property
    def terminal(self) -> bool:
        """The block hands off or ends: nothing comes after it."""
        return self.handoff is not None or self.end is not None

    @property
    def waits(self) -> bool:
        """The block rests until the customer answers (buttons, input) or a webhook does."""
        return bool(self.buttons or self.input or self.webhook) and not self.terminal


@dataclass(frozen=True, slots=True)
class Trigger:
    default: bool = False
    keywords: tuple[str, ...] = ()
    inboxes: tuple[int, ...] = ()
    widget: bool = False  # start when a visitor opens the web widget (webwidget_triggered)


@dataclass(frozen=True, slots=True)
class GlobalWords:
    handoff: tuple[str, ...] = DEFAULT_HANDOFF_WORDS
    restart: tuple[str, ...] = DEFAULT_RESTART_WORDS


@dataclass(frozen=True, slots=True)
class Texts:
    """What the engine says on its own behalf (key `messages:` in a flow file)."""

    retry: str = DEFAULT_RETRY_MESSAGE
    handoff: str = DEFAULT_HANDOFF_MESSAGE


@dataclass(frozen=True, slots=True)
class Inactivity:
    """`inactivity: {after, message}`: the session is abandoned after this long in silence."""

    after: timedelta
    message: Template | None = None


@dataclass(frozen=True, slots=True)
class Flow:
    name: str
    title: str
    start: str
    trigger: Trigger
    blocks: Mapping[str, Block]
    keywords: GlobalWords = field(default_factory=GlobalWords)
    messages: Texts = field(default_factory=Texts)
    version: str = ""
    definition: Mapping[str, Any] = field(default_factory=dict)
    # YAML path -> line in the file, so problems about the flow as a whole (`check_flow_set`)
    # can point at a line; empty for flows read from the database. Not part of equality.
    lines: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)
    fallback: str | None = None  # where a customer goes after too many misses; None: hand off
    inactivity: Inactivity | None = None
    template: WhatsAppTemplate | None = None


@dataclass(frozen=True, slots=True)
class WhatsAppTemplate:
    """`template:` the approved WhatsApp template that opens a proactive start outside the
    24-hour window (Chatwoot's `template_params`; `params` is its `processed_params`, whose
    strings are templates)."""

    name: str
    language: str
    category: str | None
    params: Any


def normalize(text: str) -> str:
    """Case-, accent- and space-insensitive form used for every match against customer text."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.casefold().split())


def flow_version(definition: Mapping[str, Any]) -> str:
    """A hash of the parsed content: comments and formatting do not change it."""
    canonical = json.dumps(
        definition, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def slugify(text: str) -> str:
    """An ASCII, lowercase, `_`-separated form of `text`, at most 64 bytes and never empty."""
    # casefold before NFKD so that "ß" becomes "ss" rather than vanishing
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    ascii_text = decomposed.encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "_", ascii_text).strip("_")
    return slug[:MAX_VALUE_BYTES].rstrip("_") or FALLBACK_SLUG


def captured_variables(flow: Flow) -> tuple[str, ...]:
    """The variables the flow's inputs keep, in block order, each once."""
    names = (block.input.save_as for block in flow.blocks.values() if block.input is not None)
    return tuple(dict.fromkeys(names))


def flow_uses_contact_attributes(flow: Flow) -> bool:
    """Whether the flow saves contact attributes, which needs CHATWOOT_USER_TOKEN."""
    return any(
        block.save_to is not None and block.save_to.scope == "contact"
        for block in flow.blocks.values()
    )


def exits(block: Block) -> tuple[tuple[str, str], ...]:
    """(label, target) of every way out of a block, for graphs and reachability.

    Labels: a button's text, a condition's `if`, `else`, `next`, `timeout` and `error`.
    """
    found = [(button.text, button.next_block) for button in block.buttons if button.next_block]
    found += [(condition.source, condition.next_block) for condition in block.conditions]
    if block.else_block is not None:
        found.append(("else", block.else_block))
    if block.next_block is not None:
        found.append(("next", block.next_block))
    if block.timeout is not None:
        found.append(("timeout", block.timeout.next_block))
    if block.webhook is not None and block.webhook.on_error is not None:
        found.append(("error", block.webhook.on_error))
    return tuple((label, target) for label, target in found if target is not None)


def flow_warnings(flow: Flow, file: str) -> list[Problem]:
    """What `agentbot check` warns about without refusing the flow: blocks that no way leads to
    from the start (or the fallback), and answers after which the flow ends without a reply."""
    reached: set[str] = set()
    pending = [flow.start] if flow.fallback is None else [flow.start, flow.fallback]
    while pending:
        block_id = pending.pop()
        if block_id not in reached:
            reached.add(block_id)
            pending.extend(target for _, target in exits(flow.blocks[block_id]))
    problems: list[Problem] = []

    def warn(path: str, message: str) -> None:
        problems.append(Problem(file, _line_at(flow.lines, path), path, message))

    for block_id, block in flow.blocks.items():
        path = f"blocks.{block_id}"
        if block_id not in reached:
            warn(path, "no way leads to this block from the start")
        if block.terminal or _routes(block):
            continue
        for i, button in enumerate(block.buttons):
            if button.next_block is None:
                warn(
                    f"{path}.buttons[{i}]",
                    "choosing this button ends the flow without a reply to the customer",
                )
        if block.input is not None or block.webhook is not None:
            warn(path, "the flow ends after this block's answer without a reply to the customer")
    return problems


def read_yaml(text: str, filename: str) -> tuple[Any, yaml.Node | None]:
    """The data (`yaml.safe_load`) and the node tree (for line numbers) of a YAML text; a
    syntax error is a `FlowError` with one problem at its line, path `(yaml)`."""
    try:
        return yaml.safe_load(text), yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.reader.ReaderError as exc:
        # A character YAML refuses; the reader knows only its offset in the text.
        line = text.count("\n", 0, exc.position) + 1
        message = f"character #x{exc.character:04x} is not allowed in YAML: {exc.reason}"
        raise FlowError([Problem(filename, line, "(yaml)", message)]) from exc
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        message = ", ".join(part for part in (exc.context, exc.problem) if part)
        raise FlowError([Problem(filename, line, "(yaml)", message)]) from exc


def parse_flow(text: str, filename: str) -> Flow:
    """Parse and validate one flow file; raise `FlowError` naming every problem in it."""
    data, root = read_yaml(text, filename)
    lines: dict[str, int] = {"": 1}
    repeats: list[Problem] = []
    if root is not None:
        lines[""] = _line(root)
        _index(root, "", _Index(filename, lines, repeats, set()))
    report = _Report(filename, lambda path: _line_at(lines, path))
    report.problems.extend(repeats)
    flow = _build(data, report, default_name=PurePosixPath(filename).stem, lines=lines)
    if flow is None:
        # sorted by line so the problems read in file order; sort is stable within a line
        raise FlowError(sorted(report.problems, key=lambda p: p.line))
    return flow


def flow_from_definition(
    definition: Mapping[str, Any], *, name: str, file: str = "<database>"
) -> Flow:
    """Validate and build a flow already parsed (a version stored in the database).

    `name` plays the part of the file name: it is used when the definition has no `name:`.
    Problems carry line 0, since there is no file to point into.
    """
    report = _Report(file, lambda path: 0)
    flow = _build(definition, report, default_name=name, lines={})
    if flow is None:
        raise FlowError(report.problems)
    return flow


def check_flow_set(flows: Sequence[tuple[str, Flow]]) -> list[Problem]:
    """Problems between flows: a name used twice, two default flows for the same inboxes."""
    problems: list[Problem] = []
    owners: dict[str, str] = {}
    defaults: list[tuple[str, Flow]] = []
    for file, flow in flows:
        if flow.name in owners:
            message = f"flow name {flow.name!r} is already used by {owners[flow.name]}"
            problems.append(Problem(file, _line_at(flow.lines, "name"), "name", message))
        else:
            owners[flow.name] = file
        if not flow.trigger.default:
            continue
        for other_file, other in defaults:
            scope = _shared_scope(flow.trigger.inboxes, other.trigger.inboxes)
            if scope is not None:
                line = _line_at(flow.lines, "trigger.default")
                message = f"{other_file} is already the default flow for {scope}"
                problems.append(Problem(file, line, "trigger.default", message))
                break  # one clash is enough to tell the author what to fix
        defaults.append((file, flow))
    return problems


def _shared_scope(inboxes: tuple[int, ...], others: tuple[int, ...]) -> str | None:
    """The inboxes two default flows both claim, in words; None when they claim none in common.

    A default without `inboxes` covers every inbox, but one with `inboxes` is more specific and
    wins there, so only two unrestricted defaults, or two overlapping lists, clash.
    """
    if not inboxes and not others:
        return "every inbox"
    common = sorted(set(inboxes) & set(others))
    if not common:
        return None
    numbers = ", ".join(str(inbox) for inbox in common)
    return f"inbox {numbers}" if len(common) == 1 else f"inboxes {numbers}"


# --- where things are in the file ---------------------------------------------------------


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _parent(path: str) -> str:
    cut = max(path.rfind("."), path.rfind("["))
    return path[:cut] if cut > 0 else ""


def _line_at(lines: Mapping[str, int], path: str) -> int:
    """The line of `path`, or of its nearest ancestor when the value is absent; 0 if unknown."""
    while path and path not in lines:
        path = _parent(path)
    return lines.get(path, 0)


@dataclass(frozen=True, slots=True)
class _Index:
    """What the walk over the composed YAML fills in: lines, repeated keys, nodes visited."""

    file: str
    lines: dict[str, int]
    repeats: list[Problem]
    visited: set[int]


def _index(node: yaml.Node, path: str, index: _Index) -> None:
    """Record the line of every path under `node`, and report keys written twice."""
    index.visited.add(id(node))
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


def _place(node: yaml.Node, path: str, key_line: int | None, index: _Index) -> None:
    if id(node) in index.visited:
        # An alias of a node seen before (or of its own ancestor): PyYAML keeps no position
        # for the alias itself, and walking it again could be endless or exponential.
        if key_line is not None:
            index.lines[path] = key_line
        return
    # A scalar's own line; a collection's key line, since a block mapping starts a line later.
    scalar = isinstance(node, yaml.ScalarNode)
    index.lines[path] = key_line if key_line is not None and not scalar else _line(node)
    _index(node, path, index)


# --- validation and building ----------------------------------------------------------------


class _Report:
    """The problems found in one flow, each placed at the line of its YAML path."""

    __slots__ = ("file", "line_of", "problems")

    def __init__(self, file: str, line_of: Callable[[str], int]) -> None:
        self.file = file
        self.line_of = line_of
        self.problems: list[Problem] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(self.file, self.line_of(path), path, message))


def _describe(value: object) -> str:
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


def _expected_string(value: object) -> str:
    message = f"expected a string, got {_describe(value)}"
    if isinstance(value, bool):
        # the classic YAML 1.1 trap: `text: No` is false, not "No"
        return f"{message} (quote it: YAML reads yes, no, on and off as true or false)"
    if isinstance(value, int | float):
        return f"{message} (quote it)"
    return message


def _suggest(word: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _unknown_keys(
    mapping: Mapping[Any, Any], allowed: Sequence[str], path: str, report: _Report
) -> bool:
    """Report every key not in `allowed`; True if there was one."""
    found = False
    for key in mapping:
        if key not in allowed:
            hint = _suggest(key, allowed) if isinstance(key, str) else ""
            report.add(_join(path, key), f"unknown key {key!r}{hint}")
            found = True
    return found


def _text(value: object, path: str, label: str, report: _Report) -> str | None:
    """`value` if it is a string with something in it; else report why and return None."""
    if value is None or (isinstance(value, str) and not value.strip()):
        report.add(path, f"{label} is empty")
        return None
    if not isinstance(value, str):
        report.add(path, _expected_string(value))
        return None
    return value


def _optional_text(mapping: Mapping[str, Any], key: str, path: str, report: _Report) -> str | None:
    return _text(mapping[key], _join(path, key), key, report) if key in mapping else None


def _flag(
    mapping: Mapping[str, Any], key: str, path: str, report: _Report, *, default: bool = False
) -> bool:
    value = mapping.get(key, default)
    if not isinstance(value, bool):
        report.add(_join(path, key), f"expected true or false, got {_describe(value)}")
        return False
    return value


def _list(
    mapping: Mapping[str, Any], key: str, path: str, what: str, report: _Report
) -> list[Any] | None:
    """The list at `key`; None when absent, or when it is not a list (reported)."""
    if key not in mapping:
        return None
    value = mapping[key]
    if not isinstance(value, list):
        report.add(_join(path, key), f"expected a list of {what}, got {_describe(value)}")
        return None
    return value


def _section(
    mapping: Mapping[str, Any], key: str, allowed: Sequence[str], report: _Report
) -> Mapping[str, Any]:
    """A top-level sub-mapping (`trigger`, `keywords`, `messages`); empty when absent or wrong."""
    if key not in mapping:
        return {}
    value = mapping[key]
    if not isinstance(value, Mapping):
        names = ", ".join(allowed)
        report.add(key, f"expected a mapping with {names}, got {_describe(value)}")
        return {}
    _unknown_keys(value, allowed, key, report)
    return value


def _words(
    mapping: Mapping[str, Any], key: str, path: str, default: tuple[str, ...], report: _Report
) -> tuple[str, ...]:
    items = _list(mapping, key, path, "words", report)
    if items is None:
        return default
    words = (_text(item, f"{path}.{key}[{i}]", "keyword", report) for i, item in enumerate(items))
    return tuple(word for word in words if word is not None)


def _inboxes(trigger: Mapping[str, Any], report: _Report) -> tuple[int, ...]:
    items = _list(trigger, "inboxes", "trigger", "inbox ids", report) or []
    inboxes: list[int] = []
    for i, item in enumerate(items):
        # bool is an int in Python, but `true` is no inbox id
        if isinstance(item, int) and not isinstance(item, bool) and item > 0:
            inboxes.append(item)
        else:
            got = _describe(item)
            report.add(
                f"trigger.inboxes[{i}]",
                f"expected an inbox id (a positive whole number), got {got}",
            )
    return tuple(inboxes)


def _tag(value: object, path: str, report: _Report) -> str | None:
    if not isinstance(value, str):
        report.add(path, _expected_string(value))
        return None
    if not LABEL.fullmatch(value) or value != value.lower():
        report.add(
            path,
            f"tag {value!r} is not a valid Chatwoot label: use lowercase letters, digits, - and _",
        )
        return None
    return value


def _tags(mapping: Mapping[str, Any], path: str, report: _Report) -> tuple[str, ...]:
    """`tag` then `tags`, in order, each once."""
    found: list[str | None] = []
    if "tag" in mapping:
        found.append(_tag(mapping["tag"], f"{path}.tag", report))
    items = _list(mapping, "tags", path, "tags", report) or []
    found.extend(_tag(item, f"{path}.tags[{i}]", report) for i, item in enumerate(items))
    return tuple(dict.fromkeys(tag for tag in found if tag is not None))


def _reference(
    mapping: Mapping[str, Any], key: str, path: str, ids: Sequence[str], report: _Report
) -> str | None:
    """The block id at `key` (`next_block`, `start`), reported when no such block exists."""
    target = _optional_text(mapping, key, path, report)
    if target is not None and target not in ids:
        report.add(_join(path, key), f"unknown block {target!r}{_suggest(target, ids)}")
    return target


def _unique_slug(slug: str, used: set[str]) -> str:
    """`slug`, or `slug_2`, `slug_3`... whichever is free; still at most 64 bytes."""
    candidate, number = slug, 1
    while candidate in used:
        number += 1
        suffix = f"_{number}"
        candidate = slug[: MAX_VALUE_BYTES - len(suffix)].rstrip("_") + suffix
    return candidate


def _buttons(
    block: Mapping[str, Any], path: str, ids: Sequence[str], report: _Report
) -> tuple[Button, ...]:
    items = _list(block, "buttons", path, "buttons", report)
    if items is None:
        return ()
    path = f"{path}.buttons"
    if not items:
        report.add(path, "buttons is empty: add a button or remove the key")
        return ()
    if len(items) > MAX_BUTTONS:
        report.add(path, f"{len(items)} buttons, but WhatsApp lists show at most {MAX_BUTTONS}")
    if len(items) <= MAX_REPLY_BUTTONS:
        limit, kind = MAX_BUTTON_TITLE, f"reply buttons ({MAX_REPLY_BUTTONS} or fewer)"
    else:
        limit, kind = MAX_LIST_TITLE, f"list rows ({MAX_REPLY_BUTTONS + 1} or more buttons)"
    titles: dict[str, int] = {}  # normalized text -> first button with it
    values: dict[str, int] = {}  # normalized explicit value -> first button with it
    drafts: list[tuple[str, str | None, str | None, tuple[str, ...]]] = []
    for i, item in enumerate(items):
        item_path = f"{path}[{i}]"
        if not isinstance(item, Mapping):
            report.add(
                item_path, f"expected a button (a mapping with text:), got {_describe(item)}"
            )
            continue
        _unknown_keys(item, BUTTON_KEYS, item_path, report)
        text = None
        if "text" not in item:
            report.add(f"{item_path}.text", "text is missing")
        else:
            text = _optional_text(item, "text", item_path, report)
        if text is not None:
            if len(text) > limit:
                message = f"text is {len(text)} characters; WhatsApp {kind} allow at most {limit}"
                report.add(f"{item_path}.text", message)
            # WhatsApp and Messenger send back the title, and replies are matched normalized
            title = normalize(text)
            if title in titles:
                first = titles[title]
                message = f"same text as buttons[{first}] once case, accents and spaces are ignored"
                report.add(f"{item_path}.text", message)
            else:
                titles[title] = i
        value = _optional_text(item, "value", item_path, report)
        if value is not None:
            size = len(value.encode())
            if size > MAX_VALUE_BYTES:
                message = (
                    f"value is {size} bytes, more than {MAX_VALUE_BYTES} (Telegram callback data)"
                )
                report.add(f"{item_path}.value", message)
            # values are matched like titles: case-, accent- and space-insensitively
            key = normalize(value)
            if key in values:
                report.add(
                    f"{item_path}.value",
                    f"value {value!r} is already used by buttons[{values[key]}]",
                )
            else:
                values[key] = i
        next_block = _reference(item, "next_block", item_path, ids, report)
        drafts.append((text or "", value, next_block, _tags(item, item_path, report)))
    # Slugs are chosen after every explicit value is known, so a slug never takes one.
    used = set(values)
    buttons: list[Button] = []
    for text, value, next_block, tags in drafts:
        if value is None:
            value = _unique_slug(slugify(text), used)
            used.add(value)
        buttons.append(Button(text=text, value=value, next_block=next_block, tags=tags))
    return tuple(buttons)


def _block(block_id: str, raw: object, ids: Sequence[str], report: _Report) -> Block:
    path = f"blocks.{block_id}"
    if not isinstance(raw, Mapping):
        report.add(
            path,
            f"expected a mapping of block keys ({', '.join(BLOCK_KEYS)}), got {_describe(raw)}",
        )
        return Block(id=block_id)
    unknown = _unknown_keys(raw, BLOCK_KEYS, path, report)
    message = _optional_template(raw, "message", path, report)
    buttons = _buttons(raw, path, ids, report)
    if "message" not in raw and ("buttons" in raw or "input" in raw):
        why = (
            "WhatsApp shows buttons under a message"
            if "buttons" in raw
            else "the customer needs a question to answer"
        )
        report.add(f"{path}.message", f"message is missing: {why}")
    handoff = _switch(raw, "handoff", path, HANDOFF_KEYS, report)
    end = _switch(raw, "end", path, END_KEYS, report)
    block = Block(
        id=block_id,
        message=message,
        buttons=buttons,
        next_block=_reference(raw, "next_block", path, ids, report),
        tags=_tags(raw, path, report),
        handoff=None
        if handoff is None
        else HandoffSpec(
            team_id=_id(handoff, "team_id", f"{path}.handoff", report),
            assignee_id=_id(handoff, "assignee_id", f"{path}.handoff", report),
            note=_optional_template(handoff, "note", f"{path}.handoff", report),
        ),
        input=_input(raw, path, report),
        save_to=_save_to(raw, path, report),
        assign=_assign(raw, path, report),
        conditions=_conditions(raw, path, ids, report),
        else_block=_reference(raw, "else", path, ids, report),
        webhook=_webhook(raw, path, ids, report),
        end=None if end is None else EndSpec(_flag(end, "resolve", f"{path}.end", report)),
        timeout=_timeout(raw, path, ids, report),
    )
    _check_shape(raw, block, path, report)
    # `handoff: "yes"` is already reported as a wrong type; an unknown key is likely a typo
    # of an action key. Either way a second problem for the same line would be noise.
    idle = not ACTION_KEYS & raw.keys() and not any(
        raw.get(k, False) is not False for k in ("handoff", "end")
    )
    if idle and not unknown:
        report.add(
            path,
            "block does nothing: give it a message, buttons, tags, a next_block or handoff: true",
        )
    return block


def _check_shape(raw: Mapping[str, Any], block: Block, path: str, report: _Report) -> None:
    """Keys that contradict each other or can never take effect."""
    if block.handoff is not None and block.end is not None:
        report.add(f"{path}.end", "a block cannot both hand off and end: keep one")
    if block.terminal:
        what = "hands off" if block.handoff is not None else "ends"
        for key in AFTER_KEYS:
            if key in raw:
                report.add(f"{path}.{key}", f"{key} is never used: the block {what}")
        for key in ("save_as", "on_error"):
            if block.webhook is not None and key in raw["webhook"]:
                message = f"{key} is never used: the block {what} right after the call"
                report.add(f"{path}.webhook.{key}", message)
        return
    asks = "buttons" in raw or "input" in raw
    if "webhook" in raw and asks:
        report.add(
            f"{path}.webhook",
            "a block waits for the customer (buttons, input) or for a webhook, not both:"
            " move the webhook to a block of its own",
        )
    if "timeout" in raw and not asks and "webhook" not in raw:
        report.add(
            f"{path}.timeout",
            "timeout is never used: the block does not wait for the customer or a webhook",
        )
    if "else" in raw and "conditions" not in raw:
        report.add(f"{path}.else", "else needs conditions: use next_block instead")
    elif "else" in raw and "next_block" in raw:
        report.add(f"{path}.next_block", "next_block is never used: the block has else")
    if "save_to" in raw and "input" not in raw:
        report.add(
            f"{path}.save_to", "save_to keeps the answer to the block's input, and it has none"
        )


def _mapping(
    value: object, path: str, keys: Sequence[str], report: _Report
) -> Mapping[str, Any] | None:
    """`value` when it is a mapping (its unknown keys reported); else report it, give None."""
    if not isinstance(value, Mapping):
        report.add(path, f"expected a mapping with {', '.join(keys)}, got {_describe(value)}")
        return None
    _unknown_keys(value, keys, path, report)
    return value


def _required(mapping: Mapping[str, Any], key: str, path: str, report: _Report) -> bool:
    if key in mapping:
        return True
    report.add(_join(path, key), f"{key} is missing")
    return False


def _switch(
    block: Mapping[str, Any], key: str, path: str, keys: Sequence[str], report: _Report
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
            f"expected true, false or a mapping with {names}, got {_describe(value)}",
        )
        return None
    _unknown_keys(value, keys, f"{path}.{key}", report)
    return value


def _id(mapping: Mapping[str, Any], key: str, path: str, report: _Report) -> int | None:
    if key not in mapping:
        return None
    value = mapping[key]
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    got = _describe(value)
    report.add(f"{path}.{key}", f"expected an id (a positive whole number), got {got}")
    return None


def _count(mapping: Mapping[str, Any], key: str, path: str, default: int, report: _Report) -> int:
    value = mapping.get(key, default)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    report.add(f"{path}.{key}", f"expected a whole number of 1 or more, got {_describe(value)}")
    return default


def _template(value: object, path: str, label: str, report: _Report) -> Template | None:
    text = _text(value, path, label, report)
    if text is None:
        return None
    try:
        return parse_template(text)
    except TemplateError as exc:
        report.add(path, str(exc))
        return None


def _optional_template(
    mapping: Mapping[str, Any], key: str, path: str, report: _Report
) -> Template | None:
    return _template(mapping[key], _join(path, key), key, report) if key in mapping else None


def _value_tree(value: object, path: str, report: _Report) -> Any:
    """A JSON-like value written in the flow, its strings parsed as templates, lists as tuples."""
    if isinstance(value, str):
        try:
            return parse_template(value)
        except TemplateError as exc:
            report.add(path, str(exc))
            return None
    if isinstance(value, Mapping):
        tree: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(key, str):
                tree[key] = _value_tree(item, _join(path, key), report)
            else:
                report.add(_join(path, key), f"key {key!r} must be a string: quote it")
        return tree
    if isinstance(value, list):
        return tuple(_value_tree(item, f"{path}[{i}]", report) for i, item in enumerate(value))
    if value is None or isinstance(value, bool | int | float):
        return value
    report.add(
        path,
        f"expected text, a number, true, false, null, a list or a mapping, got {_describe(value)}",
    )
    return None


def _variable(value: object, path: str, label: str, report: _Report) -> str | None:
    name = _text(value, path, label, report)
    if name is None:
        return None
    if not VARIABLE.fullmatch(name):
        report.add(
            path,
            f"{name!r} is not a valid variable name:"
            " use letters, digits and _, not starting with a digit",
        )
        return None
    if name in RESERVED_NAMES:
        report.add(path, f"{name!r} is a reserved name: choose another")
        return None
    return name


def _duration(value: object, path: str, report: _Report) -> timedelta | None:
    if not isinstance(value, str) or not DURATION.fullmatch(value):
        report.add(path, f"expected a duration like 30s, 10m, 2h or 1d, got {_describe(value)}")
        return None
    seconds = sum(int(n) * DURATION_UNITS[unit] for n, unit in DURATION_PART.findall(value))
    if seconds == 0:
        report.add(path, "a duration must be more than zero")
        return None
    return timedelta(seconds=seconds)


def _input(block: Mapping[str, Any], path: str, report: _Report) -> InputSpec | None:
    if "input" not in block:
        return None
    path = f"{path}.input"
    raw = _mapping(block["input"], path, INPUT_KEYS, report)
    if raw is None:
        return None
    save_as = None
    if _required(raw, "save_as", path, report):
        save_as = _variable(raw["save_as"], f"{path}.save_as", "save_as", report)
    kind = _input_type(raw, path, report)
    pattern = _pattern(raw, path, kind, report)
    error_message = _optional_template(raw, "error_message", path, report)
    retries = _count(raw, "retries", path, DEFAULT_RETRIES, report)
    if save_as is None or kind is None:
        return None
    return InputSpec(save_as, kind, pattern, error_message, retries)


def _input_type(raw: Mapping[str, Any], path: str, report: _Report) -> InputType | None:
    if "type" not in raw:
        return InputType.TEXT
    name = _optional_text(raw, "type", path, report)
    if name is None:
        return None
    kinds = [kind.value for kind in InputType]
    if name not in kinds:
        report.add(f"{path}.type", f"unknown input type {name!r}{_suggest(name, kinds)}")
        return None
    return InputType(name)


def _pattern(
    raw: Mapping[str, Any], path: str, kind: InputType | None, report: _Report
) -> re.Pattern[str] | None:
    if "pattern" not in raw:
        if kind is InputType.REGEX:
            report.add(f"{path}.pattern", "pattern is missing: type regex needs one")
        return None
    source = _optional_text(raw, "pattern", path, report)
    if source is None:
        return None
    if kind is not None and kind is not InputType.REGEX:
        report.add(f"{path}.pattern", "pattern only applies to type: regex")
        return None
    try:
        return re.compile(source)
    except re.error as exc:
        column = (exc.pos or 0) + 1
        report.add(f"{path}.pattern", f"invalid pattern: {exc.msg} at column {column}")
        return None


def _save_to(block: Mapping[str, Any], path: str, report: _Report) -> SaveTarget | None:
    text = _optional_text(block, "save_to", path, report)
    if text is None:
        return None
    match = ATTRIBUTE.fullmatch(text)
    if match is None:
        report.add(
            f"{path}.save_to",
            "expected contact.custom_attributes.<key> or conversation.custom_attributes.<key>,"
            f" got {text!r}",
        )
        return None
    return SaveTarget("contact" if match[1] == "contact" else "conversation", match[2])


def _assign(block: Mapping[str, Any], path: str, report: _Report) -> dict[str, Any]:
    if "set" not in block:
        return {}
    path = f"{path}.set"
    raw = block["set"]
    if not isinstance(raw, Mapping):
        report.add(path, f"expected a mapping of variable name to value, got {_describe(raw)}")
        return {}
    values: dict[str, Any] = {}
    for key, item in raw.items():
        name = _variable(key, _join(path, key), "variable name", report)
        if name is not None:
            values[name] = _value_tree(item, _join(path, key), report)
    return values


def _conditions(
    block: Mapping[str, Any], path: str, ids: Sequence[str], report: _Report
) -> tuple[Condition, ...]:
    items = _list(block, "conditions", path, "conditions", report)
    if items is None:
        return ()
    if not items:
        report.add(f"{path}.conditions", "conditions is empty: add a condition or remove the key")
        return ()
    conditions: list[Condition] = []
    for i, item in enumerate(items):
        item_path = f"{path}.conditions[{i}]"
        raw = _mapping(item, item_path, CONDITION_KEYS, report)
        if raw is None:
            continue
        test = None
        if _required(raw, "if", item_path, report):
            source = _text(raw["if"], f"{item_path}.if", "if", report)
            test = _expression(source, f"{item_path}.if", report) if source else None
        target = None
        if _required(raw, "next_block", item_path, report):
            target = _reference(raw, "next_block", item_path, ids, report)
        if test is not None and target is not None:
            conditions.append(Condition(test, target, source or ""))
    return tuple(conditions)


def _expression(source: str, path: str, report: _Report) -> Expression | None:
    try:
        return parse_expression(source)
    except ExpressionError as exc:
        report.add(path, str(exc))
        return None


def _webhook(
    block: Mapping[str, Any], path: str, ids: Sequence[str], report: _Report
) -> WebhookSpec | None:
    if "webhook" not in block:
        return None
    path = f"{path}.webhook"
    raw = _mapping(block["webhook"], path, WEBHOOK_KEYS, report)
    if raw is None:
        return None
    url = _url(raw["url"], f"{path}.url", report) if _required(raw, "url", path, report) else None
    method = _method(raw, path, report)
    headers = _headers(raw, path, report)
    body = _value_tree(raw["body"], f"{path}.body", report) if "body" in raw else None
    timeout = _seconds(raw, "timeout", path, report)
    save_as = None
    if "save_as" in raw:
        save_as = _variable(raw["save_as"], f"{path}.save_as", "save_as", report)
    on_error = _reference(raw, "on_error", path, ids, report)
    retry = _flag(raw, "retry", path, report, default=method in IDEMPOTENT_METHODS)
    if url is None:
        return None
    return WebhookSpec(url, method, headers, body, timeout, save_as, on_error, retry)


def _url(value: object, path: str, report: _Report) -> Template | None:
    template = _template(value, path, "url", report)
    if template is None:
        return None
    origin = URL_ORIGIN.match(template.source)
    if origin is None:
        report.add(path, "url must start with http:// or https:// and the host")
        return None
    if "{{" in origin.group():
        report.add(
            path,
            "the scheme and host of a url must be written in the flow, not taken from a variable",
        )
        return None
    return template


def _method(raw: Mapping[str, Any], path: str, report: _Report) -> str:
    default = "POST" if "body" in raw else "GET"
    name = _optional_text(raw, "method", path, report)
    if name is None:
        return default
    if name.upper() not in METHODS:
        report.add(f"{path}.method", f"unknown method {name!r}{_suggest(name.upper(), METHODS)}")
        return default
    return name.upper()


def _headers(raw: Mapping[str, Any], path: str, report: _Report) -> dict[str, Template]:
    if "headers" not in raw:
        return {}
    path = f"{path}.headers"
    value = raw["headers"]
    if not isinstance(value, Mapping):
        report.add(path, f"expected a mapping of header name to value, got {_describe(value)}")
        return {}
    headers: dict[str, Template] = {}
    for name, item in value.items():
        item_path = _join(path, name)
        if not isinstance(name, str) or not HEADER_NAME.fullmatch(name):
            report.add(item_path, f"{name!r} is not a valid header name")
            continue
        template = _template(item, item_path, name, report)
        if template is not None:
            headers[name] = template
    return headers


def _seconds(raw: Mapping[str, Any], key: str, path: str, report: _Report) -> float:
    if key not in raw:
        return DEFAULT_WEBHOOK_TIMEOUT
    value = raw[key]
    path = f"{path}.{key}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        delta = _duration(value, path, report)
        if delta is None:
            return DEFAULT_WEBHOOK_TIMEOUT
        seconds = delta.total_seconds()
    if not 0 < seconds <= MAX_WEBHOOK_TIMEOUT:
        limit = f"{MAX_WEBHOOK_TIMEOUT:g}"
        report.add(path, f"{key} must be more than 0 and at most {limit} seconds")
        return DEFAULT_WEBHOOK_TIMEOUT
    return seconds


def _timeout(
    block: Mapping[str, Any], path: str, ids: Sequence[str], report: _Report
) -> TimeoutSpec | None:
    if "timeout" not in block:
        return None
    path = f"{path}.timeout"
    raw = _mapping(block["timeout"], path, TIMEOUT_KEYS, report)
    if raw is None:
        return None
    after = None
    if _required(raw, "after", path, report):
        after = _duration(raw["after"], f"{path}.after", report)
    target = None
    if _required(raw, "next_block", path, report):
        target = _reference(raw, "next_block", path, ids, report)
    if after is None or target is None:
        return None
    return TimeoutSpec(after, target)


def _inactivity(definition: Mapping[str, Any], report: _Report) -> Inactivity | None:
    if "inactivity" not in definition:
        return None
    raw = _mapping(definition["inactivity"], "inactivity", INACTIVITY_KEYS, report)
    if raw is None:
        return None
    after = None
    if _required(raw, "after", "inactivity", report):
        after = _duration(raw["after"], "inactivity.after", report)
    message = _optional_template(raw, "message", "inactivity", report)
    return None if after is None else Inactivity(after, message)


def _whatsapp_template(definition: Mapping[str, Any], report: _Report) -> WhatsAppTemplate | None:
    if "template" not in definition:
        return None
    raw = _mapping(definition["template"], "template", TEMPLATE_KEYS, report)
    if raw is None:
        return None
    name = _optional_text(raw, "name", "template", report)
    language = _optional_text(raw, "language", "template", report)
    _required(raw, "name", "template", report)
    _required(raw, "language", "template", report)
    category = _optional_text(raw, "category", "template", report)
    params = _value_tree(raw["params"], "template.params", report) if "params" in raw else {}
    if name is None or language is None:
        return None
    return WhatsAppTemplate(name, language, category, params)


def _blocks(definition: Mapping[str, Any], report: _Report) -> dict[str, Block]:
    raw = definition.get("blocks")
    if not raw:
        report.add("blocks", "a flow needs at least one block")
        return {}
    if not isinstance(raw, Mapping):
        report.add("blocks", f"expected a mapping of block id to block, got {_describe(raw)}")
        return {}
    ids = [block_id for block_id in raw if isinstance(block_id, str)]
    blocks: dict[str, Block] = {}
    for block_id, block in raw.items():
        if isinstance(block_id, str):
            blocks[block_id] = _block(block_id, block, ids, report)
        else:
            report.add(f"blocks.{block_id}", f"block id {block_id!r} must be a string: quote it")
    _report_loops(blocks, report)
    return blocks


def _routes(block: Block) -> list[tuple[str, str]]:
    """(field, target) of each way out of a block once it is done, in the order they are tried."""
    routes = [(f"conditions[{i}].next_block", c.next_block) for i, c in enumerate(block.conditions)]
    if block.else_block is not None:
        routes.append(("else", block.else_block))
    if block.next_block is not None:
        routes.append(("next_block", block.next_block))
    return routes


def _passing_routes(blocks: Mapping[str, Block], block_id: str) -> list[tuple[str, str]]:
    """The routes taken at once, without waiting: those of a block that neither waits nor stops."""
    block = blocks.get(block_id)
    if block is None or block.waits or block.terminal:
        return []
    return _routes(block)


def _report_loops(blocks: Mapping[str, Block], report: _Report) -> None:
    """Report each cycle of blocks that never wait: entering it would run forever.

    Each cycle is reported once, at the route out of its first block in the file.
    """
    order = {block_id: position for position, block_id in enumerate(blocks)}
    finished: set[str] = set()
    reported: set[str] = set()
    for root in blocks:
        if root in finished:
            continue
        trail = [root]  # the depth-first path, and where each block is on it
        on_trail = {root: 0}
        stack = [iter(_passing_routes(blocks, root))]
        while stack:
            following = next(stack[-1], None)
            if following is None:
                stack.pop()
                done = trail.pop()
                del on_trail[done]
                finished.add(done)
                continue
            target = following[1]
            if target in on_trail:
                loop = trail[on_trail[target] :]
                first = min(loop, key=order.__getitem__)
                if first not in reported:
                    reported.add(first)
                    after = loop[(loop.index(first) + 1) % len(loop)]
                    field_name = next(f for f, t in _routes(blocks[first]) if t == after)
                    message = f"loops back to {first!r} without waiting for the customer"
                    report.add(f"blocks.{first}.{field_name}", message)
            elif target not in finished:
                on_trail[target] = len(trail)
                trail.append(target)
                stack.append(iter(_passing_routes(blocks, target)))


def _build(
    definition: object, report: _Report, *, default_name: str, lines: Mapping[str, int]
) -> Flow | None:
    """The flow `definition` describes, or None when `report` holds any problem."""
    if not isinstance(definition, Mapping):
        if definition is None:
            report.add("(root)", "the flow is empty: it needs at least blocks")
        else:
            got = _describe(definition)
            report.add(
                "(root)", f"expected a mapping of flow keys ({', '.join(TOP_KEYS)}), got {got}"
            )
        return None
    _unknown_keys(definition, TOP_KEYS, "", report)
    name = _optional_text(definition, "name", "", report) or default_name
    title = _optional_text(definition, "title", "", report) or name
    blocks = _blocks(definition, report)
    ids = list(blocks)
    start = ids[0] if ids else ""
    if "start" in definition:
        start = _reference(definition, "start", "", ids, report) or start
    trigger_map = _section(definition, "trigger", TRIGGER_KEYS, report)
    trigger = Trigger(
        default=_flag(trigger_map, "default", "trigger", report),
        keywords=_words(trigger_map, "keywords", "trigger", (), report),
        inboxes=_inboxes(trigger_map, report),
        widget=_flag(trigger_map, "widget", "trigger", report),
    )
    words_map = _section(definition, "keywords", WORDS_KEYS, report)
    words = GlobalWords(
        handoff=_words(words_map, "handoff", "keywords", DEFAULT_HANDOFF_WORDS, report),
        restart=_words(words_map, "restart", "keywords", DEFAULT_RESTART_WORDS, report),
    )
    texts_map = _section(definition, "messages", TEXTS_KEYS, report)
    texts = Texts(
        retry=_optional_text(texts_map, "retry", "messages", report) or DEFAULT_RETRY_MESSAGE,
        handoff=_optional_text(texts_map, "handoff", "messages", report) or DEFAULT_HANDOFF_MESSAGE,
    )
    fallback = _reference(definition, "fallback", "", ids, report)
    inactivity = _inactivity(definition, report)
    template = _whatsapp_template(definition, report)
    if report.problems:
        return None
    return Flow(
        name=name,
        title=title,
        start=start,
        trigger=trigger,
        blocks=blocks,
        keywords=words,
        messages=texts,
        version=flow_version(definition),
        definition=definition,
        lines=lines,
        fallback=fallback,
        inactivity=inactivity,
        template=template,
    )
