"""Migrations: applied once each, safely from two processes at once, forward-only."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psycopg
import pytest

from agentbot.errors import StoreError
from agentbot.migrate import Migration, ensure_database, load_migrations, migrate, pending

pytestmark = pytest.mark.anyio

TABLES = {
    "workflow_configs",
    "workflow_conversations",
    "workflow_interactions",
    "workflow_events",
    "workflow_outbox",
    "agentbot_settings",
    "schema_migrations",
}


def tables(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "select tablename from pg_tables where schemaname = 'public'"
        ).fetchall()
    return {r[0] for r in rows}


async def test_empty_database(empty_db_dsn: str) -> None:
    """An empty database gets every table; a second run applies nothing."""
    names = [m.name for m in load_migrations()]
    assert names[0] == "0001_initial.sql"
    assert await pending(empty_db_dsn) == names
    assert await migrate(empty_db_dsn) == names
    assert tables(empty_db_dsn) == TABLES
    assert await migrate(empty_db_dsn) == []
    assert await pending(empty_db_dsn) == []


async def test_concurrent_migrations(empty_db_dsn: str) -> None:
    """Four migrators at once: each file applied exactly once, no error."""
    results = await asyncio.gather(*(migrate(empty_db_dsn) for _ in range(4)))
    count = len(load_migrations())
    assert sorted(len(r) for r in results) == [0, 0, 0, count]
    with psycopg.connect(empty_db_dsn) as conn:
        assert conn.execute("select count(*) from schema_migrations").fetchone() == (count,)


async def test_failed_migration_rolls_back(empty_db_dsn: str) -> None:
    """A failing file leaves nothing half-applied and is not recorded."""
    bad = [Migration(1, "0001_bad.sql", "create table t (id int); select 1/0;")]
    with pytest.raises(StoreError, match="migration failed"):
        await migrate(empty_db_dsn, bad)
    assert "t" not in tables(empty_db_dsn)
    with psycopg.connect(empty_db_dsn) as conn:
        assert conn.execute("select count(*) from schema_migrations").fetchone() == (0,)


async def test_changed_migration_is_refused(empty_db_dsn: str) -> None:
    """Editing an applied migration stops the next run with the fix."""
    await migrate(empty_db_dsn, [Migration(1, "0001_a.sql", "create table a (id int);")])
    with pytest.raises(StoreError, match="forward-only, add a new file"):
        await migrate(empty_db_dsn, [Migration(1, "0001_a.sql", "create table a (id bigint);")])


def test_file_names(tmp_path: Path) -> None:
    """Files must be NNNN_name.sql with unique numbers."""
    (tmp_path / "0001_a.sql").write_text("select 1;")
    (tmp_path / "0002_b.sql").write_text("select 2;")
    assert [m.name for m in load_migrations(tmp_path)] == ["0001_a.sql", "0002_b.sql"]
    (tmp_path / "0002_c.sql").write_text("select 3;")
    with pytest.raises(StoreError, match="share number 2"):
        load_migrations(tmp_path)
    (tmp_path / "0002_c.sql").unlink()
    (tmp_path / "3_bad.sql").write_text("select 3;")
    with pytest.raises(StoreError, match=r"is not named NNNN_description\.sql"):
        load_migrations(tmp_path)


async def test_missing_database_is_created(pg_admin: str) -> None:
    """A database named in DATABASE_URL that does not exist yet is created."""
    from psycopg.conninfo import make_conninfo

    dsn = make_conninfo(pg_admin, dbname="agentbot_created_by_test")
    try:
        assert await ensure_database(dsn) is True
        assert await ensure_database(dsn) is False
        assert await migrate(dsn) == [m.name for m in load_migrations()]
    finally:
        with psycopg.connect(pg_admin, autocommit=True) as conn:
            conn.execute("drop database if exists agentbot_created_by_test with (force)")
