"""`agentbot doctor`: can this agentbot work? One line per check, each failure with its fix.

Each check is a small function that returns `Check` values (data); `diagnose` runs them in order
and `doctor_command` prints them and chooses the exit code. The environment, the working
directory, the HTTP transport and the name resolver are parameters, so tests need no mocks.

Doctor changes nothing in Chatwoot. It tries the endpoints the bot needs on conversation 0,
which Chatwoot never has (display ids start at 1): an endpoint the token may call answers 404,
one it may not answers 401, and nothing is written. Only reads go to the conversation given
with `--conversation`. Opening the database may create it, and
start the embedded PostgreSQL, exactly as `agentbot serve` would.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import parse_qs, urlsplit

import httpx
import psycopg
from psycopg.conninfo import conninfo_to_dict

from agentbot import logs
from agentbot.catalog import load_flow_files
from agentbot.chatwoot import parse_version
from agentbot.config import NOT_USED_REASON, Secret, Settings
from agentbot.database import EMBEDDED_DIR, open_database
from agentbot.errors import ConfigError, FlowError, StoreError
from agentbot.migrate import load_migrations, pending
from agentbot.register import (
    INVALID_TOKEN,
    NOT_FOR_BOTS,
    NOT_YOUR_ACCOUNT,
    WEBHOOK_PATH,
    Resolver,
    Version,
    host_is_private,
    safe_fetch_advice,
)

Status = Literal["ok", "warn", "FAIL", "skip"]

TIMEOUT: Final = 10.0  # seconds for each HTTP request
DATABASE_TIMEOUT: Final = 60.0  # starting the embedded PostgreSQL takes a few seconds
NO_CONVERSATION: Final = 0  # Chatwoot's display ids start at 1
FULL_SUPPORT: Final = (4, 14, 2)
REGISTER_HINT: Final = "`agentbot register` prints it"


@dataclass(frozen=True, slots=True)
class Check:
    status: Status
    name: str
    detail: str

    def line(self) -> str:
        # One line, even when a driver's message spans several.
        return f"{self.status:<4}  {self.name}: {' '.join(self.detail.split())}"


@dataclass(frozen=True, slots=True)
class DoctorOptions:
    account_id: int | None = None  # None: the user token's only account, else 1
    conversation_id: int | None = None  # a real conversation to read labels of
    public_url: str | None = None  # agentbot's public URL (its base, or the webhook URL)


@dataclass(frozen=True, slots=True)
class Probe:
    """One endpoint the bot's token must be allowed to call."""

    name: str
    method: str
    suffix: str  # after /conversations/{id}
    body: Mapping[str, Any] | None
    fix: str  # what to do when Chatwoot refuses it to the bot
    user_token_stands_in: bool = False  # ChatwootClient retries it with CHATWOOT_USER_TOKEN


PROBES: Final[tuple[Probe, ...]] = (
    Probe(
        "send messages",
        "POST",
        "/messages",
        {"content": "agentbot doctor", "private": True},
        "Chatwoot always allows it to bots: is CHATWOOT_API_TOKEN an Agent Bot's token?",
    ),
    Probe(
        "hand off (set the status)",
        "POST",
        "/toggle_status",
        {"status": "open"},
        "Chatwoot always allows it to bots: is CHATWOOT_API_TOKEN an Agent Bot's token?",
    ),
    Probe(
        "set conversation attributes",
        "POST",
        "/custom_attributes",
        {"custom_attributes": {}},
        "bots may set them from Chatwoot 4.2: upgrade Chatwoot",
    ),
    Probe(
        "read conversation attributes",
        "GET",
        "",
        None,
        "reading a conversation needs Chatwoot >= 4.14.2, or set CHATWOOT_USER_TOKEN to an "
        "agent's or administrator's access token for agentbot to use instead",
        user_token_stands_in=True,
    ),
    Probe(
        "read and set labels",
        "GET",
        "/labels",
        None,
        "labels need Chatwoot >= 4.14.2, or set CHATWOOT_USER_TOKEN to an agent's or "
        "administrator's access token for agentbot to use instead",
        user_token_stands_in=True,
    ),
)


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    text: str

    @property
    def error(self) -> str:
        """Chatwoot's `error` (or `message`) field, else the start of the body."""
        try:
            data = json.loads(self.text)
        except ValueError:
            return self.text[:200]
        if isinstance(data, dict):
            return str(data.get("error") or data.get("message") or data)[:200]
        return str(data)[:200]

    def json(self) -> Any:
        try:
            return json.loads(self.text)
        except ValueError:
            return None


