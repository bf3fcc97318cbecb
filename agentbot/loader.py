"""Flow files: YAML text -> a validated, frozen `Flow` (the model is flows.py).

This module does no I/O: it never opens a file, reads the clock or touches the network.
Callers hand it the text and the file name; `catalog.py` (the shell) reads the files.
Every problem is collected and reported at once, each as `file:line: path: message`, with the
toolkit of validation.py. Templates (templates.py), conditions (expressions.py) and input
patterns are parsed here, at load, so that a flow that loads never fails on its own text at run
time. Cycles of blocks that never wait are found by flowchecks.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import date, timedelta
from pathlib import PurePosixPath
from types import MappingProxyType
from typing import Any, TypeVar

import re2

from agentbot import validation as check
from agentbot.answers import InputType
from agentbot.errors import FlowError
from agentbot.expressions import KEYWORDS, Expression, ExpressionError, parse_expression, paths_read
from agentbot.flowchecks import loops, unknown_reads
from agentbot.flows import (
    DEFAULT_HANDOFF_MESSAGE,
    DEFAULT_HANDOFF_WORDS,
    DEFAULT_RESTART_WORDS,
    DEFAULT_RETRIES,
    DEFAULT_RETRY_MESSAGE,
    DEFAULT_WEBHOOK_TIMEOUT,
    FLOW_NAME,
    MAX_BUTTON_TITLE,
    MAX_BUTTONS,
    MAX_LIST_TITLE,
    MAX_REPLY_BUTTONS,
    MAX_VALUE_BYTES,
    MAX_WEBHOOK_TIMEOUT,
    OPEN_NOW,
    Arm,
    Block,
    Button,
    Condition,
    EndSpec,
    Flow,
    GlobalWords,
    HandoffSpec,
    Inactivity,
    InputSpec,
    SaveTarget,
    Texts,
    TimeoutSpec,
    Trigger,
    WebhookSpec,
    WhatsAppTemplate,
    flow_version,
    normalize,
    slugify,
)
from agentbot.hours import Hours, parse_hours
from agentbot.templates import Template, TemplateError, parse_template

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
    "hours",
    "debounce",
    "variables",
    "languages",
)
TEMPLATE_KEYS = ("name", "language", "category", "params")
TRIGGER_KEYS = ("default", "keywords", "inboxes", "widget")
WORDS_KEYS = ("handoff", "restart")
TEXTS_KEYS = ("retry", "handoff")
INACTIVITY_KEYS = ("after", "message", "then")
INACTIVITY_THEN = ("handoff", "resolve")
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
    "split",
)
BUTTON_KEYS = ("text", "value", "next_block", "tag", "tags", "aliases")
INPUT_KEYS = ("save_as", "type", "pattern", "error_message", "retries")
CONDITION_KEYS = ("if", "next_block")
WEBHOOK_KEYS = ("url", "method", "headers", "body", "timeout", "save_as", "on_error", "retry")
HANDOFF_KEYS = ("team_id", "assignee_id", "note")
END_KEYS = ("resolve",)
TIMEOUT_KEYS = ("after", "next_block")
ARM_KEYS = ("weight", "next_block", "name")
MAX_DEBOUNCE = timedelta(seconds=60)  # longer, and the customer waits too long for any answer
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
IDEMPOTENT_METHODS = frozenset({"GET", "PUT", "DELETE"})  # retried by default
# The keys that make a block do something; `handoff` and `end` count only when true.
ACTION_KEYS = frozenset(
    {"message", "buttons", "next_block", "tag", "tags", "input", "set", "conditions", "else"}
    | {"webhook", "split"}
)
# Keys with no effect in a block that hands off or ends: nothing comes after it.
AFTER_KEYS = ("buttons", "input", "next_block", "conditions", "else", "timeout", "split")
# Keys a `split:` block cannot have: the split alone decides where it goes, at once.
NOT_WITH_SPLIT = ("buttons", "input", "webhook", "conditions", "else", "next_block")
# Names the templates and conditions give their own meaning (the contact, the conversation).
RESERVED_NAMES = frozenset({"nome", "contact", "conversation", OPEN_NOW}) | KEYWORDS

# A language code: `pt`, `en`, `pt_BR`, `es-419`.
LANGUAGE = re.compile(r"[a-z]{2,3}(?:[_-][A-Za-z0-9]{2,4})?")
# Chatwoot labels are lowercase letters, digits, `-` and `_`.
LABEL = re.compile(r"[\w-]+")
VARIABLE = re.compile(r"[^\W\d]\w*")
ATTRIBUTE = re.compile(r"(contact|conversation)\.custom_attributes\.(\w+)")
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # the problem is reported, with the flow's file and line
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
URL_ORIGIN = re.compile(r"(https?)://([^/?#]+)", re.IGNORECASE)
_NONE: Mapping[str, Any] = MappingProxyType({})


class _Report(check.Report):
    """A flow's report, with the languages the flow declares (its texts are checked for each)."""

    __slots__ = ("languages",)

    def __init__(self, file: str, line_of: Callable[[str], int]) -> None:
        super().__init__(file, line_of)
        self.languages: tuple[str, ...] = ()


