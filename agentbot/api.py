"""The `/api/*` routes (docs/http.md §3): start a flow proactively, read a conversation's session,
list, read and store flows.

Every route needs `Authorization: Bearer <WORKFLOWS_API_TOKEN>`; every error is JSON
`{"error": code, "message": what to do}`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol, TypedDict, TypeGuard, cast

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from agentbot import bodies, engine, events, stats
from agentbot.catalog import read_shared_hours
from agentbot.chatwoot import ChatwootClient
from agentbot.config import Settings
from agentbot.errors import ChatwootRejected, ChatwootUnavailable, FlowError
from agentbot.flows import FLOW_NAME, Flow
from agentbot.jsonsafe import BIGINT_MAX, ascii_int
from agentbot.loader import flow_from_definition, parse_flow
from agentbot.service import Result, Service, Where
from agentbot.tokens import Verifier

log = structlog.get_logger("agentbot.api")

WHATSAPP = "Channel::Whatsapp"


class Tokens(Protocol):
    api: Verifier


class ApiState(TypedDict):
    service: Service
    client: ChatwootClient | None
    credentials: Tokens
    clock: Callable[[], datetime]
    user_token: bool  # CHATWOOT_USER_TOKEN is set: flows may save contact attributes
    settings: Settings


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


def bearer_ok(request: Request, token: Verifier) -> bool:
    """True when the request carries `Authorization: Bearer <the API token>`."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme == "Bearer" and token.matches(given)


def _authorized(request: Request) -> ApiState | Response:
    state = cast(ApiState, request.scope["state"])
    if not bearer_ok(request, state["credentials"].api):
        return error(401, "unauthorized", "send Authorization: Bearer <WORKFLOWS_API_TOKEN>")
    return state


async def audit(
    request: Request, state: ApiState, action: str, subject: str, **detail: Any
) -> None:
    """Record an API write: when (the row's time), from where, what."""
    forwarded = request.headers.get("x-forwarded-for")
    remote = (
        forwarded.split(",")[0].strip()
        if forwarded
        else request.client.host
        if request.client is not None
        else None
    )
    await state["service"].store.audit(
        remote=remote,
        method=request.method,
        path=request.url.path,
        action=action,
        subject=subject,
        detail=detail,
    )


