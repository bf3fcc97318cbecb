"""The operators' dashboard: server-rendered pages (Jinja2, inline SVG), nothing from another host.

Sign-in takes the API token (WORKFLOWS_API_TOKEN) in a form and sets an HttpOnly, SameSite=Strict
cookie `agentbot_session`: a random nonce and its HMAC under the token, so changing the token signs
everyone out. Forms that change something carry a CSRF token (another HMAC of the nonce) and are
refused when the Origin header names another site. Pages: the overview, a flow's funnel and
diagram, a conversation's timeline (paged), the API's docs.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from agentbot import api, openapi, stats
from agentbot.api import ApiState
from agentbot.flows import FLOW_NAME, Flow, exits

COOKIE = "agentbot_session"
COOKIE_DAYS = 7
PAGE = 50
MAX_DAYS = 36_600  # the flow page's ?days=: a century at most
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}

templates = jinja2.Environment(
    loader=jinja2.PackageLoader("agentbot", "web"),
    autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
    undefined=jinja2.StrictUndefined,
)


def _state(request: Request) -> ApiState:
    return cast(ApiState, request.scope["state"])


def _sign(token: str, purpose: str, nonce: str) -> str:
    return hmac.new(token.encode(), f"{purpose}:{nonce}".encode(), hashlib.sha256).hexdigest()


def _nonce(request: Request) -> str | None:
    """The signed-in session's nonce, or None."""
    cookie = request.cookies.get(COOKIE, "")
    nonce, _, signature = cookie.partition(".")
    if not nonce or not signature:
        return None
    expected = _sign(_state(request)["credentials"].api.signing_key(), "session", nonce)
    return nonce if hmac.compare_digest(signature, expected) else None


def _csrf(request: Request, nonce: str) -> str:
    return _sign(_state(request)["credentials"].api.signing_key(), "csrf", nonce)


