"""Schema migrations: `migrations/NNNN_*.sql`, forward-only, each applied once.

Each file runs in its own transaction under a session advisory lock, so two processes migrating
at once apply every file exactly once. A file changed after it was applied stops the migration:
write a new one instead.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg
import structlog
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from agentbot.errors import StoreError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
LOCK_KEY = 0x6167656E74626F74  # "agentbot" in ASCII, as one bigint advisory-lock key
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

CREATE_TABLE = """
create table if not exists schema_migrations (
    version integer primary key,
    name text not null,
    checksum text not null,
    applied_at timestamptz not null default now()
)
"""
SELECT_APPLIED = "select version, name, checksum from schema_migrations order by version"
INSERT_APPLIED = (
    "insert into schema_migrations (version, name, checksum) "
    "values (%(version)s, %(name)s, %(checksum)s)"
)

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


async def pending(dsn: str) -> list[str]:
    """The migrations not yet applied to this database."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute("select to_regclass('schema_migrations') is not null")
        row = await cur.fetchone()
        done: set[int] = set()
        if row is not None and row[0]:
            cur = await conn.execute(SELECT_APPLIED)
            done = {v for v, _, _ in await cur.fetchall()}
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