async def start_workflow(request: Request) -> Response:
    state = _authorized(request)
    if isinstance(state, Response):
        return state
    try:
        body = bodies.parse_json(await bodies.read(request, MAX_START_BODY))
    except bodies.BodyRefused as exc:
        return exc.response
    if not isinstance(body, dict):
        return error(422, "invalid", "send an object with conversationId and workflowName")
    by_contact = "contactId" in body and "conversationId" not in body
    conversation_id = body.get("conversationId")
    name = body.get("workflowName")
    initial = body.get("initialData", {})
    if not by_contact and not is_id(conversation_id):
        return error(
            422,
            "invalid",
            "conversationId must be the conversation's id (a number), or pass contactId",
        )
    if not isinstance(name, str) or not name:
        return error(422, "invalid", "workflowName must name a flow")
    if not isinstance(initial, dict):
        return error(422, "invalid", "initialData must be an object")
    service = state["service"]
    flow = service.catalog.current.get(name)
    if flow is None:
        known = ", ".join(sorted(service.catalog.current)) or "none"
        return error(404, "unknown_flow", f"no flow named '{name}' (flows: {known})")
    client = state["client"]
    if client is None:
        return error(503, "chatwoot_not_configured", "set CHATWOOT_URL and CHATWOOT_API_TOKEN")
    created = False
    if by_contact:
        found = await _conversation_of_contact(state, client, body)
        if isinstance(found, Response):
            return found
        body = {**body, "accountId": found[0]}
        conversation_id, created = found[1], found[2]
    assert isinstance(conversation_id, int)
    account_id = body.get("accountId")
    if account_id is None:
        accounts = await service.store.accounts_of(conversation_id)
        if len(accounts) != 1:
            return error(
                422,
                "account_needed",
                f"pass accountId: agentbot has seen conversation {conversation_id} in "
                f"{len(accounts)} accounts",
            )
        account_id = accounts[0]
    if not is_id(account_id):
        return error(422, "invalid", "accountId must be a number")
    try:
        shown = await client.conversation(account_id, conversation_id)
    except ChatwootRejected as exc:
        return _refused(exc, f"conversation {conversation_id} in account {account_id}")
    except ChatwootUnavailable as exc:
        return error(503, "chatwoot_unavailable", f"Chatwoot did not answer: {exc}")
    conversation, contact = _from_rest(account_id, conversation_id, shown)
    context = engine.snapshot(contact, conversation)
    template = None
    if conversation.channel == WHATSAPP and not conversation.can_reply:
        template = engine.template_params(flow, {**context, "nome": contact.name, **initial})
        if template is None:
            return error(
                422,
                "outside_window",
                "the conversation is outside WhatsApp's 24-hour window: give the flow a "
                "`template` (an approved WhatsApp template) to start it",
            )
    where = Where(
        account_id, conversation_id, conversation.channel, conversation.inbox_id, contact.id
    )
    handled = await service.start(
        where,
        flow,
        variables=initial,
        context=context,
        now=state["clock"](),
        template_params=template,
    )
    if handled.result is Result.BUSY:
        return error(
            409,
            "busy",
            f"conversation {conversation_id} already has a running session "
            f"({handled.flow}); wait for it to end or resolve the conversation",
        )
    log.info(
        "api.started", flow=name, conversation_id=conversation_id, template=template is not None
    )
    await audit(
        request,
        state,
        "started",
        name,
        account_id=account_id,
        conversation_id=conversation_id,
        version=flow.version,
    )
    return JSONResponse(
        {
            "status": "started",
            "workflowName": name,
            "conversationId": conversation_id,
            "conversationCreated": created,
        },
        status_code=201,
    )


def _refused(exc: ChatwootRejected, what: str) -> JSONResponse:
    """Chatwoot refused a call made for this request: a 404 means the caller named something
    Chatwoot does not have (the caller's mistake, 404); any other refusal is agentbot's
    configuration (its tokens, Chatwoot's version), a 502 that says what Chatwoot answered."""
    if exc.status_code == 404:
        return error(404, "not_in_chatwoot", f"Chatwoot has no {what}: check the ids")
    return error(502, "chatwoot_refused", f"Chatwoot refused: {exc}")


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