# --- configuration, database, flows ------------------------------------------------------------


def check_configuration(
    environ: Mapping[str, str] | None, cwd: Path | None
) -> tuple[Check, Settings | None]:
    try:
        settings = Settings.load(environ, cwd)
    except ConfigError as exc:
        return Check("FAIL", "configuration", str(exc)), None
    return Check("ok", "configuration", "every variable is valid"), settings


def check_not_used(settings: Settings) -> Check | None:
    """The old system's variables (WHATSAPP_*) are said to be unused, not silently ignored."""
    if not settings.not_used:
        return None
    return Check("warn", "unused variables", f"{', '.join(settings.not_used)}: {NOT_USED_REASON}")


async def check_database(settings: Settings, embedded_dir: Path = EMBEDDED_DIR) -> list[Check]:
    """The database can be opened (or started), and which migrations it lacks."""
    fix = "check DATABASE_URL (or POSTGRES_HOST, POSTGRES_PORT, ...) and that PostgreSQL runs"
    try:
        async with asyncio.timeout(DATABASE_TIMEOUT):
            db = await open_database(settings, embedded_dir)
    except (StoreError, psycopg.Error, OSError) as exc:
        return [
            Check("FAIL", "database", f"{exc}; {fix}"),
            Check("skip", "migrations", "the database cannot be opened"),
        ]
    except TimeoutError:
        return [
            Check("FAIL", "database", f"no answer within {DATABASE_TIMEOUT:.0f} s; {fix}"),
            Check("skip", "migrations", "the database cannot be opened"),
        ]
    try:
        where = (
            f"embedded PostgreSQL in {embedded_dir}"
            if db.server is not None
            else _describe_dsn(db.dsn)
        )
        checks = [Check("ok", "database", f"reachable ({where})")]
        try:
            missing = await pending(db.dsn)
        except psycopg.Error as exc:
            checks.append(Check("FAIL", "migrations", f"cannot read the migrations ledger: {exc}"))
            return checks
        total = len(load_migrations())
        if missing:
            checks.append(
                Check(
                    "warn",
                    "migrations",
                    f"{len(missing)} of {total} not applied ({', '.join(missing)}): run "
                    "`agentbot migrate` (`agentbot serve` applies them at start)",
                )
            )
        else:
            checks.append(Check("ok", "migrations", f"all {total} applied"))
        return checks
    finally:
        db.stop()


def check_flows(settings: Settings) -> Check:
    directory = settings.flows_dir
    if not directory.is_dir():
        return Check(
            "warn",
            "flows",
            f"FLOWS_DIR '{directory}' is not a directory: no flow will run; create it or fix "
            "FLOWS_DIR",
        )
    try:
        flows = load_flow_files([directory])
    except FlowError as exc:
        return Check(
            "FAIL",
            "flows",
            f"{len(exc.problems)} problem(s), the first: {exc.problems[0]}; run `agentbot check` "
            "for all of them (`agentbot serve` refuses to start)",
        )
    if not flows:
        return Check("warn", "flows", f"no flow files in '{directory}': no flow will run")
    names = ", ".join(flow.name for _, flow in flows)
    if not any(flow.trigger.default for _, flow in flows):
        return Check(
            "warn",
            "flows",
            f"{len(flows)} valid in {directory} ({names}), but none has `trigger: {{default: "
            "true}`: a new conversation starts a flow only with one of its keywords",
        )
    return Check("ok", "flows", f"{len(flows)} valid in {directory} ({names})")


# --- Chatwoot ------------------------------------------------------------------------------------


