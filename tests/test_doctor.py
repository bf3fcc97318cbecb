"""`agentbot doctor` against the fake Chatwoot over real HTTP and a real database."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from agentbot.config import Secret, Settings
from agentbot.doctor import (
    Check,
    DoctorOptions,
    check_public_url,
    check_webhook_auth,
    diagnose,
    run,
)
from tests.conftest import ServedApp
from tests.fakes import FakeChatwoot, FakeChatwootServer
from tests.harness import SALES_FLOW, write_flow
from tests.test_cli import agentbot, environment

LABELS_FIX = (
    "labels need Chatwoot >= 4.14.2, or set CHATWOOT_USER_TOKEN to an agent's or "
    "administrator's access token for agentbot to use instead"
)


@pytest.fixture
def fake() -> FakeChatwoot:
    return FakeChatwoot(autocreate=False)


@pytest.fixture
def server(fake: FakeChatwoot) -> Iterator[FakeChatwootServer]:
    with FakeChatwootServer(fake) as server:
        yield server


@pytest.fixture
def env(
    fake: FakeChatwoot, server: FakeChatwootServer, db_dsn: str, tmp_path: Path
) -> dict[str, str]:
    """A healthy configuration: database, flows, Chatwoot, the bot's token and secret."""
    return {
        "DATABASE_URL": db_dsn,
        "FLOWS_DIR": str(write_flow(tmp_path / "flows")),
        "CHATWOOT_URL": server.url,
        "CHATWOOT_API_TOKEN": fake.bot_token,
        "CHATWOOT_WEBHOOK_SECRET": "bot-secret",
    }


async def doctor(
    env: dict[str, str], cwd: Path, options: DoctorOptions | None = None
) -> dict[str, Check]:
    """Every check by name (the last of a name wins); asserts the names are the usual ones."""
    checks = [c async for c in diagnose(options or DoctorOptions(), environ=env, cwd=cwd)]
    return {c.name: c for c in checks}


def statuses(checks: dict[str, Check]) -> dict[str, str]:
    return {name: check.status for name, check in checks.items()}


async def public(host: str) -> Sequence[str]:
    return ["93.184.215.14"]


def test_healthy_setup_exits_0(env: dict[str, str], fake: FakeChatwoot, tmp_path: Path) -> None:
    """Everything right, run as a user runs it: a line per check, no FAIL, exit 0, and nothing
    written to Chatwoot."""
    result = agentbot("doctor", env=environment(tmp_path, **env), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "ok    configuration",
        "ok    database",
        "ok    migrations",
        "ok    flows",
        "ok    chatwoot",
        "ok    bot token",
        "ok    bot token may send messages",
        "ok    bot token may hand off (set the status)",
        "ok    bot token may set conversation attributes",
        "ok    bot token may read conversation attributes",
        "ok    bot token may read and set labels",
        "ok    webhook auth",
        "skip  webhook URL",
    ]
    assert f"ok    chatwoot: Chatwoot 4.15.1 at {env['CHATWOOT_URL']}" in lines
    assert "ok    flows: 1 valid in" in result.stdout
    # The probes went to conversation 0, which does not exist: Chatwoot answered 404, no write.
    probes = [r for r in fake.requests if "/conversations/" in r.path]
    assert {r.path.split("/")[6] for r in probes} == {"0"}
    assert {r.status for r in probes} == {404}
    assert fake.violations == []