async def _conversation_of_contact(
    state: ApiState, client: ChatwootClient, body: Mapping[str, Any]
) -> tuple[int, int, bool] | Response:
    """The old system's start by contact: (account, conversation, created). The contact's open
    or pending conversation in the inbox (`inboxId`, or the contact's only inbox), else a new
    one created through Chatwoot's API. Listing a contact's conversations and creating one take
    CHATWOOT_USER_TOKEN."""
    contact_id = _int(body.get("contactId"))
    inbox_id = body.get("inboxId")
    if contact_id is None:
        return error(422, "invalid", "contactId must be the contact's id (a number)")
    if inbox_id is not None and _int(inbox_id) is None:
        return error(422, "invalid", "inboxId must be the inbox's id (a number)")
    if client.user_token is None:
        return error(
            422,
            "user_token_needed",
            "starting by contactId lists and creates the contact's conversations, which "
            "Chatwoot allows a user's token only: set CHATWOOT_USER_TOKEN, or pass "
            "conversationId",
        )
    account_id = _int(body.get("accountId"))
    if body.get("accountId") is not None and account_id is None:
        return error(422, "invalid", "accountId must be a number")
    if account_id is None:
        seen = {
            row["account_id"] for row in await state["service"].store.contact_sessions(contact_id)
        }
        if len(seen) != 1:
            return error(
                422,
                "account_needed",
                f"pass accountId: agentbot has seen contact {contact_id} in {len(seen)} accounts",
            )
        account_id = int(seen.pop())
    try:
        inboxes = await client.contactable_inboxes(account_id, contact_id)
        sources = {
            int(i["inbox"]["id"]): str(i["source_id"])
            for i in inboxes
            if isinstance(i, Mapping)
            and isinstance(i.get("inbox"), Mapping)
            and _int(i["inbox"].get("id")) is not None
            and i.get("source_id")
        }
        if inbox_id is None:
            if len(sources) != 1:
                return error(
                    422,
                    "inbox_needed",
                    f"pass inboxId: contact {contact_id} is in {len(sources)} inboxes",
                )
            inbox_id = next(iter(sources))
        conversations = await client.contact_conversations(account_id, contact_id)
        for conversation in conversations:  # newest first
            if (
                isinstance(conversation, Mapping)
                and conversation.get("inbox_id") == inbox_id
                and conversation.get("status") in ("open", "pending")
                and _int(conversation.get("id")) is not None
            ):
                return account_id, int(conversation["id"]), False
        if inbox_id not in sources:
            return error(
                422,
                "not_in_inbox",
                f"contact {contact_id} has no conversation and no contact inbox in inbox "
                f"{inbox_id}",
            )
        made = await client.create_conversation(
            account_id,
            {
                "source_id": sources[inbox_id],
                "inbox_id": inbox_id,
                "contact_id": contact_id,
                "status": "pending",
            },
        )
    except ChatwootRejected as exc:
        return _refused(exc, f"contact {contact_id} in account {account_id}")
    except ChatwootUnavailable as exc:
        return error(503, "chatwoot_unavailable", f"Chatwoot did not answer: {exc}")
    new_id = _int(made.get("id"))
    if new_id is None:
        return error(502, "chatwoot_refused", "Chatwoot created no conversation id")
    log.info("api.conversation_created", contact_id=contact_id, conversation_id=new_id)
    return account_id, new_id, True


MAX_START_BODY = 64 * 1024


def is_id(value: object) -> TypeGuard[int]:
    """A Chatwoot id: a positive integer PostgreSQL's bigint holds."""
    return type(value) is int and 0 < value <= BIGINT_MAX


def number_param(raw: str | None, top: int = BIGINT_MAX) -> int | None:
    """A URL's number (ASCII digits, 1 to `top`), else None: "²" and 30 digits are not one."""
    value = None if raw is None else ascii_int(raw)
    return value if value is not None and 1 <= value <= top else None


def _from_rest(
    account_id: int, conversation_id: int, shown: Mapping[str, Any]
) -> tuple[events.Conversation, events.Contact]:
    """Chatwoot's REST conversation JSON as the typed values events use."""
    meta = shown.get("meta")
    meta = meta if isinstance(meta, Mapping) else {}
    sender = meta.get("sender")
    sender = sender if isinstance(sender, Mapping) else {}
    labels = shown.get("labels")
    custom = shown.get("custom_attributes")
    contact_custom = sender.get("custom_attributes")
    inbox_id = shown.get("inbox_id")
    conversation = events.Conversation(
        account_id=account_id,
        id=conversation_id,
        inbox_id=inbox_id if isinstance(inbox_id, int) else None,
        status=str(shown.get("status") or "pending"),
        channel=meta.get("channel") if isinstance(meta.get("channel"), str) else None,
        labels=tuple(x for x in labels if isinstance(x, str)) if isinstance(labels, list) else (),
        can_reply=shown.get("can_reply") is not False,
        custom_attributes=dict(custom) if isinstance(custom, Mapping) else {},
    )
    contact_id = sender.get("id")
    contact = events.Contact(
        id=contact_id if isinstance(contact_id, int) else None,
        name=str(sender.get("name") or ""),
        phone_number=sender.get("phone_number")
        if isinstance(sender.get("phone_number"), str)
        else None,
        email=sender.get("email") if isinstance(sender.get("email"), str) else None,
        identifier=sender.get("identifier") if isinstance(sender.get("identifier"), str) else None,
        custom_attributes=dict(contact_custom) if isinstance(contact_custom, Mapping) else {},
    )
    return conversation, contact