async def check_chatwoot(
    http: httpx.AsyncClient, settings: Settings
) -> tuple[list[Check], Version | None]:
    """CHATWOOT_URL answers `GET /api` (Chatwoot's version and health, no token needed)."""
    url = settings.chatwoot_url
    if url is None:
        return [
            Check(
                "FAIL",
                "chatwoot",
                "CHATWOOT_URL is not set: set it in env-workflows, e.g. "
                "CHATWOOT_URL=http://rails:3000 (`agentbot register` prints the lines to paste)",
            )
        ], None
    try:
        response = await http.get(f"{url}/api")
    except httpx.TransportError as exc:
        return [
            Check(
                "FAIL",
                "chatwoot",
                f"Chatwoot at {url} is unreachable: {_reason(exc)}; check CHATWOOT_URL",
            )
        ], None
    answer = _Answer(response.status_code, response.text)
    data = answer.json()
    version = parse_version(data.get("version")) if isinstance(data, dict) else None
    if version is None:
        return [
            Check(
                "warn",
                "chatwoot",
                f"{url} answered {answer.status} to GET /api without Chatwoot's version: check "
                "that CHATWOOT_URL is Chatwoot's base URL (not its /app or /api/v1)",
            )
        ], None
    assert isinstance(data, dict)
    checks = [_version_check(url, version)]
    for key, service in (("data_services", "PostgreSQL"), ("queue_services", "Redis")):
        if data.get(key) not in (None, "ok"):
            checks.append(
                Check(
                    "warn",
                    "chatwoot",
                    f"Chatwoot reports its {service} as '{data.get(key)}': events and replies "
                    "may be delayed until it is fixed",
                )
            )
    return checks, version


def _version_check(url: str, version: Version) -> Check:
    dotted = ".".join(map(str, version))
    if version >= FULL_SUPPORT:
        return Check("ok", "chatwoot", f"Chatwoot {dotted} at {url}")
    missing = ["labels for bots (4.14.2; CHATWOOT_USER_TOKEN stands in)"]
    if version < (4, 13, 0):
        missing.append("signed webhooks (4.13; use WEBHOOK_TOKEN)")
    return Check(
        "warn",
        "chatwoot",
        f"Chatwoot {dotted} at {url} is older than 4.14.2, which agentbot fully supports; "
        f"missing: {', '.join(missing)}",
    )


async def check_bot_token(
    http: httpx.AsyncClient, settings: Settings, account_id: int, conversation_id: int | None
) -> list[Check]:
    """CHATWOOT_API_TOKEN is an Agent Bot's token, and Chatwoot lets it call what the bot needs."""
    url, token = settings.chatwoot_url, settings.chatwoot_api_token
    if url is None:
        return []
    if token is None:
        return [
            Check(
                "FAIL",
                "bot token",
                "CHATWOOT_API_TOKEN is not set: set it to the Agent Bot's access token "
                f"({REGISTER_HINT}); until then replies wait in the outbox",
            )
        ]
    # A bot token is refused the profile ("not authorized for bots"); a user's is not.
    answer = await _call(http, "GET", f"{url}/api/v1/profile", token)
    if answer.status == 0:
        return [Check("FAIL", "bot token", f"Chatwoot at {url} stopped answering: {answer.text}")]
    if answer.status == 401 and INVALID_TOKEN in answer.text:
        return [
            Check(
                "FAIL",
                "bot token",
                f"CHATWOOT_API_TOKEN is not valid: set it to the Agent Bot's access token "
                f"({REGISTER_HINT})",
            )
        ]
    if answer.status == 200:
        data = answer.json()
        who = data.get("name") if isinstance(data, dict) else None
        return [
            Check(
                "FAIL",
                "bot token",
                f"CHATWOOT_API_TOKEN is the access token of user '{who}', not of an Agent Bot: "
                "agentbot would take its own replies for an agent's and stop; set it to the "
                f"bot's access token ({REGISTER_HINT})",
            )
        ]
    checks = [
        Check("ok", "bot token", "CHATWOOT_API_TOKEN is an Agent Bot's access token")
        if answer.status == 401 and NOT_FOR_BOTS in answer.text
        else Check(
            "warn",
            "bot token",
            f"unexpected answer {answer.status} to GET /api/v1/profile: {answer.error}",
        )
    ]
    base = f"{url}/api/v1/accounts/{account_id}/conversations"
    for probe in PROBES:
        conversation = NO_CONVERSATION
        if probe.method == "GET" and conversation_id is not None:
            conversation = conversation_id
        target = f"{base}/{conversation}{probe.suffix}"
        answer = await _call(http, probe.method, target, token, probe.body)
        check = await _judge(http, settings, probe, answer, account_id, conversation, target)
        checks.append(check)
        if NOT_YOUR_ACCOUNT in answer.text:
            break  # every other probe gets the same answer
    return checks