def _same_origin(request: Request) -> bool:
    """No Origin header (same-origin form posts of older browsers), or this host's."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


def render(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = templates.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


async def _form(request: Request) -> dict[str, str]:
    body = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


def _to_login() -> Response:
    return RedirectResponse("/login", status_code=303, headers=SECURITY_HEADERS)


async def login_form(request: Request) -> Response:
    return render("login.html", signed_in=False, problem=None)


async def login(request: Request) -> Response:
    if not _same_origin(request):
        return render("login.html", 403, signed_in=False, problem="refused: another site")
    form = await _form(request)
    api = _state(request)["credentials"].api
    if not api.matches(form.get("token", "")):
        return render("login.html", 401, signed_in=False, problem="that is not the API token")
    nonce = secrets.token_urlsafe(18)
    response = RedirectResponse("/", status_code=303, headers=SECURITY_HEADERS)
    response.set_cookie(
        COOKIE,
        f"{nonce}.{_sign(api.signing_key(), 'session', nonce)}",
        max_age=COOKIE_DAYS * 86400,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


async def logout(request: Request) -> Response:
    nonce = _nonce(request)
    form = await _form(request)
    if (
        nonce is None
        or not _same_origin(request)
        or not hmac.compare_digest(form.get("csrf", ""), _csrf(request, nonce))
    ):
        return render("login.html", 403, signed_in=False, problem="refused: no valid CSRF token")
    response = _to_login()
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


def _page(request: Request, nonce: str) -> dict[str, Any]:
    return {"signed_in": True, "csrf": _csrf(request, nonce)}


HOURLY = """
select floor(extract(epoch from %(now)s::timestamptz - created_at) / 3600)::int, count(*)
from workflow_conversations
where created_at > %(now)s::timestamptz - interval '24 hours' and created_at <= %(now)s
group by 1
"""


async def overview(request: Request) -> Response:
    nonce = _nonce(request)
    if nonce is None:
        return _to_login()
    state = _state(request)
    service = state["service"]
    now = state["clock"]()
    everything = await api.stats_document(service, stats.Window(None, None), None)
    day = await api.stats_document(service, stats.Window(now - timedelta(hours=24), None), None)
    async with service.store.transaction() as tx:
        cur = await tx.conn.execute(HOURLY, {"now": now})
        hours = dict(await cur.fetchall())
    counts = [int(hours.get(23 - i, 0)) for i in range(24)]  # oldest hour first
    return render(
        "overview.html",
        **_page(request, nonce),
        stats=everything,
        day=day,
        hourly=_bars(counts),
        hourly_total=sum(counts),
        flows=sorted(service.catalog.current),
    )


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    height: float
    n: int


def _bars(counts: list[int], height: float = 60.0, width: float = 12.0) -> list[Bar]:
    top = max(counts) or 1
    return [Bar(i * width, height * n / top, n) for i, n in enumerate(counts)]


async def flow_page(request: Request) -> Response:
    nonce = _nonce(request)
    if nonce is None:
        return _to_login()
    state = _state(request)
    service = state["service"]
    name = request.path_params["name"]
    if not FLOW_NAME.fullmatch(name):
        return render("error.html", 404, **_page(request, nonce), problem="no flow has that name")
    days_raw = request.query_params.get("days")
    since = None
    if days_raw is not None:
        days = api.number_param(days_raw, MAX_DAYS)
        if days is None:
            problem = f"days is a number from 1 to {MAX_DAYS}"
            return render("error.html", 422, **_page(request, nonce), problem=problem)
        since = state["clock"]() - timedelta(days=days)
    document = await api.stats_document(service, stats.Window(since, None), name)
    flow = service.catalog.current.get(name)
    if flow is None and not document["flows"]:
        return render("error.html", 404, **_page(request, nonce), problem=f"no flow {name}")
    numbers = document["flows"][0] if document["flows"] else None
    blocks = {b["block"]: b for b in numbers["blocks"]} if numbers else {}
    order = list(flow.blocks) if flow is not None else list(blocks)
    funnel = [
        blocks.get(
            b,
            {
                "block": b,
                "entered": 0,
                "answered": 0,
                "left_here": 0,
                "input_failures": 0,
                "choices": {},
            },
        )
        for b in order
    ]
    top = max([b["entered"] for b in funnel] + [1])
    return render(
        "flow.html",
        **_page(request, nonce),
        name=name,
        title=flow.title if flow is not None else name,
        retired=flow is None,
        numbers=numbers,
        funnel=funnel,
        top=top,
        days=days_raw,
        diagram=layout(flow, blocks) if flow is not None else None,
    )


@dataclass(frozen=True, slots=True)
class Box:
    id: str
    x: int
    y: int
    entered: int
    left: int
    share: float  # left / entered


@dataclass(frozen=True, slots=True)
class Edge:
    x1: int
    y1: int
    x2: int
    y2: int
    label: str

    @property
    def label_at(self) -> tuple[int, int]:
        """Where the label goes: most of the way to the target, so that siblings part."""
        return self.x1 + (self.x2 - self.x1) * 7 // 10, self.y1 + (self.y2 - self.y1) * 7 // 10


@dataclass(frozen=True, slots=True)
class Diagram:
    width: int
    height: int
    boxes: list[Box]
    edges: list[Edge]


BOX_W, BOX_H, GAP_X, GAP_Y = 150, 52, 24, 56


def layout(flow: Flow, numbers: Mapping[str, Mapping[str, Any]]) -> Diagram:
    """Blocks in rows by their distance from the start; each with its entries and drop-off."""
    depth: dict[str, int] = {flow.start: 0}
    queue = deque([flow.start])
    while queue:
        block_id = queue.popleft()
        block = flow.blocks.get(block_id)
        for _, target in exits(block) if block is not None else ():
            if target not in depth and target in flow.blocks:
                depth[target] = depth[block_id] + 1
                queue.append(target)
    last = max(depth.values())
    for block_id in flow.blocks:
        if block_id not in depth:
            last += 1
            depth[block_id] = last
    rows: dict[int, list[str]] = {}
    for block_id in flow.blocks:
        rows.setdefault(depth[block_id], []).append(block_id)
    width = max(len(r) for r in rows.values()) * (BOX_W + GAP_X) + GAP_X
    where: dict[str, tuple[int, int]] = {}
    boxes = []
    for row, ids in sorted(rows.items()):
        offset = (width - len(ids) * (BOX_W + GAP_X) + GAP_X) // 2
        for i, block_id in enumerate(ids):
            x, y = offset + i * (BOX_W + GAP_X), GAP_Y // 2 + row * (BOX_H + GAP_Y)
            where[block_id] = (x, y)
            got = numbers.get(block_id, {})
            entered, left = int(got.get("entered", 0)), int(got.get("left_here", 0))
            boxes.append(Box(block_id, x, y, entered, left, left / entered if entered else 0.0))
    labels: dict[tuple[str, str], list[str]] = {}
    for block in flow.blocks.values():
        for label, target in exits(block):
            if target in where:
                labels.setdefault((block.id, target), []).append(label)
    edges = []
    for (source, target), names in labels.items():
        (x1, y1), (x2, y2) = where[source], where[target]
        text = " / ".join(names)
        edges.append(Edge(x1 + BOX_W // 2, y1 + BOX_H, x2 + BOX_W // 2, y2, text[:24]))
    height = (max(rows) + 1) * (BOX_H + GAP_Y)
    return Diagram(width, height, boxes, edges)


async def conversation_page(request: Request) -> Response:
    nonce = _nonce(request)
    if nonce is None:
        return _to_login()
    service = _state(request)["service"]
    conversation_id = request.path_params["conversation_id"]
    if not api.is_id(conversation_id):
        problem = "no conversation has that id"
        return render("error.html", 404, **_page(request, nonce), problem=problem)
    before_raw = request.query_params.get("before")
    account_raw = request.query_params.get("accountId")
    before = api.number_param(before_raw)
    account = api.number_param(account_raw)
    if (before_raw is not None and before is None) or (account_raw is not None and account is None):
        return render(
            "error.html", 422, **_page(request, nonce), problem="before and accountId are numbers"
        )
    accounts = [account] if account else await service.store.accounts_of(conversation_id)
    session, more = None, False
    rows: list[dict[str, Any]] = []
    if len(accounts) == 1:
        session, rows = await service.store.conversation_view(
            accounts[0], conversation_id, PAGE, before
        )
        more = len(rows) == PAGE
    return render(
        "conversation.html",
        **_page(request, nonce),
        conversation_id=conversation_id,
        accounts=accounts,
        account=accounts[0] if len(accounts) == 1 else None,
        session=session,
        rows=rows,
        older=rows[0]["id"] if more and rows else None,
        fmt=_when,
    )


def _when(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S")


async def docs(request: Request) -> Response:
    document = openapi.document()
    operations = [
        (method.upper(), path, operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    ]
    nonce = _nonce(request)
    page = _page(request, nonce) if nonce is not None else {"signed_in": False, "csrf": None}
    return render("docs.html", **page, ops=operations)


async def openapi_json(request: Request) -> Response:
    return JSONResponse(openapi.document())
