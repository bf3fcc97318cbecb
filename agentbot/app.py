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
import re
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

from agentbot import (
    api,
    bodies,
    dashboard,
    destinations,
    events,
    housekeeping,
    jsonsafe,
    metrics,
    tokens,
)
from agentbot.catalog import Catalog
from agentbot.chatwoot import ChatwootClient
from agentbot.config import Secret, Settings
from agentbot.errors import AgentbotError, DataRefused, StoreError
from agentbot.outbox import Outbox, RetryPolicy
from agentbot.service import Service
from agentbot.store import Store
from agentbot.timers import Timers
from agentbot.tokens import Verifier

log = structlog.get_logger("agentbot.app")

MAX_BODY = 1024 * 1024  # docs/http.md §1: 413 over 1 MiB
SIGNATURE_WINDOW = 300  # seconds; docs/chatwoot.md §2: reject timestamps older than about 5 minutes
POOL_TIMEOUT = 3.0  # answer 500 well inside Chatwoot's 5 s when the database is away
FLOWS_REFRESH = 10.0  # seconds between re-reads of the current flows (other replicas' changes)
CHATWOOT_CONNECTIONS = 16  # requests to Chatwoot at once (the outbox claims up to 4 x 16 rows)


class State(TypedDict):
    counts: Counter[tuple[str, str]]  # (event, what became of it), since the start
    service: Service
    store: Store
    outbox: Outbox
    credentials: Credentials
    settings: Settings
    client: ChatwootClient | None
    clock: Callable[[], datetime]
    user_token: bool
    metrics: metrics.Metrics


@dataclass(frozen=True, slots=True)
class WebhookAuth:
    secret: Secret | None
    token: Verifier | None

    def check_token(self, request: Request) -> str | None:
        """Token mode: None when the URL's ?token= is right (checked before reading the body);
        always None in signature mode, whose check needs the body."""
        if self.secret is not None:
            return None
        if self.token is not None:
            given = request.query_params.get("token", "")
            if not self.token.matches(given):
                return "the URL's ?token= does not match WEBHOOK_TOKEN"
            return None
        return "no webhook authentication is configured"

    def check(self, request: Request, body: bytes, now: float) -> str | None:
        """None when the request is authentic, else what is wrong."""
        if self.secret is None:
            return self.check_token(request)
        signature = request.headers.get("x-chatwoot-signature")
        timestamp = request.headers.get("x-chatwoot-timestamp")
        if not signature or not timestamp:
            return "missing X-Chatwoot-Signature or X-Chatwoot-Timestamp"
        seconds = jsonsafe.ascii_int(timestamp, max_digits=12)
        if seconds is None or abs(now - seconds) > SIGNATURE_WINDOW:
            return "X-Chatwoot-Timestamp is outside the 5-minute window"
        digest = hmac.new(
            self.secret.reveal().encode(), timestamp.encode() + b"." + body, hashlib.sha256
        ).hexdigest()
        # Header values arrive as latin-1 text: compare bytes, whatever they hold.
        if not hmac.compare_digest(b"sha256=" + digest.encode(), signature.encode("latin-1")):
            return "X-Chatwoot-Signature does not match CHATWOOT_WEBHOOK_SECRET"
        return None


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
    if delivery_id is not None and not _DELIVERY_ID.fullmatch(delivery_id):
        log.warning("webhook.bad_delivery_id", length=len(delivery_id))
        return error(400, "bad_request", "X-Chatwoot-Delivery is not a delivery id")
    structlog.contextvars.bind_contextvars(delivery_id=delivery_id)
    auth = state["credentials"].webhook
    problem = auth.check_token(request)
    if problem is not None:
        log.warning("webhook.unauthorized", reason=problem)
        return error(401, "unauthorized", problem)
    try:
        body = await bodies.read(request, MAX_BODY, request.app.state.body_deadline)
    except bodies.BodyRefused as exc:
        log.warning("webhook.body_refused", reason=exc.code)
        return exc.response
    clock: Callable[[], datetime] = request.app.state.clock
    problem = auth.check(request, body, clock().timestamp())
    if problem is not None:
        log.warning("webhook.unauthorized", reason=problem)
        return error(401, "unauthorized", problem)
    try:
        payload = bodies.parse_json(body)
    except bodies.BodyRefused as exc:
        log.warning("webhook.bad_json", error=str(exc))
        return exc.response
    parsed = events.parse(payload)
    if isinstance(parsed, events.Ignored):
        label = _event_label(parsed.event)
        structlog.contextvars.bind_contextvars(
            chatwoot_event=label, conversation_id=parsed.conversation_id
        )
        if parsed.malformed:
            log.warning("webhook.malformed", reason=parsed.reason[:200])
            state["counts"][(label, "malformed")] += 1
        else:
            log.debug("webhook.ignored", reason=parsed.reason[:200])
            state["counts"][(label, "ignored")] += 1
        return JSONResponse({"status": "ignored", "reason": parsed.reason[:200]})
    event_name = str(payload.get("event"))
    structlog.contextvars.bind_contextvars(
        chatwoot_event=event_name, conversation_id=parsed.conversation.id
    )
    service = state["service"]
    if isinstance(parsed, events.CustomerMessage | events.OptionSubmitted):
        handled = await service.handle(
            parsed, event_name=event_name, delivery_id=delivery_id, now=clock(), payload=payload
        )
    elif isinstance(parsed, events.WidgetOpened):
        handled = await service.widget_opened(
            parsed, event_name=event_name, delivery_id=delivery_id, now=clock()
        )
    else:
        handled = await service.notice(
            parsed, event_name=event_name, delivery_id=delivery_id, now=clock()
        )
    state["counts"][(event_name, handled.result.value)] += 1
    log.info("webhook.handled", result=handled.result.value, actions=handled.actions)
    return JSONResponse({"status": handled.result.value})


