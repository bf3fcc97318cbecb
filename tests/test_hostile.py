"""Hostile input: whatever arrives at the webhook or /api, the service answers 4xx (or ignores
the event), never 5xx while the database is up, keeps serving, and a forged request leaves no
trace. Property tests mutate every sample payload and header; then one test per finding of the
hardening audit (a poisoned outbox row, odd digits, stalled bodies, SSRF, alias bombs, ReDoS,
replays, /health)."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb
from structlog.testing import capture_logs

from agentbot.config import Secret, Settings
from agentbot.destinations import Allowed
from agentbot.engine import CallWebhook, SendText
from agentbot.outbox import RetryPolicy, encode
from tests.conftest import SAMPLES, ServedApp
from tests.fakes import FakeChatwoot
from tests.harness import (
    API_TOKEN,
    WEBHOOK_TOKEN,
    Harness,
    conversation_event,
    incoming,
    running,
    write_flow,
)

# The recorded Chatwoot webhooks (the OpenAPI document and our own request bodies aside).
SAMPLE_FILES = sorted(
    p
    for p in SAMPLES.glob("*.json")
    if p.name != "chatwoot-openapi.json" and "request" not in p.name
)
PAYLOADS = [json.loads(p.read_text()) for p in SAMPLE_FILES]
DEEP = "__DEEP__"  # stands for 50,000 nested arrays, spliced into the JSON text
DIGITS = "__DIGITS__"  # stands for a 5,000-digit integer
HOSTILE = st.one_of(
    st.integers(min_value=2**63, max_value=2**80),
    st.integers(min_value=-(2**70), max_value=0),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["²", "፩", "\x00", "\ud800", "a\x00b", "9" * 500, "..", "{{nome}}", ""]),
    st.sampled_from([DEEP, DIGITS]),
    st.none(),
    st.booleans(),
    st.just([]),
    st.just({}),
    st.lists(st.integers(), max_size=3),
)
# What a client can put in a header: no control characters, and no space at either end (HTTP
# trims it, and httpx refuses to send such a value).
HEADER_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=300,
).map(lambda value: value.strip(" "))


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in a JSON value (the root excluded)."""
    if isinstance(value, dict | list):
        items: Any = value.items() if isinstance(value, dict) else enumerate(value)
        for key, child in items:
            yield (*prefix, key)
            yield from paths(child, (*prefix, key))


def mutate(payload: Any, path: tuple[Any, ...], new: Any, delete: bool) -> Any:
    data = copy.deepcopy(payload)
    target = data
    for key in path[:-1]:
        target = target[key]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = new
    return data


def to_body(data: Any) -> bytes:
    text = json.dumps(data)  # NaN and Infinity come out as the bare words Python's json writes
    text = text.replace(f'"{DEEP}"', "[" * 50_000 + "]" * 50_000)
    text = text.replace(f'"{DIGITS}"', "9" * 5_000)
    return text.encode("utf-8", "surrogatepass")


@st.composite
def mutated_payloads(draw: st.DrawFn) -> bytes:
    payload = draw(st.sampled_from(PAYLOADS))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        places = list(paths(payload))
        path = draw(st.sampled_from(places))
        payload = mutate(payload, path, draw(HOSTILE), draw(st.booleans()))
    return to_body(payload)


class Background:
    """The whole service (and the fake Chatwoot) on a thread of its own, so that Hypothesis can
    drive it with a plain HTTP client, example after example."""

    def __init__(self, dsn: str, flows: Path, **options: Any) -> None:
        self.dsn, self.flows, self.options = dsn, flows, options
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.harness: Harness | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self.error = exc
            self.ready.set()

    async def _main(self) -> None:
        async with running(self.dsn, self.flows, **self.options) as harness:
            self.harness = harness
            self.ready.set()
            while not self.stop.is_set():  # noqa: ASYNC110 (set from another thread)
                await asyncio.sleep(0.05)

    def __enter__(self) -> Background:
        self.thread.start()
        self.ready.wait(60)
        if self.error is not None:
            raise self.error
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(60)

    @property
    def url(self) -> str:
        assert self.harness is not None
        return self.harness.url

    def traces(self) -> tuple[int, int]:
        """Rows in the intake and the outbox: what a request left behind."""
        assert self.harness is not None
        [(events, outbox)] = self.harness.query(
            "select (select count(*) from workflow_events), (select count(*) from workflow_outbox)"
        )
        return int(events), int(outbox)