async def _judge(
    http: httpx.AsyncClient,
    settings: Settings,
    probe: Probe,
    answer: _Answer,
    account_id: int,
    conversation: int,
    target: str,
) -> Check:
    name = f"bot token may {probe.name}"
    where = f"{probe.method} conversations/{{id}}{probe.suffix}"
    if answer.status < 300 or (answer.status == 404 and conversation == NO_CONVERSATION):
        return Check("ok", name, f"allowed ({where})")
    if answer.status == 404:
        return Check(
            "warn",
            name,
            f"allowed, but conversation {conversation} does not exist in account {account_id}: "
            "check --conversation and --account",
        )
    if answer.status == 401 and NOT_YOUR_ACCOUNT in answer.text:
        return Check(
            "FAIL",
            name,
            f"the bot does not belong to account {account_id}: pass --account with the bot's "
            "account, or connect the bot to an inbox of this account (`agentbot register`)",
        )
    if answer.status == 401 and NOT_FOR_BOTS in answer.text:
        user = settings.chatwoot_user_token
        if probe.user_token_stands_in and user is not None:
            fallback = await _call(http, probe.method, target, user, probe.body)
            if fallback.status < 300 or fallback.status == 404:
                return Check(
                    "warn",
                    name,
                    f"Chatwoot refuses {where} to bots (before 4.14.2); agentbot uses "
                    "CHATWOOT_USER_TOKEN for it, which Chatwoot allows",
                )
            return Check(
                "FAIL",
                name,
                f"Chatwoot refuses {where} to bots (before 4.14.2), and to CHATWOOT_USER_TOKEN "
                f"too ({fallback.status} {fallback.error}): set CHATWOOT_USER_TOKEN to a valid "
                "agent's or administrator's access token, or upgrade Chatwoot to 4.14.2",
            )
        return Check("FAIL", name, f"refused ({answer.status} {answer.error}): {probe.fix}")
    return Check("warn", name, f"unexpected answer {answer.status} to {where}: {answer.error}")


async def check_user_token(
    http: httpx.AsyncClient, settings: Settings, account_id: int | None
) -> tuple[list[Check], int | None]:
    """CHATWOOT_USER_TOKEN (optional) is a user's valid token; the account, when it has one."""
    url, token = settings.chatwoot_url, settings.chatwoot_user_token
    if url is None or token is None:
        return [], None
    answer = await _call(http, "GET", f"{url}/api/v1/profile", token)
    if answer.status == 401:
        what = "an Agent Bot's token" if NOT_FOR_BOTS in answer.text else "not valid"
        return [
            Check(
                "FAIL",
                "user token",
                f"CHATWOOT_USER_TOKEN is {what}: set it to an agent's or administrator's access "
                "token (Chatwoot: Profile settings, Access Token), or unset it",
            )
        ], None
    data = answer.json()
    if answer.status != 200 or not isinstance(data, dict):
        return [
            Check(
                "warn",
                "user token",
                f"unexpected answer {answer.status} to GET /api/v1/profile: {answer.error}",
            )
        ], None
    accounts = [a for a in data.get("accounts") or [] if isinstance(a, dict) and "id" in a]
    only = int(accounts[0]["id"]) if len(accounts) == 1 else None
    role = next((a.get("role") for a in accounts if a.get("id") == (account_id or only)), None)
    detail = f"CHATWOOT_USER_TOKEN is user '{data.get('name')}'" + (f" ({role})" if role else "")
    return [Check("ok", "user token", detail)], only


