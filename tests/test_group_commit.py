"""Group commit: events that arrive together share a transaction; one that fails fails alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from agentbot.service import GroupCommit, Handled, Result, _Job
from agentbot.store import SessionRow, Store, Tx

pytestmark = pytest.mark.anyio


class CountingStore(Store):
    """A Store that counts the transactions it opens."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        super().__init__(pool)
        self.transactions = 0

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        self.transactions += 1
        async with super().transaction() as tx:
            yield tx


def job(conversation_id: int, then: Any, delivery: str | None = None) -> _Job:
    take = {
        "delivery_id": delivery or f"d-{conversation_id}",
        "dedupe_key": None,
        "event": "message_created",
        "account_id": 1,
        "conversation_id": conversation_id,
    }
    return _Job(take, then, asyncio.get_running_loop().create_future())


async def recorded(tx: Tx, row: SessionRow | None) -> Handled:
    await tx.conn.execute("select 1")
    return Handled(Result.RECORDED)


async def test_concurrent_events_share_transactions(db_dsn: str) -> None:
    """Forty events at once take far fewer than forty transactions, and each is taken once."""
    async with AsyncConnectionPool(db_dsn, min_size=1, max_size=4, open=False) as pool:
        store = CountingStore(pool)
        group = GroupCommit(store, writers=2)
        jobs = [job(c, recorded) for c in range(1, 41)]
        results = await asyncio.gather(*(group.submit(j) for j in jobs))
        assert [r.result for r in results] == [Result.RECORDED] * 40
        assert store.transactions <= 10
        again = await group.submit(job(1, recorded))
        assert again.result is Result.DUPLICATE
        async with store.transaction() as tx:
            cur = await tx.conn.execute("select count(*) from workflow_events")
            assert await cur.fetchone() == (40,)


async def test_failing_event_fails_alone(db_dsn: str) -> None:
    """An event whose handling raises fails alone; the others of its batch are stored."""

    async def broken(tx: Tx, row: SessionRow | None) -> Handled:
        raise RuntimeError("this event cannot be handled")

    async with AsyncConnectionPool(db_dsn, min_size=1, max_size=2, open=False) as pool:
        store = Store(pool)
        group = GroupCommit(store, writers=1)
        jobs = [job(c, broken if c == 3 else recorded) for c in range(1, 6)]
        results = await asyncio.gather(*(group.submit(j) for j in jobs), return_exceptions=True)
        assert isinstance(results[2], RuntimeError)
        assert [getattr(r, "result", None) for i, r in enumerate(results) if i != 2] == [
            Result.RECORDED
        ] * 4
        async with store.transaction() as tx:
            cur = await tx.conn.execute(
                "select conversation_id from workflow_events order by conversation_id"
            )
            assert [c for (c,) in await cur.fetchall()] == [1, 2, 4, 5]


async def test_one_conversation_at_a_time_in_order(db_dsn: str) -> None:
    """Events of one conversation go into successive transactions, in order of arrival."""
    seen: list[str] = []

    def noting(name: str) -> Any:
        async def then(tx: Tx, row: SessionRow | None) -> Handled:
            seen.append(name)
            return Handled(Result.RECORDED)

        return then

    async with AsyncConnectionPool(db_dsn, min_size=1, max_size=2, open=False) as pool:
        store = CountingStore(pool)
        group = GroupCommit(store, writers=1)
        jobs = [job(7, noting(f"m{i}"), delivery=f"m{i}") for i in range(5)]
        await asyncio.gather(*(group.submit(j) for j in jobs))
        assert seen == [f"m{i}" for i in range(5)]
        assert store.transactions == 5
