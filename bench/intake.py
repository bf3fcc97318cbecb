"""Webhook intake: agentbot against the reference server, same run, same database server.

The reference (bench/reference_server.py) is the floor for one event on this stack:
parse JSON, one transaction (upsert a conversation row FOR UPDATE, insert an interaction, insert
an outbox row). agentbot's intake does the real work: authenticate, parse, dedupe, lock, load the
session, step the engine, save the session, history and outbox.

    apt-get install wrk      # the load generator
    .venv/bin/python bench/intake.py [--seconds 10] [--connections 16] [--rounds 3]

Needs a PostgreSQL server (BENCH_DATABASE_URL, default postgresql://postgres@127.0.0.1:5432/
postgres): it creates and drops its own databases there. Chatwoot is not configured, so the
replies stay in the outbox and only the intake is measured. Prints requests/s and latency
percentiles of each round and the medians; not run by CI (these machines are shared and noisy).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
TOKEN = "bench-token"
FLOW = """
trigger: {default: true}
blocks:
  inicio:
    message: "Olá {{nome}}! Quer continuar?"
    buttons:
      - {text: Sim, next_block: inicio}
      - {text: Não, next_block: fim}
  fim:
    message: "Até logo!"
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def database(admin: str) -> Iterator[str]:
    name = f"agentbot_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(admin, dbname=name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )


@contextmanager
def process(args: list[str], env: dict[str, str], health: str, cwd: Path) -> Iterator[None]:
    log = (cwd / "server.log").open("w")
    proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"{args[:3]} stopped: {(cwd / 'server.log').read_text()}")
            try:
                httpx.request("POST" if "noop" in health else "GET", health, json={}, timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{args[:3]} did not start") from None
                time.sleep(0.1)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def wrk(url: str, seconds: int, connections: int) -> tuple[float, dict[str, float]]:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(BENCH / "post.lua"),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    latency = {}
    for pct in ("50", "90", "99"):
        m = re.search(rf"\s{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s)", out)
        assert m is not None, out
        value = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
        latency[f"p{pct}"] = value
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"{url}: {errors.group(1)} non-2xx answers\n{out}")
    return rps, latency


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    admin = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    work = Path(tempfile.mkdtemp(prefix="agentbot-bench-"))
    (work / "flows").mkdir()
    (work / "flows" / "bench.yaml").write_text(FLOW)
    results: dict[str, list[tuple[float, dict[str, float]]]] = {"reference": [], "agentbot": []}
    with database(admin) as ref_dsn, database(admin) as bot_dsn:
        ref_port, bot_port = free_port(), free_port()
        base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
        ref_env = {**base, "DSN": ref_dsn, "PORT": str(ref_port)}
        bot_env = {
            **base,
            "DATABASE_URL": bot_dsn,
            "WEBHOOK_TOKEN": TOKEN,
            "WORKFLOWS_HOST": "127.0.0.1",
            "WORKFLOWS_PORT": str(bot_port),
            "FLOWS_DIR": str(work / "flows"),
            "LOG_LEVEL": "warning",
            "LOG_FORMAT": "json",
        }
        reference = [sys.executable, str(BENCH / "reference_server.py")]
        agentbot = [sys.executable, "-m", "agentbot", "serve"]
        ref_url = f"http://127.0.0.1:{ref_port}"
        bot_url = f"http://127.0.0.1:{bot_port}"
        with (
            process(reference, ref_env, f"{ref_url}/noop", work),
            process(agentbot, bot_env, f"{bot_url}/health", work),
        ):
            for round_ in range(1, args.rounds + 1):
                for name, url in (
                    ("reference", f"{ref_url}/tx"),
                    ("agentbot", f"{bot_url}/webhooks/chatwoot?token={TOKEN}"),
                ):
                    rps, lat = wrk(url, args.seconds, args.connections)
                    results[name].append((rps, lat))
                    print(
                        f"round {round_} {name:9} {rps:8.0f} req/s  p50 {lat['p50']:6.2f} ms"
                        f"  p90 {lat['p90']:6.2f} ms  p99 {lat['p99']:6.2f} ms",
                        flush=True,
                    )
    shutil.rmtree(work, ignore_errors=True)
    med = {
        name: (
            statistics.median(r for r, _ in rows),
            statistics.median(lat["p50"] for _, lat in rows),
            statistics.median(lat["p99"] for _, lat in rows),
        )
        for name, rows in results.items()
    }
    print(f"\nmedians over {args.rounds} rounds, {args.connections} connections, {args.seconds} s:")
    for name, (rps, p50, p99) in med.items():
        print(f"  {name:9} {rps:8.0f} req/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms")
    ratio = med["agentbot"][0] / med["reference"][0]
    print(f"  agentbot/reference throughput: {ratio:.2f}")


if __name__ == "__main__":
    main()