def parse_flow(
    text: str,
    filename: str,
    default_name: str | None = None,
    *,
    shared_hours: Mapping[str, Any] = _NONE,
) -> Flow:
    """Parse and validate one flow file; raise `FlowError` naming every problem in it.
    Without `name:` the flow is named `default_name`, by default the file's name.

    `shared_hours` maps a name to the hours a flow may name (`hours: office`); the shell reads
    them from FLOWS_DIR/hours/*.yaml.
    """
    document = check.read_document(text, filename)
    lines = document.lines
    report = _Report(filename, lambda path: check.line_at(lines, path))
    report.problems.extend(document.repeats)
    flow = _build(
        document.data,
        report,
        default_name=default_name or PurePosixPath(filename).stem,
        lines=lines,
        shared_hours=shared_hours,
    )
    if flow is None:
        # sorted by line so the problems read in file order; sort is stable within a line
        raise FlowError(sorted(report.problems, key=lambda p: p.line))
    return flow


def flow_from_definition(
    definition: Mapping[str, Any],
    *,
    name: str,
    file: str = "<database>",
    shared_hours: Mapping[str, Any] = _NONE,
    strict: bool = True,
) -> Flow:
    """Validate and build a flow already parsed (a version stored in the database).

    `name` plays the part of the file name: it is used when the definition has no `name:`.
    Problems carry line 0, since there is no file to point into. `strict=False` skips the
    rules added after a version may have been stored (variables read that nothing sets), so
    that sessions on an old version keep running.
    """
    report = _Report(file, lambda path: 0)
    flow = _build(
        definition,
        report,
        default_name=name,
        lines={},
        shared_hours=shared_hours,
        strict=strict,
    )
    if flow is None:
        raise FlowError(report.problems)
    return flow


def _section(
    mapping: Mapping[str, Any], key: str, allowed: Sequence[str], report: check.Report
) -> Mapping[str, Any]:
    """A top-level sub-mapping (`trigger`, `keywords`, `messages`); empty when absent or wrong."""
    if key not in mapping:
        return {}
    value = mapping[key]
    if not isinstance(value, Mapping):
        names = ", ".join(allowed)
        report.add(key, f"expected a mapping with {names}, got {check.describe(value)}")
        return {}
    check.unknown_keys(value, allowed, key, report)
    return value


def _words(
    mapping: Mapping[str, Any], key: str, path: str, default: tuple[str, ...], report: check.Report
) -> tuple[str, ...]:
    items = check.list_at(mapping, key, path, "words", report)
    if items is None:
        return default
    words = (
        check.text(item, f"{path}.{key}[{i}]", "keyword", report) for i, item in enumerate(items)
    )
    return tuple(word for word in words if word is not None)


def _inboxes(trigger: Mapping[str, Any], report: check.Report) -> tuple[int, ...]:
    items = check.list_at(trigger, "inboxes", "trigger", "inbox ids", report) or []
    inboxes: list[int] = []
    for i, item in enumerate(items):
        # bool is an int in Python, but `true` is no inbox id
        if isinstance(item, int) and not isinstance(item, bool) and item > 0:
            inboxes.append(item)
        else:
            got = check.describe(item)
            report.add(
                f"trigger.inboxes[{i}]",
                f"expected an inbox id (a positive whole number), got {got}",
            )
    return tuple(inboxes)


def _tag(value: object, path: str, report: check.Report) -> str | None:
    if not isinstance(value, str):
        report.add(path, check.expected_string(value))
        return None
    if not LABEL.fullmatch(value) or value != value.lower():
        report.add(
            path,
            f"tag {value!r} is not a valid Chatwoot label: use lowercase letters, digits, - and _",
        )
        return None
    return value


