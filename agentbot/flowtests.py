"""Conversation tests for flows (`agentbot test`): YAML scripts run through the pure engine.

This module does no I/O: no files, no network, no database, no clock, no logging. The shell
(`cli.py`) reads the test files and finds the flows; here a test file's text becomes a `Suite`
(every problem in it reported at once, `file:line: path: message`), and each of its cases runs
in a `Sandbox` (sandbox.py) on a fixed clock that starts at 2026-01-01T12:00:00Z (or the `now:`
the test gives).

A test file::

    flow: fluxo_comercial         # the flow's name in FLOWS_DIR, or a path to its file
                                  # relative to this file (anything ending in .yaml or .yml)
    contact: {name: Ana Souza, phone_number: "+5511999990000"}   # optional, for every test
    tests:
      - name: lead frio
        steps:
          - user: "Oi"
          - bot: "Olá Ana Souza! ..."
          - buttons: [Sim, Não]
          - user: "Não"
          - labels: [lead_frio]

Settings, at the top for every test and in a test for that test only: `contact` (`id`, `name`,
`phone_number`, `email`, `identifier`, `custom_attributes`), `channel` (`whatsapp`, the default,
`web_widget`, `telegram`, `facebook`, `line`, `api`, `sms`, `email`, `instagram`, `twilio`, or a
`Channel::…` name), `inbox_id` (default 1), `conversation` (`custom_attributes`, `labels`) and
`initial_data` (a mapping: the flow starts at once, as `POST /api/workflow/start` starts it, with
these variables; without it the first `user:` step starts the flow, whatever its text), `now`
(the clock at the start, with its offset: `2026-12-01T09:00:00-03:00`, for business hours) and
`conversation_id` (default 1: the Chatwoot conversation, from which an A/B split picks its arm).

Steps, each a mapping with one key, run in order; a test stops at its first failing step.
Events (each one starts a new *turn*: what the bot does in answer to it):

- `user: TEXT`: the customer sends TEXT (a button's title, its value, its number, or text).
- `webhook: {status: 200, json: ANY}`: the oldest webhook call waiting gets this answer (also
  `text: "..."` for a body that is no JSON, `error: "..."` for a call that got no answer; the
  status is 200 unless given, and 400 or more is a failure).
- `wait: 30m`: the clock moves on; every block timeout or inactivity deadline passing fires.
- `agent: TEXT`: an agent answers the customer in public (humans take a pending conversation).
- `agent_note: TEXT`: an agent writes a private note: `/bot`, `/pause 30`, or any other text.
- `assign_agent: 3`: the conversation is assigned to the agent with this id.
- `label: bot`: an agent adds a label to the conversation (`bot` gives it back to the bot).
- `resolve: true`, `snooze: true`: an agent resolves or snoozes the conversation.
  Who holds the conversation after each of these is decided by lifecycle.py, as in the service.

Checks:

- `bot: TEXT`: the bot's next message in this turn is exactly TEXT (as the channel shows it: on
  a channel without buttons the options are numbered in the text). `bot_contains: TEXT`: the
  next message contains TEXT. Each of them consumes one message; messages not checked are
  skipped when the next turn starts.
- `quiet: true`: the bot says nothing more in this turn (after a handoff it stays quiet).
- `buttons: [Sim, Não]`: the options of the question the bot asked in this turn, in order.
- `labels: [a, b]`: every label the bot has added to the conversation so far (any order).
- `handoff: true|false`: the conversation is handed off to humans (or not). `resolved: true|false`:
  the flow resolved the conversation (the customer's next message reopens it).
- `status: active|completed|handed_off|abandoned`: the session's status. `block: ID`: the block
  the session is at.
- `variables: {email: ana@x.com, crm.protocolo: A1}`: variables (dotted paths reach inside).
- `attribute: {conversation.custom_attributes.email: ana@x.com}`: attributes saved so far.
- `note_contains: TEXT`: a private note for the agents contains TEXT.
- `assign: {team_id: 4}`: the last assignment made (`team_id`, `assignee_id`).
- `call: {url: ..., method: POST, body: {...}, headers: {...}}`: the oldest webhook call waiting
  was made so (only the keys given are checked; headers given must be among those sent).
- `conversation_status: pending|open|resolved|snoozed`: the conversation's status in Chatwoot.
- `hold: none|humans|paused|snoozed|resuming|resting`: what holds the conversation apart from
  its session (lifecycle.py): `paused` after `/pause N` until the pause ends, and so on.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from agentbot import engine, lifecycle
from agentbot.errors import FlowError
from agentbot.events import Attachment, Contact, Conversation
from agentbot.expressions import lookup
from agentbot.flows import Flow
from agentbot.loader import ATTRIBUTE
from agentbot.sandbox import MEDIA_TYPES, WHATSAPP, Said, Sandbox, channel_name
from agentbot.validation import (
    Report,
    describe,
    duration,
    line_at,
    read_document,
    suggest,
    unknown_keys,
)

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

SETTING_KEYS = (
    "contact",
    "channel",
    "inbox_id",
    "conversation",
    "initial_data",
    "now",
    "conversation_id",
)
FILE_KEYS = ("flow", *SETTING_KEYS, "tests")
CASE_KEYS = ("name", *SETTING_KEYS, "steps")
CONTACT_KEYS = ("id", "name", "phone_number", "email", "identifier", "custom_attributes")
CONVERSATION_KEYS = ("custom_attributes", "labels")
EVENTS = (
    "user",
    "webhook",
    "wait",
    "media",
    "agent",
    "agent_note",
    "assign_agent",
    "label",
    "resolve",
    "snooze",
)
CHECKS = (
    "bot",
    "bot_contains",
    "quiet",
    "buttons",
    "labels",
    "handoff",
    "resolved",
    "status",
    "block",
    "variables",
    "attribute",
    "note_contains",
    "assign",
    "call",
    "conversation_status",
    "hold",
)
STEP_KEYS = EVENTS + CHECKS
WEBHOOK_KEYS = ("status", "json", "text", "error")
ASSIGN_KEYS = ("team_id", "assignee_id")
CALL_KEYS = ("url", "method", "headers", "body")
MEDIA_KEYS = ("type", "caption", "url", "title", "latitude", "longitude")
STATUSES = tuple(status.value for status in engine.Status)
CONVERSATION_STATUSES = ("pending", "open", "resolved", "snoozed")
HOLDS = ("none", *(hold.value for hold in lifecycle.Hold))


@dataclass(frozen=True, slots=True)
class Setup:
    """Who the customer is and where they write from."""

    contact: Contact = field(default_factory=lambda: Contact(id=1, name=""))
    channel: str = WHATSAPP
    inbox_id: int = 1
    conversation_attributes: Mapping[str, Any] = field(default_factory=dict)
    labels: tuple[str, ...] = ()
    initial_data: Mapping[str, Any] | None = None
    now: datetime = START  # the clock at the test's start (`wait` moves it on)
    conversation_id: int = 1  # the Chatwoot conversation (an A/B split picks its arm from it)


@dataclass(frozen=True, slots=True)
class Step:
    number: int  # 1-based, as the failure names it
    line: int
    kind: str  # one of STEP_KEYS
    value: Any


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    line: int
    setup: Setup
    steps: tuple[Step, ...]


@dataclass(frozen=True, slots=True)
class Suite:
    file: str
    flow: str  # a flow's name, or a path relative to the test file
    flow_line: int
    cases: tuple[Case, ...]

    @property
    def flow_is_path(self) -> bool:
        return self.flow.endswith((".yaml", ".yml"))


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a case failed: where, which step, and what was expected against what happened."""

    file: str
    line: int
    case: str
    step: int
    kind: str
    message: str
    details: tuple[str, ...] = ()

    def __str__(self) -> str:
        head = f"{self.file}:{self.line}: {self.case}: step {self.step} ({self.kind}): "
        return "\n".join([head + self.message, *(f"    {line}" for line in self.details)])