# Chatwoot sends a UUID; anything printable and short is taken, the rest refused.
_DELIVERY_ID = re.compile(r"[\x21-\x7e]{1,128}")
KNOWN_EVENTS = frozenset(
    {"message_created", "message_updated", "webwidget_triggered", *events.CONVERSATION_EVENTS}
)


def _event_label(name: str) -> str:
    """The event's name when agentbot knows it, else "other": what /health counts stays small."""
    return name if name in KNOWN_EVENTS else "other"


async def health(request: Request) -> Response:
    """Fixed keys only; the flows and event counts with the API bearer token."""
    state = _state(request)
    settings = state["settings"]
    body: dict[str, Any] = {
        "status": "ok",
        "database": "ok",
        "chatwoot": "configured" if settings.chatwoot_configured else "not configured",
    }
    if api.bearer_ok(request, state["credentials"].api):
        body["flows"] = sorted(state["service"].catalog.current)
        body["events"] = _counts(state["counts"])
    else:
        body["flow_count"] = len(state["service"].catalog.current)
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


async def metrics_endpoint(request: Request) -> Response:
    state = _state(request)
    refused = metrics.authorized(state["settings"].metrics_token, request)
    if refused is not None:
        if refused.status_code == 401:
            log.warning("metrics.unauthorized")
        return refused
    outbox_rows, session_rows = await state["store"].metrics_rows(
        metrics.OUTBOX_COUNTS, metrics.SESSION_COUNTS
    )
    snapshot = metrics.snapshot_from_rows(outbox_rows, session_rows)
    return metrics.response(state["metrics"].render(snapshot))


async def on_data_refused(request: Request, exc: Exception) -> Response:
    log.warning("request.data_refused", error=str(exc)[:300], path=request.url.path)
    return error(400, "unstorable", "the request holds data the database cannot store")


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
    body_deadline: float = bodies.READ_DEADLINE,
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
        webhooks = destinations.client(settings.webhook_allowed)
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
            credentials = Credentials(
                await webhook_auth(settings, store), await api_token(settings, store)
            )
            client = None
            if settings.chatwoot_url and settings.chatwoot_api_token:
                http = httpx.AsyncClient(
                    base_url=settings.chatwoot_url,
                    timeout=httpx.Timeout(10.0, connect=5.0),
                    # httpcore scans its connections for each request: keep them few.
                    limits=httpx.Limits(
                        max_connections=CHATWOOT_CONNECTIONS,
                        max_keepalive_connections=CHATWOOT_CONNECTIONS,
                    ),
                    transport=chatwoot_transport,
                )
                client = ChatwootClient(
                    http,
                    settings.chatwoot_api_token,
                    settings.chatwoot_user_token,
                    in_flight=CHATWOOT_CONNECTIONS,
                )
            else:
                log.warning(
                    "chatwoot.not_configured",
                    message="CHATWOOT_URL and CHATWOOT_API_TOKEN are not set: replies wait in "
                    "the outbox until they are",
                )
            service = Service(store, catalog)
            counts: Counter[tuple[str, str]] = Counter()
            figures = metrics.Metrics(counts)
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
                on_sent=figures.delivered,
            )
            service.on_commit = outbox.wake
            timers = Timers(service, clock=clock, interval=timer_interval)
            tasks.append(asyncio.create_task(outbox.run(), name="agentbot-outbox"))
            tasks.append(asyncio.create_task(timers.run(), name="agentbot-timers"))
            tasks.append(
                asyncio.create_task(
                    refresh_flows(catalog, credentials, store), name="agentbot-flows"
                )
            )
            tasks.append(
                asyncio.create_task(
                    housekeeping.run(store, clock, settings.retention_days, settings.history_days),
                    name="agentbot-housekeeping",
                )
            )
            yield State(
                counts=counts,
                service=service,
                store=store,
                outbox=outbox,
                credentials=credentials,
                settings=settings,
                client=client,
                clock=clock,
                user_token=settings.chatwoot_user_token is not None,
                metrics=figures,
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
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            Route("/api/workflow/start", api.start_workflow, methods=["POST"]),
            Route("/api/conversation/{conversation_id:int}", api.conversation, methods=["GET"]),
            Route("/api/workflows", api.list_workflows, methods=["GET"]),
            Route("/api/workflows", api.store_workflow, methods=["POST"]),
            Route("/api/workflows/{name}", api.read_workflow, methods=["GET"]),
            Route("/api/workflows/{name}", api.retire_workflow, methods=["DELETE"]),
            Route(
                "/api/contacts/{contact_id:int}/conversations",
                api.contact_conversations,
                methods=["GET"],
            ),
            Route("/api/stats", api.get_stats, methods=["GET"]),
            Route("/openapi.json", dashboard.openapi_json, methods=["GET"]),
            Route("/docs", dashboard.docs, methods=["GET"]),
            Route("/", dashboard.overview, methods=["GET"]),
            Route("/login", dashboard.login_form, methods=["GET"]),
            Route("/login", dashboard.login, methods=["POST"]),
            Route("/logout", dashboard.logout, methods=["POST"]),
            Route("/flows/{name}", dashboard.flow_page, methods=["GET"]),
            Route(
                "/conversations/{conversation_id:int}",
                dashboard.conversation_page,
                methods=["GET"],
            ),
        ],
        exception_handlers={
            DataRefused: on_data_refused,
            StoreError: on_store_error,
            AgentbotError: on_agentbot_error,
            404: not_found,
        },
        lifespan=lifespan,
    )
    app.state.clock = clock
    app.state.body_deadline = body_deadline
    return app


