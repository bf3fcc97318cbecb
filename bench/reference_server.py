"""Reference server: the floor cost of one webhook on this stack.

Routes:
  POST /noop  parse JSON, answer 200                       (framework limit)
  POST /tx    parse JSON, one transaction: upsert a conversation row FOR UPDATE,
              insert an interaction, insert an outbox row   (DB limit per event)
It is the floor that agentbot's intake is compared with, in the same run, on the same database.
Run: DSN=postgresql://... PORT=8799 python bench/reference_server.py   (needs starlette,
uvicorn, psycopg, psycopg-pool), then e.g.
`wrk -t1 -c16 -d10s -s bench/post.lua http://127.0.0.1:8799/tx`.
It creates its own tables b_conv, b_inter and b_outbox in that database.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

DSN = os.environ.get("DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
pool: AsyncConnectionPool[Any] = AsyncConnectionPool(DSN, min_size=4, max_size=10, open=False)

DDL = """
create table if not exists b_conv (id bigint primary key, state text,
    updated_at timestamptz default now());
create table if not exists b_inter (id bigserial primary key, conv_id bigint,
    message_id bigint unique, payload jsonb, at timestamptz default now());
create table if not exists b_outbox (id bigserial primary key, conv_id bigint, body jsonb,
    at timestamptz default now());
"""


async def noop(request: Request) -> Response:
    await request.json()
    return Response(status_code=200)


async def tx(request: Request) -> Response:
    ev = await request.json()
    cid, mid = ev["conversation"]["id"], ev["id"]
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "insert into b_conv (id, state) values (%s, 'start') on conflict (id) do update"
            " set updated_at = now() returning state",
            (cid,),
        )
        await cur.fetchone()
        await conn.execute("select state from b_conv where id = %s for update", (cid,))
        cur = await conn.execute(
            "insert into b_inter (conv_id, message_id, payload) values (%s, %s, %s)"
            " on conflict (message_id) do nothing returning id",
            (cid, mid, Jsonb(ev)),
        )
        if await cur.fetchone():
            await conn.execute("update b_conv set state = 'next' where id = %s", (cid,))
            await conn.execute(
                "insert into b_outbox (conv_id, body) values (%s, %s)",
                (cid, Jsonb({"content": "hi"})),
            )
    return Response(status_code=200)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    await pool.open()
    async with pool.connection() as conn:
        await conn.execute(DDL)
    yield
    await pool.close()


app = Starlette(
    routes=[Route("/noop", noop, methods=["POST"]), Route("/tx", tx, methods=["POST"])],
    lifespan=lifespan,
)

if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(os.environ.get("PORT", "8799")),
        log_level="warning",
        access_log=False,
    )