async def check_agent_bot(
    http: httpx.AsyncClient, settings: Settings, account_id: int
) -> tuple[list[Check], str | None]:
    """With a user token: the bot whose token is CHATWOOT_API_TOKEN, its URL and its secret."""
    url, token, bot_token = (
        settings.chatwoot_url,
        settings.chatwoot_user_token,
        settings.chatwoot_api_token,
    )
    if url is None or token is None or bot_token is None:
        return [], None
    answer = await _call(http, "GET", f"{url}/api/v1/accounts/{account_id}/agent_bots", token)
    bots = answer.json()
    if answer.status != 200 or not isinstance(bots, list):
        return [
            Check(
                "skip",
                "agent bot",
                f"cannot list the agent bots of account {account_id} with CHATWOOT_USER_TOKEN "
                f"({answer.status} {answer.error})",
            )
        ], None
    bot = next(
        (b for b in bots if isinstance(b, dict) and b.get("access_token") == bot_token.reveal()),
        None,
    )
    if bot is None:
        return [
            Check(
                "warn",
                "agent bot",
                f"no agent bot of account {account_id} has CHATWOOT_API_TOKEN as its access "
                "token: check --account, or run `agentbot register`",
            )
        ], None
    label = f"'{bot.get('name')}' (id {bot.get('id')})"
    outgoing = str(bot.get("outgoing_url") or "")
    if not outgoing:
        return [
            Check(
                "FAIL",
                "agent bot",
                f"{label} has no outgoing URL, so Chatwoot sends it nothing: run "
                "`agentbot register --url https://<public host>/webhooks/chatwoot --inbox ID`",
            )
        ], None
    checks = [Check("ok", "agent bot", f"{label} calls {outgoing}")]
    secret, hook_token = settings.chatwoot_webhook_secret, settings.webhook_token
    refused = "agentbot would refuse every webhook (401) and Chatwoot would hand the conversations "
    if secret is not None and "secret" in bot and bot.get("secret") != secret.reveal():
        checks.append(
            Check(
                "FAIL",
                "webhook secret",
                f"CHATWOOT_WEBHOOK_SECRET is not the secret of agent bot {label}: {refused}"
                f"to humans; set it to the bot's secret ({REGISTER_HINT})",
            )
        )
    elif secret is None and hook_token is not None:
        given = parse_qs(urlsplit(outgoing).query).get("token", [""])[0]
        if given != hook_token.reveal():
            checks.append(
                Check(
                    "FAIL",
                    "webhook token",
                    f"the URL of agent bot {label} does not end with ?token=<WEBHOOK_TOKEN>: "
                    f"{refused}to humans; run `agentbot register` with that URL",
                )
            )
    return checks, outgoing


def check_webhook_auth(settings: Settings, version: Version | None) -> Check:
    if settings.chatwoot_webhook_secret is not None:
        if version is not None and version < (4, 13, 0):
            return Check(
                "FAIL",
                "webhook auth",
                f"CHATWOOT_WEBHOOK_SECRET is set, but Chatwoot {'.'.join(map(str, version))} "
                "does not sign webhooks (4.13 and later do), so agentbot would refuse them all: "
                "unset it and set WEBHOOK_TOKEN, with ?token=<it> on the bot's URL",
            )
        return Check(
            "ok", "webhook auth", "CHATWOOT_WEBHOOK_SECRET is set: webhooks must be signed"
        )
    if settings.webhook_token is not None:
        return Check(
            "ok",
            "webhook auth",
            "WEBHOOK_TOKEN is set: the bot's URL must end with ?token=<WEBHOOK_TOKEN>",
        )
    return Check(
        "warn",
        "webhook auth",
        "neither CHATWOOT_WEBHOOK_SECRET nor WEBHOOK_TOKEN is set: `agentbot serve` generates a "
        "token and logs the URL to give Chatwoot; on Chatwoot >= 4.13 set "
        f"CHATWOOT_WEBHOOK_SECRET to the bot's secret instead ({REGISTER_HINT})",
    )


