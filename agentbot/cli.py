"""The `agentbot` command: serve, migrate, check, test, simulate, graph, register, doctor.

Each command reads the settings once, reports a bad one in one line, and exits non-zero on a
problem. Errors are printed, never raised as tracebacks at the user.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import os
import signal
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import structlog

from agentbot import logs
from agentbot.catalog import load_flow_files, read_shared_hours
from agentbot.config import Settings
from agentbot.database import Database, open_database
from agentbot.doctor import DoctorOptions, doctor_command
from agentbot.errors import AgentbotError, ConfigError, FlowError
from agentbot.events import Contact
from agentbot.flowchecks import flow_warnings
from agentbot.flows import Flow
from agentbot.flowtests import Suite, parse_suite, run_suite
from agentbot.graph import mermaid
from agentbot.loader import parse_flow
from agentbot.migrate import migrate
from agentbot.register import DEFAULT_NAME, RegisterOptions, register_command
from agentbot.sandbox import channel_name
from agentbot.simulator import Simulation, parse_reply, parse_variable
from agentbot.validation import Problem

log = structlog.get_logger("agentbot.cli")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # The reader went away (`agentbot simulate … | head -1`): not an error worth a
        # traceback. Point stdout at /dev/null so that the flush at exit fails quietly too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE


def _main(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="agentbot", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="migrate, sync flows, serve the webhook and the outbox")
    commands.add_parser("migrate", help="apply the database migrations")
    check = commands.add_parser("check", help="validate flow files")
    check.add_argument("paths", nargs="*", type=Path, help="files or folders (default FLOWS_DIR)")
    test = commands.add_parser(
        "test", help="run the flows' conversation tests through the engine (no database)"
    )
    test.add_argument(
        "paths", nargs="*", type=Path, help="test files or folders (default FLOWS_DIR/tests)"
    )
    simulate = commands.add_parser(
        "simulate", help="chat with a flow in the terminal (reads the customer's lines)"
    )
    simulate.add_argument("flow", help="a flow's name in FLOWS_DIR, or its file")
    simulate.add_argument(
        "--var",
        dest="variables",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="start at once with this variable, as a proactive start's initialData (repeat "
        "for more; VALUE is read as JSON when it is JSON, else as text)",
    )
    simulate.add_argument(
        "--name", default="Cliente", help="the contact's name, {{nome}} (default: Cliente)"
    )
    simulate.add_argument(
        "--channel",
        default="whatsapp",
        help="whatsapp (default), web_widget, telegram, facebook, line, api, sms, email, "
        "instagram, twilio, or a Chatwoot Channel::... name",
    )
    simulate.add_argument(
        "--webhook-reply",
        metavar="REPLY",
        help="answer every webhook call so instead of asking: JSON (status 200), "
        "'STATUS [JSON]' or 'error [TEXT]'",
    )
    simulate.add_argument(
        "--now",
        metavar="MOMENT",
        help="the clock at the start, with its offset, e.g. 2026-12-01T09:00:00-03:00 "
        "(default: the current time); business hours are judged at it",
    )
    graph = commands.add_parser("graph", help="print a flow as a Mermaid flowchart")
    graph.add_argument("flow", help="a flow's name in FLOWS_DIR, or its file")
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
    tokens_parser = commands.add_parser(
        "tokens",
        help="show the webhook URL and the API token in force; --reset makes new generated ones",
    )
    tokens_parser.add_argument(
        "--reset",
        action="store_true",
        help="generate new webhook and API tokens (those not set in the environment), keep "
        "their hashes and print them once; a running service takes them within 10 s",
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
            user_token = settings.chatwoot_user_token is not None
            return check_command(args.paths or [settings.flows_dir], user_token=user_token)
        if args.command == "test":
            return test_command(args.paths or [settings.flows_dir / "tests"], settings.flows_dir)
        if args.command == "simulate":
            return simulate_command(
                find_flow(args.flow, settings.flows_dir),
                variables=args.variables,
                name=args.name,
                channel=args.channel,
                webhook_reply=args.webhook_reply,
                now=args.now,
            )
        if args.command == "graph":
            print(mermaid(find_flow(args.flow, settings.flows_dir)), end="")
            return 0
        if args.command == "migrate":
            return asyncio.run(migrate_command(settings))
        if args.command == "tokens":
            return asyncio.run(tokens_command(settings, reset=args.reset))
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


def check_command(paths: list[Path], *, user_token: bool = True) -> int:
    """Problems (exit 1) and warnings (no effect on the exit code) of the flow files, by the
    same rules `serve` applies (contact attributes need CHATWOOT_USER_TOKEN)."""
    try:
        flows = load_flow_files(paths, user_token=user_token)
    except FlowError:
        # Warn about the files that are fine on their own, then report the problems.
        _print_warnings(_parsable(paths))
        raise
    for file, flow in flows:
        print(f"{file}: ok ({flow.name}, {len(flow.blocks)} blocks, version {flow.version})")
    _print_warnings(flows)
    return 0


def _print_warnings(flows: list[tuple[str, Flow]]) -> None:
    for file, flow in flows:
        for warning in flow_warnings(flow, file):
            where = f"{warning.file}:{warning.line}: {warning.path}"
            print(f"{where}: warning: {warning.message}", file=sys.stderr)


def _yaml_files(paths: list[Path]) -> list[Path]:
    """The files `paths` name: folders give their `*.yaml` and `*.yml` files, in name order."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml")))
        elif path.is_file():
            files.append(path)
    return files