def test_missing_permission_and_unreachable_chatwoot_exit_1(
    env: dict[str, str], tmp_path: Path
) -> None:
    """Run as a user runs it: labels refused to bots, then Chatwoot down, each a FAIL with the
    fix, exit 1."""
    old = FakeChatwoot(autocreate=False, labels_for_bots=False, version="4.14.1")
    with FakeChatwootServer(old) as chatwoot:
        run_env = environment(tmp_path, **{**env, "CHATWOOT_URL": chatwoot.url})
        result = agentbot("doctor", env=run_env, cwd=tmp_path)
        assert result.returncode == 1, result.stdout + result.stderr
        assert (
            "FAIL  bot token may read and set labels: refused (401 Access to this endpoint is not "
            f"authorized for bots): {LABELS_FIX}"
        ) in result.stdout.splitlines()
        assert "ok    bot token may send messages" in result.stdout

        chatwoot.stop()
        result = agentbot("doctor", env=run_env, cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    (down,) = [line for line in lines if line.startswith("FAIL  chatwoot:")]
    assert down.startswith(f"FAIL  chatwoot: Chatwoot at {chatwoot.url} is unreachable: ")
    assert down.endswith("; check CHATWOOT_URL")
    assert "skip  bot token: not checked: Chatwoot is unreachable" in lines
    assert "ok    database: " in result.stdout, "the other checks still run"


@pytest.mark.anyio
async def test_labels_refused_but_user_token_stands_in(env: dict[str, str], tmp_path: Path) -> None:
    """On Chatwoot < 4.14.2 with CHATWOOT_USER_TOKEN set, labels are a warning, not a failure."""
    old = FakeChatwoot(autocreate=False, labels_for_bots=False, version="4.14.1")
    with FakeChatwootServer(old) as chatwoot:
        checks = await doctor(
            {**env, "CHATWOOT_URL": chatwoot.url, "CHATWOOT_USER_TOKEN": old.user_token},
            tmp_path,
        )
    labels = checks["bot token may read and set labels"]
    assert labels.status == "warn"
    assert "agentbot uses CHATWOOT_USER_TOKEN for it" in labels.detail
    assert checks["bot token may read conversation attributes"].status == "warn"
    assert checks["chatwoot"].status == "warn"
    assert "older than 4.14.2" in checks["chatwoot"].detail
    assert checks["user token"] == Check(
        "ok", "user token", "CHATWOOT_USER_TOKEN is user 'Admin' (administrator)"
    )
    assert old.violations == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("token", "detail"),
    [
        ("nope", "CHATWOOT_API_TOKEN is not valid: set it to the Agent Bot's access token"),
        ("user-token", "CHATWOOT_API_TOKEN is the access token of user 'Admin', not of an Agent"),
    ],
    ids=["invalid", "user"],
)
async def test_a_wrong_bot_token_fails_with_the_fix(
    env: dict[str, str], tmp_path: Path, fake: FakeChatwoot, token: str, detail: str
) -> None:
    """An invalid token, or a user's in place of the bot's, is one FAIL; no endpoint is probed."""
    checks = await doctor({**env, "CHATWOOT_API_TOKEN": token}, tmp_path)
    assert checks["bot token"].status == "FAIL"
    assert checks["bot token"].detail.startswith(detail)
    assert "`agentbot register` prints it" in checks["bot token"].detail
    assert not any(name.startswith("bot token may") for name in checks)
    assert not [r for r in fake.requests if "/conversations/" in r.path]


@pytest.mark.anyio
async def test_a_bot_of_another_account_fails_once(
    env: dict[str, str], tmp_path: Path, fake: FakeChatwoot
) -> None:
    """--account naming an account the bot is not in: one FAIL saying so, then no more probes."""
    fake.add_account(2)
    checks = await doctor(env, tmp_path, DoctorOptions(account_id=2))
    failed = [c for c in checks.values() if c.status == "FAIL"]
    assert len(failed) == 1
    assert failed[0].name == "bot token may send messages"
    assert "the bot does not belong to account 2: pass --account" in failed[0].detail


@pytest.mark.anyio
async def test_a_named_conversation_is_read(
    env: dict[str, str], tmp_path: Path, fake: FakeChatwoot
) -> None:
    """--conversation: labels are read from it; one that does not exist is a warning."""
    fake.add_conversation(1, 42, labels=["vip"])
    checks = await doctor(env, tmp_path, DoctorOptions(conversation_id=42))
    assert checks["bot token may read and set labels"].status == "ok"
    assert any(r.path.endswith("/conversations/42/labels") for r in fake.requests)
    checks = await doctor(env, tmp_path, DoctorOptions(conversation_id=43))
    labels = checks["bot token may read and set labels"]
    assert labels.status == "warn"
    assert "conversation 43 does not exist in account 1" in labels.detail


@pytest.mark.anyio
async def test_the_bot_is_checked_with_the_user_token(
    env: dict[str, str], tmp_path: Path, fake: FakeChatwoot
) -> None:
    """With CHATWOOT_USER_TOKEN: a secret that is not the bot's FAILs; the bot's URL (private
    here) is fetched from here, a warning only since Chatwoot may reach what we cannot."""
    env = {**env, "CHATWOOT_USER_TOKEN": fake.user_token, "CHATWOOT_WEBHOOK_SECRET": "stale"}
    checks = await doctor(env, tmp_path)
    assert checks["agent bot"].status == "FAIL"
    assert "has no outgoing URL" in checks["agent bot"].detail

    async with ServedApp(health_app(200)) as app:
        async with httpx.AsyncClient(base_url=env["CHATWOOT_URL"]) as http:
            response = await http.patch(
                "/api/v1/accounts/1/agent_bots/1",
                json={"outgoing_url": f"{app.url}/webhooks/chatwoot"},
                headers={"api_access_token": fake.user_token},
            )
            assert response.status_code == 200
        checks = await doctor(env, tmp_path)
    assert checks["agent bot"] == Check(
        "ok", "agent bot", f"'Bot' (id 1) calls {app.url}/webhooks/chatwoot"
    )
    assert checks["webhook secret"].status == "FAIL"
    assert "CHATWOOT_WEBHOOK_SECRET is not the secret of agent bot 'Bot'" in (
        checks["webhook secret"].detail
    )
    assert checks["webhook URL"].status == "ok"
    assert checks["private address"].status == "warn"
    assert "SAFE_FETCH_ALLOW_PRIVATE_NETWORK=true" in checks["private address"].detail


