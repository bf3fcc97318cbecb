"""Background upkeep: the stats rollup and retention.

Every minute: sum the settled interaction history into `workflow_stats_rollup`; delete
`workflow_events` rows (the intake's dedupe record) and delivered outbox rows older than
RETENTION_DAYS (default 30); delete interactions older than HISTORY_RETENTION_DAYS only when
the operator set it (the history is kept otherwise). Deletes go in batches so that no
transaction holds many rows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from agentbot import stats
from agentbot.errors import StoreError
from agentbot.store import Store

log = structlog.get_logger("agentbot.housekeeping")

INTERVAL = 60.0
BATCH = 5000
# Each statement answers how many rows it deleted: a count read from the result, because a
# pipelined transaction knows no rowcount until it syncs.
PRUNE_EVENTS = """
with gone as (
    delete from workflow_events where id in (
        select id from workflow_events where received_at < %(before)s limit %(batch)s
    ) returning 1
) select count(*) from gone
"""
PRUNE_OUTBOX = """
with gone as (
    delete from workflow_outbox where id in (
        select id from workflow_outbox
        where status = 'sent' and finished_at < %(before)s limit %(batch)s
    ) returning 1
) select count(*) from gone
"""
# Interactions already summed into the rollup only, so the stats keep their numbers.
PRUNE_HISTORY = """
with gone as (
    delete from workflow_interactions where id in (
        select id from workflow_interactions
        where created_at < %(before)s
          and id <= (select last_id from workflow_stats_watermark)
        limit %(batch)s
    ) returning 1
) select count(*) from gone
"""


async def prune(store: Store, statement: str, before: datetime) -> int:
    """Delete in batches what `statement` selects older than `before`; how many rows."""
    total = 0
    while True:
        async with store.transaction() as tx:
            cur = await tx.conn.execute(statement, {"before": before, "batch": BATCH})
            row = await cur.fetchone()
        deleted = int(row[0]) if row is not None else 0
        total += deleted
        if deleted < BATCH:
            return total


async def tidy(
    store: Store, now: datetime, retention_days: int, history_days: int | None
) -> dict[str, int]:
    """One round: roll the stats forward, prune what is past its retention."""
    await stats.roll_forward(store)
    before = now - timedelta(days=retention_days)
    done = {
        "events": await prune(store, PRUNE_EVENTS, before),
        "outbox": await prune(store, PRUNE_OUTBOX, before),
    }
    if history_days is not None:
        done["interactions"] = await prune(store, PRUNE_HISTORY, now - timedelta(days=history_days))
    return done


async def run(
    store: Store,
    clock: Callable[[], datetime],
    retention_days: int,
    history_days: int | None,
    interval: float = INTERVAL,
) -> None:
    while True:
        try:
            done = await tidy(store, clock(), retention_days, history_days)
            if any(done.values()):
                log.info("housekeeping.pruned", **done)
        except StoreError as exc:
            log.warning("housekeeping.failed", error=str(exc))
        await asyncio.sleep(interval)
