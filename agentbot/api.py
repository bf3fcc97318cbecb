"""The `/api/*` routes (design §4): start a flow proactively, read a conversation's session,
list, read and store flows.

Every route needs `Authorization: Bearer <WORKFLOWS_API_TOKEN>`; every error is JSON
`{"error": code, "message": what to do}`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol, TypedDict, TypeGuard, cast

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from agentbot import bodies, engine, events
from agentbot.chatwoot import ChatwootClient
from agentbot.errors import ChatwootRejected, ChatwootUnavailable, FlowError
from agentbot.flows import FLOW_NAME, Flow
from agentbot.jsonsafe import BIGINT_MAX, ascii_int
from agentbot.loader import flow_from_definition, parse_flow
from agentbot.service import Result, Service, Where
from agentbot.templates import render_value
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
    if "contactId" in body or "inboxId" in body:
        return error(
            422,
            "unsupported",
            "starting by contactId and inboxId is not supported: create the conversation in "
            "Chatwoot and pass its conversationId",
        )
    conversation_id = body.get("conversationId")
    name = body.get("workflowName")
    initial = body.get("initialData", {})
    if not _is_id(conversation_id):
        return error(422, "invalid", "conversationId must be the conversation's id (a number)")
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
    if not _is_id(account_id):
        return error(422, "invalid", "accountId must be a number")
    try:
        shown = await client.conversation(account_id, conversation_id)
    except ChatwootRejected as exc:
        return error(502, "chatwoot_refused", f"Chatwoot refused to show the conversation: {exc}")
    except ChatwootUnavailable as exc:
        return error(503, "chatwoot_unavailable", f"Chatwoot did not answer: {exc}")
    conversation, contact = _from_rest(account_id, conversation_id, shown)
    context = engine.snapshot(contact, conversation)
    template = None
    if conversation.channel == WHATSAPP and not conversation.can_reply:
        template = _template(flow, {**initial, **context, "nome": contact.name})
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
    return JSONResponse(
        {"status": "started", "workflowName": name, "conversationId": conversation_id},
        status_code=201,
    )


MAX_START_BODY = 64 * 1024


def _is_id(value: object) -> TypeGuard[int]:
    """A Chatwoot id: a positive integer PostgreSQL's bigint holds."""
    return type(value) is int and 0 < value <= BIGINT_MAX


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


def _template(flow: Flow, scope: Mapping[str, Any]) -> dict[str, Any] | None:
    spec = flow.template
    if spec is None:
        return None
    params = {
        "name": spec.name,
        "language": spec.language,
        "processed_params": render_value(spec.params, scope),
    }
    if spec.category is not None:
        params["category"] = spec.category
    return params


async def conversation(request: Request) -> Response:
    state = _authorized(request)
    if isinstance(state, Response):
        return state
    raw = request.path_params["conversation_id"]
    service = state["service"]
    account = request.query_params.get("accountId")
    if not _is_id(raw):
        return error(404, "not_found", "no conversation has that id")
    account_id = None if account is None else ascii_int(account)
    if account is not None and not _is_id(account_id):
        return error(422, "invalid", "accountId must be a number")
    accounts = [account_id] if account_id else await service.store.accounts_of(raw)
    if not accounts:
        return JSONResponse({"conversation_id": raw, "session": None, "interactions": []})
    if len(accounts) > 1:
        return error(422, "account_needed", f"pass ?accountId=: seen in accounts {accounts}")
    session, interactions = await service.store.conversation_view(accounts[0], raw)
    return JSONResponse(
        {
            "conversation_id": raw,
            "account_id": accounts[0],
            "session": None
            if session is None
            else {
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
    try:
        if kind in YAML_TYPES:
            text = body.decode("utf-8", errors="replace")
            flow = parse_flow(text, "<request>", default_name="request")
            if "name" not in flow.definition:
                return error(422, "invalid", "the YAML needs a `name:` (there is no file name)")
        else:
            flow_or_error = _flow_from_json(body)
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
    return JSONResponse(
        {"name": flow.name, "version": flow.version, "changed": changed},
        status_code=201 if changed else 200,
    )


def _flow_from_json(body: bytes) -> Flow | Response:
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
    if config.get("name", name) != name:
        return error(422, "invalid", f"name '{name}' and config.name '{config['name']}' differ")
    config["name"] = name
    return flow_from_definition(config, name=name, file="<request>")