@pytest.mark.anyio
async def test_a_webhook_token_missing_from_the_bot_url_fails(
    env: dict[str, str], tmp_path: Path, fake: FakeChatwoot
) -> None:
    """WEBHOOK_TOKEN without a secret: the bot's URL must carry ?token=<it>, else FAIL."""
    del env["CHATWOOT_WEBHOOK_SECRET"]
    env = {**env, "WEBHOOK_TOKEN": "t0k", "CHATWOOT_USER_TOKEN": fake.user_token}
    bot_id = fake.add_agent_bot(name="agentbot", outgoing_url="https://bot.example.com/w")
    env["CHATWOOT_API_TOKEN"] = next(
        b["access_token"] for b in fake.agent_bots() if b["id"] == bot_id
    )
    checks = await doctor(env, tmp_path, DoctorOptions(public_url="http://127.0.0.1:9"))
    assert checks["webhook token"].status == "FAIL"
    assert "does not end with ?token=<WEBHOOK_TOKEN>" in checks["webhook token"].detail
    assert checks["webhook auth"].status == "ok"


@pytest.mark.anyio
async def test_odd_answers_are_warnings(env: dict[str, str], tmp_path: Path) -> None:
    """CHATWOOT_URL answering without a version, or an endpoint answering 500: warnings that
    show what came back."""
    async with ServedApp(health_app(200)) as other:
        checks = await doctor({**env, "CHATWOOT_URL": other.url}, tmp_path)
    assert checks["chatwoot"].status == "warn"
    assert "answered 404 to GET /api without Chatwoot's version" in checks["chatwoot"].detail

    broken = FakeChatwoot(autocreate=False)
    with FakeChatwootServer(broken) as chatwoot:
        broken.fail_next(1, 200, {"version": "4.15.1", "data_services": "failing"})
        broken.fail_next(1 + 5, 500)  # the profile, then every probe
        checks = await doctor({**env, "CHATWOOT_URL": chatwoot.url}, tmp_path)
    assert checks["chatwoot"].detail.startswith("Chatwoot reports its PostgreSQL as 'failing'")
    assert checks["bot token"].detail.startswith("unexpected answer 500 to GET /api/v1/profile")
    assert checks["bot token may read and set labels"].status == "warn"


@pytest.mark.anyio
async def test_local_problems_are_reported_with_the_fix(
    env: dict[str, str], tmp_path: Path, empty_db_dsn: str
) -> None:
    """Pending migrations warn; invalid flows and an unreachable database FAIL; a bad setting
    stops at the configuration line."""
    flows = write_flow(tmp_path / "bad", SALES_FLOW.replace("next_block: tchau", "next_block: x"))
    checks = await doctor({**env, "DATABASE_URL": empty_db_dsn, "FLOWS_DIR": str(flows)}, tmp_path)
    assert checks["migrations"].status == "warn"
    assert "run `agentbot migrate`" in checks["migrations"].detail
    assert checks["flows"].status == "FAIL"
    assert "unknown block 'x'" in checks["flows"].detail
    assert "run `agentbot check`" in checks["flows"].detail

    checks = await doctor({**env, "DATABASE_URL": "postgresql://127.0.0.1:1/nothing"}, tmp_path)
    assert statuses(checks)["database"] == "FAIL"
    assert checks["database"].detail.endswith(
        "check DATABASE_URL (or POSTGRES_HOST, POSTGRES_PORT, ...) and that PostgreSQL runs"
    )
    assert "\n" not in checks["database"].line()
    assert checks["migrations"].status == "skip"

    assert await run(DoctorOptions(), environ={**env, "WORKFLOWS_PORT": "http"}, cwd=tmp_path) == 1
    checks = await doctor({**env, "WORKFLOWS_PORT": "http"}, tmp_path)
    assert list(checks.values()) == [
        Check("FAIL", "configuration", "WORKFLOWS_PORT 'http' is not a port number: use 1-65535")
    ]


