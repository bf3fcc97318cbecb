"""`agentbot simulate`: chat with a flow in the terminal, the sandbox playing Chatwoot.

Reads the customer's lines from the input stream and writes the bot's side to the output
stream, both handed in (the CLI passes stdin and stdout; tests pass StringIO): no network, no
database, no files. Works the same with piped input and stops cleanly at its end.

- The bot's messages are printed `bot: …`; a question's options are listed under it, numbered
  (`  1) Sim`), as a channel with buttons shows them (a channel without buttons gets the numbered
  list in the text itself). Answer with a title, a value or a number.
- Everything else the bot does is a note in brackets: `[labels +lead_frio]`, `[handoff: …]`,
  `[assign: team 2]`, `[private note]`, `[saved conversation.custom_attributes.email = …]`,
  `[resolved]`, `[webhook POST https://…]`, and when the session stops, `[end: completed]`,
  `[end: handed_off]` or `[end: abandoned]`.
- A webhook call waits for its answer: the fixed `webhook_reply` when one is given, else the
  next input line. An answer is JSON (status 200 with that body), `STATUS [BODY]` (`404`,
  `201 {"id": 7}`), `error [TEXT]` (no answer at all), or an empty line (200, no body).
- Lines starting with `/` are commands: `/wait 30m` moves the clock (timeouts fire),
  `/vars` prints the variables, `/restart` starts a new conversation, `/quit` stops.
- Agents and Chatwoot play their part too, as lifecycle.py decides in the service: `/agent TEXT`
  (an agent answers in public), `/note TEXT` (a private note: `/note /bot`, `/note /pause 30`),
  `/assign` (to an agent), `/label NAME`, `/resolve`, `/snooze`; each prints the conversation's
  status afterwards, the session's and the hold (`[conversation open; session handed_off; hold
  none]`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TextIO

from agentbot import channels, engine, lifecycle
from agentbot.events import Attachment, Contact, Conversation
from agentbot.flows import Flow
from agentbot.sandbox import MEDIA_TYPES, WHATSAPP, Sandbox
from agentbot.validation import DURATION, DURATION_PART, DURATION_UNITS

STATUS_REPLY = re.compile(r"(\d{3})(?:\s+(.*))?", re.DOTALL)
HELP = (
    "commands: /wait 30m, /vars, /restart, /quit; anything else is the customer's message\n"
    "media: /media image CAPTION (audio, video, file), /media location LAT LONG TITLE,\n"
    "/media contact PHONE\n"
    "agents: /agent TEXT, /note TEXT (/note /bot, /note /pause 30), /assign, /label NAME,\n"
    "/resolve, /snooze"
)


@dataclass(frozen=True, slots=True)
class Reply:
    """A webhook's outcome as the user typed it."""

    status: int | None
    data: Any = None
    error: str | None = None


def parse_media(argument: str) -> tuple[Attachment, str] | None:
    """`/media`'s argument as the attachment and caption the customer sends: `image [CAPTION]`
    (or audio, video, file), `location LAT LONG [TITLE]`, `contact PHONE`; None if malformed."""
    kind, _, rest = argument.strip().partition(" ")
    rest = rest.strip()
    if kind == "location":
        latitude, _, more = rest.partition(" ")
        longitude, _, title = more.strip().partition(" ")
        try:
            point = (float(latitude), float(longitude))
        except ValueError:
            return None
        if not all(map(math.isfinite, point)):
            return None
        return Attachment(
            kind, title=title.strip() or None, latitude=point[0], longitude=point[1]
        ), ""
    if kind == "contact":
        return (Attachment(kind, title=rest), "") if rest else None
    return (Attachment(kind), rest) if kind in MEDIA_TYPES else None


def parse_reply(text: str) -> Reply:
    """`{"a": 1}`, `201 {"a": 1}`, `500`, `error timed out`, or empty (200, no body)."""
    text = text.strip()
    if not text:
        return Reply(200)
    word, _, rest = text.partition(" ")
    if word.lower() == "error":
        return Reply(None, None, rest.strip() or "no answer")
    match = STATUS_REPLY.fullmatch(text)
    if match is not None:
        return Reply(int(match[1]), _body(match[2] or ""))
    return Reply(200, _body(text))