async def conversation(request: Request) -> Response:
    state = _authorized(request)
    if isinstance(state, Response):
        return state
    raw = request.path_params["conversation_id"]
    service = state["service"]
    account = request.query_params.get("accountId")
    if not is_id(raw):
        return error(404, "not_found", "no conversation has that id")
    account_id = number_param(account)
    if account is not None and account_id is None:
        return error(422, "invalid", "accountId must be a number")
    accounts = [account_id] if account_id else await service.store.accounts_of(raw)
    if not accounts:
        return JSONResponse(
            {"conversation_id": raw, "session": None, "next_before": None, "interactions": []}
        )
    if len(accounts) > 1:
        return error(422, "account_needed", f"pass ?accountId=: seen in accounts {accounts}")
    limit = number_param(request.query_params.get("limit", str(PAGE)), MAX_PAGE)
    before_raw = request.query_params.get("before")
    before = number_param(before_raw)
    if limit is None:
        return error(422, "invalid", f"limit is a number from 1 to {MAX_PAGE}")
    if before_raw is not None and before is None:
        return error(422, "invalid", "before is an interaction id (a number)")
    session, interactions = await service.store.conversation_view(accounts[0], raw, limit, before)
    more = len(interactions) == limit
    return JSONResponse(
        {
            "conversation_id": raw,
            "account_id": accounts[0],
            "next_before": interactions[0]["id"] if more and interactions else None,
            "session": None
            if session is None
            else {
                "id": session.id,
                "flow": session.flow_name,
                "version": session.flow_version,
                "block": session.current_block,
                "status": session.status,
                "variables": session.variables,
            },
            "interactions": [
                {**row, "created_at": row["created_at"].isoformat()} for row in interactions
            ],
        }
    )


PAGE = 200
MAX_PAGE = 500


async def contact_conversations(request: Request) -> Response:
    """The sessions of a contact (the id the old system's start call took), newest first."""
    state = _authorized(request)
    if isinstance(state, Response):
        return state
    contact_id = request.path_params["contact_id"]
    if not is_id(contact_id):
        return error(404, "not_found", "no contact has that id")
    rows = await state["service"].store.contact_sessions(contact_id)
    return JSONResponse(
        {
            "contact_id": contact_id,
            "sessions": [
                {
                    **row,
                    "created_at": row["created_at"].isoformat(),
                    "ended_at": None if row["ended_at"] is None else row["ended_at"].isoformat(),
                }
                for row in rows
            ],
        }
    )


YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
MAX_FLOW_BODY = 1024 * 1024


async def list_workflows(request: Request) -> Response:
    state = _authorized(request)
    if isinstance(state, Response):
        return state
    rows = await state["service"].store.flow_list()
    return JSONResponse(
        {"workflows": [{**row, "updated_at": row["updated_at"].isoformat()} for row in rows]}
    )


async def read_workflow(request: Request) -> Response:
    state = _authorized(request)
    if isinstance(state, Response):
        return state
    name = request.path_params["name"]
    if not FLOW_NAME.fullmatch(name):
        return error(404, "unknown_flow", "no flow has that name (names are slugs)")
    row = await state["service"].store.current_flow(name)
    if row is None:
        return error(404, "unknown_flow", f"no flow named '{name}'")
    return JSONResponse(
        {
            "name": row["name"],
            "title": row["title"],
            "version": row["version"],
            "source": row["source"],
            "updated_at": row["updated_at"].isoformat(),
            "config": row["definition"],
        }
    )