def _parsable(paths: list[Path]) -> list[tuple[str, Flow]]:
    flows: list[tuple[str, Flow]] = []
    for file in _yaml_files(paths):
        try:
            text = file.read_text(encoding="utf-8")
            shared, _ = read_shared_hours(file.parent)
            flows.append((str(file), parse_flow(text, str(file), shared_hours=shared)))
        except (FlowError, OSError, UnicodeDecodeError):
            continue  # load_flow_files reports it
    return flows


def find_flow(reference: str, flows_dir: Path) -> Flow:
    """The flow a command names: a file (a path ending in .yaml or .yml, or an existing file),
    else a flow's name among FLOWS_DIR's files. FlowError when invalid, AgentbotError when
    there is no such flow."""
    path = Path(reference)
    if reference.endswith((".yaml", ".yml")) or path.is_file():
        return load_flow_files([path])[0][1]
    if not flows_dir.is_dir():
        raise AgentbotError(
            f"no flow named {reference!r}: FLOWS_DIR {str(flows_dir)!r} is not a folder"
        )
    flows = {flow.name: flow for _, flow in load_flow_files([flows_dir])}
    if reference in flows:
        return flows[reference]
    names = ", ".join(sorted(flows)) or "none"
    raise AgentbotError(
        f"no flow named {reference!r} in {flows_dir} (flows there: {names}); "
        "name a flow or give the path to its file"
    )


def test_command(paths: list[Path], flows_dir: Path) -> int:
    """Run every test file under `paths`; failures with their diff, then `N passed, M failed`."""
    files = _yaml_files(paths)
    missing = [path for path in paths if not path.exists()]
    errors = 0
    for path in missing:
        print(f"{path}: no such file or directory", file=sys.stderr)
        errors += 1
    catalog: dict[str, Flow] | None = None  # FLOWS_DIR's flows, read once when a test names one
    passed = failed = 0
    for file in files:
        try:
            suite = parse_suite(file.read_text(encoding="utf-8"), str(file))
            if suite.flow_is_path:
                flow = load_flow_files([file.parent / suite.flow])[0][1]
            else:
                if catalog is None:
                    catalog = {}  # on a problem, reported once; its tests fail as not found
                    catalog = {f.name: f for _, f in load_flow_files([flows_dir])}
                flow = _named_flow(catalog, suite, flows_dir)
        except FlowError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            errors += 1
            continue
        except (OSError, UnicodeDecodeError) as exc:
            print(f"{file}: cannot read: {exc}", file=sys.stderr)
            errors += 1
            continue
        for result in run_suite(suite, flow):
            if result.failure is None:
                passed += 1
                print(f"PASS {file}:{result.case.line}: {result.case.name}")
            else:
                failed += 1
                print(f"FAIL {result.failure}")
    summary = f"{passed} passed, {failed} failed"
    if errors:
        summary += f", {errors} error(s)"
    if not files and not errors:
        summary += f": no test files in {', '.join(str(p) for p in paths)}"
        errors += 1
    print(summary)
    return 1 if failed or errors else 0