async def check_public_url(
    http: httpx.AsyncClient,
    public_url: str,
    version: Version | None,
    resolve: Resolver | None = None,
    *,
    explicit: bool = True,
) -> list[Check]:
    """`<base>/health` answers from here, and whether Chatwoot may call a private address.

    Not `explicit` (the URL is the bot's, read from Chatwoot): failing to reach it from here is
    only a warning, since Chatwoot may well reach it from where it runs."""
    parts = urlsplit(public_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [Check("FAIL", "webhook URL", f"'{public_url}' is not an http(s) URL")]
    path = parts.path.rstrip("/").removesuffix(WEBHOOK_PATH)
    health = f"{parts.scheme}://{parts.netloc}{path}/health"
    try:
        response = await http.get(health)
    except httpx.TransportError as exc:
        fix = (
            "check that agentbot runs and that the host, port and proxy in the URL are right"
            if explicit
            else "Chatwoot may still reach it from where it runs; run doctor there, or pass "
            "--public-url"
        )
        checks = [
            Check(
                "FAIL" if explicit else "warn",
                "webhook URL",
                f"{health} is unreachable from here: {_reason(exc)}; {fix}",
            )
        ]
    else:
        if response.status_code == 200:
            checks = [
                Check(
                    "ok",
                    "webhook URL",
                    f"{health} answers 200 from here (Chatwoot must reach it from where it runs)",
                )
            ]
        elif response.status_code == 503:
            checks = [
                Check(
                    "FAIL",
                    "webhook URL",
                    f"{health} answers 503: agentbot runs there but cannot reach its database",
                )
            ]
        else:
            checks = [
                Check(
                    "FAIL",
                    "webhook URL",
                    f"{health} answers {response.status_code}, not agentbot's 200: check the "
                    "URL and the proxy in front of agentbot",
                )
            ]
    host = parts.hostname
    if await host_is_private(host, resolve):
        blocked, advice = safe_fetch_advice(host, version)
        fatal = version is not None and (4, 14, 0) <= version < (4, 14, 1)
        status: Status = "FAIL" if fatal else "warn" if blocked else "ok"
        checks.append(Check(status, "private address", advice))
    return checks


# --- the whole run -------------------------------------------------------------------------------


async def diagnose(
    options: DoctorOptions,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    embedded_dir: Path = EMBEDDED_DIR,
    resolve: Resolver | None = None,
) -> AsyncIterator[Check]:
    """Every check, in order, as each finishes."""
    check, settings = check_configuration(environ, cwd)
    yield check
    if settings is None:
        return
    not_used = check_not_used(settings)
    if not_used is not None:
        yield not_used
    for check in await check_database(settings, embedded_dir):
        yield check
    yield check_flows(settings)

    async with httpx.AsyncClient(transport=transport, timeout=TIMEOUT) as http:
        chatwoot, version = await check_chatwoot(http, settings)
        for check in chatwoot:
            yield check
        reachable = not any(c.status == "FAIL" for c in chatwoot)
        outgoing: str | None = None
        if reachable:
            users, only_account = await check_user_token(http, settings, options.account_id)
            account_id = options.account_id or only_account or 1
            for check in await check_bot_token(http, settings, account_id, options.conversation_id):
                yield check
            for check in users:
                yield check
            if not any(c.status == "FAIL" for c in users):
                bot_checks, outgoing = await check_agent_bot(http, settings, account_id)
                for check in bot_checks:
                    yield check
        elif settings.chatwoot_url is not None:
            yield Check("skip", "bot token", "not checked: Chatwoot is unreachable")
        yield check_webhook_auth(settings, version)
        public_url = options.public_url or outgoing
        if public_url is None:
            yield Check(
                "skip",
                "webhook URL",
                "not checked: pass --public-url (or set CHATWOOT_USER_TOKEN, and doctor reads "
                "the bot's URL from Chatwoot)",
            )
        else:
            explicit = options.public_url is not None
            for check in await check_public_url(
                http, public_url, version, resolve, explicit=explicit
            ):
                yield check


async def run(options: DoctorOptions, **kwargs: Any) -> int:
    """Print each check as it finishes; 1 if any failed."""
    failed = False
    async for check in diagnose(options, **kwargs):
        print(check.line(), flush=True)
        failed = failed or check.status == "FAIL"
    return 1 if failed else 0


def doctor_command(options: DoctorOptions) -> int:
    # Only warnings and errors: doctor's own lines are the report (stdout), logs go to stderr.
    logs.configure(json=not sys.stderr.isatty(), level="warning")
    return asyncio.run(run(options))


async def _call(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    token: Secret,
    body: Mapping[str, Any] | None = None,
) -> _Answer:
    try:
        response = await http.request(
            method,
            url,
            headers={"api_access_token": token.reveal()},
            json=dict(body) if body is not None else None,
        )
    except httpx.TransportError as exc:
        return _Answer(0, f"no answer: {_reason(exc)}")
    return _Answer(response.status_code, response.text)


def _reason(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer within {TIMEOUT:.0f} s"
    return str(exc) or type(exc).__name__


def _describe_dsn(dsn: str) -> str:
    """host:port/dbname, never the password."""
    params = conninfo_to_dict(dsn)
    host = params.get("host") or "localhost"
    port = params.get("port") or 5432
    return f"{host}:{port}/{params.get('dbname') or ''}"