async def store_workflow(request: Request) -> Response:
    """Create or replace a flow: `{"name", "config"}` as JSON, or the YAML text itself."""
    state = _authorized(request)
    if isinstance(state, Response):
        return state
    try:
        body = await bodies.read(request, MAX_FLOW_BODY)
    except bodies.BodyRefused as exc:
        return exc.response
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    # a flow may name shared business hours (`hours: office`): FLOWS_DIR/hours/office.yaml
    shared, _ = await asyncio.to_thread(read_shared_hours, state["settings"].flows_dir)
    try:
        if kind in YAML_TYPES:
            text = body.decode("utf-8", errors="replace")
            flow = parse_flow(text, "<request>", default_name="request", shared_hours=shared)
            if "name" not in flow.definition:
                return error(422, "invalid", "the YAML needs a `name:` (there is no file name)")
        else:
            flow_or_error = _flow_from_json(body, shared)
            if isinstance(flow_or_error, Response):
                return flow_or_error
            flow = flow_or_error
        changed = await state["service"].catalog.store_api_flow(
            flow, file="<request>", user_token=state["user_token"]
        )
    except FlowError as exc:
        return JSONResponse(
            {
                "error": "invalid_flow",
                "message": f"the flow has {len(exc.problems)} problem(s): fix them, send again",
                "problems": [str(p) for p in exc.problems],
            },
            status_code=422,
        )
    await audit(request, state, "stored", flow.name, version=flow.version, changed=changed)
    return JSONResponse(
        {"name": flow.name, "version": flow.version, "changed": changed},
        status_code=201 if changed else 200,
    )


async def retire_workflow(request: Request) -> Response:
    """The flow starts no new session; sessions in flight finish on their version."""
    state = _authorized(request)
    if isinstance(state, Response):
        return state
    name = request.path_params["name"]
    if not FLOW_NAME.fullmatch(name):
        return error(404, "unknown_flow", "no flow has that name (names are slugs)")
    version = await state["service"].catalog.retire(name)
    if version is None:
        return error(404, "unknown_flow", f"no current flow named '{name}'")
    await audit(request, state, "retired", name, version=version)
    return JSONResponse({"name": name, "version": version, "status": "retired"})


def _flow_from_json(body: bytes, shared: Mapping[str, Any]) -> Flow | Response:
    try:
        data = bodies.parse_json(body, "; or send YAML as application/yaml")
    except bodies.BodyRefused as exc:
        return exc.response
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        return error(422, "invalid", 'send {"name": "...", "config": {<the flow>}}')
    name = data.get("name")
    config = dict(data["config"])
    if name is None:
        name = config.get("name")
    if not isinstance(name, str) or not name:
        return error(422, "invalid", "name must name the flow")
    shown = config.get("name", name)
    if shown != name and isinstance(shown, str) and "title" not in config:
        # The old system's body: config.name is the display name beside the flow's name.
        config["title"] = shown
    config["name"] = name
    return flow_from_definition(config, name=name, file="<request>", shared_hours=shared)


async def get_stats(request: Request) -> Response:
    """The sessions and each flow's funnel; `flow`, `since`, `until` narrow it."""
    state = _authorized(request)
    if isinstance(state, Response):
        return state
    try:
        window = stats.Window(
            stats.parse_instant(request.query_params.get("since")),
            stats.parse_instant(request.query_params.get("until")),
        )
    except ValueError as exc:
        return error(422, "invalid", f"since and until are ISO 8601 instants: {exc}")
    flow = request.query_params.get("flow") or None
    if flow is not None and not FLOW_NAME.fullmatch(flow):
        return error(422, "invalid", "flow is a flow's name (names are slugs)")
    return JSONResponse(await stats_document(state["service"], window, flow))


async def stats_document(service: Service, window: stats.Window, flow: str | None) -> Any:
    return await stats.stats(service.store, window, flow, service.catalog)