def _tags(mapping: Mapping[str, Any], path: str, report: check.Report) -> tuple[str, ...]:
    """`tag` then `tags`, in order, each once."""
    found: list[str | None] = []
    if "tag" in mapping:
        found.append(_tag(mapping["tag"], f"{path}.tag", report))
    items = check.list_at(mapping, "tags", path, "tags", report) or []
    found.extend(_tag(item, f"{path}.tags[{i}]", report) for i, item in enumerate(items))
    return tuple(dict.fromkeys(tag for tag in found if tag is not None))


def _reference(
    mapping: Mapping[str, Any], key: str, path: str, ids: Sequence[str], report: check.Report
) -> str | None:
    """The block id at `key` (`next_block`, `start`), reported when no such block exists."""
    target = check.optional_text(mapping, key, path, report)
    if target is not None and target not in ids:
        report.add(check.join(path, key), f"unknown block {target!r}{check.suggest(target, ids)}")
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
    items = check.list_at(block, "buttons", path, "buttons", report)
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
    words: dict[str, int] = {}  # normalized alias -> first button with it
    drafts: list[tuple[str, str | None, str | None, tuple[str, ...], tuple[str, ...]]] = []
    translations: list[dict[str, str]] = []
    for i, item in enumerate(items):
        item_path = f"{path}[{i}]"
        if not isinstance(item, Mapping):
            report.add(
                item_path, f"expected a button (a mapping with text:), got {check.describe(item)}"
            )
            continue
        check.unknown_keys(item, BUTTON_KEYS, item_path, report)
        text: str | None = None
        texts: dict[str, str] = {}
        if "text" not in item:
            report.add(f"{item_path}.text", "text is missing")
        else:
            text, texts = _localized(item["text"], f"{item_path}.text", "text", report, check.text)
        for language, title_text in (texts or ({"": text} if text is not None else {})).items():
            at = f"{item_path}.text.{language}" if language else f"{item_path}.text"
            if len(title_text) > limit:
                size = len(title_text)
                message = f"text is {size} characters; WhatsApp {kind} allow at most {limit}"
                report.add(at, message)
            # WhatsApp and Messenger send back the title, and replies are matched normalized
            title = normalize(title_text)
            if titles.get(title, i) != i:
                first = titles[title]
                message = f"same text as buttons[{first}] once case, accents and spaces are ignored"
                report.add(at, message)
            else:
                titles[title] = i
        value = check.optional_text(item, "value", item_path, report)
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
        aliases = _aliases(item, item_path, report)
        for j, alias in enumerate(aliases):
            key = normalize(alias)
            if words.get(key, i) != i or titles.get(key, i) != i:
                other = words.get(key, titles.get(key))
                report.add(
                    f"{item_path}.aliases[{j}]",
                    f"alias {alias!r} is already a title or alias of buttons[{other}]",
                )
            words.setdefault(key, i)
        next_block = _reference(item, "next_block", item_path, ids, report)
        drafts.append((text or "", value, next_block, _tags(item, item_path, report), aliases))
        translations.append(texts)
    # Slugs are chosen after every explicit value is known, so a slug never takes one.
    used = set(values)
    buttons: list[Button] = []
    for (text, value, next_block, tags, aliases), texts in zip(drafts, translations, strict=True):
        if value is None:
            value = _unique_slug(slugify(text), used)
            used.add(value)
        buttons.append(Button(text, value, next_block, tags, aliases, texts))
    return tuple(buttons)


def _localized_key(
    mapping: Mapping[str, Any], key: str, path: str, report: _Report
) -> tuple[str | None, dict[str, str]]:
    if key not in mapping:
        return None, {}
    return _localized(mapping[key], check.join(path, key), key, report, check.text)


def _aliases(item: Mapping[str, Any], path: str, report: _Report) -> tuple[str, ...]:
    items = check.list_at(item, "aliases", path, "words", report) or []
    found = (
        check.text(word, f"{path}.aliases[{i}]", "alias", report) for i, word in enumerate(items)
    )
    return tuple(dict.fromkeys(word for word in found if word is not None))


_T = TypeVar("_T")