@pytest.mark.anyio
async def test_chatwoot_not_configured_fails(tmp_path: Path, db_dsn: str) -> None:
    """No CHATWOOT_URL: a FAIL saying what to set (the service would keep every reply)."""
    checks = await doctor({"DATABASE_URL": db_dsn, "FLOWS_DIR": str(tmp_path)}, tmp_path)
    assert checks["chatwoot"].status == "FAIL"
    assert "CHATWOOT_URL is not set" in checks["chatwoot"].detail
    assert checks["flows"].status == "warn"
    assert checks["webhook auth"].status == "warn"


@pytest.mark.parametrize(
    ("secret", "token", "version", "status"),
    [
        ("s", None, (4, 15, 1), "ok"),
        ("s", None, (4, 12, 0), "FAIL"),
        (None, "t", (4, 12, 0), "ok"),
        (None, None, None, "warn"),
    ],
    ids=["secret", "secret-before-4.13", "token", "neither"],
)
def test_webhook_auth(
    secret: str | None, token: str | None, version: tuple[int, int, int] | None, status: str
) -> None:
    """A secret, or a token on Chatwoot < 4.13; a secret Chatwoot cannot sign with FAILs."""
    settings = Settings(
        chatwoot_webhook_secret=Secret(secret) if secret else None,
        webhook_token=Secret(token) if token else None,
    )
    assert check_webhook_auth(settings, version).status == status


def health_app(status: int) -> Starlette:
    """A stand-in for agentbot's /health."""

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok" if status == 200 else "error"}, status_code=status)

    return Starlette(routes=[Route("/health", health)])


@pytest.mark.anyio
async def test_public_url_health(tmp_path: Path) -> None:
    """--public-url: /health is fetched from the base (a webhook URL works too); 503, another
    status or no answer FAIL; a private host on Chatwoot 4.14.0 FAILs (no way to allow it)."""
    async with ServedApp(health_app(200)) as ok, httpx.AsyncClient() as http:
        checks = await check_public_url(
            http, f"{ok.url}/webhooks/chatwoot?token=x", (4, 15, 1), public
        )
        assert checks[0] == Check(
            "ok",
            "webhook URL",
            f"{ok.url}/health answers 200 from here (Chatwoot must reach it from where it runs)",
        )
        assert checks[1].status == "warn"  # 127.0.0.1 is private
        checks = await check_public_url(http, ok.url, (4, 14, 0), public)
        assert [c.status for c in checks] == ["ok", "FAIL"]
        assert "upgrade Chatwoot to 4.14.1" in checks[1].detail
        checks = await check_public_url(http, ok.url, (4, 13, 0), public)
        assert [c.status for c in checks] == ["ok", "ok"]
    async with ServedApp(health_app(503)) as down, httpx.AsyncClient() as http:
        (check, _) = await check_public_url(http, down.url, None, public)
        assert (check.status, "cannot reach its database" in check.detail) == ("FAIL", True)
    async with ServedApp(health_app(404)) as other, httpx.AsyncClient() as http:
        (check, _) = await check_public_url(http, f"{other.url}/x", None, public)
        assert check.status == "FAIL"
        assert f"{other.url}/x/health answers 404" in check.detail
    async with httpx.AsyncClient() as http:
        (check, _) = await check_public_url(http, other.url, None, public)
        assert check.status == "FAIL"
        assert "is unreachable from here" in check.detail
        (check, _) = await check_public_url(http, other.url, None, public, explicit=False)
        assert check.status == "warn"
        assert "Chatwoot may still reach it" in check.detail
        (check,) = await check_public_url(http, "bot.example.com", None, public)
        assert check.status == "FAIL"


@pytest.mark.anyio
async def test_old_system_env_file_reports_whatsapp_variables(
    env: dict[str, str], fake: FakeChatwoot, tmp_path: Path
) -> None:
    """The old system's env-workflows works unchanged; its WHATSAPP_* are reported as unused."""
    old = (Path(__file__).parent / "samples" / "env-workflows.old-system").read_text()
    (tmp_path / "env-workflows").write_text(old.replace("old-bot-token", fake.bot_token))
    # What the image and the environment add: CHATWOOT_URL, and here the test's database.
    environ = {k: env[k] for k in ("DATABASE_URL", "FLOWS_DIR", "CHATWOOT_URL")}
    checks = await doctor(environ, tmp_path)
    assert checks["configuration"].status == "ok"
    assert checks["unused variables"] == Check(
        "warn",
        "unused variables",
        "WHATSAPP_API_TOKEN, WHATSAPP_PHONE_ID: WhatsApp goes through Chatwoot's WhatsApp inbox, "
        "agentbot never calls Meta: remove them",
    )
    assert checks["bot token"].status == "ok"
    assert await run(DoctorOptions(), environ=environ, cwd=tmp_path) == 0