FLOWS = """
name: vendas
trigger: {default: true}
blocks:
  inicio:
    message: "Olá {{nome}}! Quantos anos você tem?"
    input: {save_as: idade, type: number}
    next_block: escolha
  escolha:
    message: "Escolha"
    buttons: [{text: Sim, next_block: fim}, {text: Não, next_block: fim}]
  fim:
    message: "Obrigado!"
"""


@pytest.fixture
def service(db_dsn: str, tmp_path: Path) -> Iterator[Background]:
    with Background(db_dsn, write_flow(tmp_path, FLOWS, "vendas.yaml")) as background:
        yield background


@pytest.fixture
def http(service: Background) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.url, timeout=30) as client:
        yield client


EXAMPLES = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def post_webhook(
    http: httpx.Client, body: bytes, token: str | None, headers: dict[bytes, bytes] | None = None
) -> httpx.Response:
    params = {} if token is None else {"token": token}
    sent: dict[bytes, bytes] = {b"content-type": b"application/json", **(headers or {})}
    return http.post("/webhooks/chatwoot", params=params, content=body, headers=sent)


def still_serving(http: httpx.Client) -> None:
    r = http.get("/health")
    assert (r.status_code, r.json()["database"]) == (200, "ok")


@EXAMPLES
@given(body=mutated_payloads(), delivery=HEADER_TEXT, content_type=HEADER_TEXT)
def test_mutated_webhooks_never_5xx(
    service: Background, http: httpx.Client, body: bytes, delivery: str, content_type: str
) -> None:
    """Every sample payload, mutated (huge ids, NaN, NUL, lone surrogates, deep nesting, odd
    digits, missing keys) with odd headers: 200, 400 or 413 with a JSON error, never a 5xx; the
    service keeps serving."""
    headers = {
        b"x-chatwoot-delivery": delivery.encode("latin-1"),
        b"content-type": content_type.encode("latin-1"),
    }
    r = post_webhook(http, body, WEBHOOK_TOKEN, headers)
    assert r.status_code in (200, 400, 413), r.text
    assert "error" in r.json() if r.status_code != 200 else "status" in r.json()
    still_serving(http)


@EXAMPLES
@given(body=mutated_payloads(), token=st.one_of(st.none(), HEADER_TEXT))
def test_forged_webhooks_leave_no_trace(
    service: Background, http: httpx.Client, body: bytes, token: str | None
) -> None:
    """A request without the right token is 401 and leaves nothing behind: no event taken in,
    nothing in the outbox, so no reply can ever go out."""
    if token == WEBHOOK_TOKEN:
        token = None
    before = service.traces()
    r = post_webhook(http, body, token)
    assert (r.status_code, r.json()["error"]) == (401, "unauthorized")
    assert service.traces() == before
    still_serving(http)


API = {"authorization": f"Bearer {API_TOKEN}"}
START = {"conversationId": 7, "workflowName": "vendas", "initialData": {"a": 1}, "accountId": 1}
FLOW_JSON = {
    "name": "api_flow",
    "config": {
        "blocks": {
            "a": {"message": "Oi", "buttons": [{"text": "Sim", "next_block": "b"}]},
            "b": {"message": "Fim", "timeout": {"after": "10m", "next_block": "a"}},
        }
    },
}
FLOW_YAML = (
    "name: api_yaml\nblocks:\n  a:\n    message: Oi\n    timeout: {after: 1d, next_block: a}\n"
)