def _localized(
    value: object,
    path: str,
    label: str,
    report: _Report,
    parse: Callable[[object, str, str, check.Report], _T | None],
) -> tuple[_T | None, dict[str, _T]]:
    """A text given once, or per language (`{pt: ..., en: ...}`): the default language's and,
    per language, each language's; every language the flow declares must have its text."""
    if not isinstance(value, Mapping):
        return parse(value, path, label, report), {}
    if not report.languages:
        report.add(
            path,
            f"{label} per language needs the flow's languages: add languages: [...] at the top"
            " (the first is the default)",
        )
        return None, {}
    found: dict[str, _T] = {}
    for key, item in value.items():
        if key not in report.languages:
            hint = check.suggest(str(key), report.languages)
            names = ", ".join(report.languages)
            report.add(
                check.join(path, key), f"{key!r} is not one of the flow's languages ({names}){hint}"
            )
            continue
        parsed = parse(item, check.join(path, key), label, report)
        if parsed is not None:
            found[key] = parsed
    for language in report.languages:
        if language not in value:
            report.add(path, f"{label} has no text in {language!r}, a language of the flow")
    return found.get(report.languages[0]), found


def _languages(definition: Mapping[str, Any], report: _Report) -> tuple[str, ...]:
    items = check.list_at(definition, "languages", "", "language codes", report) or []
    codes: list[str] = []
    for i, item in enumerate(items):
        code = check.text(item, f"languages[{i}]", "language", report)
        if code is not None and not LANGUAGE.fullmatch(code):
            report.add(f"languages[{i}]", f"{code!r} is not a language code like pt, en or pt_BR")
        elif code is not None and code in codes:
            report.add(f"languages[{i}]", f"language {code!r} is listed twice")
        elif code is not None:
            codes.append(code)
    return tuple(codes)


