"""The HTTP service: Starlette routes and the lifespan that wires everything (composition root).

`create_app(settings, dsn=...)` builds the app; its lifespan opens the pool and the Chatwoot
client, syncs the flows, starts the outbox worker and closes all of it on exit. The webhook only
touches PostgreSQL and answers; Chatwoot is called afterwards, from the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import secrets
import time
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypedDict, cast

import httpx
import structlog
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agentbot import api, events
from agentbot.catalog import Catalog
from agentbot.chatwoot import ChatwootClient
from agentbot.config import Secret, Settings
from agentbot.errors import AgentbotError, StoreError
from agentbot.outbox import Outbox, RetryPolicy
from agentbot.service import Service
from agentbot.store import Store
from agentbot.timers import Timers

log = structlog.get_logger("agentbot.app")

MAX_BODY = 1024 * 1024  # design §4: 413 over 1 MiB
SIGNATURE_WINDOW = 300  # seconds; chatwoot.md §2: reject timestamps older than about 5 minutes
POOL_TIMEOUT = 3.0  # answer 500 well inside Chatwoot's 5 s when the database is away
FLOWS_REFRESH = 10.0  # seconds between re-reads of the current flows (other replicas' changes)


class State(TypedDict):
    counts: Counter[tuple[str, str]]  # (event, what became of it), since the start
    service: Service
    store: Store
    outbox: Outbox
    auth: WebhookAuth
    settings: Settings
    client: ChatwootClient | None
    api_token: Secret
    clock: Callable[[], datetime]
    user_token: bool


@dataclass(frozen=True, slots=True)
class WebhookAuth:
    secret: Secret | None
    token: Secret | None

    def check(self, request: Request, body: bytes, now: float) -> str | None:
        """None when the request is authentic, else what is wrong."""
        if self.secret is not None:
            signature = request.headers.get("x-chatwoot-signature")
            timestamp = request.headers.get("x-chatwoot-timestamp")
            if not signature or not timestamp:
                return "missing X-Chatwoot-Signature or X-Chatwoot-Timestamp"
            if not timestamp.isdigit() or abs(now - int(timestamp)) > SIGNATURE_WINDOW:
                return "X-Chatwoot-Timestamp is outside the 5-minute window"
            digest = hmac.new(
                self.secret.reveal().encode(), timestamp.encode() + b"." + body, hashlib.sha256
            ).hexdigest()
            if not hmac.compare_digest("sha256=" + digest, signature):
                return "X-Chatwoot-Signature does not match CHATWOOT_WEBHOOK_SECRET"
            return None
        if self.token is not None:
            given = request.query_params.get("token", "")
            if not hmac.compare_digest(given.encode(), self.token.reveal().encode()):
                return "the URL's ?token= does not match WEBHOOK_TOKEN"
            return None
        return "no webhook authentication is configured"


class Freshness:
    """The pool's check before lending a connection, skipped for one used a moment ago.

    Checking costs a round trip; it is worth it after a connection sat idle (the server may
    have restarted meanwhile), not between the back-to-back uses of a busy pool. A connection
    cut in that moment fails its statement, which is answered as the database being away.
    """

    def __init__(self, idle: float = 1.0) -> None:
        self.idle = idle
        self.used: weakref.WeakKeyDictionary[AsyncConnection[Any], float] = (
            weakref.WeakKeyDictionary()
        )

    async def check(self, conn: AsyncConnection[Any]) -> None:
        last = self.used.get(conn)
        if last is None or time.monotonic() - last >= self.idle:
            await AsyncConnectionPool.check_connection(conn)

    async def reset(self, conn: AsyncConnection[Any]) -> None:
        self.used[conn] = time.monotonic()


def _state(request: Request) -> State:
    # Starlette copies the lifespan's yielded state into each request's scope.
    return cast(State, request.scope["state"])


def error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": code, "message": message, **extra}, status_code=status)


async def webhook(request: Request) -> Response:
    state = _state(request)
    structlog.contextvars.clear_contextvars()
    delivery_id = request.headers.get("x-chatwoot-delivery") or None
    structlog.contextvars.bind_contextvars(delivery_id=delivery_id)
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY:
        return _too_large()
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_BODY:
            return _too_large()
    clock: Callable[[], datetime] = request.app.state.clock
    problem = state["auth"].check(request, bytes(body), clock().timestamp())
    if problem is not None:
        log.warning("webhook.unauthorized", reason=problem)
        return error(401, "unauthorized", problem)
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("webhook.bad_json", error=str(exc))
        return error(400, "bad_json", f"the body is not JSON: {exc}")
    parsed = events.parse(payload)
    if isinstance(parsed, events.Ignored):
        structlog.contextvars.bind_contextvars(
            chatwoot_event=parsed.event, conversation_id=parsed.conversation_id
        )
        if parsed.malformed:
            log.warning("webhook.malformed", reason=parsed.reason)
            state["counts"][(parsed.event, "malformed")] += 1
        else:
            log.debug("webhook.ignored", reason=parsed.reason)
            state["counts"][(parsed.event, "ignored")] += 1
        return JSONResponse({"status": "ignored", "reason": parsed.reason})
    event_name = str(payload.get("event"))
    structlog.contextvars.bind_contextvars(
        chatwoot_event=event_name, conversation_id=parsed.conversation.id
    )
    service = state["service"]
    if isinstance(parsed, events.CustomerMessage | events.OptionSubmitted):
        handled = await service.handle(
            parsed, event_name=event_name, delivery_id=delivery_id, now=clock()
        )
    elif isinstance(parsed, events.WidgetOpened):
        handled = await service.widget_opened(
            parsed, event_name=event_name, delivery_id=delivery_id, now=clock()
        )
    else:
        handled = await service.notice(parsed, event_name=event_name, delivery_id=delivery_id)
    state["counts"][(event_name, handled.result.value)] += 1
    log.info("webhook.handled", result=handled.result.value, actions=handled.actions)
    return JSONResponse({"status": handled.result.value})


def _too_large() -> JSONResponse:
    log.warning("webhook.too_large")
    return error(413, "too_large", f"the body is larger than {MAX_BODY} bytes")


async def health(request: Request) -> Response:
    state = _state(request)
    settings = state["settings"]
    body: dict[str, Any] = {
        "status": "ok",
        "database": "ok",
        "chatwoot": "configured" if settings.chatwoot_configured else "not configured",
        "flows": sorted(state["service"].catalog.current),
        "events": _counts(state["counts"]),
    }
    try:
        await state["store"].ping()
    except StoreError as exc:
        body.update(status="unavailable", database="unreachable", message=str(exc))
        return JSONResponse(body, status_code=503)
    return JSONResponse(body)


def _counts(counts: Counter[tuple[str, str]]) -> dict[str, dict[str, int]]:
    table: dict[str, dict[str, int]] = {}
    for (event, result), n in sorted(counts.items()):
        table.setdefault(event, {})[result] = n
    return table


async def on_store_error(request: Request, exc: Exception) -> Response:
    log.error("webhook.store_error", error=str(exc), path=request.url.path)
    return error(500, "database_unavailable", "the event could not be stored; Chatwoot will retry")


async def on_agentbot_error(request: Request, exc: Exception) -> Response:
    log.error("request.failed", error=str(exc), path=request.url.path)
    return error(500, "internal", str(exc))


async def not_found(request: Request, exc: Exception) -> Response:
    return error(404, "not_found", f"no route {request.method} {request.url.path}")


def create_app(
    settings: Settings,
    *,
    dsn: str,
    chatwoot_transport: httpx.AsyncBaseTransport | None = None,
    policy: RetryPolicy | None = None,
    poll_interval: float = 1.0,
    timer_interval: float = 1.0,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    sync_flows: bool = True,
    outbox_lease: float = 30.0,
) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        # Autocommit: a lone statement is one round trip; transactions are explicit.
        freshness = Freshness()
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            dsn,
            min_size=2,
            max_size=16,
            open=False,
            timeout=POOL_TIMEOUT,
            check=freshness.check,
            reset=freshness.reset,
            kwargs={"autocommit": True},
            name="agentbot",
        )
        await pool.open(wait=True, timeout=30)
        http: httpx.AsyncClient | None = None
        webhooks = httpx.AsyncClient(timeout=10.0, follow_redirects=False)
        tasks: list[asyncio.Task[None]] = []
        try:
            store = Store(pool)
            catalog = Catalog(store)
            if sync_flows:
                await catalog.sync_files(
                    settings.flows_dir, user_token=settings.chatwoot_user_token is not None
                )
            else:
                await catalog.reload()
            auth = await webhook_auth(settings, store)
            client = None
            if settings.chatwoot_url and settings.chatwoot_api_token:
                http = httpx.AsyncClient(
                    base_url=settings.chatwoot_url,
                    timeout=httpx.Timeout(10.0, connect=5.0),
                    # httpcore scans its connections for each request: keep them few.
                    limits=httpx.Limits(max_connections=16, max_keepalive_connections=16),
                    transport=chatwoot_transport,
                )
                client = ChatwootClient(
                    http, settings.chatwoot_api_token, settings.chatwoot_user_token
                )
            else:
                log.warning(
                    "chatwoot.not_configured",
                    message="CHATWOOT_URL and CHATWOOT_API_TOKEN are not set: replies wait in "
                    "the outbox until they are",
                )
            service = Service(store, catalog)
            outbox = Outbox(
                store,
                client,
                policy=policy,
                poll_interval=poll_interval,
                lease=outbox_lease,
                clock=clock,
                webhooks=webhooks,
                on_reply=lambda tx, row, reply: service.resume(
                    tx, row.account_id, row.conversation_id, reply, clock()
                ),
            )
            service.on_commit = outbox.wake
            timers = Timers(service, clock=clock, interval=timer_interval)
            tasks.append(asyncio.create_task(outbox.run(), name="agentbot-outbox"))
            tasks.append(asyncio.create_task(timers.run(), name="agentbot-timers"))
            tasks.append(asyncio.create_task(refresh_flows(catalog), name="agentbot-flows"))
            yield State(
                counts=Counter(),
                service=service,
                store=store,
                outbox=outbox,
                auth=auth,
                settings=settings,
                client=client,
                api_token=await api_token(settings, store),
                clock=clock,
                user_token=settings.chatwoot_user_token is not None,
            )
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await webhooks.aclose()
            if http is not None:
                await http.aclose()
            await pool.close()

    app = Starlette(
        routes=[
            Route("/webhooks/chatwoot", webhook, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/api/workflow/start", api.start_workflow, methods=["POST"]),
            Route("/api/conversation/{conversation_id:int}", api.conversation, methods=["GET"]),
            Route("/api/workflows", api.list_workflows, methods=["GET"]),
            Route("/api/workflows", api.store_workflow, methods=["POST"]),
            Route("/api/workflows/{name}", api.read_workflow, methods=["GET"]),
        ],
        exception_handlers={
            StoreError: on_store_error,
            AgentbotError: on_agentbot_error,
            404: not_found,
        },
        lifespan=lifespan,
    )
    app.state.clock = clock
    return app


async def refresh_flows(catalog: Catalog, interval: float = FLOWS_REFRESH) -> None:
    """Pick up flows another replica stored through POST /api/workflows."""
    while True:
        await asyncio.sleep(interval)
        try:
            await catalog.reload()
        except StoreError as exc:
            log.warning("flows.refresh_failed", error=str(exc))


async def api_token(settings: Settings, store: Store) -> Secret:
    """WORKFLOWS_API_TOKEN, or one generated at the first start, kept, and printed once."""
    if settings.api_token is not None:
        return settings.api_token
    token, created = await store.setting("api_token", lambda: secrets.token_urlsafe(24))
    if created:
        log.warning(
            "api.token_generated",
            message="no WORKFLOWS_API_TOKEN is set: /api/* takes this bearer token (or set "
            "WORKFLOWS_API_TOKEN yourself)",
            api_token=token,
        )
    return Secret(token)


async def webhook_auth(settings: Settings, store: Store) -> WebhookAuth:
    """The secret when set; else WEBHOOK_TOKEN; else a token generated once and kept."""
    if settings.chatwoot_webhook_secret is not None:
        return WebhookAuth(secret=settings.chatwoot_webhook_secret, token=None)
    if settings.webhook_token is not None:
        return WebhookAuth(secret=None, token=settings.webhook_token)
    token, created = await store.setting("webhook_token", lambda: secrets.token_urlsafe(24))
    if created:
        # Printed once, at the first start: the administrator pastes it into the Agent Bot.
        log.warning(
            "webhook.token_generated",
            message="no CHATWOOT_WEBHOOK_SECRET or WEBHOOK_TOKEN is set: set the Agent Bot's "
            "webhook URL to the one below (or set WEBHOOK_TOKEN yourself)",
            webhook_url=f"http://<this-host>:{settings.port}/webhooks/chatwoot?token={token}",
        )
    else:
        log.info("webhook.token_stored", message="using the webhook token generated earlier")
    return WebhookAuth(secret=None, token=Secret(token))