@st.composite
def mutated_json(draw: st.DrawFn, base: dict[str, Any]) -> bytes:
    data: Any = base
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        places = list(paths(data))
        if not places:  # an earlier mutation replaced the whole document with a scalar
            break
        path = draw(st.sampled_from(places))
        data = mutate(data, path, draw(HOSTILE), draw(st.booleans()))
    return to_body(data)


@st.composite
def mutated_text(draw: st.DrawFn, base: str) -> bytes:
    text = base
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        at = draw(st.integers(min_value=0, max_value=len(text)))
        cut = draw(st.integers(min_value=0, max_value=5))
        piece = draw(st.one_of(st.text(max_size=8), st.sampled_from(["&a", "*a", "\x00", "'"])))
        text = text[:at] + piece + text[at + cut :]
    return text.encode("utf-8", "surrogatepass")


SEGMENT = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=30),
    st.sampled_from(["9" * 30, "²", "%00", "..", "-1", "0"]),
)


@EXAMPLES
@given(
    start=mutated_json(START),
    flow=mutated_json(FLOW_JSON),
    yaml_text=mutated_text(FLOW_YAML),
    segment=SEGMENT,
    account=SEGMENT,
)
def test_mutated_api_requests_never_5xx(
    service: Background,
    http: httpx.Client,
    start: bytes,
    flow: bytes,
    yaml_text: bytes,
    segment: str,
    account: str,
) -> None:
    """/api with mutated bodies, odd path segments and query values: a 2xx or 4xx with a JSON
    body, never a 5xx (a conversation Chatwoot does not have is the caller's 404)."""
    segment = quote(segment, safe="")  # one path segment, whatever it holds
    answers = [
        http.post("/api/workflow/start", content=start, headers=API),
        http.post("/api/workflows", content=flow, headers=API),
        http.post(
            "/api/workflows",
            content=yaml_text,
            headers={**API, "content-type": "application/yaml"},
        ),
        http.get(f"/api/workflows/{segment}", headers=API),
        http.get(f"/api/conversation/{segment}", headers=API),
        http.get("/api/conversation/5", params={"accountId": account}, headers=API),
    ]
    for r in answers:
        assert r.status_code < 500, r.text
        if not r.is_redirect:
            r.json()
    still_serving(http)


# --- one test per finding of the audit ----------------------------------------------------

pytestmark = pytest.mark.anyio

SECRET = "s3cret"


def signed(body: bytes, ts: str, secret: str = SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"x-chatwoot-signature": f"sha256={digest}", "x-chatwoot-timestamp": ts}


@asynccontextmanager
async def signed_service(db_dsn: str, tmp_path: Path) -> AsyncIterator[Harness]:
    fake = FakeChatwoot()
    flows = write_flow(tmp_path, FLOWS, "vendas.yaml")
    settings = Settings(
        chatwoot_webhook_secret=Secret(SECRET), api_token=Secret(API_TOKEN), flows_dir=flows
    )
    async with running(db_dsn, flows, fake=fake, settings=settings) as h:
        yield h


async def test_unauthenticated_odd_headers_are_401(db_dsn: str, tmp_path: Path) -> None:
    """X-Chatwoot-Timestamp "²" or 4,300+ digits, a non-ASCII byte in X-Chatwoot-Signature:
    401 with one warning line, no traceback."""
    body = json.dumps(incoming(1, 1, "Oi")).encode()
    now = str(int(time.time()))
    cases = [
        {"x-chatwoot-timestamp": "²", "x-chatwoot-signature": "sha256=00"},
        {"x-chatwoot-timestamp": "9" * 4_400, "x-chatwoot-signature": "sha256=00"},
        {"x-chatwoot-timestamp": now, "x-chatwoot-signature": "sha256=\xe9\xff"},
    ]
    async with signed_service(db_dsn, tmp_path) as h:
        for headers in cases:
            with capture_logs() as logs:
                encoded = {k.encode(): v.encode("latin-1") for k, v in headers.items()}
                r = await h.http.post("/webhooks/chatwoot", content=body, headers=encoded)
            assert (r.status_code, r.json()["error"]) == (401, "unauthorized")
            assert [e["event"] for e in logs] == ["webhook.unauthorized"]
            assert not any("exc_info" in e or "exception" in e for e in logs)
        ok = await h.http.post("/webhooks/chatwoot", content=body, headers=signed(body, now))
        assert ok.status_code == 200