async def refresh_flows(
    catalog: Catalog, credentials: Credentials, store: Store, interval: float = FLOWS_REFRESH
) -> None:
    """Pick up flows another replica stored through POST /api/workflows, and reset tokens."""
    while True:
        await asyncio.sleep(interval)
        try:
            await catalog.reload()
            await credentials.refresh(store)
        except StoreError as exc:
            log.warning("flows.refresh_failed", error=str(exc))


@dataclass(slots=True)
class Credentials:
    """The tokens in force; generated ones are re-read from the database as flows are, so
    `agentbot tokens --reset` reaches a running service within FLOWS_REFRESH."""

    webhook: WebhookAuth
    api: Verifier

    async def refresh(self, store: Store) -> None:
        stored = await store.settings(tokens.WEBHOOK_KEY, tokens.API_KEY)
        hook = self.webhook.token
        if hook is not None and hook.generated and tokens.WEBHOOK_KEY in stored:
            token = Verifier(stored[tokens.WEBHOOK_KEY], generated=True)
            self.webhook = WebhookAuth(secret=None, token=token)
        if self.api.generated and tokens.API_KEY in stored:
            self.api = Verifier(stored[tokens.API_KEY], generated=True)


async def api_token(settings: Settings, store: Store) -> Verifier:
    """WORKFLOWS_API_TOKEN, or one generated at the first start, kept hashed, printed once."""
    if settings.api_token is not None:
        return Verifier.of(settings.api_token.reveal())
    token = tokens.generate()
    stored, created = await store.setting(tokens.API_KEY, lambda: tokens.digest(token))
    if created:
        log.warning(
            "api.token_generated",
            message="no WORKFLOWS_API_TOKEN is set: /api/* takes this bearer token (shown "
            "once; `agentbot tokens --reset` makes a new one), or set WORKFLOWS_API_TOKEN",
            api_token=token,
        )
    return Verifier(stored, generated=True)


async def webhook_auth(settings: Settings, store: Store) -> WebhookAuth:
    """The secret when set; else WEBHOOK_TOKEN; else a token generated once and kept hashed."""
    if settings.chatwoot_webhook_secret is not None:
        return WebhookAuth(secret=settings.chatwoot_webhook_secret, token=None)
    if settings.webhook_token is not None:
        return WebhookAuth(secret=None, token=Verifier.of(settings.webhook_token.reveal()))
    token = tokens.generate()
    stored, created = await store.setting(tokens.WEBHOOK_KEY, lambda: tokens.digest(token))
    if created:
        # Printed once, at the first start: the administrator pastes it into the Agent Bot.
        log.warning(
            "webhook.token_generated",
            message="no CHATWOOT_WEBHOOK_SECRET or WEBHOOK_TOKEN is set: set the Agent Bot's "
            "webhook URL to the one below (shown once; `agentbot tokens --reset` makes a new "
            "one), or set WEBHOOK_TOKEN yourself",
            webhook_url=webhook_url(settings, token),
        )
    else:
        log.info(
            "webhook.token_stored",
            message="using the webhook token generated earlier (kept hashed; "
            "`agentbot tokens --reset` makes a new one)",
        )
    return WebhookAuth(secret=None, token=Verifier(stored, generated=True))


def webhook_url(settings: Settings, token: str | None) -> str:
    url = f"http://<this-host>:{settings.port}/webhooks/chatwoot"
    return url if token is None else f"{url}?token={token}"
