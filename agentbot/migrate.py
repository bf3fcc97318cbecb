"""Schema migrations: `migrations/NNNN_*.sql`, forward-only, each applied once.

Each file runs in its own transaction under a session advisory lock, so two processes migrating
at once apply every file exactly once. A file changed after it was applied stops the migration:
write a new one instead.

The ledger is `agentbot_schema_migrations`, a name Rails never uses: agentbot may share a database
with Chatwoot, whose own `schema_migrations` and `ar_internal_metadata` are left alone. Releases up
to 0.1.0 named the ledger `schema_migrations`; a database they migrated is recognised by the
ledger's columns (Rails' table has only `version`) and its ledger renamed in place.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import structlog
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from agentbot.errors import StoreError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
LOCK_KEY = 0x6167656E74626F74  # "agentbot" in ASCII, as one bigint advisory-lock key
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

LEDGER = "agentbot_schema_migrations"
LEGACY_LEDGER = "schema_migrations"  # agentbot <= 0.1.0; also the name of Rails' own ledger
CREATE_TABLE = f"""
create table if not exists {LEDGER} (
    version integer primary key,
    name text not null,
    checksum text not null,
    applied_at timestamptz not null default now()
)
"""
SELECT_APPLIED = f"select version, name, checksum from {LEDGER} order by version"
INSERT_APPLIED = (
    f"insert into {LEDGER} (version, name, checksum) values (%(version)s, %(name)s, %(checksum)s)"
)
# The columns of the legacy ledger in the current schema: agentbot's has `checksum`, Rails' not.
LEGACY_COLUMNS = """
select column_name from information_schema.columns
where table_schema = current_schema() and table_name = %s
"""
AGENTBOT_COLUMNS = {"version", "name", "checksum", "applied_at"}
RENAME_LEGACY = f"""
alter table {LEGACY_LEDGER} rename to {LEDGER};
alter index if exists {LEGACY_LEDGER}_pkey rename to {LEDGER}_pkey;
"""

log = structlog.get_logger("agentbot.migrate")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise StoreError(
                f"migration file '{path.name}' is not named NNNN_description.sql: rename it"
            )
        version = int(match.group(1))
        if version in migrations:
            raise StoreError(
                f"migrations '{migrations[version].name}' and '{path.name}' share number {version}"
            )
        migrations[version] = Migration(version, path.name, path.read_text(encoding="utf-8"))
    return [migrations[v] for v in sorted(migrations)]


async def migrate(dsn: str, migrations: list[Migration] | None = None) -> list[str]:
    """Apply what is missing; return the names applied by this call."""
    todo = load_migrations() if migrations is None else migrations
    applied_now: list[str] = []
    try:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await conn.execute("select pg_advisory_lock(%s)", (LOCK_KEY,))
            try:
                await _upgrade_legacy_ledger(conn)
                await conn.execute(CREATE_TABLE)
                cur = await conn.execute(SELECT_APPLIED)
                done = {v: (n, c) for v, n, c in await cur.fetchall()}
                for migration in todo:
                    if migration.version in done:
                        name, checksum = done[migration.version]
                        if checksum != migration.checksum:
                            raise StoreError(
                                f"migration '{migration.name}' changed after it was applied "
                                f"(as '{name}'): migrations are forward-only, add a new file"
                            )
                        continue
                    async with conn.transaction():
                        await conn.execute(migration.sql.encode())
                        await conn.execute(
                            INSERT_APPLIED,
                            {
                                "version": migration.version,
                                "name": migration.name,
                                "checksum": migration.checksum,
                            },
                        )
                    log.info("migrate.applied", migration=migration.name)
                    applied_now.append(migration.name)
            finally:
                await conn.execute("select pg_advisory_unlock(%s)", (LOCK_KEY,))
    except psycopg.Error as exc:
        raise StoreError(f"migration failed: {exc}") from exc
    return applied_now


async def _upgrade_legacy_ledger(conn: psycopg.AsyncConnection[Any]) -> None:
    """Rename agentbot's old `schema_migrations` ledger; never touch Rails' table of that name."""
    if await _exists(conn, LEDGER) or not await _is_legacy_ledger(conn):
        return
    async with conn.transaction():
        await conn.execute(RENAME_LEGACY)
    log.info("migrate.ledger_renamed", old=LEGACY_LEDGER, new=LEDGER)


async def _exists(conn: psycopg.AsyncConnection[Any], table: str) -> bool:
    cur = await conn.execute("select to_regclass(%s) is not null", (table,))
    row = await cur.fetchone()
    return row is not None and bool(row[0])


async def _is_legacy_ledger(conn: psycopg.AsyncConnection[Any]) -> bool:
    cur = await conn.execute(LEGACY_COLUMNS, (LEGACY_LEDGER,))
    return {c for (c,) in await cur.fetchall()} == AGENTBOT_COLUMNS


async def pending(dsn: str) -> list[str]:
    """The migrations not yet applied to this database (read-only: no ledger is renamed)."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        done: set[int] = set()
        table = None
        if await _exists(conn, LEDGER):
            table = LEDGER
        elif await _is_legacy_ledger(conn):
            table = LEGACY_LEDGER
        if table is not None:
            cur = await conn.execute(
                sql.SQL("select version from {}").format(sql.Identifier(table))
            )
            done = {int(v) for (v,) in await cur.fetchall()}
    return [m.name for m in load_migrations() if m.version not in done]


async def ensure_database(dsn: str) -> bool:
    """Create the DSN's database when the server does not have it yet; True if created."""
    params = conninfo_to_dict(dsn)
    name = str(params.get("dbname") or "")
    if not name:
        return False
    try:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True):
            return False
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc):
            raise StoreError(f"cannot connect to PostgreSQL: {exc}") from exc
    admin = make_conninfo(dsn, dbname="postgres")
    try:
        async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
            try:
                await conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
            except psycopg.errors.DuplicateDatabase:
                return False
    except psycopg.Error as exc:
        raise StoreError(f"cannot create database '{name}': {exc}") from exc
    log.info("database.created", database=name)
    return True