async def test_odd_customer_text_is_an_answer_not_a_500(db_dsn: str, tmp_path: Path) -> None:
    """ "፩" at a buttons question, 5,000 digits, a 402-digit number at a number input: each is
    a wrong answer (the question again), never a 500 nor `database_unavailable`."""
    async with running(db_dsn, write_flow(tmp_path, FLOWS, "vendas.yaml")) as h:
        await h.post(incoming(2, 1, "Oi"))
        for i, text in enumerate(["9" * 402, "1" * 5_000], start=2):
            r = await h.post(incoming(2, i, text))
            assert r.status_code == 200, r.text
        r = await h.post(incoming(3, 11, "Oi"))
        await h.post(incoming(3, 12, "30"))
        r = await h.post(incoming(3, 13, "፩"))
        assert r.status_code == 200
        await h.until(lambda: len(h.sent(3)) == 3)
        assert h.contents(3)[2].startswith("Não entendi")  # the question again, with a hint
        [(variables,)] = h.query(
            "select variables from workflow_conversations where conversation_id = 3"
        )
        assert variables == {"idade": 30}


async def test_stalled_bodies_are_cut(db_dsn: str, tmp_path: Path) -> None:
    """A wrong ?token= is refused before any body is read; a body that stalls halfway gets 408
    at the read deadline; a declared Content-Length over 1 MiB is 413 at once."""
    async with running(db_dsn, write_flow(tmp_path), body_deadline=0.5) as h:
        host, port = h.url.removeprefix("http://").split(":")

        async def raw(request: bytes) -> bytes:
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(request)
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(4096), 5)
            writer.close()
            return answer

        head = "POST /webhooks/chatwoot?token={} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n"
        forged = await raw(head.format("wrong", 1000).encode() + b'{"event":')
        assert forged.startswith(b"HTTP/1.1 401")
        stalled = await raw(head.format(WEBHOOK_TOKEN, 1000).encode() + b'{"event":')
        assert stalled.startswith(b"HTTP/1.1 408")
        huge = await raw(head.format(WEBHOOK_TOKEN, 2 * 1024 * 1024).encode())
        assert huge.startswith(b"HTTP/1.1 413")


async def test_slow_headers_are_cut() -> None:
    """A connection that sends its headers slowly (or never) is closed at the header deadline;
    uvicorn runs with agentbot's limits."""
    import uvicorn
    from starlette.applications import Starlette

    from agentbot import serving

    class Quick(serving.HeaderDeadline):
        header_timeout = 0.3

    options = {**serving.options(), "http": Quick}
    app = Starlette()
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 (uvicorn offers no event)
            await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n")  # and then nothing more
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
        writer.close()
    finally:
        server.should_exit = True
        await task


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Crm:
    """An external service a flow calls, over real HTTP on 127.0.0.1."""

    def __init__(self, answer: bytes = b'{"ok": true}') -> None:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import Response
        from starlette.routing import Route

        self.calls: list[tuple[str, dict[str, str]]] = []
        self.answer = answer

        async def any_path(request: Request) -> Response:
            headers = {k.decode(): v.decode("utf-8") for k, v in request.headers.raw}
            self.calls.append((request.scope["raw_path"].decode(), headers))
            return Response(self.answer, media_type="application/json")

        self.app = Starlette(routes=[Route("/{p:path}", any_path, methods=["GET", "POST"])])