def _block(block_id: str, raw: object, ids: Sequence[str], report: _Report) -> Block:
    path = f"blocks.{block_id}"
    if not isinstance(raw, Mapping):
        report.add(
            path,
            f"expected a mapping of block keys ({', '.join(BLOCK_KEYS)}),"
            f" got {check.describe(raw)}",
        )
        return Block(id=block_id)
    unknown = check.unknown_keys(raw, BLOCK_KEYS, path, report)
    message: Template | None = None
    messages: dict[str, Template] = {}
    if "message" in raw:
        message, messages = _localized(
            raw["message"], f"{path}.message", "message", report, _template
        )
    buttons = _buttons(raw, path, ids, report)
    if "message" not in raw and ("buttons" in raw or "input" in raw):
        why = (
            "WhatsApp shows buttons under a message"
            if "buttons" in raw
            else "the customer needs a question to answer"
        )
        report.add(f"{path}.message", f"message is missing: {why}")
    handoff = check.switch(raw, "handoff", path, HANDOFF_KEYS, report)
    end = check.switch(raw, "end", path, END_KEYS, report)
    block = Block(
        id=block_id,
        message=message,
        buttons=buttons,
        next_block=_reference(raw, "next_block", path, ids, report),
        tags=_tags(raw, path, report),
        handoff=None
        if handoff is None
        else HandoffSpec(
            team_id=check.positive_id(handoff, "team_id", f"{path}.handoff", report),
            assignee_id=check.positive_id(handoff, "assignee_id", f"{path}.handoff", report),
            note=_optional_template(handoff, "note", f"{path}.handoff", report),
        ),
        input=_input(raw, path, report),
        save_to=_save_to(raw, path, report),
        assign=_assign(raw, path, report),
        conditions=_conditions(raw, path, ids, report),
        else_block=_reference(raw, "else", path, ids, report),
        webhook=_webhook(raw, path, ids, report),
        end=None if end is None else EndSpec(check.flag(end, "resolve", f"{path}.end", report)),
        timeout=_timeout(raw, path, ids, report),
        split=_split(raw, path, ids, report),
        messages=messages,
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


def _check_shape(raw: Mapping[str, Any], block: Block, path: str, report: check.Report) -> None:
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
    if "split" in raw:
        for key in NOT_WITH_SPLIT:
            if key in raw:
                report.add(
                    f"{path}.{key}",
                    f"a split block goes on at once to the arm it picks: move {key} to a block "
                    "of its own",
                )
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


def _template(value: object, path: str, label: str, report: check.Report) -> Template | None:
    text = check.text(value, path, label, report)
    if text is None:
        return None
    try:
        return parse_template(text)
    except TemplateError as exc:
        report.add(path, str(exc))
        return None


def _optional_template(
    mapping: Mapping[str, Any], key: str, path: str, report: check.Report
) -> Template | None:
    return _template(mapping[key], check.join(path, key), key, report) if key in mapping else None


def _value_tree(value: object, path: str, report: check.Report) -> Any:
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
                tree[key] = _value_tree(item, check.join(path, key), report)
            else:
                report.add(check.join(path, key), f"key {key!r} must be a string: quote it")
        return tree
    if isinstance(value, list):
        return tuple(_value_tree(item, f"{path}[{i}]", report) for i, item in enumerate(value))
    if value is None or isinstance(value, bool | int | float):
        return value
    report.add(
        path,
        "expected text, a number, true, false, null, a list or a mapping,"
        f" got {check.describe(value)}",
    )
    return None


def _variable(value: object, path: str, label: str, report: check.Report) -> str | None:
    name = check.text(value, path, label, report)
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


def _input(block: Mapping[str, Any], path: str, report: _Report) -> InputSpec | None:
    if "input" not in block:
        return None
    path = f"{path}.input"
    raw = check.mapping(block["input"], path, INPUT_KEYS, report)
    if raw is None:
        return None
    save_as = None
    if check.required(raw, "save_as", path, report):
        save_as = _variable(raw["save_as"], f"{path}.save_as", "save_as", report)
    kind = _input_type(raw, path, report)
    pattern = _pattern(raw, path, kind, report)
    error_message: Template | None = None
    error_messages: dict[str, Template] = {}
    if "error_message" in raw:
        error_message, error_messages = _localized(
            raw["error_message"], f"{path}.error_message", "error_message", report, _template
        )
    retries = check.count(raw, "retries", path, DEFAULT_RETRIES, report)
    if save_as is None or kind is None:
        return None
    return InputSpec(save_as, kind, pattern, error_message, retries, error_messages)


def _input_type(raw: Mapping[str, Any], path: str, report: check.Report) -> InputType | None:
    if "type" not in raw:
        return InputType.TEXT
    name = check.optional_text(raw, "type", path, report)
    if name is None:
        return None
    kinds = [kind.value for kind in InputType]
    if name not in kinds:
        report.add(f"{path}.type", f"unknown input type {name!r}{check.suggest(name, kinds)}")
        return None
    return InputType(name)


def _pattern(
    raw: Mapping[str, Any], path: str, kind: InputType | None, report: check.Report
) -> re.Pattern[str] | None:
    if "pattern" not in raw:
        if kind is InputType.REGEX:
            report.add(f"{path}.pattern", "pattern is missing: type regex needs one")
        return None
    source = check.optional_text(raw, "pattern", path, report)
    if source is None:
        return None
    if kind is not None and kind is not InputType.REGEX:
        report.add(f"{path}.pattern", "pattern only applies to type: regex")
        return None
    try:
        re.compile(source)  # for the column of a syntax error
    except re.error as exc:
        column = (exc.pos or 0) + 1
        report.add(f"{path}.pattern", f"invalid pattern: {exc.msg} at column {column}")
        return None
    try:
        # RE2 runs in time linear in the text: customer text cannot stall the service.
        return re2.compile(source, options=_RE2_OPTIONS)  # type: ignore[no-any-return]
    except re2.error as exc:
        reason = exc.args[0].decode() if isinstance(exc.args[0], bytes) else str(exc.args[0])
        report.add(
            f"{path}.pattern",
            f"pattern not supported by RE2, the linear-time engine agentbot runs patterns "
            f"with ({reason}): write it without backreferences or lookaround",
        )
        return None


def _save_to(block: Mapping[str, Any], path: str, report: check.Report) -> SaveTarget | None:
    text = check.optional_text(block, "save_to", path, report)
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


def _assign(block: Mapping[str, Any], path: str, report: check.Report) -> dict[str, Any]:
    if "set" not in block:
        return {}
    path = f"{path}.set"
    raw = block["set"]
    if not isinstance(raw, Mapping):
        report.add(path, f"expected a mapping of variable name to value, got {check.describe(raw)}")
        return {}
    values: dict[str, Any] = {}
    for key, item in raw.items():
        name = _variable(key, check.join(path, key), "variable name", report)
        if name is not None:
            values[name] = _value_tree(item, check.join(path, key), report)
    return values


def _conditions(
    block: Mapping[str, Any], path: str, ids: Sequence[str], report: check.Report
) -> tuple[Condition, ...]:
    items = check.list_at(block, "conditions", path, "conditions", report)
    if items is None:
        return ()
    if not items:
        report.add(f"{path}.conditions", "conditions is empty: add a condition or remove the key")
        return ()
    conditions: list[Condition] = []
    for i, item in enumerate(items):
        item_path = f"{path}.conditions[{i}]"
        raw = check.mapping(item, item_path, CONDITION_KEYS, report)
        if raw is None:
            continue
        test = None
        if check.required(raw, "if", item_path, report):
            source = check.text(raw["if"], f"{item_path}.if", "if", report)
            test = _expression(source, f"{item_path}.if", report) if source else None
        target = None
        if check.required(raw, "next_block", item_path, report):
            target = _reference(raw, "next_block", item_path, ids, report)
        if test is not None and target is not None:
            conditions.append(Condition(test, target, source or ""))
    return tuple(conditions)


def _expression(source: str, path: str, report: check.Report) -> Expression | None:
    try:
        return parse_expression(source)
    except ExpressionError as exc:
        report.add(path, str(exc))
        return None


def _webhook(
    block: Mapping[str, Any], path: str, ids: Sequence[str], report: check.Report
) -> WebhookSpec | None:
    if "webhook" not in block:
        return None
    path = f"{path}.webhook"
    raw = check.mapping(block["webhook"], path, WEBHOOK_KEYS, report)
    if raw is None:
        return None
    url = (
        _url(raw["url"], f"{path}.url", report)
        if check.required(raw, "url", path, report)
        else None
    )
    method = _method(raw, path, report)
    headers = _headers(raw, path, report)
    body = _value_tree(raw["body"], f"{path}.body", report) if "body" in raw else None
    timeout = _seconds(raw, "timeout", path, report)
    save_as = None
    if "save_as" in raw:
        save_as = _variable(raw["save_as"], f"{path}.save_as", "save_as", report)
    on_error = _reference(raw, "on_error", path, ids, report)
    retry = check.flag(raw, "retry", path, report, default=method in IDEMPOTENT_METHODS)
    if url is None:
        return None
    return WebhookSpec(url, method, headers, body, timeout, save_as, on_error, retry)


def _url(value: object, path: str, report: check.Report) -> Template | None:
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


def _method(raw: Mapping[str, Any], path: str, report: check.Report) -> str:
    default = "POST" if "body" in raw else "GET"
    name = check.optional_text(raw, "method", path, report)
    if name is None:
        return default
    if name.upper() not in METHODS:
        report.add(
            f"{path}.method", f"unknown method {name!r}{check.suggest(name.upper(), METHODS)}"
        )
        return default
    return name.upper()


def _headers(raw: Mapping[str, Any], path: str, report: check.Report) -> dict[str, Template]:
    if "headers" not in raw:
        return {}
    path = f"{path}.headers"
    value = raw["headers"]
    if not isinstance(value, Mapping):
        report.add(path, f"expected a mapping of header name to value, got {check.describe(value)}")
        return {}
    headers: dict[str, Template] = {}
    for name, item in value.items():
        item_path = check.join(path, name)
        if not isinstance(name, str) or not HEADER_NAME.fullmatch(name):
            report.add(item_path, f"{name!r} is not a valid header name")
            continue
        template = _template(item, item_path, name, report)
        if template is not None and any(
            isinstance(part, str) and _CONTROL.search(part) for part in template.parts
        ):
            report.add(item_path, "a header value cannot hold a line break or control character")
        elif template is not None:
            # non-ASCII text (written here or from a variable) is sent as UTF-8
            headers[name] = template
    return headers


def _seconds(raw: Mapping[str, Any], key: str, path: str, report: check.Report) -> float:
    if key not in raw:
        return DEFAULT_WEBHOOK_TIMEOUT
    value = raw[key]
    path = f"{path}.{key}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        delta = check.duration(value, path, report)
        if delta is None:
            return DEFAULT_WEBHOOK_TIMEOUT
        seconds = delta.total_seconds()
    if not 0 < seconds <= MAX_WEBHOOK_TIMEOUT:
        limit = f"{MAX_WEBHOOK_TIMEOUT:g}"
        report.add(path, f"{key} must be more than 0 and at most {limit} seconds")
        return DEFAULT_WEBHOOK_TIMEOUT
    return seconds


def _timeout(
    block: Mapping[str, Any], path: str, ids: Sequence[str], report: check.Report
) -> TimeoutSpec | None:
    if "timeout" not in block:
        return None
    path = f"{path}.timeout"
    raw = check.mapping(block["timeout"], path, TIMEOUT_KEYS, report)
    if raw is None:
        return None
    after = None
    if check.required(raw, "after", path, report):
        after = check.duration(raw["after"], f"{path}.after", report)
    target = None
    if check.required(raw, "next_block", path, report):
        target = _reference(raw, "next_block", path, ids, report)
    if after is None or target is None:
        return None
    return TimeoutSpec(after, target)


def _inactivity(definition: Mapping[str, Any], report: check.Report) -> Inactivity | None:
    if "inactivity" not in definition:
        return None
    raw = check.mapping(definition["inactivity"], "inactivity", INACTIVITY_KEYS, report)
    if raw is None:
        return None
    after = None
    if check.required(raw, "after", "inactivity", report):
        after = check.duration(raw["after"], "inactivity.after", report)
    message = _optional_template(raw, "message", "inactivity", report)
    then = check.optional_text(raw, "then", "inactivity", report)
    if then is not None and then not in INACTIVITY_THEN:
        hint = check.suggest(then, INACTIVITY_THEN)
        report.add("inactivity.then", f"expected 'handoff' or 'resolve', got {then!r}{hint}")
        then = None
    return None if after is None else Inactivity(after, message, then)


def _whatsapp_template(
    definition: Mapping[str, Any], report: check.Report
) -> WhatsAppTemplate | None:
    if "template" not in definition:
        return None
    raw = check.mapping(definition["template"], "template", TEMPLATE_KEYS, report)
    if raw is None:
        return None
    name = check.optional_text(raw, "name", "template", report)
    language = check.optional_text(raw, "language", "template", report)
    check.required(raw, "name", "template", report)
    check.required(raw, "language", "template", report)
    category = check.optional_text(raw, "category", "template", report)
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
        report.add("blocks", f"expected a mapping of block id to block, got {check.describe(raw)}")
        return {}
    ids = [block_id for block_id in raw if isinstance(block_id, str)]
    blocks: dict[str, Block] = {}
    for block_id, block in raw.items():
        if isinstance(block_id, str):
            blocks[block_id] = _block(block_id, block, ids, report)
        else:
            report.add(f"blocks.{block_id}", f"block id {block_id!r} must be a string: quote it")
    for path, message in loops(blocks):
        report.add(path, message)
    return blocks


def _build(
    definition: object,
    report: _Report,
    *,
    default_name: str,
    lines: Mapping[str, int],
    shared_hours: Mapping[str, Any],
    strict: bool = True,
) -> Flow | None:
    """The flow `definition` describes, or None when `report` holds any problem."""
    if not isinstance(definition, Mapping):
        if definition is None:
            report.add("(root)", "the flow is empty: it needs at least blocks")
        else:
            got = check.describe(definition)
            report.add(
                "(root)", f"expected a mapping of flow keys ({', '.join(TOP_KEYS)}), got {got}"
            )
        return None
    if "tests" in definition and "blocks" not in definition:
        report.add(
            "(root)",
            "this is a conversation test file (it has tests:), not a flow:"
            " run it with `agentbot test`",
        )
        return None
    check.unknown_keys(definition, TOP_KEYS, "", report)
    report.languages = _languages(definition, report)
    name = check.optional_text(definition, "name", "", report) or default_name
    if not FLOW_NAME.fullmatch(name):
        where = "name" if "name" in definition else "(root)"
        report.add(
            where,
            f"flow name {name[:80]!r} is not a slug: use letters, digits, '_', '-' and '.' "
            "(at most 64 characters, starting with a letter or digit)",
        )
    title = check.optional_text(definition, "title", "", report) or name
    blocks = _blocks(definition, report)
    ids = list(blocks)
    start = ids[0] if ids else ""
    if "start" in definition:
        start = _reference(definition, "start", "", ids, report) or start
    trigger_map = _section(definition, "trigger", TRIGGER_KEYS, report)
    trigger = Trigger(
        default=check.flag(trigger_map, "default", "trigger", report),
        keywords=_words(trigger_map, "keywords", "trigger", (), report),
        inboxes=_inboxes(trigger_map, report),
        widget=check.flag(trigger_map, "widget", "trigger", report),
    )
    words_map = _section(definition, "keywords", WORDS_KEYS, report)
    words = GlobalWords(
        handoff=_words(words_map, "handoff", "keywords", DEFAULT_HANDOFF_WORDS, report),
        restart=_words(words_map, "restart", "keywords", DEFAULT_RESTART_WORDS, report),
    )
    texts_map = _section(definition, "messages", TEXTS_KEYS, report)
    retry, retries = _localized_key(texts_map, "retry", "messages", report)
    handoff, handoffs = _localized_key(texts_map, "handoff", "messages", report)
    texts = Texts(
        retry=retry or DEFAULT_RETRY_MESSAGE,
        handoff=handoff or DEFAULT_HANDOFF_MESSAGE,
        retries=retries,
        handoffs=handoffs,
    )
    fallback = _reference(definition, "fallback", "", ids, report)
    inactivity = _inactivity(definition, report)
    template = _whatsapp_template(definition, report)
    hours, definition = _hours(definition, report, shared_hours)
    if hours is None:
        _open_now_needs_hours(blocks, report)
    debounce = _debounce(definition, report)
    declared = _declared(definition, report)
    if report.problems:
        return None
    flow = Flow(
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
        hours=hours,
        debounce=debounce,
        variables=declared,
        languages=report.languages,
    )
    if strict:
        for path, message in unknown_reads(flow):
            report.add(path, message)
    return None if report.problems else flow


def _split(
    block: Mapping[str, Any], path: str, ids: Sequence[str], report: check.Report
) -> tuple[Arm, ...]:
    items = check.list_at(block, "split", path, "arms ({weight, next_block})", report)
    if items is None:
        return ()
    if len(items) < 2:
        report.add(f"{path}.split", "a split needs at least two arms")
        return ()
    arms: list[Arm] = []
    names: set[str] = set()
    for i, item in enumerate(items):
        item_path = f"{path}.split[{i}]"
        raw = check.mapping(item, item_path, ARM_KEYS, report)
        if raw is None:
            continue
        weight = raw.get("weight")
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
            report.add(
                f"{item_path}.weight",
                f"expected a whole number of 1 or more (the arm's share), got "
                f"{check.describe(weight)}",
            )
            weight = None
        target = None
        if check.required(raw, "next_block", item_path, report):
            target = _reference(raw, "next_block", item_path, ids, report)
        name = check.optional_text(raw, "name", item_path, report) or target
        if name is not None and name in names:
            report.add(f"{item_path}.name", f"arm {name!r} is named twice: give each arm a name")
        if weight is not None and target is not None and name is not None:
            names.add(name)
            arms.append(Arm(weight=weight, next_block=target, name=name))
    return tuple(arms)


def _hours(
    definition: Mapping[str, Any], report: check.Report, shared: Mapping[str, Any]
) -> tuple[Hours | None, Mapping[str, Any]]:
    """The flow's business hours (or None) and its definition with the hours written out, as
    JSON (a shared name replaced by its hours, dates as text), so the stored version stands on
    its own and changes when the shared hours do."""
    if "hours" not in definition:
        return None, definition
    raw = definition["hours"]
    label = "hours"
    if isinstance(raw, str):
        if raw not in shared:
            known = ", ".join(sorted(shared)) or "none"
            report.add(
                "hours",
                f"no shared hours named {raw!r} (known: {known}): create "
                f"FLOWS_DIR/hours/{raw}.yaml or write the hours here",
            )
            return None, definition
        raw = shared[raw]
        label = f"hours ({definition['hours']})"
    hours, problems = parse_hours(raw)
    for key, message in problems:
        report.add(check.join("hours", key) if key else "hours", f"{label}: {message}")
    if hours is None:
        return None, definition
    return hours, {**definition, "hours": _as_json(raw)}


def _as_json(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_json(v) for v in value]
    if isinstance(value, date):
        return value.isoformat()
    return value


def _open_now_needs_hours(blocks: Mapping[str, Block], report: check.Report) -> None:
    for block in blocks.values():
        for i, condition in enumerate(block.conditions):
            if any(parts[0] == OPEN_NOW for parts in paths_read(condition.test)):
                report.add(
                    f"blocks.{block.id}.conditions[{i}].if",
                    f"{OPEN_NOW} needs business hours: add hours: at the top of the flow",
                )


def _debounce(definition: Mapping[str, Any], report: check.Report) -> timedelta | None:
    if "debounce" not in definition:
        return None
    window = check.duration(definition["debounce"], "debounce", report)
    if window is not None and window > MAX_DEBOUNCE:
        report.add("debounce", "a debounce longer than 60s keeps the customer waiting: shorten it")
        return None
    return window


def _declared(definition: Mapping[str, Any], report: check.Report) -> tuple[str, ...]:
    """`variables:` the names a flow reads without setting them (a start's initial data)."""
    items = check.list_at(definition, "variables", "", "variable names", report) or []
    names = (_variable(item, f"variables[{i}]", "variable", report) for i, item in enumerate(items))
    return tuple(dict.fromkeys(name for name in names if name is not None))
