"""The `agentbot` command: serve, migrate, check, register, doctor.

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
from agentbot.doctor import DoctorOptions, doctor_command
from agentbot.errors import AgentbotError, ConfigError, FlowError
from agentbot.migrate import migrate
from agentbot.register import DEFAULT_NAME, RegisterOptions, register_command

log = structlog.get_logger("agentbot.cli")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agentbot", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="migrate, sync flows, serve the webhook and the outbox")
    commands.add_parser("migrate", help="apply the database migrations")
    check = commands.add_parser("check", help="validate flow files")
    check.add_argument("paths", nargs="*", type=Path, help="files or folders (default FLOWS_DIR)")
    register = commands.add_parser(
        "register",
        help="create or update the Agent Bot in Chatwoot, connect it to inboxes "
        "(needs CHATWOOT_USER_TOKEN, an administrator's); prints the env-workflows lines",
    )
    register.add_argument(
        "--url",
        required=True,
        metavar="PUBLIC_WEBHOOK_URL",
        help="where Chatwoot reaches agentbot, e.g. https://bot.example.com/webhooks/chatwoot",
    )
    register.add_argument(
        "--inbox",
        dest="inboxes",
        type=int,
        action="append",
        required=True,
        metavar="ID",
        help="an inbox to connect the bot to (repeat for more)",
    )
    register.add_argument(
        "--account", type=int, metavar="ID", help="default: the token's user's only account"
    )
    register.add_argument("--name", default=DEFAULT_NAME, help=f"default: {DEFAULT_NAME}")
    doctor = commands.add_parser(
        "doctor", help="check configuration, database, flows, Chatwoot and the token's rights"
    )
    doctor.add_argument(
        "--account",
        type=int,
        metavar="ID",
        help="the bot's Chatwoot account (default: the user token's only account, else 1)",
    )
    doctor.add_argument(
        "--conversation",
        type=int,
        metavar="ID",
        help="a real conversation (display id) to read, as the bot would (default: 0, "
        "which Chatwoot never has)",
    )
    doctor.add_argument(
        "--public-url",
        metavar="URL",
        help="agentbot's public URL, whose /health is fetched (default: the bot's URL in "
        "Chatwoot, read with CHATWOOT_USER_TOKEN)",
    )
    args = parser.parse_args(argv)

    if args.command == "doctor":
        # Before loading the settings: a bad setting is one of doctor's findings.
        return doctor_command(
            DoctorOptions(
                account_id=args.account,
                conversation_id=args.conversation,
                public_url=args.public_url,
            )
        )
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
        if args.command == "register":
            options = RegisterOptions(
                webhook_url=args.url,
                inboxes=tuple(args.inboxes),
                account_id=args.account,
                name=args.name,
            )
            return asyncio.run(register_command(settings, options))
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
    user_token = settings.chatwoot_user_token is not None
    flows = (
        load_flow_files([settings.flows_dir], user_token=user_token)
        if settings.flows_dir.is_dir()
        else []
    )
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
