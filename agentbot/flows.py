"""The flow model: a validated, frozen `Flow` and the small pure helpers around it.

This module does no I/O: it never opens a file, reads the clock or touches the network.
Flow files become a `Flow` in loader.py (with the YAML toolkit of validation.py); the checks
on a flow as a graph are flowchecks.py.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from agentbot.answers import InputType, Matcher
from agentbot.expressions import Expression
from agentbot.hours import Hours
from agentbot.templates import Template

OPEN_NOW = "open_now"  # the condition name that tests the flow's business hours
# A flow's name: a slug (it appears in URLs, logs and the database), at most 64 characters.
FLOW_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

DEFAULT_HANDOFF_WORDS: tuple[str, ...] = ("atendente", "humano", "agent")
DEFAULT_RESTART_WORDS: tuple[str, ...] = ("menu", "reiniciar", "restart")
DEFAULT_RETRY_MESSAGE = "Não entendi. Por favor, escolha uma das opções:"
DEFAULT_HANDOFF_MESSAGE = "Vou te transferir para um atendente."
DEFAULT_RETRIES = 2  # the second miss hands off (or goes to the fallback)
DEFAULT_WEBHOOK_TIMEOUT = 10.0
MAX_WEBHOOK_TIMEOUT = 60.0  # the outbox worker holds the conversation's queue while it waits

MAX_BUTTONS = 10
MAX_BUTTON_TITLE = 20  # WhatsApp reply buttons (3 or fewer items)
MAX_LIST_TITLE = 24  # WhatsApp list rows (more than 3 items)
MAX_VALUE_BYTES = 64  # Telegram's callback_data limit
MAX_REPLY_BUTTONS = 3  # WhatsApp shows up to 3 reply buttons; more become a list

FALLBACK_SLUG = "opcao"  # the value of a button whose text has no ASCII letter or digit


@dataclass(frozen=True, slots=True)
class Button:
    text: str  # the title in the flow's default language
    value: str
    next_block: str | None
    tags: tuple[str, ...]
    aliases: tuple[str, ...] = ()  # other words a customer may use for it (`aliases:`)
    # language -> title, for a flow with `languages:` (the default language's is `text`)
    translations: Mapping[str, str] = field(default_factory=dict)

    @property
    def titles(self) -> tuple[str, ...]:
        """The title in every language, each once."""
        return tuple(dict.fromkeys((self.text, *self.translations.values())))

    def title(self, language: str | None) -> str:
        return self.translations.get(language or "", self.text)


@dataclass(frozen=True, slots=True)
class InputSpec:
    """`input:` free text, checked by type (answers.py) and kept as variable `save_as`."""

    save_as: str
    type: InputType = InputType.TEXT
    pattern: Matcher | None = None
    error_message: Template | None = None
    retries: int = DEFAULT_RETRIES
    error_messages: Mapping[str, Template] = field(default_factory=dict)  # per language


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
class Arm:
    """One way out of a `split:` block: conversations take it in proportion to `weight`."""

    weight: int
    next_block: str
    name: str  # recorded on the session and in the history; default: the next_block


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
    split: tuple[Arm, ...] = ()  # an A/B split: the arm is chosen from the conversation
    # language -> message, for a flow with `languages:` (`message` is the default language's)
    messages: Mapping[str, Template] = field(default_factory=dict)

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
    # language -> text, for a flow with `languages:`
    retries: Mapping[str, str] = field(default_factory=dict)
    handoffs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Inactivity:
    """`inactivity: {after, message, then}`: the session is abandoned after this long in
    silence; `then` is what becomes of the conversation: "handoff" (humans take it), "resolve",
    or None (it stays as it is, and the customer's next message starts over)."""

    after: timedelta
    message: Template | None = None
    then: str | None = None


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
    hours: Hours | None = None  # business hours: conditions may test `open_now`
    # customer messages arriving this close together are answered as one (None: each at once)
    debounce: timedelta | None = None
    # `variables:` names the flow reads without setting them: a start's initial data
    variables: tuple[str, ...] = ()
    # `languages:` the languages of the flow's texts, the default first; empty: one language
    languages: tuple[str, ...] = ()


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


def attachments_variable(save_as: str) -> str:
    """The variable that holds the attachments of an input's answer."""
    return f"{save_as}_attachments"


def set_variables(flow: Flow) -> frozenset[str]:
    """The variables the flow itself sets: inputs' and webhooks' `save_as` (an input's
    attachments too, as `<save_as>_attachments`), `set:` names, and a `split:` block's arm
    (the variable named after the block)."""
    names: set[str] = set()
    for block in flow.blocks.values():
        names.update(block.assign)
        if block.split:
            names.add(block.id)
        if block.input is not None:
            names.add(block.input.save_as)
            names.add(attachments_variable(block.input.save_as))
        if block.webhook is not None and block.webhook.save_as is not None:
            names.add(block.webhook.save_as)
    return frozenset(names)


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

    Labels: a button's text, a condition's `if`, a split arm's name, `else`, `next`, `timeout`
    and `error`.
    """
    found = [(button.text, button.next_block) for button in block.buttons if button.next_block]
    found += [(condition.source, condition.next_block) for condition in block.conditions]
    found += [(arm.name, arm.next_block) for arm in block.split]
    if block.else_block is not None:
        found.append(("else", block.else_block))
    if block.next_block is not None:
        found.append(("next", block.next_block))
    if block.timeout is not None:
        found.append(("timeout", block.timeout.next_block))
    if block.webhook is not None and block.webhook.on_error is not None:
        found.append(("error", block.webhook.on_error))
    return tuple((label, target) for label, target in found if target is not None)