CRM_FLOW = """
name: crm
trigger: {default: true}
blocks:
  inicio:
    message: "Seu protocolo?"
    input: {save_as: t, type: text}
    next_block: chamar
  chamar:
    webhook:
      url: "{crm}/tickets/{{t}}/detalhes"
      method: POST
      headers: {X-Cliente: "{{nome}}"}
      body: {t: "{{t}}"}
      save_as: crm
      on_error: falha
    next_block: ok
  ok:
    message: "Registrado."
  falha:
    message: "Sistema fora do ar."
"""


@asynccontextmanager
async def crm_run(
    db_dsn: str, tmp_path: Path, crm: Crm, *, url: str | None = None, allowed: str = ""
) -> AsyncIterator[tuple[Harness, str]]:
    async with ServedApp(crm.app) as served:
        flow = CRM_FLOW.replace("{crm}", url or served.url)
        fake = FakeChatwoot()
        fake.add_contact(1, 4821, name="José Conceição")
        async with running(
            db_dsn, write_flow(tmp_path, flow, "crm.yaml"), fake=fake, webhook_allowed=allowed
        ) as h:
            yield h, served.url


def _jose(message: dict[str, Any]) -> dict[str, Any]:
    message["sender"]["name"] = "José Conceição"
    message["conversation"]["meta"]["sender"]["name"] = "José Conceição"
    return message


async def test_non_ascii_header_and_dot_dot_path(db_dsn: str, tmp_path: Path) -> None:
    """A header filled with "José" is sent once as UTF-8; a customer's ".." stays inside its
    path segment."""
    crm = Crm()
    async with crm_run(db_dsn, tmp_path, crm, allowed="127.0.0.1") as (h, _):
        await h.post(_jose(incoming(4, 1, "Oi")))
        await h.post(_jose(incoming(4, 2, "..")))
        await h.until(lambda: h.contents(4)[-1:] == ["Registrado."])
        [(path, headers)] = crm.calls
        assert path == "/tickets/%2E%2E/detalhes"
        assert headers["x-cliente"] == "José Conceição"


async def test_crm_answering_nan_is_an_error_not_a_retry(db_dsn: str, tmp_path: Path) -> None:
    """A CRM answering {"x": NaN} is called once; the flow takes its error path."""
    crm = Crm(answer=b'{"x": NaN}')
    async with crm_run(db_dsn, tmp_path, crm, allowed="127.0.0.1") as (h, _):
        await h.post(incoming(5, 1, "Oi"))
        await h.post(incoming(5, 2, "A-1"))
        await h.until(lambda: h.contents(5)[-1:] == ["Sistema fora do ar."])
        await h.settled()
        assert len(crm.calls) == 1


@pytest.mark.parametrize(
    "url",
    ["http://169.254.169.254", "http://localhost:{port}", "http://[::1]:{port}", "{crm}"],
    ids=["metadata", "localhost", "ipv6-loopback", "loopback"],
)
async def test_ssrf_refused_by_default(db_dsn: str, tmp_path: Path, url: str) -> None:
    """Without the operator's allow-list, flows cannot call loopback, link-local (cloud
    metadata) or private addresses, whatever the name resolves to: the flow takes its error
    path and nothing internal reaches the conversation."""
    crm = Crm(answer=b'{"secret": "internal"}')
    async with ServedApp(crm.app) as served:
        port = served.url.rsplit(":", 1)[1]
        target = url.format(port=port, crm=served.url)
        async with crm_run(db_dsn, tmp_path, crm, url=target) as (h, _):
            await h.post(incoming(6, 1, "Oi"))
            await h.post(incoming(6, 2, "A-1"))
            await h.until(lambda: h.contents(6)[-1:] == ["Sistema fora do ar."], limit=20)
            assert crm.calls == []
            [(error,)] = h.query(
                "select result->>'error' from workflow_outbox where action->>'type' = 'webhook'"
            )
            assert "refused" in error


