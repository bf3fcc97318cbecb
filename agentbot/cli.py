"""The `agentbot` command: serve, migrate, check.

Each command reads the settings once, reports a bad one in one line, and exits non-zero on a
problem. Errors are printed, never raised as tracebacks at the user.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog

from agentbot import logs
from agentbot.catalog import load_flow_files
from agentbot.config import Settings
from agentbot.database import Database, open_database
from agentbot.errors import AgentbotError, ConfigError, FlowError
from agentbot.migrate import migrate

log = structlog.get_logger("agentbot.cli")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agentbot", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="migrate, sync flows, serve the webhook and the outbox")
    commands.add_parser("migrate", help="apply the database migrations")
    check = commands.add_parser("check", help="validate flow files")
    check.add_argument("paths", nargs="*", type=Path, help="files or folders (default FLOWS_DIR)")
    args = parser.parse_args(argv)

    try:
        settings = Settings.load()
    except ConfigError as exc:
        print(f"agentbot: configuration: {exc}", file=sys.stderr)
        return 2
    logs.configure(json=settings.want_json_logs(), level=settings.log_level)
    try:
        if args.command == "check":
            return check_command(args.paths or [settings.flows_dir])
        if args.command == "migrate":
            return asyncio.run(migrate_command(settings))
        return serve_command(settings)
    except FlowError as exc:
        print(exc, file=sys.stderr)
        return 1
    except AgentbotError as exc:
        print(f"agentbot: {exc}", file=sys.stderr)
        return 1


def check_command(paths: list[Path]) -> int:
    flows = load_flow_files(paths)
    for file, flow in flows:
        print(f"{file}: ok ({flow.name}, {len(flow.blocks)} blocks, version {flow.version})")
    return 0


async def migrate_command(settings: Settings) -> int:
    db = await open_database(settings)
    try:
        applied = await migrate(db.dsn)
    finally:
        db.stop()
    print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))
    return 0


def serve_command(settings: Settings) -> int:
    import uvicorn

    from agentbot.app import create_app

    # Validate before touching anything: one invalid flow stops the start, naming every problem.
    flows = load_flow_files([settings.flows_dir]) if settings.flows_dir.is_dir() else []
    db: Database = asyncio.run(_prepare(settings))
    try:
        log.info(
            "agentbot.starting",
            host=settings.host,
            port=settings.port,
            flows=[f.name for _, f in flows],
            chatwoot=settings.chatwoot_url or "not configured",
        )
        app = create_app(settings, dsn=db.dsn)
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            log_level="warning",
            access_log=False,
            lifespan="on",
        )
    finally:
        db.stop()
    return 0


async def _prepare(settings: Settings) -> Database:
    db = await open_database(settings)
    try:
        await migrate(db.dsn)
    except BaseException:
        db.stop()
        raise
    return db


if __name__ == "__main__":
    sys.exit(main())