@dataclass(frozen=True, slots=True)
class Result:
    case: Case
    failure: Failure | None


# --- reading a test file --------------------------------------------------------------------


def parse_suite(text: str, file: str) -> Suite:
    """The test file's content; FlowError naming every problem in it (`file:line: path: ...`)."""
    document = read_document(text, file)
    lines = document.lines
    report = Report(file, lambda path: line_at(lines, path))
    report.problems.extend(document.repeats)
    suite = _suite(_plain(document.data), report)
    if report.problems or suite is None:
        raise FlowError(sorted(report.problems, key=lambda p: p.line))
    return suite


def _plain(value: Any) -> Any:
    """Dates YAML read from unquoted text back to the ISO text the engine keeps them as."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _suite(data: object, report: Report) -> Suite | None:
    if not isinstance(data, Mapping):
        report.add("(root)", f"expected a mapping with flow and tests, got {describe(data)}")
        return None
    if "blocks" in data and "tests" not in data:
        report.add(
            "(root)",
            "this is a flow (it has blocks:), not a conversation test file:"
            " check it with `agentbot check`",
        )
        return None
    unknown_keys(data, FILE_KEYS, "", report)
    flow = data.get("flow")
    if not isinstance(flow, str) or not flow.strip():
        report.add("flow", "flow is missing: name the flow (or its file) these tests run")
    defaults = _setup(data, "", Setup(), report)
    tests = data.get("tests")
    if not isinstance(tests, list) or not tests:
        report.add("tests", f"expected a list of tests, got {describe(tests)}")
        return None
    cases = [_case(item, i, defaults, report) for i, item in enumerate(tests)]
    names: dict[str, int] = {}
    for i, case in enumerate(cases):
        if case is not None and case.name in names:
            report.add(
                f"tests[{i}].name", f"name {case.name!r} is used by tests[{names[case.name]}]"
            )
        elif case is not None:
            names[case.name] = i
    if not isinstance(flow, str):
        return None
    found = tuple(case for case in cases if case is not None)
    return Suite(report.file, flow.strip(), report.line_of("flow"), found)


def _setup(data: Mapping[str, Any], path: str, base: Setup, report: Report) -> Setup:
    """`base` with the settings `data` gives (the file's for every test, a test's for itself)."""

    def at(key: str) -> str:
        return f"{path}.{key}" if path else key

    setup = base
    if "contact" in data:
        raw = data["contact"]
        if isinstance(raw, Mapping):
            unknown_keys(raw, CONTACT_KEYS, at("contact"), report)
            contact = Contact(
                id=_integer(raw.get("id", 1), at("contact.id"), report),
                name=_string(raw.get("name", ""), at("contact.name"), report),
                phone_number=_optional_string(raw, "phone_number", at("contact"), report),
                email=_optional_string(raw, "email", at("contact"), report),
                identifier=_optional_string(raw, "identifier", at("contact"), report),
                custom_attributes=_mapping(
                    raw.get("custom_attributes", {}), at("contact.custom_attributes"), report
                ),
            )
            setup = replace(setup, contact=contact)
        else:
            report.add(at("contact"), f"expected a mapping, got {describe(raw)}")
    if "channel" in data:
        channel = _string(data["channel"], at("channel"), report)
        setup = replace(setup, channel=channel_name(channel))
    if "inbox_id" in data:
        setup = replace(setup, inbox_id=_integer(data["inbox_id"], at("inbox_id"), report))
    if "conversation" in data:
        raw = data["conversation"]
        if isinstance(raw, Mapping):
            unknown_keys(raw, CONVERSATION_KEYS, at("conversation"), report)
            attributes = _mapping(
                raw.get("custom_attributes", {}), at("conversation.custom_attributes"), report
            )
            labels = _strings(raw.get("labels", []), at("conversation.labels"), report)
            setup = replace(setup, conversation_attributes=attributes, labels=labels)
        else:
            report.add(at("conversation"), f"expected a mapping, got {describe(raw)}")
    if "initial_data" in data:
        initial = _mapping(data["initial_data"], at("initial_data"), report)
        setup = replace(setup, initial_data=initial)
    if "now" in data:
        setup = replace(setup, now=_moment(data["now"], at("now"), report))
    if "conversation_id" in data:
        number = _integer(data["conversation_id"], at("conversation_id"), report)
        setup = replace(setup, conversation_id=number)
    return setup


def _moment(value: object, path: str, report: Report) -> datetime:
    """A moment with its UTC offset: `2026-12-01T09:00:00-03:00` (the file's timestamps are
    read back as ISO text)."""
    moment: datetime | None = None
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            moment = None
    if moment is None or moment.tzinfo is None:
        report.add(
            path,
            f"expected a moment with its offset, like 2026-12-01T09:00:00-03:00, got "
            f"{describe(value)}",
        )
        return START
    return moment


def _case(item: object, index: int, defaults: Setup, report: Report) -> Case | None:
    path = f"tests[{index}]"
    if not isinstance(item, Mapping):
        report.add(path, f"expected a test (a mapping with name and steps), got {describe(item)}")
        return None
    unknown_keys(item, CASE_KEYS, path, report)
    name = item.get("name", f"test {index + 1}")
    if not isinstance(name, str) or not name.strip():
        report.add(f"{path}.name", f"expected a name, got {describe(name)}")
        name = f"test {index + 1}"
    setup = _setup(item, path, defaults, report)
    raw_steps = item.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        report.add(f"{path}.steps", f"expected a list of steps, got {describe(raw_steps)}")
        return None
    steps = [_step(raw, f"{path}.steps[{i}]", i + 1, report) for i, raw in enumerate(raw_steps)]
    found = tuple(step for step in steps if step is not None)
    return Case(name, report.line_of(path), setup, found)


def _step(raw: object, path: str, number: int, report: Report) -> Step | None:
    if not isinstance(raw, Mapping) or len(raw) != 1:
        if isinstance(raw, Mapping) and len(raw) > 1:
            keys = ", ".join(str(key) for key in raw)
            report.add(path, f"a step has one key, this one has {keys}: write one step for each")
        else:
            report.add(path, f"expected a step like `user: Oi` or `bot: ...`, got {describe(raw)}")
        return None
    ((kind, value),) = raw.items()
    if kind not in STEP_KEYS:
        hint = suggest(kind, STEP_KEYS) if isinstance(kind, str) else ""
        report.add(path, f"unknown step {kind!r}{hint}")
        return None
    checker = _VALUES[kind]
    value = checker(value, f"{path}.{kind}", report)
    return Step(number, report.line_of(path), kind, value)


def _string(value: object, path: str, report: Report) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # `user: 1` is the text "1"
    message = f"expected text, got {describe(value)}"
    if isinstance(value, bool):
        message += " (quote it: YAML reads yes, no, on and off as true or false)"
    report.add(path, message)
    return ""


def _optional_string(raw: Mapping[str, Any], key: str, path: str, report: Report) -> str | None:
    return _string(raw[key], f"{path}.{key}", report) if key in raw else None


def _strings(value: object, path: str, report: Report) -> tuple[str, ...]:
    if not isinstance(value, list):
        report.add(path, f"expected a list, got {describe(value)}")
        return ()
    return tuple(_string(item, f"{path}[{i}]", report) for i, item in enumerate(value))


def _integer(value: object, path: str, report: Report) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    report.add(path, f"expected a positive whole number, got {describe(value)}")
    return 1


def _flag(value: object, path: str, report: Report) -> bool:
    if isinstance(value, bool):
        return value
    report.add(path, f"expected true or false, got {describe(value)}")
    return False


def _true(value: object, path: str, report: Report) -> bool:
    if value is not True:
        report.add(path, f"expected true, got {describe(value)}")
    return True


def _mapping(value: object, path: str, report: Report) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return {str(key): item for key, item in value.items()}
    report.add(path, f"expected a mapping, got {describe(value)}")
    return {}


def _keys(allowed: Sequence[str]) -> Callable[[object, str, Report], dict[str, Any]]:
    def check(value: object, path: str, report: Report) -> dict[str, Any]:
        mapping = _mapping(value, path, report)
        unknown_keys(mapping, allowed, path, report)
        return mapping

    return check


def _one_of(names: tuple[str, ...], what: str) -> Callable[[object, str, Report], str]:
    def check(value: object, path: str, report: Report) -> str:
        text = _string(value, path, report)
        if text and text not in names:
            report.add(path, f"unknown {what} {text!r}{suggest(text, names)}")
        return text

    return check


_status = _one_of(STATUSES, "status")


def _attributes(value: object, path: str, report: Report) -> dict[str, Any]:
    mapping = _mapping(value, path, report)
    for key in mapping:
        if not ATTRIBUTE.fullmatch(key):
            report.add(
                f"{path}.{key}",
                "expected contact.custom_attributes.<key> or conversation.custom_attributes.<key>",
            )
    return mapping


def _webhook(value: object, path: str, report: Report) -> dict[str, Any]:
    mapping = _keys(WEBHOOK_KEYS)(value, path, report)
    if "json" in mapping and "text" in mapping:
        report.add(path, "give json or text, not both")
    status = mapping.get("status")
    if status is not None and not (isinstance(status, int) and 100 <= status <= 599):
        report.add(f"{path}.status", f"expected an HTTP status, got {describe(status)}")
    if "error" in mapping:
        _string(mapping["error"], f"{path}.error", report)
    if "text" in mapping:
        _string(mapping["text"], f"{path}.text", report)
    return mapping


def _media(value: object, path: str, report: Report) -> tuple[Attachment, str]:
    """`media: {type, caption, url, title, latitude, longitude}`: one attachment and its
    caption, as Chatwoot sends a photo, a voice note, a location or a contact card."""
    mapping = _keys(MEDIA_KEYS)(value, path, report)
    if "type" not in mapping:
        report.add(path, f"give the attachment's type: one of {', '.join(MEDIA_TYPES)}")
    kind = _one_of(MEDIA_TYPES, "attachment type")(
        mapping.get("type", "file"), f"{path}.type", report
    )
    coordinates = []
    for key in ("latitude", "longitude"):
        number = mapping.get(key)
        if number is not None and (
            isinstance(number, bool)
            or not isinstance(number, int | float)
            or not math.isfinite(number)
        ):
            report.add(f"{path}.{key}", f"expected a number, got {describe(number)}")
            number = None
        coordinates.append(None if number is None else float(number))
    attachment = Attachment(
        kind,
        url=_optional_string(mapping, "url", path, report),
        title=_optional_string(mapping, "title", path, report),
        latitude=coordinates[0],
        longitude=coordinates[1],
    )
    return attachment, _optional_string(mapping, "caption", path, report) or ""


def _call(value: object, path: str, report: Report) -> dict[str, Any]:
    mapping = _keys(CALL_KEYS)(value, path, report)
    if "headers" in mapping:
        mapping["headers"] = _mapping(mapping["headers"], f"{path}.headers", report)
    return mapping


def _wait(value: object, path: str, report: Report) -> timedelta:
    return duration(value, path, report) or timedelta()


_VALUES: Mapping[str, Callable[[object, str, Report], Any]] = {
    "user": _string,
    "webhook": _webhook,
    "wait": _wait,
    "media": _media,
    "agent": _string,
    "agent_note": _string,
    "assign_agent": _integer,
    "label": _string,
    "resolve": _true,
    "snooze": _true,
    "bot": _string,
    "bot_contains": _string,
    "quiet": _true,
    "buttons": _strings,
    "labels": _strings,
    "handoff": _flag,
    "resolved": _flag,
    "status": _status,
    "block": _string,
    "variables": _mapping,
    "attribute": _attributes,
    "note_contains": _string,
    "assign": _keys(ASSIGN_KEYS),
    "call": _call,
    "conversation_status": _one_of(CONVERSATION_STATUSES, "conversation status"),
    "hold": _one_of(HOLDS, "hold"),
}


# --- running --------------------------------------------------------------------------------


def run_suite(suite: Suite, flow: Flow) -> list[Result]:
    return [Result(case, run_case(suite.file, case, flow)) for case in suite.cases]


def run_case(file: str, case: Case, flow: Flow) -> Failure | None:
    """Run one test's steps in a fresh sandbox; the first step that fails, or None."""
    run = _Run(flow, case.setup)
    for step in case.steps:
        problem = run.do(step)
        if problem is not None:
            message, details = problem
            return Failure(file, step.line, case.name, step.number, step.kind, message, details)
    return None


