"""Outbox drain: how fast replies that waited out a Chatwoot outage reach it once it is back.

Queues N replies (one per conversation, or several per conversation with --per) in a fresh
database, then runs the outbox worker and times until every reply is delivered. Chatwoot is
`--chatwoot mock` (default: an in-process httpx.MockTransport answering at once, so the figure is
agentbot's own cost: claims, commits, bookkeeping) or `--chatwoot fake` (the tests' fake over
real HTTP, which checks each request against the OpenAPI document and tops out near 180
requests/s itself).

    .venv/bin/python bench/drain.py [--replies 2000] [--per 1] [--rounds 3] [--chatwoot mock]

Needs a PostgreSQL server (BENCH_DATABASE_URL, default postgresql://postgres@127.0.0.1:5432/
postgres); it creates and drops its own database. Not run by CI.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

import httpx
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agentbot import logs
from agentbot.chatwoot import ChatwootClient
from agentbot.config import Secret
from agentbot.migrate import migrate
from agentbot.outbox import Outbox
from agentbot.store import Store
from tests.fakes import FakeChatwoot, FakeChatwootServer


async def one_round(dsn: str, replies: int, per: int, chatwoot: str) -> float:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("truncate workflow_outbox")
        rows = [
            (1, 10_000 + i // per, Jsonb({"type": "text", "text": f"resposta {i}", "block": "b"}))
            for i in range(replies)
        ]
        with conn.cursor() as cur:
            cur.executemany(
                "insert into workflow_outbox (account_id, conversation_id, action)"
                " values (%s, %s, %s)",
                rows,
            )
    posts = 0

    def answer(request: httpx.Request) -> httpx.Response:
        nonlocal posts
        posts += 1
        return httpx.Response(200, json={"id": posts, "message_type": 1})

    fake = FakeChatwoot(message_limit=10**9)
    with FakeChatwootServer(fake) as server:
        if chatwoot == "mock":
            http = httpx.AsyncClient(
                base_url="http://chatwoot", transport=httpx.MockTransport(answer)
            )
        else:
            http = httpx.AsyncClient(base_url=server.url, timeout=10)
        async with (
            AsyncConnectionPool(dsn, min_size=4, max_size=16, open=False) as pool,
            http,
        ):
            store = Store(pool)
            outbox = Outbox(store, ChatwootClient(http, Secret(fake.bot_token)), poll_interval=0.05)
            started = time.monotonic()
            worker = asyncio.create_task(outbox.run())
            while True:
                await asyncio.sleep(0.05)
                async with store.transaction() as tx:
                    cur = await tx.conn.execute(
                        "select count(*) from workflow_outbox where status = 'pending'"
                    )
                    row = await cur.fetchone()
                if row is not None and row[0] == 0:
                    break
            elapsed = time.monotonic() - started
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
    sent = posts if chatwoot == "mock" else len([r for r in fake.requests if r.method == "POST"])
    assert sent == replies, (sent, replies)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replies", type=int, default=2000)
    parser.add_argument("--per", type=int, default=1, help="replies per conversation")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chatwoot", choices=("mock", "fake"), default="mock")
    args = parser.parse_args()
    admin = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"agentbot_drain_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    dsn = make_conninfo(admin, dbname=name)
    logs.configure(json=True, level="warning")  # a line per reply would be what we measure
    try:
        asyncio.run(migrate(dsn))
        times = []
        for round_ in range(1, args.rounds + 1):
            elapsed = asyncio.run(one_round(dsn, args.replies, args.per, args.chatwoot))
            times.append(elapsed)
            print(
                f"round {round_}: {args.replies} replies ({args.per} per conversation) in "
                f"{elapsed:.2f} s, {args.replies / elapsed:.0f}/s",
                flush=True,
            )
        median = statistics.median(times)
        print(f"median: {median:.2f} s, {args.replies / median:.0f} replies/s")
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )


if __name__ == "__main__":
    main()
