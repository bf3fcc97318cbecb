"""Flow files: YAML text -> a validated, frozen `Flow`.

This module does no I/O: it never opens a file, reads the clock or touches the network.
Callers hand it the text and the file name; `catalog.py` (the shell) reads the files.
Every problem is collected and reported at once, each as `file:line: path: message`.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import yaml

from agentbot.errors import FlowError

DEFAULT_HANDOFF_WORDS: tuple[str, ...] = ("atendente", "humano", "agent")
DEFAULT_RESTART_WORDS: tuple[str, ...] = ("menu", "reiniciar", "restart")
DEFAULT_RETRY_MESSAGE = "Não entendi. Por favor, escolha uma das opções:"
DEFAULT_HANDOFF_MESSAGE = "Vou te transferir para um atendente."

MAX_BUTTONS = 10
MAX_BUTTON_TITLE = 20  # WhatsApp reply buttons (3 or fewer items)
MAX_LIST_TITLE = 24  # WhatsApp list rows (more than 3 items)
MAX_VALUE_BYTES = 64  # Telegram's callback_data limit
MAX_REPLY_BUTTONS = 3  # WhatsApp shows up to 3 reply buttons; more become a list

FALLBACK_SLUG = "opcao"  # the value of a button whose text has no ASCII letter or digit

TOP_KEYS = ("name", "title", "start", "trigger", "blocks", "keywords", "messages")
TRIGGER_KEYS = ("default", "keywords", "inboxes")
WORDS_KEYS = ("handoff", "restart")
TEXTS_KEYS = ("retry", "handoff")
BLOCK_KEYS = ("message", "buttons", "next_block", "tag", "tags", "handoff")
BUTTON_KEYS = ("text", "value", "next_block", "tag", "tags")
# The keys that make a block do something; `handoff` counts only when true.
ACTION_KEYS = frozenset({"message", "buttons", "next_block", "tag", "tags"})

# Chatwoot labels are lowercase letters, digits, `-` and `_`.
LABEL = re.compile(r"[\w-]+")
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
class Block:
    id: str
    message: str | None
    buttons: tuple[Button, ...]
    next_block: str | None
    tags: tuple[str, ...]
    handoff: bool


@dataclass(frozen=True, slots=True)
class Trigger:
    default: bool = False
    keywords: tuple[str, ...] = ()
    inboxes: tuple[int, ...] = ()


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


def parse_flow(text: str, filename: str) -> Flow:
    """Parse and validate one flow file; raise `FlowError` naming every problem in it."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.reader.ReaderError as exc:
        # A character YAML refuses; the reader knows only its offset in the text.
        line = text.count("\n", 0, exc.position) + 1
        message = f"character #x{exc.character:04x} is not allowed in YAML: {exc.reason}"
        raise FlowError([Problem(filename, line, "(yaml)", message)]) from exc
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        message = ", ".join(part for part in (exc.context, exc.problem) if part)
        raise FlowError([Problem(filename, line, "(yaml)", message)]) from exc
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


def _flag(mapping: Mapping[str, Any], key: str, path: str, report: _Report) -> bool:
    value = mapping.get(key, False)
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
        return Block(id=block_id, message=None, buttons=(), next_block=None, tags=(), handoff=False)
    unknown = _unknown_keys(raw, BLOCK_KEYS, path, report)
    message = _optional_text(raw, "message", path, report)
    buttons = _buttons(raw, path, ids, report)
    if "buttons" in raw and "message" not in raw:
        report.add(f"{path}.message", "message is missing: WhatsApp shows buttons under a message")
    next_block = _reference(raw, "next_block", path, ids, report)
    tags = _tags(raw, path, report)
    handoff = _flag(raw, "handoff", path, report)
    # `handoff: "yes"` is already reported as a wrong type; an unknown key is likely a typo
    # of an action key. Either way a second problem for the same line would be noise.
    if not ACTION_KEYS & raw.keys() and raw.get("handoff", False) is False and not unknown:
        report.add(
            path,
            "block does nothing: give it a message, buttons, tags, a next_block or handoff: true",
        )
    return Block(
        id=block_id,
        message=message,
        buttons=buttons,
        next_block=next_block,
        tags=tags,
        handoff=handoff,
    )


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


def _report_loops(blocks: Mapping[str, Block], report: _Report) -> None:
    """Report each chain of `next_block`s that comes back without a question in between.

    Only blocks with buttons wait for the customer, so such a chain would run forever.
    """
    order = {block_id: position for position, block_id in enumerate(blocks)}
    finished: set[str] = set()
    for start in blocks:
        chain: list[str] = []
        current = start
        while current in blocks and current not in finished and not blocks[current].buttons:
            if current in chain:
                loop = chain[chain.index(current) :]
                first = min(loop, key=order.__getitem__)
                message = f"loops back to {first!r} without waiting for the customer"
                report.add(f"blocks.{first}.next_block", message)
                break
            chain.append(current)
            following = blocks[current].next_block
            if following is None:
                break
            current = following
        finished.update(chain)


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
    )