def test_allow_list_parsing() -> None:
    """WEBHOOK_ALLOWED_NETWORKS takes CIDRs, addresses and host names; anything else is named."""
    from ipaddress import ip_address

    from agentbot.destinations import refused

    allowed = Allowed.parse("10.0.0.0/8, 127.0.0.1,crm.internal.")
    assert allowed.hosts == frozenset({"crm.internal"})
    assert not refused(ip_address("10.1.2.3"), allowed)
    assert refused(ip_address("192.168.0.1"), allowed)
    assert refused(ip_address("::ffff:169.254.169.254"), allowed)
    assert refused(ip_address("100.100.100.200"), allowed)
    assert not refused(ip_address("93.184.216.34"), Allowed())
    with pytest.raises(ValueError, match="neither a network"):
        Allowed.parse("10.0.0.0/8, not a host")


async def test_poisoned_outbox_row_is_bounded(db_dsn: str, tmp_path: Path) -> None:
    """An outbox row that fails in a way nobody foresaw (here a URL httpx cannot parse) is
    attempted `unexpected_attempts` times with backoff, then dead-lettered and the conversation
    handed off; the other conversations' replies go on meanwhile."""
    policy = RetryPolicy(first_delay=0.05, max_delay=0.1, unexpected_attempts=3)
    fake = FakeChatwoot()
    fake.add_conversation(1, 8)
    fake.add_conversation(1, 9)
    async with running(db_dsn, write_flow(tmp_path), fake=fake, policy=policy) as h:
        poison = encode(CallWebhook("http://[::1", "POST", {}, None, 1.0, False, "b"))
        h.query(
            "insert into workflow_outbox (account_id, conversation_id, action) values"
            " (1, 8, %s), (1, 8, %s), (1, 9, %s) returning id",
            [
                Jsonb(poison),
                Jsonb(encode(SendText("depois", "b"))),
                Jsonb(encode(SendText("oi", "b"))),
            ],
        )
        await h.until(lambda: fake.status(8) == "open", limit=20)
        await h.settled()
        rows = h.query(
            "select conversation_id, action->>'type', status, attempts from workflow_outbox"
            " order by id"
        )
        assert rows[:3] == [
            (8, "webhook", "dead", 3),
            (8, "text", "cancelled", 0),
            (9, "text", "sent", 1),
        ]
        assert rows[3][:3] == (8, "handoff", "sent")
        assert h.contents(9) == ["oi"]
        assert h.contents(8) == []


