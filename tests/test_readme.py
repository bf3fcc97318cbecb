"""The README's commands work as written: its quick start runs, its flow picture is current."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import free_port
from tests.test_cli import environment

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def block(language: str, after: str) -> str:
    """The first fenced block of `language` after the heading `after`."""
    section = README[README.index(after) :]
    match = re.search(rf"```{language}\n(.*?)```", section, re.S)
    assert match is not None, f"no ```{language} block after {after!r}"
    return match.group(1)


def quick_start() -> list[str]:
    """The commands of the README's quick start, without their comments."""
    lines = block("sh", "## Quick start").splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def run(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A `.venv/bin/agentbot …` line, run as `python -m agentbot …` (the same program)."""
    argv = command.split()
    assert argv[0] == ".venv/bin/agentbot", command
    return subprocess.run(
        [sys.executable, "-m", "agentbot", *argv[1:]],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_quick_start_lists_the_commands() -> None:
    """The quick start shows make run, make test, check, test, graph, doctor and tokens."""
    commands = quick_start()
    assert commands[:2] == ["make run", "make test"]
    assert {c.split()[1] for c in commands[2:]} >= {"check", "test", "graph", "doctor", "tokens"}


def test_make_run_serves_health(db_dsn: str, tmp_path: Path) -> None:
    """`make run` in the repository (its shipped env-workflows, all comments) answers /health."""
    assert "make run" in quick_start()
    port = free_port()
    env = environment(tmp_path, DATABASE_URL=db_dsn, WORKFLOWS_PORT=str(port))
    log = (tmp_path / "make-run.log").open("w")
    process = subprocess.Popen(
        ["make", "--no-print-directory", "run"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # make and the agentbot it starts, stopped together below
    )
    try:
        deadline = time.monotonic() + 120
        status = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code
                break
            except httpx.TransportError:
                time.sleep(0.3)
        assert status == 200, (tmp_path / "make-run.log").read_text()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        log.close()


def test_check_test_and_graph_as_written(tmp_path: Path) -> None:
    """`agentbot check`, `agentbot test` and `agentbot graph` from the quick start succeed."""
    env = environment(tmp_path)
    commands = [
        c
        for c in quick_start()
        if c.startswith(".venv/bin/agentbot ") and c.split()[1] in ("check", "test", "graph")
    ]
    assert len(commands) == 3
    for command in commands:
        result = run(command, env)
        assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"
    checked = run(".venv/bin/agentbot check", env).stdout
    assert "flows/fluxo_comercial.yaml: ok" in checked
    tested = run(".venv/bin/agentbot test", env).stdout
    assert re.search(r"^\d+ passed, 0 failed$", tested, re.M)


def test_flow_picture_is_what_graph_prints(tmp_path: Path) -> None:
    """The README's Mermaid picture is `agentbot graph fluxo_comercial`'s output, unedited
    (after a change to the flow: paste the command's output into the README)."""
    graph = run(".venv/bin/agentbot graph fluxo_comercial", environment(tmp_path))
    assert graph.returncode == 0, graph.stderr
    assert block("mermaid", "## What it is") == graph.stdout


def test_tokens_as_written(db_dsn: str, tmp_path: Path) -> None:
    """`agentbot tokens` from the quick start answers on a fresh database, and after
    `--reset` (which prints new tokens once) it says the generated ones are kept as hashes."""
    env = environment(tmp_path, DATABASE_URL=db_dsn)
    [command] = [c for c in quick_start() if c.split()[1:2] == ["tokens"]]
    fresh = run(command, env)
    assert fresh.returncode == 0, fresh.stderr
    assert "generates one at its first start" in fresh.stdout
    reset = run(command + " --reset", env)
    assert reset.returncode == 0, reset.stderr
    assert "/webhooks/chatwoot?token=" in reset.stdout
    again = run(command, env)
    assert again.stdout.count("kept only as a hash") == 2
