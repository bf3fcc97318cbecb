"""A fake Chatwoot 4.15.1 for the bot's tests: state, a Starlette app, and a real HTTP server.

`FakeChatwoot` holds accounts, conversations, contacts, inboxes, users and agent bots, and serves
the parts of `/api/v1/accounts/{account_id}` the bot uses, with the behaviour described in
docs/chatwoot.md (labels and custom attributes are replaced, not merged; the bot allow-list;
the 200-per-minute flood guard; the `input_select` item check). Every request is also checked
against Chatwoot's own OpenAPI document: an unknown path or a body that does not match the schema
is answered with an error and recorded in `FakeChatwoot.violations`, so a test can end with
`assert fake.violations == []`.

`FakeChatwootServer` serves the app over real HTTP on 127.0.0.1 and can be stopped and started
again on the same port, which is how tests make Chatwoot go down and come back.

It must not send webhooks to the bot: tests post webhook payloads themselves.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import anyio
import httpx
import liquid
import uvicorn
from jsonschema import Draft202012Validator  # type: ignore[import-untyped, unused-ignore]
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

OPENAPI_ENV: Final = "CHATWOOT_OPENAPI"
# Chatwoot's own OpenAPI document (swagger/swagger.json of the release the fake follows).
VENDORED_OPENAPI_PATH: Final = Path(__file__).resolve().parent / "samples" / "chatwoot-openapi.json"

ACCOUNT_PREFIX: Final = "/api/v1/accounts/{account_id}"

# AccessTokenAuthHelper::BOT_ACCESSIBLE_ENDPOINTS in 4.15.1 (docs/chatwoot.md §3), as OpenAPI
# operations under ACCOUNT_PREFIX. The OpenAPI document lists `agentBotApiKey` security on some
# of these only; docs/chatwoot.md wins, and the document's `security` is not used.
BOT_ACCESSIBLE: Final[frozenset[tuple[str, str]]] = frozenset(
    {
        ("POST", "/conversations"),
        ("PATCH", "/conversations/{conversation_id}"),
        ("POST", "/conversations/{conversation_id}/toggle_status"),
        ("POST", "/conversations/{conversation_id}/toggle_priority"),
        ("POST", "/conversations/{conversation_id}/toggle_typing_status"),
        ("POST", "/conversations/{conversation_id}/custom_attributes"),
        ("POST", "/conversations/{conversation_id}/messages"),
        ("POST", "/conversations/{conversation_id}/assignments"),
    }
)
# Allowed for bots from 4.14.2 only (`labels_for_bots=False` models an older Chatwoot).
BOT_ACCESSIBLE_SINCE_4_14_2: Final[frozenset[tuple[str, str]]] = frozenset(
    {
        ("GET", "/conversations/{conversation_id}"),
        ("GET", "/conversations/{conversation_id}/labels"),
        ("POST", "/conversations/{conversation_id}/labels"),
    }
)

# ContentAttributeValidator: allowed keys of `content_attributes.items[]` (docs/chatwoot.md §4).
ITEM_KEYS: Final[Mapping[str, frozenset[str]]] = {
    "input_select": frozenset({"title", "value"}),
    "cards": frozenset({"title", "description", "media_url", "actions"}),
    "form": frozenset(
        {
            "type",
            "placeholder",
            "label",
            "name",
            "options",
            "default",
            "required",
            "pattern",
            "title",
            "pattern_error",
        }
    ),
    "article": frozenset({"title", "description", "link"}),
}
CARD_ACTION_KEYS: Final = frozenset({"text", "type", "payload", "uri"})

MESSAGE_TYPES: Final[Mapping[str, int]] = {
    "incoming": 0,
    "outgoing": 1,
    "activity": 2,
    "template": 3,
}

NOT_FOUND: Final = {"error": "Resource could not be found"}
SIGN_IN: Final = {"errors": ["You need to sign in or sign up before continuing."]}
INVALID_TOKEN: Final = {"error": "Invalid Access Token"}
NOT_FOR_BOTS: Final = {"error": "Access to this endpoint is not authorized for bots"}
NOT_YOUR_ACCOUNT: Final = {"error": "You are not authorized to access this account"}
# RequestExceptionHandler: a Pundit refusal, e.g. an agent creating an agent bot (admins only).
NOT_ALLOWED: Final = {"error": "You are not authorized to do this action"}

# Served outside `ACCOUNT_PREFIX`. `GET /api` (ApiController#index: version and service health,
# no authentication) is not in the OpenAPI document; `GET /api/v1/profile` is.
SERVER_INFO_PATH: Final = "/api"
PROFILE_PATH: Final = "/api/v1/profile"


class OpenApiNotFound(FileNotFoundError):
    """Chatwoot's OpenAPI document is missing, so requests cannot be checked against it."""


# ---------------------------------------------------------------------------------------------
# The OpenAPI document
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DocPatch:
    """One place where docs/chatwoot.md (read from the Rails source) overrules the OpenAPI
    document."""

    pointer: tuple[str, ...]
    value: Any  # REMOVE deletes the key
    reason: str


REMOVE: Final = object()


def _op(path: str, method: str, *rest: str) -> tuple[str, ...]:
    return ("paths", ACCOUNT_PREFIX + path, method, *rest)


_BODY = ("requestBody", "content", "application/json", "schema")

DOC_PATCHES: Final[tuple[DocPatch, ...]] = (
    DocPatch(
        _op("/conversations/{conversation_id}/toggle_status", "post", *_BODY, "required"),
        REMOVE,
        "docs/chatwoot.md §4: with no `status`, toggle_status toggles"
        " (open -> resolved, else open)",
    ),
    DocPatch(
        _op("/inboxes/{id}/set_agent_bot", "post", *_BODY),
        {
            "type": "object",
            "properties": {"agent_bot": {"type": ["integer", "null"]}},
        },
        "docs/chatwoot.md §4: sending no `agent_bot` (or null) disconnects the inbox's bot",
    ),
    DocPatch(
        ("components", "schemas", "agent_bot_create_update_payload", "properties", "bot_type"),
        {"enum": [0, "webhook"]},
        "docs/chatwoot.md §4: bot_type is the Rails enum;"
        " 'webhook' (or its value 0) is the only one",
    ),
)

# Rails `resources` routes both PATCH and PUT to `update`; the document lists only PUT.
METHOD_ALIASES: Final[Mapping[tuple[str, str], str]] = {
    ("PATCH", ACCOUNT_PREFIX + "/contacts/{id}"): "PUT",
}


def locate_openapi(
    environ: Mapping[str, str] = os.environ,
    vendored: Path | None = VENDORED_OPENAPI_PATH,
) -> Path:
    """The file named by CHATWOOT_OPENAPI (to check against another Chatwoot release), else
    the copy in tests/samples; never silently nothing."""
    named = environ.get(OPENAPI_ENV, "")
    if named and Path(named).is_file():
        return Path(named)
    if vendored is not None and vendored.is_file():
        return vendored
    raise OpenApiNotFound(
        "Chatwoot's OpenAPI document was not found"
        + (f" at {OPENAPI_ENV}='{named}'" if named else f" ({OPENAPI_ENV} is not set)")
        + f" nor in tests/samples: set {OPENAPI_ENV} to the file's path"
    )


@dataclass(frozen=True, slots=True)
class Operation:
    """One method+path of the OpenAPI document."""

    method: str  # upper case, as requested (an alias keeps the requested method)
    template: str  # the document's path key, e.g. /api/v1/accounts/{account_id}/labels
    operation_id: str
    path_params: Mapping[str, str]  # name -> JSON type ("integer", "number", "string")
    has_body: bool
    body_required: bool
    body_pointer: str  # JSON pointer to the requestBody schema inside the document


@dataclass(frozen=True, slots=True)
class _Template:
    template: str
    regex: re.Pattern[str]
    literal_segments: int


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def _pointer(parts: Iterable[str]) -> str:
    return "".join("/" + _escape(p) for p in parts)