async def test_alias_bomb_through_the_api_is_422(db_dsn: str, tmp_path: Path) -> None:
    """A 557-byte YAML alias bomb posted to /api/workflows is refused at once, and /health
    answers meanwhile."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    bomb = "\n".join(["name: bomba", *lines, "blocks: {a: {message: Oi}}"])
    async with running(db_dsn, write_flow(tmp_path)) as h:
        headers = {**API, "content-type": "application/yaml"}
        r = await h.http.post("/api/workflows", content=bomb, headers=headers)
        assert (r.status_code, r.json()["error"]) == (422, "invalid_flow")
        assert "aliases" in r.json()["problems"][0]
        assert (await h.http.get("/health")).status_code == 200


async def test_redos_pattern_does_not_block(db_dsn: str, tmp_path: Path) -> None:
    """`([A-Za-z]+\\s?)+` against 26 letters and a "!" answers at once (RE2 is linear)."""
    flow = (
        "name: nome\ntrigger: {default: true}\nblocks:\n  a:\n    message: Nome?\n"
        "    input: {save_as: n, type: regex, pattern: '([A-Za-z]+\\s?)+'}\n"
        "    next_block: b\n  b:\n    message: ok\n"
    )
    async with running(db_dsn, write_flow(tmp_path, flow, "nome.yaml")) as h:
        await h.post(incoming(10, 1, "Oi"))
        r = await h.post(incoming(10, 2, "a" * 5_000 + "!"))
        assert r.status_code == 200
        assert (await h.http.get("/health")).status_code == 200


async def test_health_is_bounded_and_never_poisoned(db_dsn: str, tmp_path: Path) -> None:
    """Signed events named with a lone surrogate, or 300 made-up names: /health still answers,
    shows no names without the API token, and counts unknown names as "other" with it."""
    async with running(db_dsn, write_flow(tmp_path)) as h:
        await h.post(None, content=b'{"event": "\\ud800"}')
        for i in range(300):
            await h.post({"event": f"made_up_{i}" * 10})
        bare = await h.http.get("/health")
        assert bare.status_code == 200
        assert set(bare.json()) == {"status", "database", "chatwoot", "flow_count"}
        full = await h.http.get("/health", headers=API)
        assert full.json()["events"] == {"other": {"ignored": 301}}
        assert len(full.content) < 1000


async def test_odd_authenticated_payloads_and_api_inputs(db_dsn: str, tmp_path: Path) -> None:
    """Ids of 2^63 and more, NUL bytes, NaN, 50,000-deep nesting, a huge X-Chatwoot-Delivery;
    on /api odd digits, huge ids, NaN and `99999999999d`: each a 4xx or an ignored event, none
    labelled `database_unavailable`."""
    async with running(db_dsn, write_flow(tmp_path)) as h:
        big = incoming(2**63, 1, "Oi")
        nul = incoming(11, 1, "O\x00i")
        cases = [
            (json.dumps(big).encode(), {}, 200),
            (json.dumps(nul).encode(), {}, 200),
            (b'{"event": "message_created", "id": NaN}', {}, 400),
            (b"[" * 50_000 + b"]" * 50_000, {}, 400),
            (json.dumps(incoming(12, 1, "Oi")).encode(), {"x-chatwoot-delivery": "d" * 5000}, 400),
        ]
        for body, headers, status in cases:
            r = await h.post(None, content=body, headers=headers)
            assert r.status_code == status, r.text
            assert r.json().get("error") != "database_unavailable"
        assert h.query("select count(*) from workflow_events where conversation_id = 11") == [(1,)]
        api_cases = [
            ("GET", "/api/conversation/99999999999999999999999", None, 404),
            ("GET", "/api/conversation/5?accountId=²", None, 422),
            ("POST", "/api/workflow/start", b'{"conversationId": NaN}', 400),
            ("POST", "/api/workflow/start", b'{"conversationId": 9223372036854775808}', 422),
            (
                "POST",
                "/api/workflows",
                json.dumps(
                    {
                        "name": "x",
                        "config": {
                            "blocks": {
                                "a": {
                                    "message": "Oi",
                                    "buttons": [{"text": "S", "next_block": "a"}],
                                    "timeout": {"after": "99999999999d", "next_block": "a"},
                                }
                            }
                        },
                    }
                ).encode(),
                422,
            ),
            ("GET", "/api/workflows/..%2F..%2Fetc%2Fpasswd", None, 404),
        ]
        for method, path, content, status in api_cases:
            r = await h.http.request(method, path, content=content, headers=API)
            assert r.status_code == status, (path, r.text)
            assert r.json()["error"] != "database_unavailable"


async def test_replayed_conversation_event_is_a_duplicate(db_dsn: str, tmp_path: Path) -> None:
    """A captured "status open" replayed under a new delivery id is not acted on again."""
    async with running(db_dsn, write_flow(tmp_path)) as h:
        await h.post(incoming(13, 1, "Oi"))
        event = conversation_event("conversation_status_changed", 13, "open")
        first = await h.post(event, delivery_id=str(uuid.uuid4()))
        replay = await h.post(event, delivery_id=str(uuid.uuid4()))
        assert first.json()["status"] != "duplicate"
        assert replay.json()["status"] == "duplicate"


# --- `agentbot check` on mutated flow files --------------------------------------------------

FLOWS_DIR = Path(__file__).resolve().parent.parent / "flows"
SHIPPED = [p.read_text() for p in sorted(FLOWS_DIR.glob("*.yaml"))]
YAML_PIECES = st.sampled_from(
    [
        *("&a ", "*a", "<<: *a", "{{", "}}", "\t", "\x00", "9" * 5000, "- ", ": ", "[", "{"),
        *("'", '"', "!!python/object:os.system", "\ud800", "pattern: '(a)\\1'", "\n"),
        "after: 99999999999d",
    ]
)


@st.composite
def mutated_flow_files(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SHIPPED))
    if draw(st.booleans()):
        import yaml

        data = yaml.safe_load(text)
        for _ in range(draw(st.integers(min_value=1, max_value=3))):
            places = list(paths(data))
            if not places:  # an earlier mutation replaced the whole document with a scalar
                break
            path = draw(st.sampled_from(places))
            new = draw(HOSTILE)
            new = {DEEP: [[[[]]]], DIGITS: 10**200}.get(new, new) if isinstance(new, str) else new
            data = mutate(data, path, new, draw(st.booleans()))
        return yaml.safe_dump(data, allow_unicode=True)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        at = draw(st.integers(min_value=0, max_value=len(text)))
        cut = draw(st.integers(min_value=0, max_value=20))
        piece = draw(st.one_of(YAML_PIECES, st.text(max_size=6)))
        text = text[:at] + piece + text[at + cut :]
    return text


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=mutated_flow_files())
def test_check_never_tracebacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    """`agentbot check` on a mutated shipped flow exits 0 or 1, and any problem is a
    `file:line: path: message` line, never a traceback."""
    from agentbot.cli import main

    path = tmp_path / "fluxo.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    saved = structlog.get_config()  # main() points logging at this test's captured stderr
    try:
        code = main(["check", str(path)])
    finally:
        structlog.configure(**saved)
    out, err = capsys.readouterr()
    assert code in (0, 1)
    assert "Traceback" not in out + err
    if code == 1:
        assert f"{path}:" in err


async def test_refused_data_is_not_an_outage(db_dsn: str) -> None:
    """When the database is up but refuses a value, the error says so (answered 400
    `unstorable`), and is not taken for the database being away."""
    from psycopg_pool import AsyncConnectionPool

    from agentbot.errors import DataRefused
    from agentbot.store import Store

    async with AsyncConnectionPool(db_dsn, min_size=1, open=False) as pool:
        store = Store(pool)
        with pytest.raises(DataRefused, match="refused the data"):
            async with store.transaction() as tx:
                await tx.conn.execute("select %s::bigint", (str(2**64),))
        await store.ping()


@pytest.mark.parametrize("allowed", ["localhost", "127.0.0.0/8,::1"])
async def test_allow_list_lets_flows_reach_an_internal_crm(
    db_dsn: str, tmp_path: Path, allowed: str
) -> None:
    """An operator who lists an internal host or network in WEBHOOK_ALLOWED_NETWORKS lets flows
    call it, by name too (TLS and the Host header keep the URL's name)."""
    crm = Crm()
    async with ServedApp(crm.app) as served:
        target = served.url.replace("127.0.0.1", "localhost")
        async with crm_run(db_dsn, tmp_path, crm, url=target, allowed=allowed) as (h, _):
            await h.post(incoming(14, 1, "Oi"))
            await h.post(incoming(14, 2, "A-1"))
            await h.until(lambda: h.contents(14)[-1:] == ["Registrado."], limit=20)
            [(_, headers)] = crm.calls
            assert headers["host"] == target.removeprefix("http://")
