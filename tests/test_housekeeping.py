"""Retention: old intake records and delivered outbox rows go; the history stays unless limited."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from agentbot import housekeeping
from agentbot.config import Settings
from agentbot.errors import ConfigError
from agentbot.store import Store

pytestmark = pytest.mark.anyio

SEED = """
insert into workflow_conversations (id, account_id, conversation_id, flow_name, flow_version,
    current_block, status, created_at)
values (1, 1, 10, 'vendas', 'v1', 'inicio', 'completed', now() - interval '90 days'),
       (2, 1, 11, 'vendas', 'v1', 'inicio', 'active', now());
insert into workflow_events (event, account_id, conversation_id, received_at)
select 'message_created', 1, 10, now() - make_interval(days => d, hours => 12)
from generate_series(0, 59) d;
insert into workflow_outbox (account_id, conversation_id, action, status, finished_at)
values (1, 10, '{}', 'sent', now() - interval '40 days'),
       (1, 10, '{}', 'sent', now() - interval '2 days'),
       (1, 10, '{}', 'dead', now() - interval '40 days'),
       (1, 10, '{}', 'pending', null);
insert into workflow_interactions (session_id, account_id, conversation_id, direction, kind,
    block, created_at)
values (1, 1, 10, 'out', 'entered', 'inicio', now() - interval '90 days'),
       (2, 1, 11, 'out', 'entered', 'inicio', now());
"""


def count(dsn: str, table: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(f"select count(*) from {table}").fetchone()
        assert row is not None
        return int(row[0])


async def test_retention(db_dsn: str) -> None:
    """Events and sent outbox rows past 30 days are pruned, dead and pending rows are kept;
    the history is kept, or pruned past HISTORY_RETENTION_DAYS once summed into the stats."""
    with psycopg.connect(db_dsn) as conn:
        conn.execute(SEED)
    async with AsyncConnectionPool(db_dsn, min_size=1, open=False) as pool:
        store = Store(pool)
        now = datetime.now(UTC)
        done = await housekeeping.tidy(store, now, 30, None)
        assert done == {"events": 30, "outbox": 1}
        assert count(db_dsn, "workflow_events") == 30
        assert count(db_dsn, "workflow_outbox") == 3
        assert count(db_dsn, "workflow_interactions") == 2
        rolled = count(db_dsn, "workflow_stats_rollup")
        assert rolled == 1  # the old interaction is summed; the new one is not settled yet
        done = await housekeeping.tidy(store, now, 30, 60)
        assert done == {"events": 0, "outbox": 0, "interactions": 1}
        assert count(db_dsn, "workflow_interactions") == 1
        assert count(db_dsn, "workflow_stats_rollup") == rolled


def test_retention_settings() -> None:
    """RETENTION_DAYS defaults to 30, HISTORY_RETENTION_DAYS to none; both must be days."""
    assert Settings.from_environ({}).retention_days == 30
    assert Settings.from_environ({}).history_days is None
    given = Settings.from_environ({"RETENTION_DAYS": "7", "HISTORY_RETENTION_DAYS": "400"})
    assert (given.retention_days, given.history_days) == (7, 400)
    with pytest.raises(ConfigError, match="RETENTION_DAYS"):
        Settings.from_environ({"RETENTION_DAYS": "0"})
