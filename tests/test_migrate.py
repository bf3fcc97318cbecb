"""Migrations: applied once each, safely from two processes at once, forward-only."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psycopg
import pytest

from agentbot.errors import StoreError
from agentbot.migrate import Migration, ensure_database, load_migrations, migrate, pending

pytestmark = pytest.mark.anyio

ALL = [m.name for m in load_migrations()]
TABLES = {
    "workflow_configs",
    "workflow_conversations",
    "workflow_interactions",
    "workflow_events",
    "workflow_outbox",
    "workflow_bursts",
    "agentbot_settings",
    "agentbot_schema_migrations",
    "workflow_holds",
    "workflow_stats_rollup",
    "workflow_stats_watermark",
    "agentbot_audit",
}
# Every migration the package ships, in order.
ALL = [m.name for m in load_migrations()]


def tables(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "select tablename from pg_tables where schemaname = 'public'"
        ).fetchall()
    return {r[0] for r in rows}


async def test_empty_database(empty_db_dsn: str) -> None:
    """An empty database gets every table; a second run applies nothing."""
    assert ALL[0] == "0001_initial.sql"
    assert await pending(empty_db_dsn) == ALL
    assert await migrate(empty_db_dsn) == ALL
    assert tables(empty_db_dsn) == TABLES
    assert await migrate(empty_db_dsn) == []
    assert await pending(empty_db_dsn) == []


async def test_concurrent_migrations(empty_db_dsn: str) -> None:
    """Four migrators at once: each file applied exactly once, no error."""
    results = await asyncio.gather(*(migrate(empty_db_dsn) for _ in range(4)))
    assert sorted(len(r) for r in results) == [0, 0, 0, len(ALL)]
    with psycopg.connect(empty_db_dsn) as conn:
        assert conn.execute("select count(*) from agentbot_schema_migrations").fetchone() == (
            len(ALL),
        )


async def test_failed_migration_rolls_back(empty_db_dsn: str) -> None:
    """A failing file leaves nothing half-applied and is not recorded."""
    bad = [Migration(1, "0001_bad.sql", "create table t (id int); select 1/0;")]
    with pytest.raises(StoreError, match="migration failed"):
        await migrate(empty_db_dsn, bad)
    assert "t" not in tables(empty_db_dsn)
    with psycopg.connect(empty_db_dsn) as conn:
        assert conn.execute("select count(*) from agentbot_schema_migrations").fetchone() == (0,)


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
        assert await migrate(dsn) == ALL
    finally:
        with psycopg.connect(pg_admin, autocommit=True) as conn:
            conn.execute("drop database if exists agentbot_created_by_test with (force)")


# Rails' own bookkeeping, as `rails db:migrate` creates it in Chatwoot's database.
RAILS_TABLES = """
create table schema_migrations (version character varying not null primary key);
create table ar_internal_metadata (
    key character varying not null primary key,
    value character varying,
    created_at timestamp(6) without time zone not null,
    updated_at timestamp(6) without time zone not null
);
insert into schema_migrations values ('20260324070835'), ('20260401000000');
insert into ar_internal_metadata values ('environment', 'production', now(), now());
"""

# The ledger as agentbot 0.1.0 created and filled it.
RELEASE_0_1_0_LEDGER = """
create table if not exists schema_migrations (
    version integer primary key,
    name text not null,
    checksum text not null,
    applied_at timestamptz not null default now()
)
"""


async def test_database_shared_with_chatwoot(empty_db_dsn: str) -> None:
    """A database holding Rails' ledger and ar_internal_metadata migrates; Rails' rows stay."""
    with psycopg.connect(empty_db_dsn) as conn:
        conn.execute(RAILS_TABLES.encode())
    assert await pending(empty_db_dsn) == ALL
    assert await migrate(empty_db_dsn) == ALL
    assert tables(empty_db_dsn) == TABLES | {"schema_migrations", "ar_internal_metadata"}
    with psycopg.connect(empty_db_dsn) as conn:
        rails = conn.execute("select version from schema_migrations order by 1").fetchall()
        assert rails == [("20260324070835",), ("20260401000000",)]
        meta = conn.execute("select key, value from ar_internal_metadata").fetchall()
        assert meta == [("environment", "production")]
    assert await migrate(empty_db_dsn) == []
    assert await pending(empty_db_dsn) == []


async def test_release_0_1_0_database_is_upgraded_in_place(empty_db_dsn: str) -> None:
    """A database migrated by 0.1.0 keeps its data; its schema_migrations ledger is renamed."""
    initial = load_migrations()[0]
    with psycopg.connect(empty_db_dsn) as conn:
        conn.execute(RELEASE_0_1_0_LEDGER)
        conn.execute(initial.sql.encode())
        conn.execute(
            "insert into schema_migrations (version, name, checksum) values (%s, %s, %s)",
            (initial.version, initial.name, initial.checksum),
        )
        conn.execute("insert into agentbot_settings (key, value) values ('kept', 'yes')")
    # 0.1.0 shipped only 0001_initial.sql: the later ones are still to apply.
    assert await pending(empty_db_dsn) == ALL[1:]
    assert "schema_migrations" in tables(empty_db_dsn)
    assert await migrate(empty_db_dsn) == ALL[1:]
    assert tables(empty_db_dsn) == TABLES
    with psycopg.connect(empty_db_dsn) as conn:
        ledger = conn.execute(
            "select name from agentbot_schema_migrations order by version"
        ).fetchall()
        assert ledger == [(name,) for name in ALL]
        kept = conn.execute("select value from agentbot_settings where key = 'kept'").fetchone()
        assert kept == ("yes",)
        index = conn.execute("select to_regclass('agentbot_schema_migrations_pkey')").fetchone()
        assert index == ("agentbot_schema_migrations_pkey",)
    # Rails can now create its own ledger in the same database.
    with psycopg.connect(empty_db_dsn) as conn:
        conn.execute(RAILS_TABLES.encode())
    assert await migrate(empty_db_dsn) == []


async def test_plain_tokens_are_hashed(empty_db_dsn: str) -> None:
    """0002 hashes generated tokens that earlier versions stored in clear; the same token
    still matches."""
    from agentbot import tokens

    first = [m for m in load_migrations() if m.name == "0001_initial.sql"]
    await migrate(empty_db_dsn, first)
    with psycopg.connect(empty_db_dsn) as conn:
        conn.execute(
            "insert into agentbot_settings (key, value) values"
            " ('webhook_token', 'old-hook'), ('api_token', 'old-api'), ('other', 'kept')"
        )
    await migrate(empty_db_dsn)
    with psycopg.connect(empty_db_dsn) as conn:
        rows: dict[str, str] = dict(
            conn.execute("select key, value from agentbot_settings").fetchall()
        )
    assert rows == {
        "webhook_token": tokens.digest("old-hook"),
        "api_token": tokens.digest("old-api"),
        "other": "kept",
    }
    assert tokens.Verifier(rows["webhook_token"], generated=True).matches("old-hook")