class OpenApi:
    """Chatwoot's OpenAPI 3.1 document (with DOC_PATCHES applied), used to check requests."""

    BASE_URI: Final = "urn:chatwoot-openapi"

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = self._patched(document)
        self._registry: Registry[Any] = Registry().with_resource(
            self.BASE_URI, DRAFT202012.create_resource(self.document)
        )
        self._validators: dict[str, Any] = {}
        templates = []
        for template in self.document["paths"]:
            pattern = "".join(
                f"(?P<{seg[1:-1]}>[^/]+)" if seg.startswith("{") else re.escape(seg)
                for seg in re.split(r"(\{[^}/]+\})", template)
                if seg
            )
            literal = sum(1 for seg in template.split("/") if seg and not seg.startswith("{"))
            templates.append(_Template(template, re.compile(pattern + r"\Z"), literal))
        # A literal segment beats a parameter: /contacts/search before /contacts/{id}.
        self._templates = sorted(templates, key=lambda t: -t.literal_segments)

    @classmethod
    def load(cls, path: Path) -> OpenApi:
        return _load_openapi(path.resolve())

    @staticmethod
    def _patched(document: Mapping[str, Any]) -> dict[str, Any]:
        patched: dict[str, Any] = copy.deepcopy(dict(document))
        for patch in DOC_PATCHES:
            parent: Any = patched
            for part in patch.pointer[:-1]:
                parent = parent[part]
            if patch.value is REMOVE:
                del parent[patch.pointer[-1]]
            else:
                parent[patch.pointer[-1]] = copy.deepcopy(patch.value)
        return patched

    def match(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        """The operation for `method path` and its raw path parameters, or None."""
        for tmpl in self._templates:
            found = tmpl.regex.match(path)
            if found is None:
                continue
            methods = self.document["paths"][tmpl.template]
            doc_method = method.lower()
            if doc_method not in methods:
                alias = METHOD_ALIASES.get((method, tmpl.template))
                if alias is None:
                    continue
                doc_method = alias.lower()
            return self._operation(method, tmpl.template, doc_method), found.groupdict()
        return None

    def _operation(self, method: str, template: str, doc_method: str) -> Operation:
        path_item = self.document["paths"][template]
        op = path_item[doc_method]
        params: dict[str, str] = {}
        for param in [*path_item.get("parameters", []), *op.get("parameters", [])]:
            resolved = self._resolve(param)
            if resolved.get("in") == "path":
                params[resolved["name"]] = self._resolve(resolved.get("schema", {})).get(
                    "type", "string"
                )
        body = op.get("requestBody")
        return Operation(
            method=method,
            template=template,
            operation_id=op.get("operationId", f"{doc_method} {template}"),
            path_params=params,
            has_body=body is not None,
            body_required=bool(body and body.get("required")),
            body_pointer=_pointer(("paths", template, doc_method, *_BODY)),
        )

    def _resolve(self, node: Mapping[str, Any]) -> Mapping[str, Any]:
        while "$ref" in node:
            target: Any = self.document
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            node = target
        return node

    def path_param_errors(self, op: Operation, raw: Mapping[str, str]) -> list[str]:
        errors = []
        for name, kind in op.path_params.items():
            value = raw.get(name, "")
            if kind in ("integer", "number") and not re.fullmatch(r"-?\d+", value):
                errors.append(f"path parameter {name}='{value}' is not an {kind}")
        return errors

    def body_errors(self, op: Operation, body: Any) -> list[str]:
        """Where the JSON `body` breaks the operation's requestBody schema (empty if it fits)."""
        validator = self._validators.get(op.body_pointer)
        if validator is None:
            validator = Draft202012Validator(
                {"$ref": f"{self.BASE_URI}#{op.body_pointer}"}, registry=self._registry
            )
            self._validators[op.body_pointer] = validator
        return [
            f"{'/'.join(map(str, error.absolute_path)) or '(body)'}: {error.message}"
            for error in sorted(validator.iter_errors(body), key=lambda e: list(map(str, e.path)))
        ]


@functools.cache
def _load_openapi(path: Path) -> OpenApi:
    if not path.is_file():
        raise OpenApiNotFound(f"Chatwoot's OpenAPI document '{path}' does not exist")
    return OpenApi(json.loads(path.read_text(encoding="utf-8")))


# ---------------------------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the fake received (also those answered by `fail_next` or with an error)."""

    method: str
    path: str
    query: str
    json: Any  # the parsed JSON body, or None
    headers: Mapping[str, str]  # lower-case names
    at: float  # FakeChatwoot.now() when it arrived
    status: int | None  # the status answered; None while the answer is pending (a `delay`)


@dataclass(slots=True)
class _Received:
    request: RecordedRequest
    status: int | None = None


@dataclass(frozen=True, slots=True)
class _Message:
    """A message created through the API, as Chatwoot stored it."""

    id: int
    account_id: int
    conversation_id: int  # display id
    inbox_id: int
    content: str | None
    message_type: str  # "outgoing", "incoming", ...
    content_type: str
    content_attributes: dict[str, Any]
    private: bool
    source_id: str | None
    echo_id: str | None
    template_params: dict[str, Any] | None
    sender: dict[str, Any] | None  # push_event_data of the sender
    posted_content: str | None  # `content` as the client posted it, before Liquid
    sent_to_channel: bool  # False for private notes and for messages that carry a source_id
    created_at: int  # wall-clock epoch seconds
    at: float  # FakeChatwoot.now() when it was created; the flood guard counts with this


@dataclass(slots=True)
class _User:
    id: int
    name: str
    email: str
    access_token: str
    role: str = "administrator"


@dataclass(slots=True)
class _AgentBot:
    id: int
    name: str
    account_id: int | None
    access_token: str
    secret: str
    description: str = ""
    outgoing_url: str = ""
    bot_config: dict[str, Any] = field(default_factory=dict)
    thumbnail: str = ""


@dataclass(slots=True)
class _Inbox:
    id: int
    name: str
    channel_type: str
    agent_bot_id: int | None = None


@dataclass(slots=True)
class _Conversation:
    display_id: int
    account_id: int
    inbox_id: int
    contact_id: int
    status: str
    labels: list[str]
    custom_attributes: dict[str, Any]
    created_at: int
    assignee_user_id: int | None = None
    assignee_bot_id: int | None = None
    team_id: int | None = None
    priority: str | None = None
    snoozed_until: int | None = None
    typing_status: str | None = None
    sla_policy_id: int | None = None
    can_reply: bool = True
    messages: list[_Message] = field(default_factory=list)


@dataclass(slots=True)
class _Account:
    id: int
    name: str
    member_user_ids: set[int]
    conversations: dict[int, _Conversation] = field(default_factory=dict)
    contacts: dict[int, dict[str, Any]] = field(default_factory=dict)
    inboxes: dict[int, _Inbox] = field(default_factory=dict)
    teams: dict[int, dict[str, Any]] = field(default_factory=dict)
    # ContactInbox rows: (contact id, inbox id) -> source_id.
    contact_inboxes: dict[tuple[int, int], str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Actor:
    kind: Literal["user", "bot"]
    id: int


@dataclass(frozen=True, slots=True)
class _Call:
    op: Operation
    suffix: str  # the operation's template after ACCOUNT_PREFIX
    account: _Account
    params: Mapping[str, str]
    body: Any
    actor: _Actor


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    body: Any = None
    empty: bool = False  # answer with no body at all (Rails `head :ok`)
    headers: Mapping[str, str] | None = None


class _HttpError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status, body)
        self.reply = _Reply(status, body)


@dataclass(slots=True)
class _Failure:
    remaining: int
    status: int
    body: Any
    headers: Mapping[str, str]


def _iso(epoch: float) -> str:
    return (
        datetime.fromtimestamp(epoch, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _ruby_symbols(keys: Iterable[str]) -> str:
    """Ruby's `inspect` of an array of symbols, as in Chatwoot's validation message."""
    return (
        "["
        + ", ".join(f":{k}" if re.fullmatch(r"[A-Za-z_]\w*", k) else f':"{k}"' for k in keys)
        + "]"
    )


class FakeChatwoot:
    """Chatwoot 4.15.1 as the bot sees it, in memory. Thread-safe; accessors return copies.

    The default state: account `account_id` ("Acme Support") with inbox `inbox_id` (WhatsApp),
    connected to agent bot `bot_id` whose access token is `bot_token`, and an administrator user
    `user_id` whose access token is `user_token`. `version` is what `GET /api` reports.
    """

    def __init__(
        self,
        *,
        account_id: int = 1,
        inbox_id: int = 1,
        bot_id: int = 1,
        user_id: int = 1,
        bot_token: str = "bot-token",
        user_token: str = "user-token",
        bot_secret: str = "bot-secret",
        channel_type: str = "Channel::Whatsapp",
        labels_for_bots: bool = True,
        autocreate: bool = True,
        message_limit: int = 200,
        delay: float = 0.0,
        now: Callable[[], float] = time.monotonic,
        openapi: Path | None = None,
        version: str = "4.15.1",
    ) -> None:
        self.api = OpenApi.load(openapi if openapi is not None else locate_openapi())
        self.account_id = account_id
        self.version = version
        self.bot_token = bot_token
        self.user_token = user_token
        self.labels_for_bots = labels_for_bots
        self.autocreate = autocreate
        self.message_limit = message_limit
        self.now = now
        self.delay = delay  # seconds to wait before answering each request; settable any time
        # Path fragment -> seconds: e.g. {"/conversations/7/": 3.0} makes one conversation slow.
        self.slow_paths: dict[str, float] = {}
        # Seconds to wait after acting, before answering: the answer may be lost on the way
        # while the message exists (an attempt of unknown outcome). Settable any time.
        self.answer_delay = 0.0
        # Path fragment -> status answered without acting, e.g. {"/conversations/7/messages":
        # 422} refuses one conversation's messages (a channel that rejects them).
        self.refused_paths: dict[str, int] = {}

        self._lock = threading.Lock()
        self._requests: list[_Received] = []
        self._violations: list[str] = []
        self._failures: list[_Failure] = []
        self._next_ids: dict[str, int] = {"message": 1, "contact": 1, "bot": bot_id + 1}
        self._users = {user_id: _User(user_id, "Admin", "admin@example.com", user_token)}
        self._bots = {
            bot_id: _AgentBot(bot_id, "Bot", account_id, bot_token, bot_secret, thumbnail="")
        }
        self._accounts: dict[int, _Account] = {}
        self.add_account(account_id, name="Acme Support")
        self.add_inbox(
            account_id, inbox_id, name="WhatsApp", channel_type=channel_type, agent_bot_id=bot_id
        )
        self._handlers = self._handler_table()
        self._check_tables()
        methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
        self.app = Starlette(routes=[Route("/{path:path}", self._endpoint, methods=methods)])

    # --- seeding -----------------------------------------------------------------------------

    def add_account(self, account_id: int, *, name: str | None = None, member: bool = True) -> None:
        """Create an account; `member=False` makes the user token a stranger to it."""
        with self._lock:
            self._add_account(account_id, name=name, member=member)

    def _add_account(self, account_id: int, *, name: str | None, member: bool) -> _Account:
        account = self._accounts.get(account_id)
        if account is None:
            members = set(self._users) if member else set()
            account = _Account(account_id, name or f"Account {account_id}", members)
            self._accounts[account_id] = account
        return account

    def add_inbox(
        self,
        account_id: int,
        inbox_id: int,
        *,
        name: str = "Inbox",
        channel_type: str = "Channel::Api",
        agent_bot_id: int | None = None,
    ) -> None:
        with self._lock:
            account = self._add_account(account_id, name=None, member=True)
            account.inboxes[inbox_id] = _Inbox(inbox_id, name, channel_type, agent_bot_id)

    def add_contact(
        self,
        account_id: int,
        contact_id: int,
        *,
        name: str = "Maria Silva",
        phone_number: str | None = None,
        custom_attributes: Mapping[str, Any] | None = None,
    ) -> None:
        with self._lock:
            account = self._add_account(account_id, name=None, member=True)
            account.contacts[contact_id] = self._new_contact(
                contact_id, name, phone_number, custom_attributes
            )
            self._next_ids["contact"] = max(self._next_ids["contact"], contact_id + 1)

    def add_contact_inbox(
        self, account_id: int, contact_id: int, inbox_id: int, source_id: str | None = None
    ) -> None:
        """A ContactInbox: the contact can be written to in that inbox (`source_id`)."""
        with self._lock:
            account = self._add_account(account_id, name=None, member=True)
            account.contact_inboxes[(contact_id, inbox_id)] = (
                source_id or f"src-{contact_id}-{inbox_id}"
            )

    def add_agent(
        self, user_id: int, *, name: str = "Agent", access_token: str | None = None
    ) -> None:
        """A human agent, member of every account, that conversations can be assigned to."""
        with self._lock:
            token = access_token or secrets.token_urlsafe(18)
            self._users[user_id] = _User(
                user_id, name, f"agent{user_id}@example.com", token, role="agent"
            )
            for account in self._accounts.values():
                account.member_user_ids.add(user_id)

    def add_agent_bot(
        self,
        *,
        name: str = "Bot",
        account_id: int | None = None,
        outgoing_url: str = "",
    ) -> int:
        """An agent bot of `account_id` (default the first account); returns its id. Its access
        token and secret are random: read them with `agent_bots()`."""
        with self._lock:
            bot = _AgentBot(
                id=self._take_id("bot"),
                name=name,
                account_id=account_id or self.account_id,
                access_token=secrets.token_urlsafe(18),
                secret=secrets.token_urlsafe(18),
                outgoing_url=outgoing_url,
            )
            self._bots[bot.id] = bot
            return bot.id

    def add_team(self, account_id: int, team_id: int, *, name: str = "Support") -> None:
        with self._lock:
            account = self._add_account(account_id, name=None, member=True)
            account.teams[team_id] = {
                "id": team_id,
                "name": name,
                "description": "",
                "allow_auto_assign": True,
                "account_id": account_id,
                "is_member": False,
            }

    def add_conversation(
        self,
        account_id: int,
        conversation_id: int,
        status: str = "pending",
        labels: Iterable[str] = (),
        custom_attributes: Mapping[str, Any] | None = None,
        *,
        inbox_id: int | None = None,
        contact_id: int | None = None,
        priority: str | None = None,
        can_reply: bool = True,
    ) -> None:
        """Create (or reset) conversation `conversation_id` (a display id) in `account_id`.

        `can_reply=False`: a WhatsApp conversation outside the 24-hour window.
        """
        with self._lock:
            account = self._add_account(account_id, name=None, member=True)
            created = self._create_conversation(
                account,
                conversation_id,
                status=status,
                labels=list(dict.fromkeys(labels)),
                custom_attributes=dict(custom_attributes or {}),
                inbox_id=inbox_id,
                contact_id=contact_id,
                priority=priority,
            )
            created.can_reply = can_reply

    def _create_conversation(
        self,
        account: _Account,
        display_id: int,
        *,
        status: str = "pending",
        labels: list[str] | None = None,
        custom_attributes: dict[str, Any] | None = None,
        inbox_id: int | None = None,
        contact_id: int | None = None,
        priority: str | None = None,
    ) -> _Conversation:
        if inbox_id is None:
            if not account.inboxes:
                account.inboxes[1] = _Inbox(1, "Inbox", "Channel::Api")
            inbox_id = min(account.inboxes)
        elif inbox_id not in account.inboxes:
            account.inboxes[inbox_id] = _Inbox(inbox_id, "Inbox", "Channel::Api")
        if contact_id is None:
            contact_id = self._next_ids["contact"]
        if contact_id not in account.contacts:
            account.contacts[contact_id] = self._new_contact(contact_id, "Maria Silva", None, None)
        self._next_ids["contact"] = max(self._next_ids["contact"], contact_id + 1)
        conversation = _Conversation(
            display_id=display_id,
            account_id=account.id,
            inbox_id=inbox_id,
            contact_id=contact_id,
            status=status,
            labels=labels or [],
            custom_attributes=custom_attributes or {},
            created_at=int(time.time()),
            priority=priority,
        )
        account.conversations[display_id] = conversation
        account.contact_inboxes.setdefault((contact_id, inbox_id), f"src-{contact_id}-{inbox_id}")
        return conversation

    @staticmethod
    def _new_contact(
        contact_id: int,
        name: str,
        phone_number: str | None,
        custom_attributes: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        return {
            "id": contact_id,
            "name": name,
            "email": None,
            "phone_number": phone_number,
            "identifier": None,
            "thumbnail": "",
            "blocked": False,
            "availability_status": "offline",
            "additional_attributes": {},
            "custom_attributes": dict(custom_attributes or {}),
            "created_at": int(time.time()),
            "last_activity_at": None,
        }

    # --- failure injection --------------------------------------------------------------------

    def fail_next(
        self,
        n: int = 1,
        status: int = 500,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer the next `n` requests with `status` (and `body`, `headers`) without acting.

        `body` is JSON, or str/bytes sent as is; by default Rails' 500 body. Calls queue up.
        """
        if n <= 0:
            return
        if body is None:
            body = {"status": status, "error": "Internal Server Error"}
        with self._lock:
            self._failures.append(_Failure(n, status, body, dict(headers or {})))

    # --- accessors ----------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [replace(r.request, status=r.status) for r in self._requests]

    @property
    def violations(self) -> list[str]:
        """Requests that broke the OpenAPI document, or that the fake cannot model."""
        with self._lock:
            return list(self._violations)

    def clear_violations(self) -> None:
        with self._lock:
            self._violations.clear()

    def _get(self, conversation_id: int, account_id: int | None) -> _Conversation:
        """The conversation; with `autocreate` an unknown one is created, as a request would."""
        account_id = self.account_id if account_id is None else account_id
        account = self._accounts.get(account_id)
        if account is not None and conversation_id in account.conversations:
            return account.conversations[conversation_id]
        if not self.autocreate:
            raise KeyError(f"no conversation {conversation_id} in account {account_id}")
        account = self._add_account(account_id, name=None, member=True)
        return self._create_conversation(account, conversation_id)

    def messages(
        self, conversation_id: int, *, account_id: int | None = None
    ) -> list[dict[str, Any]]:
        """Messages created in the conversation, oldest first, as the API rendered them.

        Three keys are the fake's own: `sent_to_channel` (False for private notes and for
        messages that carry a `source_id`), `template_params` (as sent, or None) and
        `posted_content` (the content as posted; `content` is what Chatwoot's Liquid made of it).
        """
        with self._lock:
            return [
                {
                    **self._message_json(m),
                    "sent_to_channel": m.sent_to_channel,
                    "template_params": copy.deepcopy(m.template_params),
                    "posted_content": m.posted_content,
                }
                for m in self._get(conversation_id, account_id).messages
            ]

    def labels(self, conversation_id: int, *, account_id: int | None = None) -> list[str]:
        with self._lock:
            return list(self._get(conversation_id, account_id).labels)

    def status(self, conversation_id: int, *, account_id: int | None = None) -> str:
        with self._lock:
            return self._get(conversation_id, account_id).status

    def custom_attributes(
        self, conversation_id: int, *, account_id: int | None = None
    ) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._get(conversation_id, account_id).custom_attributes)

    def assignee(
        self, conversation_id: int, *, account_id: int | None = None
    ) -> tuple[str, int] | None:
        """("User", id) or ("AgentBot", id), or None."""
        with self._lock:
            conversation = self._get(conversation_id, account_id)
            if conversation.assignee_user_id is not None:
                return ("User", conversation.assignee_user_id)
            if conversation.assignee_bot_id is not None:
                return ("AgentBot", conversation.assignee_bot_id)
            return None

    def team(self, conversation_id: int, *, account_id: int | None = None) -> int | None:
        with self._lock:
            return self._get(conversation_id, account_id).team_id

    def priority(self, conversation_id: int, *, account_id: int | None = None) -> str | None:
        with self._lock:
            return self._get(conversation_id, account_id).priority

    def typing_status(self, conversation_id: int, *, account_id: int | None = None) -> str | None:
        with self._lock:
            return self._get(conversation_id, account_id).typing_status

    def conversation(
        self, conversation_id: int, *, account_id: int | None = None
    ) -> dict[str, Any]:
        """The conversation as `GET /conversations/{id}` renders it."""
        with self._lock:
            conversation = self._get(conversation_id, account_id)
            return self._conversation_json(self._accounts[conversation.account_id], conversation)

    def contact(self, contact_id: int, *, account_id: int | None = None) -> dict[str, Any]:
        with self._lock:
            account = self._accounts[self.account_id if account_id is None else account_id]
            return copy.deepcopy(account.contacts[contact_id])

    def agent_bots(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._bot_json(bot) for bot in self._bots.values()]

    def inbox_agent_bot(self, inbox_id: int, *, account_id: int | None = None) -> int | None:
        with self._lock:
            account = self._accounts[self.account_id if account_id is None else account_id]
            return account.inboxes[inbox_id].agent_bot_id

    def transport(self) -> httpx.ASGITransport:
        """An in-process transport for `httpx.AsyncClient` (no server, no port)."""
        return httpx.ASGITransport(app=self.app)

    # --- the ASGI endpoint --------------------------------------------------------------------

    async def _endpoint(self, request: Request) -> Response:
        raw = await request.body()
        body: Any = None
        bad_json = False
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError:
                bad_json = True
        headers = {k.lower(): v for k, v in request.headers.items()}
        with self._lock:
            received = _Received(
                RecordedRequest(
                    request.method,
                    request.url.path,
                    request.url.query,
                    body,
                    headers,
                    self.now(),
                    None,
                )
            )
            self._requests.append(received)
            delay = self.delay
            for marker, seconds in self.slow_paths.items():
                if marker in request.url.path:
                    delay = max(delay, seconds)
            failure = None
            for marker, status in self.refused_paths.items():
                if marker in request.url.path:
                    failure = _Failure(1, status, {"error": "Validation failed: refused"}, {})
            if failure is None and self._failures:
                failure = self._failures[0]
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._failures.pop(0)
        if delay > 0:
            await anyio.sleep(delay)
        with self._lock:
            if failure is not None:
                reply = _Reply(failure.status, failure.body, headers=failure.headers)
            else:
                reply = self._handle(request.method, request.url.path, body, bad_json, raw, headers)
            received.status = reply.status
            answer_delay = self.answer_delay
        if answer_delay > 0:
            await anyio.sleep(answer_delay)
        return self._response(reply)

    @staticmethod
    def _response(reply: _Reply) -> Response:
        headers = dict(reply.headers or {})
        if reply.empty:
            return Response(status_code=reply.status, headers=headers)
        if isinstance(reply.body, str | bytes):
            return Response(reply.body, status_code=reply.status, headers=headers)
        return JSONResponse(reply.body, status_code=reply.status, headers=headers)

    def _violation(self, method: str, path: str, problem: str) -> None:
        self._violations.append(f"{method} {path}: {problem}")

    def _handle(
        self,
        method: str,
        path: str,
        body: Any,
        bad_json: bool,
        raw: bytes,
        headers: Mapping[str, str],
    ) -> _Reply:
        if (method, path) == ("GET", SERVER_INFO_PATH):
            return _Reply(200, self._server_info())
        matched = self.api.match(method, path)
        if matched is None:
            self._violation(method, path, "no such operation in Chatwoot's OpenAPI document")
            return _Reply(404, {"error": f'No route matches [{method}] "{path}"'})
        op, raw_params = matched
        param_errors = self.api.path_param_errors(op, raw_params)
        if param_errors:
            for problem in param_errors:
                self._violation(method, path, problem)
            return _Reply(404, NOT_FOUND)

        body_problems: list[str] = []
        if op.has_body:
            if bad_json:
                body_problems = ["the body is not JSON"]
            elif not raw.strip():
                body_problems = ["the operation requires a JSON body"] if op.body_required else []
            else:
                body_problems = self.api.body_errors(op, body)
        for problem in body_problems:
            self._violation(method, path, f"{op.operation_id}: {problem}")
        if bad_json:
            return _Reply(400, {"error": "There was an error parsing the JSON body"})

        if (method, op.template) == ("GET", PROFILE_PATH):
            return self._profile(headers)
        if not op.template.startswith(ACCOUNT_PREFIX + "/") and op.template != ACCOUNT_PREFIX:
            self._violation(method, path, f"{op.operation_id} is not implemented by FakeChatwoot")
            return _Reply(501, {"error": "not implemented by FakeChatwoot"})
        suffix = op.template.removeprefix(ACCOUNT_PREFIX)

        # Api::BaseController: token, then the bot allow-list, then the account.
        actor, refusal = self._authenticate(headers)
        if refusal is not None:
            return refusal
        assert actor is not None
        if actor.kind == "bot" and not self._bot_may(method, suffix):
            return _Reply(401, NOT_FOR_BOTS)
        account = self._accounts.get(int(raw_params["account_id"]))
        if account is None:
            return _Reply(404, NOT_FOUND)
        if not self._may_enter(actor, account):
            return _Reply(401, NOT_YOUR_ACCOUNT)

        if body_problems:
            return _Reply(
                422,
                {
                    "error": "the request does not match Chatwoot's OpenAPI document",
                    "problems": body_problems,
                },
            )
        handler = self._handlers.get((method, suffix))
        if handler is None:
            self._violation(method, path, f"{op.operation_id} is not implemented by FakeChatwoot")
            return _Reply(501, {"error": "not implemented by FakeChatwoot"})
        call = _Call(op, suffix, account, raw_params, body if body is not None else {}, actor)
        try:
            return handler(call)
        except _HttpError as error:
            return error.reply

    def _authenticate(self, headers: Mapping[str, str]) -> tuple[_Actor | None, _Reply | None]:
        """The actor of the request's token, or the 401 Chatwoot answers."""
        token = headers.get("api_access_token") or headers.get("api-access-token") or ""
        if not token.strip():
            return None, _Reply(401, SIGN_IN)
        actor = self._actor(token)
        if actor is None:
            return None, _Reply(401, INVALID_TOKEN)
        return actor, None

    def _server_info(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "timestamp": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            "queue_services": "ok",
            "data_services": "ok",
        }

    def _profile(self, headers: Mapping[str, str]) -> _Reply:
        # ProfilesController is an Api::BaseController outside the bot allow-list.
        actor, refusal = self._authenticate(headers)
        if refusal is not None:
            return refusal
        assert actor is not None
        if actor.kind == "bot":
            return _Reply(401, NOT_FOR_BOTS)
        user = self._users[actor.id]
        accounts = sorted(
            (a for a in self._accounts.values() if user.id in a.member_user_ids),
            key=lambda a: a.id,
        )
        # app/views/api/v1/models/_user.json.jbuilder
        return _Reply(
            200,
            {
                "access_token": user.access_token,
                "account_id": accounts[0].id if accounts else None,
                "available_name": user.name,
                "avatar_url": "",
                "confirmed": True,
                "display_name": None,
                "message_signature": None,
                "email": user.email,
                "id": user.id,
                "inviter_id": None,
                "name": user.name,
                "provider": "email",
                "pubsub_token": f"pubsub-{user.id}",
                "role": user.role if accounts else None,
                "ui_settings": {},
                "uid": user.email,
                "type": None,
                "accounts": [
                    {
                        "id": a.id,
                        "name": a.name,
                        "status": "active",
                        "active_at": None,
                        "role": user.role,
                        "permissions": [user.role],
                        "availability": "online",
                        "availability_status": "online",
                        "auto_offline": True,
                    }
                    for a in accounts
                ],
            },
        )

    def _actor(self, token: str) -> _Actor | None:
        for user in self._users.values():
            if secrets.compare_digest(user.access_token, token):
                return _Actor("user", user.id)
        for bot in self._bots.values():
            if secrets.compare_digest(bot.access_token, token):
                return _Actor("bot", bot.id)
        return None

    def _bot_may(self, method: str, suffix: str) -> bool:
        if (method, suffix) in BOT_ACCESSIBLE:
            return True
        return self.labels_for_bots and (method, suffix) in BOT_ACCESSIBLE_SINCE_4_14_2

    def _may_enter(self, actor: _Actor, account: _Account) -> bool:
        if actor.kind == "user":
            return actor.id in account.member_user_ids
        bot = self._bots[actor.id]
        return bot.account_id == account.id or any(
            inbox.agent_bot_id == bot.id for inbox in account.inboxes.values()
        )

    # --- handlers (run with the lock held) ----------------------------------------------------

    def _handler_table(self) -> dict[tuple[str, str], Callable[[_Call], _Reply]]:
        conv = "/conversations/{conversation_id}"
        return {
            ("GET", conv): self._show_conversation,
            ("PATCH", conv): self._update_conversation,
            ("GET", conv + "/messages"): self._list_messages,
            ("POST", conv + "/messages"): self._create_message,
            ("GET", conv + "/labels"): self._list_labels,
            ("POST", conv + "/labels"): self._set_labels,
            ("POST", conv + "/toggle_status"): self._toggle_status,
            ("POST", conv + "/custom_attributes"): self._set_custom_attributes,
            ("POST", conv + "/assignments"): self._assign,
            ("POST", conv + "/toggle_typing_status"): self._toggle_typing,
            ("POST", conv + "/toggle_priority"): self._toggle_priority,
            ("GET", "/contacts/{id}"): self._show_contact,
            ("GET", "/contacts/{id}/conversations"): self._contact_conversations,
            ("GET", "/contacts/{id}/contactable_inboxes"): self._contactable_inboxes,
            ("POST", "/conversations"): self._create_conversation_api,
            ("PUT", "/contacts/{id}"): self._update_contact,
            ("PATCH", "/contacts/{id}"): self._update_contact,
            ("GET", "/agent_bots"): self._list_bots,
            ("POST", "/agent_bots"): self._create_bot,
            ("GET", "/agent_bots/{id}"): self._show_bot,
            ("PATCH", "/agent_bots/{id}"): self._update_bot,
            ("DELETE", "/agent_bots/{id}"): self._delete_bot,
            ("GET", "/inboxes"): self._list_inboxes,
            ("GET", "/inboxes/{id}"): self._show_inbox,
            ("GET", "/inboxes/{id}/agent_bot"): self._inbox_bot,
            ("POST", "/inboxes/{id}/set_agent_bot"): self._set_inbox_bot,
        }

    def _check_tables(self) -> None:
        """Every operation the fake serves or allows bots must be in the OpenAPI document."""
        paths = self.api.document["paths"]
        for method, suffix in [*self._handlers, *BOT_ACCESSIBLE, *BOT_ACCESSIBLE_SINCE_4_14_2]:
            template = ACCOUNT_PREFIX + suffix
            doc_method = METHOD_ALIASES.get((method, template), method).lower()
            if doc_method not in paths.get(template, {}):
                raise RuntimeError(f"{method} {template} is not in Chatwoot's OpenAPI document")

    def _conversation_of(self, call: _Call) -> _Conversation:
        display_id = int(call.params["conversation_id"])
        conversation = call.account.conversations.get(display_id)
        if conversation is None:
            if not self.autocreate:
                raise _HttpError(404, NOT_FOUND)
            conversation = self._create_conversation(call.account, display_id)
        return conversation

    def _show_conversation(self, call: _Call) -> _Reply:
        return _Reply(200, self._conversation_json(call.account, self._conversation_of(call)))

    def _update_conversation(self, call: _Call) -> _Reply:
        conversation = self._conversation_of(call)
        if "priority" in call.body:
            conversation.priority = self._priority(call.body["priority"])
        if "sla_policy_id" in call.body:
            conversation.sla_policy_id = call.body["sla_policy_id"]
        return _Reply(200, self._conversation_json(call.account, conversation))

    def _list_messages(self, call: _Call) -> _Reply:
        conversation = self._conversation_of(call)
        contact = call.account.contacts[conversation.contact_id]
        return _Reply(
            200,
            {
                "meta": {
                    "labels": list(conversation.labels),
                    "additional_attributes": {},
                    "contact": copy.deepcopy(contact),
                    "assignee": self._assignee_json(conversation),
                },
                "payload": [self._message_json(m) for m in conversation.messages],
            },
        )

    def _create_message(self, call: _Call) -> _Reply:
        conversation = self._conversation_of(call)
        body = call.body
        inbox = call.account.inboxes[conversation.inbox_id]
        message_type = body.get("message_type") or "outgoing"
        if message_type == "incoming" and inbox.channel_type != "Channel::Api":
            raise _HttpError(422, {"error": "Incoming messages are only allowed in Api inboxes"})
        content_type = body.get("content_type") or "text"
        content_attributes = body.get("content_attributes") or {}
        now = self.now()
        # Message#prevent_message_flooding runs before validation; its error joins the others.
        errors = []
        recent = [m for m in conversation.messages if m.at >= now - 60]
        if len(recent) >= self.message_limit:
            errors.append("Too many messages")
        errors.extend(
            f"Content attributes {problem}"
            for problem in self._item_problems(content_type, content_attributes)
        )
        if errors:
            # MessagesController#create rescues the RecordInvalid: {"error": exception.message}.
            raise _HttpError(422, {"error": "Validation failed: " + ", ".join(errors)})
        private = bool(body.get("private", False))
        source_id = body.get("source_id")
        sender = self._sender(call, conversation, message_type)
        posted = body.get("content")
        content = posted
        if message_type == "outgoing" and isinstance(posted, str) and posted:
            drops = self._liquid_drops(call.account, conversation, sender)
            content = render_liquid(posted, drops)
            meant = liquid_literal(posted)
            if call.actor.kind == "bot" and content != meant:
                # The bot's rule: Liquid gives back exactly the text it meant.
                problem = f"Chatwoot's Liquid made {meant[:80]!r} into {content[:80]!r}"
                self._violation("POST", call.op.template, problem)
        message = _Message(
            id=self._take_id("message"),
            account_id=call.account.id,
            conversation_id=conversation.display_id,
            inbox_id=conversation.inbox_id,
            content=content,
            message_type=message_type,
            content_type=content_type,
            content_attributes=copy.deepcopy(content_attributes),
            private=private,
            source_id=source_id,
            echo_id=body.get("echo_id"),
            template_params=copy.deepcopy(body.get("template_params")),
            sender=sender,
            posted_content=posted,
            sent_to_channel=not private and not source_id,
            created_at=int(time.time()),
            at=now,
        )
        conversation.messages.append(message)
        if message_type == "incoming":
            self._reopen(conversation, inbox)
        return _Reply(200, self._message_json(message))

    def _liquid_drops(
        self, account: _Account, conversation: _Conversation, sender: dict[str, Any] | None
    ) -> dict[str, Any]:
        """Liquidable#message_drops: contact, agent (the sender), conversation, inbox."""
        contact = account.contacts[conversation.contact_id]
        name = contact.get("name") or ""
        words = name.split()
        agent_name = (sender or {}).get("name") or ""
        return {
            "contact": {
                "id": contact["id"],
                "name": name,
                "email": contact.get("email"),
                "phone_number": contact.get("phone_number"),
                "first_name": words[0] if words else None,
                "last_name": words[-1] if len(words) > 1 else None,
            },
            "agent": {
                "id": (sender or {}).get("id"),
                "name": agent_name,
                "first_name": agent_name.split()[0] if agent_name.split() else None,
            },
            "conversation": {
                "id": conversation.display_id,
                "display_id": conversation.display_id,
                "contact_name": name.capitalize() or "Customer",
                "custom_attribute": copy.deepcopy(conversation.custom_attributes),
            },
            "inbox": {
                "id": conversation.inbox_id,
                "name": account.inboxes[conversation.inbox_id].name,
            },
        }

    @staticmethod
    def _item_problems(content_type: str, content_attributes: Any) -> list[str]:
        """ContentAttributeValidator's complaints, worded as Rails words them."""
        allowed = ITEM_KEYS.get(content_type)
        if allowed is None:
            return []
        items = content_attributes.get("items") if isinstance(content_attributes, dict) else None
        if not items:
            return ["At least one item is required."]
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            return ["items must be a list of objects"]
        problems = []
        invalid = [k for item in items for k in item if k not in allowed]
        if invalid:
            problems.append(f"contains invalid keys for items : {_ruby_symbols(invalid)}")
        if content_type == "cards":
            if any(not item.get("actions") for item in items):
                problems.append("contains items missing actions")
            else:
                bad = [
                    k
                    for item in items
                    for action in item["actions"]
                    if isinstance(action, dict)
                    for k in action
                    if k not in CARD_ACTION_KEYS
                ]
                if bad:
                    problems.append(f"contains invalid keys for actions:  {_ruby_symbols(bad)}")
        return problems

    def _sender(
        self, call: _Call, conversation: _Conversation, message_type: str
    ) -> dict[str, Any] | None:
        if message_type != "outgoing":
            return self._contact_push(call.account.contacts[conversation.contact_id])
        if call.body.get("sender_type") == "AgentBot":
            named = self._bots.get(call.body.get("sender_id") or -1)
            if named is not None and named.account_id in (None, call.account.id):
                return self._bot_push(named)
        if call.actor.kind == "bot":
            return self._bot_push(self._bots[call.actor.id])
        return self._user_push(self._users[call.actor.id])

    @staticmethod
    def _reopen(conversation: _Conversation, inbox: _Inbox) -> None:
        # Message#reopen_conversation (docs/chatwoot.md §7).
        if conversation.status == "snoozed":
            conversation.status = "open"
            conversation.snoozed_until = None
        elif conversation.status == "resolved":
            conversation.status = "pending" if inbox.agent_bot_id is not None else "open"

    def _list_labels(self, call: _Call) -> _Reply:
        return _Reply(200, {"payload": list(self._conversation_of(call).labels)})

    def _set_labels(self, call: _Call) -> _Reply:
        conversation = self._conversation_of(call)
        # LabelConcern#create -> update_labels: the list REPLACES the conversation's labels.
        conversation.labels = list(dict.fromkeys(call.body.get("labels") or []))
        return _Reply(200, {"payload": list(conversation.labels)})

    def _toggle_status(self, call: _Call) -> _Reply:
        conversation = self._conversation_of(call)
        status = call.body.get("status")
        success: bool | None = True
        if call.actor.kind == "bot" and conversation.status == "pending" and status == "open":
            conversation.status = "open"  # Conversation#bot_handoff!
            success = None
        elif status:
            conversation.status = status
            until = call.body.get("snoozed_until")
            if until is not None:
                conversation.snoozed_until = int(float(until))
        elif conversation.status == "open":
            conversation.status = "resolved"
        else:
            conversation.status = "open"
        if conversation.status != "snoozed":
            conversation.snoozed_until = None
        return _Reply(
            200,
            {
                "meta": {},
                "payload": {
                    "success": success,
                    "conversation_id": conversation.display_id,
                    "current_status": conversation.status,
                    "snoozed_until": self._snoozed(conversation),
                },
            },
        )

    def _set_custom_attributes(self, call: _Call) -> _Reply:
        conversation = self._conversation_of(call)
        conversation.custom_attributes = copy.deepcopy(call.body.get("custom_attributes") or {})
        return _Reply(200, {"custom_attributes": copy.deepcopy(conversation.custom_attributes)})

    def _assign(self, call: _Call) -> _Reply:
        conversation = self._conversation_of(call)
        body = call.body
        if "assignee_id" in body or body.get("assignee_type") == "AgentBot":
            if body.get("assignee_type") == "AgentBot":
                bot = self._bots.get(body.get("assignee_id") or -1)
                conversation.assignee_user_id = None
                conversation.assignee_bot_id = bot.id if bot is not None else None
                return _Reply(200, self._bot_json(bot) if bot is not None else None)
            user = self._users.get(body.get("assignee_id") or -1)
            if user is not None and user.id not in call.account.member_user_ids:
                user = None
            # An unknown id unassigns, as `account.users.find_by` gives nil.
            conversation.assignee_user_id = user.id if user is not None else None
            conversation.assignee_bot_id = None
            return _Reply(200, self._agent_json(user, call.account.id) if user else None)
        if "team_id" in body:
            team = call.account.teams.get(body.get("team_id") or -1)
            conversation.team_id = team["id"] if team is not None else None
            return _Reply(200, copy.deepcopy(team))
        return _Reply(200, None)

    def _toggle_typing(self, call: _Call) -> _Reply:
        self._conversation_of(call).typing_status = call.body.get("typing_status")
        return _Reply(200, empty=True)

    def _toggle_priority(self, call: _Call) -> _Reply:
        self._conversation_of(call).priority = self._priority(call.body.get("priority"))
        return _Reply(200, empty=True)

    @staticmethod
    def _priority(value: Any) -> str | None:
        return None if value in (None, "", "none") else str(value)

    def _contact_of(self, call: _Call) -> dict[str, Any]:
        contact_id = int(call.params["id"])
        contact = call.account.contacts.get(contact_id)
        if contact is None:
            if not self.autocreate:
                raise _HttpError(404, NOT_FOUND)
            contact = self._new_contact(contact_id, "Maria Silva", None, None)
            call.account.contacts[contact_id] = contact
        return contact

    def _show_contact(self, call: _Call) -> _Reply:
        return _Reply(200, {"payload": copy.deepcopy(self._contact_of(call))})

    def _contact_conversations(self, call: _Call) -> _Reply:
        """ContactsController#conversations: the contact's conversations, newest first."""
        contact = self._contact_of(call)
        found = [
            self._conversation_json(call.account, c)
            for c in sorted(call.account.conversations.values(), key=lambda c: -c.display_id)
            if c.contact_id == contact["id"]
        ]
        return _Reply(200, {"payload": found})

    def _contactable_inboxes(self, call: _Call) -> _Reply:
        """The inboxes the contact has a ContactInbox in, with its source_id."""
        contact = self._contact_of(call)
        found = [
            {
                "source_id": source_id,
                "inbox": self._inbox_json(call.account.inboxes[inbox_id], call.account.id),
            }
            for (contact_id, inbox_id), source_id in sorted(call.account.contact_inboxes.items())
            if contact_id == contact["id"] and inbox_id in call.account.inboxes
        ]
        return _Reply(200, {"payload": found})

    def _create_conversation_api(self, call: _Call) -> _Reply:
        """ConversationsController#create: a conversation for the ContactInbox that `source_id`
        names in `inbox_id` (404 when there is none)."""
        body = call.body
        inbox_id = body.get("inbox_id")
        source_id = body.get("source_id")
        found = [
            key
            for key, value in call.account.contact_inboxes.items()
            if value == source_id and (inbox_id is None or key[1] == inbox_id)
        ]
        if not found:
            raise _HttpError(404, NOT_FOUND)
        contact_id, inbox = found[0]
        display_id = max(call.account.conversations, default=0) + 1
        conversation = self._create_conversation(
            call.account,
            display_id,
            status=str(body.get("status") or "open"),
            inbox_id=inbox,
            contact_id=contact_id,
        )
        return _Reply(200, self._conversation_json(call.account, conversation))

    def _update_contact(self, call: _Call) -> _Reply:
        contact = self._contact_of(call)
        body = call.body
        for key in ("name", "email", "phone_number", "identifier", "blocked"):
            if key in body:
                contact[key] = body[key]
        # ContactsController#update merges both hashes into the stored ones.
        for key in ("custom_attributes", "additional_attributes"):
            if isinstance(body.get(key), dict):
                contact[key] = {**contact[key], **copy.deepcopy(body[key])}
        return _Reply(200, {"payload": copy.deepcopy(contact)})

    def _bot_of(self, call: _Call) -> _AgentBot:
        bot = self._bots.get(int(call.params["id"]))
        if bot is None or bot.account_id not in (None, call.account.id):
            raise _HttpError(404, NOT_FOUND)
        return bot

    def _require_admin(self, call: _Call) -> None:
        """AgentBotPolicy / InboxPolicy: creating, changing and connecting bots is for admins."""
        if call.actor.kind != "user" or self._users[call.actor.id].role != "administrator":
            raise _HttpError(401, NOT_ALLOWED)

    def _bot_json_for(self, call: _Call, bot: _AgentBot) -> dict[str, Any]:
        """The bot as this caller sees it: the access token only for a bot of the account, the
        secret only for administrators and never for a system bot (docs/chatwoot.md §4)."""
        rendered = self._bot_json(bot)
        if bot.account_id != call.account.id:
            rendered.pop("access_token")
        admin = call.actor.kind == "user" and self._users[call.actor.id].role == "administrator"
        if not admin or bot.account_id is None or self._version() < (4, 13):
            rendered.pop("secret")  # bots have secrets from 4.13 (WebhookSecretable)
        return rendered

    def _version(self) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", self.version)[:3])

    def _list_bots(self, call: _Call) -> _Reply:
        bots = [b for b in self._bots.values() if b.account_id in (None, call.account.id)]
        return _Reply(200, [self._bot_json_for(call, b) for b in bots])

    def _create_bot(self, call: _Call) -> _Reply:
        self._require_admin(call)
        bot = _AgentBot(
            id=self._take_id("bot"),
            name=call.body.get("name") or "",
            account_id=call.account.id,
            access_token=secrets.token_urlsafe(18),
            secret=secrets.token_urlsafe(18),
        )
        self._apply_bot(bot, call.body)
        self._bots[bot.id] = bot
        return _Reply(200, self._bot_json_for(call, bot))

    def _show_bot(self, call: _Call) -> _Reply:
        return _Reply(200, self._bot_json_for(call, self._bot_of(call)))

    def _update_bot(self, call: _Call) -> _Reply:
        self._require_admin(call)
        bot = self._bot_of(call)
        self._apply_bot(bot, call.body)
        return _Reply(200, self._bot_json_for(call, bot))

    @staticmethod
    def _apply_bot(bot: _AgentBot, body: Mapping[str, Any]) -> None:
        for key in ("name", "description", "outgoing_url"):
            if key in body:
                setattr(bot, key, body[key] or "")
        if isinstance(body.get("bot_config"), dict):
            bot.bot_config = copy.deepcopy(body["bot_config"])
        if "avatar_url" in body:
            bot.thumbnail = body["avatar_url"] or ""

    def _delete_bot(self, call: _Call) -> _Reply:
        self._require_admin(call)
        bot = self._bot_of(call)
        del self._bots[bot.id]
        for account in self._accounts.values():
            for inbox in account.inboxes.values():
                if inbox.agent_bot_id == bot.id:
                    inbox.agent_bot_id = None
        return _Reply(200, empty=True)

    def _inbox_of(self, call: _Call) -> _Inbox:
        inbox = call.account.inboxes.get(int(call.params["id"]))
        if inbox is None:
            raise _HttpError(404, NOT_FOUND)
        return inbox

    def _list_inboxes(self, call: _Call) -> _Reply:
        inboxes = sorted(call.account.inboxes.values(), key=lambda i: i.id)
        return _Reply(200, {"payload": [self._inbox_json(i, call.account.id) for i in inboxes]})

    def _show_inbox(self, call: _Call) -> _Reply:
        return _Reply(200, self._inbox_json(self._inbox_of(call), call.account.id))

    def _inbox_bot(self, call: _Call) -> _Reply:
        inbox = self._inbox_of(call)
        bot = self._bots.get(inbox.agent_bot_id) if inbox.agent_bot_id is not None else None
        # not verified in Chatwoot's source: the shape with no bot connected; jbuilder gives {}.
        return _Reply(200, {"agent_bot": self._bot_json_for(call, bot) if bot is not None else {}})

    def _set_inbox_bot(self, call: _Call) -> _Reply:
        self._require_admin(call)
        inbox = self._inbox_of(call)
        bot_id = call.body.get("agent_bot")
        if bot_id is None:
            inbox.agent_bot_id = None
        else:
            if int(bot_id) not in self._bots:  # AgentBot.find raises: 404
                raise _HttpError(404, NOT_FOUND)
            inbox.agent_bot_id = int(bot_id)
        return _Reply(200, empty=True)

    # --- JSON renderings ----------------------------------------------------------------------

    def _take_id(self, kind: str) -> int:
        value = self._next_ids[kind]
        self._next_ids[kind] = value + 1
        return value

    @staticmethod
    def _snoozed(conversation: _Conversation) -> str | None:
        return _iso(conversation.snoozed_until) if conversation.snoozed_until is not None else None

    @staticmethod
    def _bot_push(bot: _AgentBot) -> dict[str, Any]:
        return {"id": bot.id, "name": bot.name, "avatar_url": bot.thumbnail, "type": "agent_bot"}

    @staticmethod
    def _user_push(user: _User) -> dict[str, Any]:
        return {
            "id": user.id,
            "name": user.name,
            "available_name": user.name,
            "avatar_url": "",
            "type": "user",
            "availability_status": "online",
            "thumbnail": "",
        }

    @staticmethod
    def _contact_push(contact: Mapping[str, Any]) -> dict[str, Any]:
        keys = ("additional_attributes", "custom_attributes", "email", "id", "identifier")
        rest = ("name", "phone_number", "thumbnail", "blocked")
        return {**{k: copy.deepcopy(contact[k]) for k in (*keys, *rest)}, "type": "contact"}

    def _bot_json(self, bot: _AgentBot) -> dict[str, Any]:
        return {
            "id": bot.id,
            "name": bot.name,
            "description": bot.description,
            "thumbnail": bot.thumbnail,
            "outgoing_url": bot.outgoing_url,
            "bot_type": "webhook",
            "bot_config": copy.deepcopy(bot.bot_config),
            "account_id": bot.account_id,
            "access_token": bot.access_token,
            "secret": bot.secret,
            "system_bot": bot.account_id is None,
        }

    @staticmethod
    def _agent_json(user: _User, account_id: int) -> dict[str, Any]:
        return {
            "id": user.id,
            "account_id": account_id,
            "availability_status": "online",
            "auto_offline": True,
            "confirmed": True,
            "email": user.email,
            "available_name": user.name,
            "name": user.name,
            "role": user.role,
            "thumbnail": "",
            "custom_role_id": None,
        }

    def _assignee_json(self, conversation: _Conversation) -> dict[str, Any] | None:
        if conversation.assignee_user_id is not None:
            return self._agent_json(
                self._users[conversation.assignee_user_id], conversation.account_id
            )
        if conversation.assignee_bot_id is not None and conversation.assignee_bot_id in self._bots:
            return self._bot_push(self._bots[conversation.assignee_bot_id])
        return None

    def _inbox_json(self, inbox: _Inbox, account_id: int) -> dict[str, Any]:
        return {
            "id": inbox.id,
            "name": inbox.name,
            "channel_type": inbox.channel_type,
            "channel_id": inbox.id,
            "account_id": account_id,
            "avatar_url": "",
            "greeting_enabled": False,
            "enable_auto_assignment": True,
            "working_hours_enabled": False,
            "lock_to_single_conversation": False,
        }

    def _message_json(self, message: _Message) -> dict[str, Any]:
        # app/views/api/v1/models/_message.json.jbuilder: message_type is the enum's integer.
        rendered: dict[str, Any] = {
            "id": message.id,
            "content": message.content,
            "account_id": message.account_id,
            "inbox_id": message.inbox_id,
            "conversation_id": message.conversation_id,
            "message_type": MESSAGE_TYPES[message.message_type],
            "content_type": message.content_type,
            "status": "sent",
            "content_attributes": copy.deepcopy(message.content_attributes),
            "created_at": message.created_at,
            "private": message.private,
            "source_id": message.source_id,
            "sender": copy.deepcopy(message.sender),
        }
        if message.echo_id is not None:
            rendered["echo_id"] = message.echo_id
        return rendered

    def _conversation_json(self, account: _Account, conversation: _Conversation) -> dict[str, Any]:
        inbox = account.inboxes[conversation.inbox_id]
        assignee = self._assignee_json(conversation)
        assignee_type = (
            "User"
            if conversation.assignee_user_id is not None
            else "AgentBot"
            if assignee is not None
            else None
        )
        team = account.teams.get(conversation.team_id) if conversation.team_id else None
        last = conversation.messages[-1].created_at if conversation.messages else None
        return {
            "meta": {
                "sender": self._contact_push(account.contacts[conversation.contact_id]),
                "channel": inbox.channel_type,
                "assignee": assignee,
                "assignee_type": assignee_type,
                "team": copy.deepcopy(team),
                "hmac_verified": False,
            },
            "id": conversation.display_id,
            # The REST show: the newest message, and the newest that is not an activity.
            "messages": [self._message_json(m) for m in conversation.messages[-1:]],
            "last_non_activity_message": next(
                (
                    self._message_json(m)
                    for m in reversed(conversation.messages)
                    if m.message_type != "activity"
                ),
                None,
            ),
            "account_id": account.id,
            "uuid": f"00000000-0000-4000-8000-{account.id:04d}{conversation.display_id:08d}",
            "additional_attributes": {},
            "agent_last_seen_at": 0,
            "assignee_last_seen_at": 0,
            "can_reply": conversation.can_reply,
            "contact_last_seen_at": 0,
            "custom_attributes": copy.deepcopy(conversation.custom_attributes),
            "inbox_id": conversation.inbox_id,
            "labels": list(conversation.labels),
            "muted": False,
            "snoozed_until": self._snoozed(conversation),
            "status": conversation.status,
            "created_at": conversation.created_at,
            "updated_at": float(last or conversation.created_at),
            "timestamp": last or conversation.created_at,
            "first_reply_created_at": None,
            "unread_count": 0,
            "last_activity_at": last or conversation.created_at,
            "priority": conversation.priority,
            "waiting_since": 0,
            "sla_policy_id": conversation.sla_policy_id,
        }


# ---------------------------------------------------------------------------------------------
# Real HTTP
# ---------------------------------------------------------------------------------------------


_LIQUID = liquid.Environment()
# Liquidable#modified_liquid_content: text between backticks is kept from Liquid.
_BACKTICKS = re.compile(r"`(.*?)`", re.DOTALL)


def render_liquid(content: str, drops: Mapping[str, Any]) -> str:
    """What Chatwoot saves for an outgoing message's `content` (Liquidable#process_liquid_in_content
    in app/models/concerns/liquidable.rb): backtick spans wrapped in `{% raw %}`, the whole
    parsed and rendered with the drops; on a Liquid error the content is kept as it came."""
    modified = _BACKTICKS.sub(lambda m: "{% raw %}`" + m.group(1) + "`{% endraw %}", content)
    try:
        return _LIQUID.from_string(modified).render(**drops)
    except liquid.exceptions.LiquidError:
        return content


# agentbot writes a `{` or a backtick as a Liquid output of that character (channels.py).
_LITERAL_OUTPUTS = {'{{ "%7B" | url_decode }}': "{", '{{ "%60" | url_decode }}': "`"}


def liquid_literal(posted: str) -> str:
    """The text a posted content stands for, reading agentbot's one-character Liquid outputs
    as their character and everything else as written."""
    for output, char in _LITERAL_OUTPUTS.items():
        posted = posted.replace(output, char)
    return posted


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


class FakeChatwootServer:
    """Serves `fake.app` with uvicorn on 127.0.0.1 in a background thread.

    The port is chosen once; `stop()` closes it (connections are refused, i.e. Chatwoot is down)
    and `start()` serves again on the same port with the same state.
    """

    HOST: Final = "127.0.0.1"

    def __init__(self, fake: FakeChatwoot, *, port: int | None = None) -> None:
        self.fake = fake
        self.port = port if port is not None else _free_port(self.HOST)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://{self.HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self, timeout: float = 5.0) -> None:
        if self._server is not None:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.HOST, self.port))
        except OSError as exc:
            sock.close()
            raise RuntimeError(
                f"FakeChatwootServer cannot bind {self.HOST}:{self.port} again: {exc}"
            ) from exc
        config = uvicorn.Config(
            self.fake.app,
            lifespan="off",
            log_level="warning",
            access_log=False,
            http="h11",
            ws="none",
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=asyncio.run,
            args=(self._serve(server, sock),),
            name=f"fake-chatwoot-{self.port}",
            daemon=True,
        )
        self._server, self._thread, self._sock = server, thread, sock
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"FakeChatwootServer did not start on {self.url}")
            time.sleep(0.002)

    @staticmethod
    async def _serve(server: uvicorn.Server, sock: socket.socket) -> None:
        try:
            await server.serve(sockets=[sock])
        finally:
            # force_exit skipped waiting for busy connections (a `delay` in progress): cut them,
            # as a crashed Chatwoot would, so no transport outlives the loop.
            for connection in list(server.server_state.connections):
                transport = getattr(connection, "transport", None)
                if isinstance(transport, asyncio.Transport):
                    transport.abort()
            await asyncio.sleep(0)

    def stop(self, timeout: float = 5.0) -> None:
        server, thread, sock = self._server, self._thread, self._sock
        self._server = self._thread = self._sock = None
        if server is not None:
            server.should_exit = True
            server.force_exit = True
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                raise RuntimeError(f"FakeChatwootServer on {self.url} did not stop")
        if sock is not None:
            sock.close()

    def __enter__(self) -> FakeChatwootServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