_Problem = tuple[str, tuple[str, ...]]  # a message and the lines that show the difference


class _Run:
    """One test being run: the sandbox, and the messages of the current turn."""

    __slots__ = ("cursor", "flow", "sandbox", "turn")

    def __init__(self, flow: Flow, setup: Setup) -> None:
        self.flow = flow
        contact = setup.contact
        conversation = Conversation(
            account_id=1,
            id=setup.conversation_id,
            inbox_id=setup.inbox_id,
            status="pending",
            channel=setup.channel,
            labels=setup.labels,
            custom_attributes=dict(setup.conversation_attributes),
        )
        self.sandbox = Sandbox(flow, setup.now, contact=contact, conversation=conversation)
        self.turn: list[Said] = []
        self.cursor = 0
        if setup.initial_data is not None:
            self._turn(self.sandbox.start(dict(setup.initial_data)))

    def _turn(self, actions: Sequence[engine.Action]) -> None:
        self.turn = [said for action in actions for said in self.sandbox.shown(action)]
        self.cursor = 0

    def do(self, step: Step) -> _Problem | None:
        return _DO[step.kind](self, step.value)

    # events

    def user(self, text: str) -> _Problem | None:
        self._turn(self.sandbox.say(text))
        return None

    def webhook(self, answer: Mapping[str, Any]) -> _Problem | None:
        if not self.sandbox.calls:
            return "no webhook call is waiting for an answer", self._said()
        error = answer.get("error")
        status = answer.get("status", None if error is not None else 200)
        data = answer.get("json", answer.get("text"))
        self._turn(self.sandbox.answer(status=status, data=data, error=error))
        return None

    def media(self, sent: tuple[Attachment, str]) -> _Problem | None:
        attachment, caption = sent
        self._turn(self.sandbox.say(caption, attachments=(attachment,)))
        return None

    def wait(self, delta: timedelta) -> _Problem | None:
        self._turn(self.sandbox.wait(delta))
        return None

    def agent(self, _: str) -> _Problem | None:
        self._turn(self.sandbox.agent_reply())
        return None

    def agent_note(self, text: str) -> _Problem | None:
        self._turn(self.sandbox.note(text))
        return None

    def assign_agent(self, agent_id: int) -> _Problem | None:
        self._turn(self.sandbox.assign(agent_id))
        return None

    def label(self, name: str) -> _Problem | None:
        self._turn(self.sandbox.label(name))
        return None

    def resolve(self, _: bool) -> _Problem | None:
        self._turn(self.sandbox.set_status("resolved"))
        return None

    def snooze(self, _: bool) -> _Problem | None:
        self._turn(self.sandbox.set_status("snoozed"))
        return None

    # checks

    def bot(self, text: str) -> _Problem | None:
        said = self._next()
        if said is None:
            return "the bot said nothing more", (*_shown("expected", text), *self._said())
        if said.text != text:
            return "the message differs", _text_diff(text, said.text)
        return None

    def bot_contains(self, text: str) -> _Problem | None:
        said = self._next()
        if said is None:
            return "the bot said nothing more", (f"expected a message with {text!r}", *self._said())
        if text not in said.text:
            return f"the message does not contain {text!r}", _shown("actual", said.text)
        return None

    def quiet(self, _: bool) -> _Problem | None:
        rest = self.turn[self.cursor :]
        if not rest:
            return None
        lines = [line for said in rest for line in _shown("said", said.text)]
        return f"the bot said {len(rest)} more message(s)", tuple(lines)

    def buttons(self, titles: tuple[str, ...]) -> _Problem | None:
        questions = [said for said in self.turn if said.options]
        if not questions:
            return "the bot asked no question with options in this turn", self._said()
        actual = questions[-1].options
        if actual != titles:
            return "the options differ", _list_diff(list(titles), list(actual))
        return None

    def labels(self, labels: tuple[str, ...]) -> _Problem | None:
        if set(labels) != set(self.sandbox.labels):
            return "the labels differ", _list_diff(sorted(labels), sorted(self.sandbox.labels))
        return None

    def handoff(self, expected: bool) -> _Problem | None:
        session = self.sandbox.session
        actual = session is not None and session.status is engine.Status.HANDED_OFF
        if actual == expected:
            return None
        state = self._state()
        return ("the conversation was handed off" if actual else "no handoff"), state

    def resolved(self, expected: bool) -> _Problem | None:
        actual = self.sandbox.status == "resolved"
        if actual == expected:
            return None
        message = "the conversation was resolved" if actual else "the conversation is not resolved"
        return message, (f"its status in Chatwoot is {self.sandbox.status}",)

    def status(self, expected: str) -> _Problem | None:
        session = self.sandbox.session
        actual = session.status.value if session is not None else "none (no session yet)"
        if actual != expected:
            return "the session's status differs", (f"expected: {expected}", f"actual:   {actual}")
        return None

    def block(self, expected: str) -> _Problem | None:
        session = self.sandbox.session
        actual = session.block if session is not None else "none (no session yet)"
        if actual == expected:
            return None
        details = [f"expected: {expected}", f"actual:   {actual}"]
        if expected not in self.flow.blocks:
            details.append(
                f"the flow has no block {expected!r}{suggest(expected, list(self.flow.blocks))}"
            )
        return "the session is at another block", tuple(details)

    def variables(self, expected: Mapping[str, Any]) -> _Problem | None:
        session = self.sandbox.session
        values = session.variables if session is not None else {}
        lines = [
            line
            for name, want in expected.items()
            for line in _value_diff(name, want, lookup(values, name.split(".")))
        ]
        return ("variables differ", tuple(lines)) if lines else None

    def attribute(self, expected: Mapping[str, Any]) -> _Problem | None:
        lines = [
            line
            for path, want in expected.items()
            for line in _value_diff(path, want, self.sandbox.attribute(path))
        ]
        return ("attributes differ", tuple(lines)) if lines else None

    def note_contains(self, text: str) -> _Problem | None:
        if any(text in note for note in self.sandbox.notes):
            return None
        notes = [line for note in self.sandbox.notes for line in _shown("note", note)]
        return f"no private note contains {text!r}", tuple(notes) or ("no note was posted",)

    def assign(self, expected: Mapping[str, Any]) -> _Problem | None:
        if not self.sandbox.assignments:
            return "the conversation was not assigned", ()
        last = self.sandbox.assignments[-1]
        actual = {"team_id": last.team_id, "assignee_id": last.assignee_id}
        lines = [
            line for key, want in expected.items() for line in _value_diff(key, want, actual[key])
        ]
        return ("the assignment differs", tuple(lines)) if lines else None

    def call(self, expected: Mapping[str, Any]) -> _Problem | None:
        if not self.sandbox.calls:
            return "no webhook call is waiting", ()
        call = self.sandbox.calls[0]
        actual = {"url": call.url, "method": call.method, "body": call.body}
        lines = [
            line
            for key, want in expected.items()
            if key != "headers"
            for line in _value_diff(key, want, actual[key])
        ]
        for name, want in expected.get("headers", {}).items():
            lines.extend(_value_diff(f"headers.{name}", want, call.headers.get(name)))
        return ("the webhook call differs", tuple(lines)) if lines else None

    def conversation_status(self, expected: str) -> _Problem | None:
        if self.sandbox.status == expected:
            return None
        details = (f"expected: {expected}", f"actual:   {self.sandbox.status}")
        return "the conversation's status in Chatwoot differs", details

    def hold(self, expected: str) -> _Problem | None:
        current = lifecycle.current_hold(self.sandbox.lifecycle_state(), self.sandbox.now)
        actual = "none" if current is None else current.value
        if actual == expected:
            return None
        return "the hold differs", (f"expected: {expected}", f"actual:   {actual}")

    # helpers

    def _next(self) -> Said | None:
        if self.cursor >= len(self.turn):
            return None
        said = self.turn[self.cursor]
        self.cursor += 1
        return said

    def _said(self) -> tuple[str, ...]:
        if not self.turn:
            return ("in this turn the bot said nothing",)
        lines = ["in this turn the bot said:"]
        for said in self.turn:
            lines.extend(_bare(f"  | {line}") for line in said.text.splitlines() or [""])
            if said.options:
                lines.append(f"  options: {', '.join(said.options)}")
        return tuple(lines)

    def _state(self) -> tuple[str, ...]:
        session = self.sandbox.session
        if session is None:
            return ("no session has started",)
        return (f"the session is {session.status.value}, at block {session.block!r}",)


