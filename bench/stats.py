"""GET /api/stats on a year of history: how long the numbers take over 1,000,000 interactions.

Fills a fresh database with --sessions sessions of the sales flow spread over 365 days, ten
interactions each (started, entered, options, chose, missed, labels...), vacuums it (as
autovacuum would have, long before a year is over), rolls the settled history up once (as the
background task does every minute), then times the stats document —
the whole year, a window that cuts days at both ends (rollup plus the partial days' raw
history), and one flow — as the route computes it.

    .venv/bin/python bench/stats.py [--sessions 100000] [--rounds 20]

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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agentbot import logs, stats
from agentbot.catalog import Catalog
from agentbot.flows import parse_flow
from agentbot.migrate import migrate
from agentbot.store import Store
from tests.harness import SALES_FLOW

# Ten interactions per session `g`, k = 1..10; statuses by mod(g, 10): 0-5 completed at tchau or
# atendente, 6-7 handed off at atendente, 8 abandoned at produto, 9 active at produto.
FILL = """
insert into workflow_conversations (id, account_id, conversation_id, contact_id, inbox_id,
    channel, flow_name, flow_version, current_block, status, created_at, updated_at, ended_at)
select g, 1, g, mod(g, 5000), 1, 'Channel::Whatsapp', 'vendas', %(version)s,
    case when mod(g, 10) in (8, 9) then 'produto' when mod(g, 10) < 3 then 'tchau'
        else 'atendente' end,
    case when mod(g, 10) < 6 then 'completed' when mod(g, 10) < 8 then 'handed_off'
         when mod(g, 10) = 8 then 'abandoned' else 'active' end,
    now() - make_interval(days => mod(g, 365), secs => mod(g * 37, 86400)),
    now(),
    case when mod(g, 10) < 8 then now()
        - make_interval(days => mod(g, 365), secs => mod(g * 37, 86400))
        + make_interval(secs => 30 + mod(g, 600)) end
from generate_series(1, %(sessions)s) g;

insert into workflow_interactions (session_id, account_id, conversation_id, direction, kind,
    block, choice, labels, created_at)
select g, 1, g,
    case when k in (1, 4, 7, 8) then 'in' else 'out' end,
    case k when 1 then 'started' when 2 then 'entered' when 3 then 'options'
        when 4 then 'chose' when 5 then 'entered' when 6 then 'options'
        when 7 then case when mod(g, 3) = 0 then 'missed' else 'not_waiting' end
        when 8 then 'chose' when 9 then 'labels' else 'entered' end,
    case when k = 1 then null when k <= 4 then 'boas_vindas' when k <= 8 then 'produto'
        when mod(g, 10) < 3 then 'tchau' else 'atendente' end,
    case k when 4 then case when mod(g, 2) = 0 then 'sim' else 'nao' end
        when 8 then case when mod(g, 10) < 3 then 'so_olhando' else 'plano_pro' end end,
    case when k = 9 then '["lead_quente"]'::jsonb end,
    now() - make_interval(days => mod(g, 365), secs => mod(g * 37, 86400))
        + make_interval(secs => k * 3)
from generate_series(1, %(sessions)s) g, generate_series(1, 10) k;
select setval('workflow_conversations_id_seq', %(sessions)s);
vacuum analyze;
"""


async def run(dsn: str, sessions: int, rounds: int) -> None:
    flow = parse_flow(SALES_FLOW, "vendas.yaml")
    async with AsyncConnectionPool(dsn, min_size=3, max_size=4, open=False) as pool:
        store = Store(pool)
        await store.sync_flow(
            name=flow.name,
            version=flow.version,
            title=flow.title,
            definition=flow.definition,
            source="file",
        )
        catalog = Catalog(store)
        await catalog.reload()
        started = time.perf_counter()
        with psycopg.connect(dsn, autocommit=True) as conn:
            for statement in FILL.split(";\n"):
                if statement.strip():
                    conn.execute(statement, {"version": flow.version, "sessions": sessions})
            count = conn.execute("select count(*) from workflow_interactions").fetchone()
        print(
            f"filled {count[0] if count else 0:,} interactions "
            f"in {time.perf_counter() - started:.1f} s"
        )
        started = time.perf_counter()
        await stats.roll_forward(store)
        print(f"first rollup of the whole year: {time.perf_counter() - started:.1f} s")
        noon = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
        cases: dict[str, tuple[stats.Window, str | None]] = {
            "whole year": (stats.Window(None, None), None),
            "window cutting days": (
                stats.Window(noon - timedelta(days=200), noon - timedelta(days=20, hours=5)),
                None,
            ),
            "one flow": (stats.Window(None, None), "vendas"),
        }
        for label, (window, name) in cases.items():
            times: list[float] = []
            document: dict[str, Any] = {}
            for _ in range(rounds):
                t0 = time.perf_counter()
                document = await stats.stats(store, window, name, catalog)
                times.append((time.perf_counter() - t0) * 1000)
            times.sort()
            p95 = times[max(0, int(len(times) * 0.95) - 1)]
            started_n = document["flows"][0]["started"] if document["flows"] else 0
            print(
                f"{label:>20}: median {statistics.median(times):.1f} ms, p95 {p95:.1f} ms "
                f"({started_n:,} sessions)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    logs.configure(json=True, level="warning")
    admin = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"agentbot_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    dsn = make_conninfo(admin, dbname=name)
    try:
        asyncio.run(migrate(dsn))
        asyncio.run(run(dsn, args.sessions, args.rounds))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )


if __name__ == "__main__":
    main()