def _named_flow(catalog: dict[str, Flow], suite: Suite, flows_dir: Path) -> Flow:
    if suite.flow in catalog:
        return catalog[suite.flow]
    close = difflib.get_close_matches(suite.flow, list(catalog), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    if not catalog:
        hint = " (no valid flow was read from it)"
    message = f"no flow named {suite.flow!r} in {flows_dir}{hint}"
    raise FlowError([Problem(suite.file, suite.flow_line, "flow", message)])


def simulate_command(
    flow: Flow,
    *,
    variables: list[str],
    name: str,
    channel: str,
    webhook_reply: str | None,
    now: str | None = None,
) -> int:
    try:
        seeded = dict(parse_variable(item) for item in variables)
    except ValueError as exc:
        raise AgentbotError(str(exc)) from exc
    simulation = Simulation(
        flow=flow,
        now=datetime.now(UTC) if now is None else parse_moment(now),
        out=sys.stdout,
        variables=seeded or None,
        contact=Contact(id=1, name=name),
        channel=channel_name(channel),
        webhook_reply=parse_reply(webhook_reply) if webhook_reply is not None else None,
    )
    return simulation.run(iter(sys.stdin), prompt=sys.stdin.isatty())


def parse_moment(text: str) -> datetime:
    """`--now`: an ISO moment with its offset (`Z` for UTC)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise AgentbotError(
            f"--now '{text}' is not a moment with its offset: write e.g. 2026-12-01T09:00:00-03:00"
        )
    return moment


async def migrate_command(settings: Settings) -> int:
    db = await open_database(settings)
    try:
        applied = await migrate(db.dsn)
    finally:
        db.stop()
    print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))
    return 0


async def tokens_command(settings: Settings, *, reset: bool) -> int:
    """Print the webhook URL and the API token in force; with `reset`, new generated ones."""
    from psycopg_pool import AsyncConnectionPool

    from agentbot import tokens
    from agentbot.app import webhook_url
    from agentbot.store import Store

    db = await open_database(settings)
    try:
        await migrate(db.dsn)  # earlier versions kept tokens in clear: hash them first
        async with AsyncConnectionPool(db.dsn, min_size=1, max_size=1, open=False) as pool:
            store = Store(pool)
            stored = await store.settings(tokens.WEBHOOK_KEY, tokens.API_KEY)
            fresh: dict[str, str] = {}
            if reset:
                for key, configured in (
                    (tokens.WEBHOOK_KEY, settings.webhook_token),
                    (tokens.API_KEY, settings.api_token),
                ):
                    if configured is None:
                        fresh[key] = tokens.generate()
                        await store.replace_setting(key, tokens.digest(fresh[key]))
    finally:
        db.stop()
    for line in _token_lines(settings, stored, fresh, webhook_url):
        print(line)
    return 0


def _token_lines(
    settings: Settings,
    stored: dict[str, str],
    fresh: dict[str, str],
    webhook_url: Callable[[Settings, str | None], str],
) -> list[str]:
    from agentbot import tokens

    reset_hint = "`agentbot tokens --reset` makes a new one, shown once"
    lines: list[str] = []
    if settings.chatwoot_webhook_secret is not None:
        lines.append(
            f"webhook URL: {webhook_url(settings, None)} "
            "(signed with CHATWOOT_WEBHOOK_SECRET: no token in the URL)"
        )
    elif settings.webhook_token is not None:
        lines.append(
            f"webhook URL: {webhook_url(settings, settings.webhook_token.reveal())} (WEBHOOK_TOKEN)"
        )
    elif tokens.WEBHOOK_KEY in fresh:
        token = fresh[tokens.WEBHOOK_KEY]
        lines.append(f"webhook URL: {webhook_url(settings, token)} (new: shown this once)")
    elif tokens.WEBHOOK_KEY in stored:
        lines.append(
            "webhook URL: generated and kept only as a hash, so it cannot be shown; "
            + reset_hint
            + " (then paste it into the Agent Bot)"
        )
    else:
        lines.append("webhook URL: none yet: `agentbot serve` generates one at its first start")
    if settings.api_token is not None:
        lines.append(f"API token: {settings.api_token.reveal()} (WORKFLOWS_API_TOKEN)")
    elif tokens.API_KEY in fresh:
        lines.append(f"API token: {fresh[tokens.API_KEY]} (new: shown this once)")
    elif tokens.API_KEY in stored:
        lines.append(
            "API token: generated and kept only as a hash, so it cannot be shown; " + reset_hint
        )
    else:
        lines.append("API token: none yet: `agentbot serve` generates one at its first start")
    return lines


def serve_command(settings: Settings) -> int:
    import uvicorn

    from agentbot import serving
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
        # uvicorn shuts down gracefully on SIGTERM and then raises the signal again for the
        # handler it found: make that one an exit, so the `finally` below stops the embedded
        # PostgreSQL instead of the process dying on the spot.
        signal.signal(signal.SIGTERM, _exit_on_signal)
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            log_level="warning",
            access_log=False,
            lifespan="on",
            **serving.options(),
        )
    finally:
        db.stop()
    return 0


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


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