_DO: Mapping[str, Callable[[_Run, Any], _Problem | None]] = {
    kind: getattr(_Run, kind) for kind in STEP_KEYS
}


def _shown(label: str, text: str) -> tuple[str, ...]:
    """A text under a label: inline when it is one line, else as an indented block."""
    if "\n" not in text:
        return (f"{label + ':':<9} {text!r}",)
    return (f"{label}:", *(_bare(f"  | {line}") for line in text.splitlines()))


def _text_diff(expected: str, actual: str) -> tuple[str, ...]:
    lines = [*_shown("expected", expected), *_shown("actual", actual)]
    lines.append("diff (- expected, + actual):")
    for line in difflib.ndiff(expected.splitlines(), actual.splitlines()):
        lines.append(_bare("  " + line.rstrip("\n")))
    return tuple(lines)


def _bare(line: str) -> str:
    """A line with nothing but its prefix loses its trailing spaces."""
    return line.rstrip() if line.strip() in ("", "|") else line


def _list_diff(expected: list[str], actual: list[str]) -> tuple[str, ...]:
    return (f"expected: {expected}", f"actual:   {actual}")


def _value_diff(name: str, expected: Any, actual: Any) -> list[str]:
    if _same(expected, actual):
        return []
    return [f"{name}: expected {expected!r}, got {actual!r}"]


def _same(expected: Any, actual: Any) -> bool:
    """Equal as JSON values: true is not 1, 30 is 30.0, tuples are lists."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        return expected.keys() == actual.keys() and all(
            _same(expected[key], actual[key]) for key in expected
        )
    if isinstance(expected, list | tuple) and isinstance(actual, list | tuple):
        return len(expected) == len(actual) and all(
            _same(a, b) for a, b in zip(expected, actual, strict=True)
        )
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return expected == actual
    return type(expected) is type(actual) and bool(expected == actual)
