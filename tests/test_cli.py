"""The `agentbot` command as a user runs it: real subprocesses, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest

from agentbot.migrate import load_migrations
from tests.conftest import ROOT, free_port
from tests.fakes import FakeChatwoot, FakeChatwootServer
from tests.harness import SALES_FLOW, WEBHOOK_TOKEN, incoming, write_flow


def environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    keep = {
        k: v
        for k, v in os.environ.items()
        # COVERAGE_*: measure the subprocess too (coverage's patch = ["subprocess"])
        if k in ("PATH", "HOME", "LANG", "TMPDIR") or k.startswith("COVERAGE_")
    }
    return {**keep, "LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1", **extra}


def agentbot(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentbot", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@contextmanager
def serving(env: dict[str, str], cwd: Path, port: int) -> Iterator[subprocess.Popen[str]]:
    log = (cwd / "serve.log").open("a")
    process = subprocess.Popen(
        [sys.executable, "-m", "agentbot", "serve"],
        env=env,
        cwd=cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (cwd / "serve.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "agentbot serve did not become healthy"
            time.sleep(0.1)
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)
        log.close()


def test_sigkill_after_acknowledging(db_dsn: str, tmp_path: Path) -> None:
    """Killed with SIGKILL after acknowledging, before delivering: every reply after a restart,
    none twice."""
    fake = FakeChatwoot()
    port = free_port()
    with FakeChatwootServer(fake) as chatwoot:
        chatwoot.stop()  # Chatwoot is down: nothing can be delivered before the kill
        env = environment(
            tmp_path,
            DATABASE_URL=db_dsn,
            CHATWOOT_URL=chatwoot.url,
            CHATWOOT_API_TOKEN=fake.bot_token,
            WEBHOOK_TOKEN=WEBHOOK_TOKEN,
            WORKFLOWS_HOST="127.0.0.1",
            WORKFLOWS_PORT=str(port),
            FLOWS_DIR=str(write_flow(tmp_path / "flows")),
        )
        url = f"http://127.0.0.1:{port}/webhooks/chatwoot?token={WEBHOOK_TOKEN}"
        with serving(env, tmp_path, port) as process:
            events = [incoming(3000 + i, 10 + i, "Oi") for i in range(10)]
            events += [incoming(3100, 1, "Oi"), incoming(3100, 2, "Sim")]
            for event in events:
                assert httpx.post(url, json=event, timeout=5).status_code == 200
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
        with psycopg.connect(db_dsn) as conn:
            pending = conn.execute(
                "select count(*) from workflow_outbox where status = 'pending'"
            ).fetchone()
        assert pending == (12,)

        chatwoot.start()
        with serving(env, tmp_path, port):
            deadline = time.monotonic() + 30
            while not (
                all(fake.messages(3000 + i) for i in range(10)) and len(fake.messages(3100)) == 2
            ):
                assert time.monotonic() < deadline, "replies were not delivered after the restart"
                time.sleep(0.1)
            time.sleep(1)  # anything delivered twice would show up now
        assert [len(fake.messages(3000 + i)) for i in range(10)] == [1] * 10
        assert [m["content"] for m in fake.messages(3100)] == [
            "Olá Maria Silva! Você já é nosso cliente?",
            "Qual produto te interessa?",
        ]
        assert fake.violations == []


def test_invalid_flow_stops_serve(tmp_path: Path) -> None:
    """An invalid flow file stops `agentbot serve` before it starts, listing every problem."""
    bad = (
        SALES_FLOW.replace("next_block: produto}", "next_block: produtos}")
        .replace("Plano Básico", "Plano Básico Premium Plus Max")
        .replace('"Tudo bem! Estamos aqui quando precisar."', '""')
    )
    flows = write_flow(tmp_path / "flows", bad)
    result = agentbot("serve", env=environment(tmp_path, FLOWS_DIR=str(flows)), cwd=tmp_path)
    assert result.returncode == 1
    problems = [line for line in result.stderr.splitlines() if line.startswith(str(flows))]
    assert len(problems) == 3, result.stderr
    assert "unknown block 'produtos' (did you mean 'produto'?)" in result.stderr
    assert "text is 29 characters" in result.stderr
    assert "blocks.tchau.message: message is empty" in result.stderr
    assert not (tmp_path / "data").exists(), "no database may be started for an invalid flow"


def test_bad_setting_is_one_line(tmp_path: Path) -> None:
    """A malformed variable stops the start with one line naming it and the fix."""
    result = agentbot("serve", env=environment(tmp_path, WORKFLOWS_PORT="http"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "agentbot: configuration: WORKFLOWS_PORT 'http' is not a port number: use 1-65535"
    ]


def test_check_and_migrate(db_dsn: str, tmp_path: Path) -> None:
    """`agentbot check` validates the shipped flows; `agentbot migrate` is idempotent."""
    result = agentbot("check", str(ROOT / "flows"), env=environment(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "fluxo_comercial.yaml: ok" in result.stdout
    env = environment(tmp_path, DATABASE_URL=db_dsn)
    result = agentbot("migrate", env=env, cwd=tmp_path)
    assert (result.returncode, result.stdout.strip()) == (0, "applied 0 migration(s)")


@pytest.mark.skipif(os.environ.get("TEST_DATABASE_URL") is not None, reason="embedded only")
def test_embedded_database_keeps_data(tmp_path: Path) -> None:
    """With no database configured, `migrate` starts PostgreSQL in data/postgres, which keeps
    its data across runs and stops afterwards."""
    env = environment(tmp_path)
    first = agentbot("migrate", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    names = [m.name for m in load_migrations()]
    assert first.stdout.strip() == f"applied {len(names)} migration(s): {', '.join(names)}"
    assert (tmp_path / "data" / "postgres" / "PG_VERSION").exists()
    second = agentbot("migrate", env=env, cwd=tmp_path)
    assert second.stdout.strip() == "applied 0 migration(s)"
    assert not (tmp_path / "data" / "postgres" / "postmaster.pid").exists(), "server left running"


@pytest.mark.skipif(os.environ.get("TEST_DATABASE_URL") is not None, reason="embedded only")
def test_embedded_database_stops_with_the_service(tmp_path: Path) -> None:
    """`agentbot serve` on the embedded PostgreSQL stops it on SIGTERM, even after an earlier
    run was killed with SIGKILL and left its mark behind."""
    port = free_port()
    env = environment(tmp_path, WORKFLOWS_HOST="127.0.0.1", WORKFLOWS_PORT=str(port))
    pid_file = tmp_path / "data" / "postgres" / "postmaster.pid"
    with serving(env, tmp_path, port) as process:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    assert pid_file.exists()  # nobody stopped it: the next run must
    with serving(env, tmp_path, port) as process:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 128 + signal.SIGTERM
    deadline = time.monotonic() + 15
    while pid_file.exists():
        assert time.monotonic() < deadline, "the embedded PostgreSQL was left running"
        time.sleep(0.1)


def test_contact_attributes_need_the_user_token(tmp_path: Path) -> None:
    """A flow saving contact attributes is refused at start without CHATWOOT_USER_TOKEN."""
    flow = (
        "trigger: {default: true}\nblocks:\n  a:\n    message: CPF?\n"
        "    input: {save_as: cpf, type: cpf}\n    save_to: contact.custom_attributes.cpf\n"
    )
    flows = write_flow(tmp_path / "flows", flow, "cpf.yaml")
    result = agentbot("serve", env=environment(tmp_path, FLOWS_DIR=str(flows)), cwd=tmp_path)
    assert result.returncode == 1
    assert (
        f"{flows}/cpf.yaml:6: blocks.a.save_to: contact attributes need CHATWOOT_USER_TOKEN"
        in result.stderr
    )


def test_tokens_command(db_dsn: str, tmp_path: Path) -> None:
    """`agentbot tokens` shows the tokens in force; generated ones are hashes it cannot show, so
    it says how to reset them; --reset prints new ones once and keeps only their hashes."""
    from agentbot import tokens

    env = environment(tmp_path, DATABASE_URL=db_dsn)
    first = agentbot("tokens", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        "webhook URL: none yet: `agentbot serve` generates one at its first start",
        "API token: none yet: `agentbot serve` generates one at its first start",
    ]
    reset = agentbot("tokens", "--reset", env=env, cwd=tmp_path)
    assert reset.returncode == 0, reset.stderr
    hook_line, api_line = reset.stdout.splitlines()
    hook = hook_line.split("?token=")[1].split()[0]
    api = api_line.split()[2]
    assert hook_line.startswith("webhook URL: http://<this-host>:3001/webhooks/chatwoot?token=")
    with psycopg.connect(db_dsn) as conn:
        stored: dict[str, str] = dict(
            conn.execute("select key, value from agentbot_settings").fetchall()
        )
    assert stored == {"webhook_token": tokens.digest(hook), "api_token": tokens.digest(api)}
    again = agentbot("tokens", env=env, cwd=tmp_path)
    assert hook not in again.stdout
    assert api not in again.stdout
    assert again.stdout.count("kept only as a hash") == 2
    assert again.stdout.count("agentbot tokens --reset") == 2
    configured = environment(
        tmp_path, DATABASE_URL=db_dsn, WEBHOOK_TOKEN="hook-env", WORKFLOWS_API_TOKEN="api-env"
    )
    shown = agentbot("tokens", "--reset", env=configured, cwd=tmp_path)
    assert shown.stdout.splitlines() == [
        "webhook URL: http://<this-host>:3001/webhooks/chatwoot?token=hook-env (WEBHOOK_TOKEN)",
        "API token: api-env (WORKFLOWS_API_TOKEN)",
    ]
    with psycopg.connect(db_dsn) as conn:  # what the environment sets is not reset
        assert dict(conn.execute("select key, value from agentbot_settings").fetchall()) == stored
    signed = environment(tmp_path, DATABASE_URL=db_dsn, CHATWOOT_WEBHOOK_SECRET="s")
    assert (
        "signed with CHATWOOT_WEBHOOK_SECRET" in agentbot("tokens", env=signed, cwd=tmp_path).stdout
    )