def _body(text: str) -> Any:
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text  # a body that is no JSON is kept as text, as the outbox does


def parse_variable(item: str) -> tuple[str, Any]:
    """`k=v` from `--var`: v as JSON when it reads as JSON (30, true, "x", [1]), else as text.

    ValueError when there is no `=`.
    """
    name, sep, raw = item.partition("=")
    if not sep or not name.strip():
        raise ValueError(f"--var {item!r}: expected NAME=VALUE")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return name.strip(), value


@dataclass(slots=True)
class Simulation:
    flow: Flow
    now: datetime
    out: TextIO
    variables: Mapping[str, Any] | None = None  # --var: start at once with them
    contact: Contact = field(default_factory=lambda: Contact(id=1, name="Cliente"))
    channel: str = WHATSAPP
    webhook_reply: Reply | None = None
    sandbox: Sandbox = field(init=False)
    interactive: bool = field(init=False, default=False)  # a person types at a prompt

    def __post_init__(self) -> None:
        self.sandbox = self._fresh()

    def _fresh(self) -> Sandbox:
        conversation = Conversation(
            account_id=1, id=1, inbox_id=1, status="pending", channel=self.channel
        )
        return Sandbox(self.flow, self.now, contact=self.contact, conversation=conversation)

    def run(self, lines: Iterator[str], *, prompt: bool = False) -> int:
        """Chat until the input ends or `/quit`; 0 always (there is nothing to fail)."""
        self.interactive = prompt
        self.note(f"flow {self.flow.name} ({self.flow.title}) on {self.channel}; /help for help")
        self._begin(lines)
        while True:
            if prompt:
                self.out.write("> ")
                self.out.flush()
            line = next(lines, None)
            if line is None:
                if prompt:
                    self.out.write("\n")
                return 0
            text = line.rstrip("\r\n")
            self._echo(text)
            if text.startswith("/"):
                if not self._command(text, lines):
                    return 0
                continue
            if not self._customer(text, (), lines):
                return 0

    def _customer(
        self, text: str, attachments: tuple[Attachment, ...], lines: Iterator[str]
    ) -> bool:
        """The customer's message; False when the input ended while a webhook call waited."""
        if self.sandbox.quiet:
            self.note("quiet: humans (or a pause) hold the conversation; /restart to start over")
            return True
        return self._show(partial(self.sandbox.say, text, attachments), lines)

    def note(self, text: str) -> None:
        """`[text]`, its further lines indented by one space inside the brackets."""
        first, *rest = text.splitlines() or [""]
        self.out.write("\n".join([f"[{first}", *(f" {line}".rstrip() for line in rest)]) + "]\n")

    def _begin(self, lines: Iterator[str]) -> None:
        if self.variables is not None:
            variables = dict(self.variables)
            self._show(lambda: self.sandbox.start(variables), lines)

    def _command(self, text: str, lines: Iterator[str]) -> bool:
        """Carry out a `/command`; False to stop."""
        name, _, argument = text[1:].partition(" ")
        argument = argument.strip()
        if name in ("quit", "exit", "q"):
            return False
        if name == "wait":
            if not DURATION.fullmatch(argument):
                self.note(f"expected a duration like 30s, 10m, 2h or 1d, got {argument!r}")
                return True
            seconds = sum(int(n) * DURATION_UNITS[u] for n, u in DURATION_PART.findall(argument))
            return self._show(lambda: self.sandbox.wait(timedelta(seconds=seconds)), lines)
        if name == "media":
            sent = parse_media(argument)
            if sent is None:
                self.note(HELP)
                return True
            attachment, caption = sent
            return self._customer(caption, (attachment,), lines)
        if name == "vars":
            session = self.sandbox.session
            variables = dict(session.variables) if session is not None else {}
            self.note(json.dumps(variables, ensure_ascii=False, sort_keys=True, default=str))
            return True
        if name == "restart":
            self.sandbox = self._fresh()
            self.note("a new conversation")
            self._begin(lines)
            return True
        act = self._lifecycle(name, argument)
        if act is not None:
            for action in act():
                self._print(action)
            state = self.sandbox.lifecycle_state()
            hold = lifecycle.current_hold(state, self.sandbox.now)
            held = state.session or "none"
            self.note(f"conversation {self.sandbox.status}; session {held}; hold {hold or 'none'}")
            return True
        self.note(HELP)
        return True

    def _lifecycle(
        self, name: str, argument: str
    ) -> Callable[[], tuple[engine.Action, ...]] | None:
        """An agent's or Chatwoot's move, as a sandbox call (None for no such command)."""
        box = self.sandbox
        moves: dict[str, Callable[[], tuple[engine.Action, ...]]] = {
            "agent": box.agent_reply,
            "note": partial(box.note, argument),
            "assign": box.assign,
            "label": partial(box.label, argument or lifecycle.BOT_LABEL),
            "resolve": partial(box.set_status, "resolved"),
            "snooze": partial(box.set_status, "snoozed"),
        }
        return moves.get(name)

    def _show(self, act: Callable[[], tuple[engine.Action, ...]], lines: Iterator[str]) -> bool:
        """Do `act` (a sandbox call), print what the bot did, then answer the webhook calls it
        made; False when the input ended while a call waited for its answer."""
        before = self.sandbox.session.status if self.sandbox.session is not None else None
        actions = act()
        for action in actions:
            self._print(action)
        after = self.sandbox.session
        stopped = after is not None and after.status is not engine.Status.ACTIVE
        if after is not None and stopped and (after.status is not before or actions):
            self.note(f"end: {after.status.value}")
        while self.sandbox.calls:
            if not self.sandbox.waits_for_webhook:
                # a block that hands off or ends calls and moves on: the answer changes nothing
                self.sandbox.calls.clear()
                break
            reply = self.webhook_reply
            if reply is None:
                self.note("webhook answer? JSON, STATUS [JSON], error [TEXT], or empty for 200")
                line = next(lines, None)
                if line is None:
                    return False
                self._echo(line.rstrip("\r\n"))
                reply = parse_reply(line)
            answer = partial(
                self.sandbox.answer, status=reply.status, data=reply.data, error=reply.error
            )
            if not self._show(answer, lines):
                return False
        return True

    def _print(self, action: engine.Action) -> None:
        match action:
            case engine.SendText() | engine.SendOptions():
                # a channel without buttons has the options numbered in the text already
                buttons = channels.shows_buttons(self.sandbox.conversation.channel)
                for said in self.sandbox.shown(action):
                    self._say(said.text)
                    if buttons:
                        for number, title in enumerate(said.options, start=1):
                            self.out.write(f"  {number}) {title}\n")
            case engine.AddLabels(labels=labels):
                self.note("labels " + " ".join(f"+{label}" for label in labels))
            case engine.Handoff(reason=reason):
                self.note(f"handoff: {reason}")
            case engine.Assign(team_id=team, assignee_id=agent):
                parts = [f"team {team}"] * (team is not None) + [f"agent {agent}"] * (
                    agent is not None
                )
                self.note("assign: " + ", ".join(parts))
            case engine.PrivateNote(text=text):
                self.note(f"private note:\n{text}")
            case engine.Resolve():
                self.note("resolved")
            case engine.BackToBot(reason=reason):
                self.note(f"pending again: {reason}")
            case engine.SaveAttribute(scope=scope, key=key, value=value):
                shown = json.dumps(value, ensure_ascii=False, default=str)
                self.note(f"saved {scope}.custom_attributes.{key} = {shown}")
            case engine.CallWebhook(method=method, url=url, body=body):
                text = f"webhook {method} {url}"
                if body is not None:
                    text += " " + json.dumps(body, ensure_ascii=False, default=str)
                self.note(text)

    def _say(self, text: str) -> None:
        lines = text.splitlines() or [""]
        self.out.write(f"bot: {lines[0]}\n")
        for line in lines[1:]:
            self.out.write(f"     {line}".rstrip() + "\n")

    def _echo(self, text: str) -> None:
        """Piped input is not on the screen: repeat it so that the transcript reads."""
        if not self.interactive:
            self.out.write(f"> {text}\n")
