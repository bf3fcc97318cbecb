"""The flows the service runs: read from `FLOWS_DIR`, validated, synced into `workflow_configs`.

Reading files happens here (the shell); parsing and validation are `loader.py`'s pure functions.
A session keeps the version it started on, so versions no longer current are read back from the
database on demand and cached.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog

from agentbot.errors import FlowError
from agentbot.flowchecks import check_flow_set
from agentbot.flows import Flow, flow_uses_contact_attributes
from agentbot.hours import parse_hours
from agentbot.loader import flow_from_definition, parse_flow
from agentbot.store import Store
from agentbot.validation import Problem, line_at, read_document

log = structlog.get_logger("agentbot.catalog")

HOURS_DIR = "hours"  # FLOWS_DIR/hours/<name>.yaml: business hours flows name (`hours: <name>`)


def read_shared_hours(directory: Path) -> tuple[dict[str, Any], list[Problem]]:
    """The business hours the flows of `directory` may name, read from `directory/hours/*.yaml`
    (the name is the file's stem), and the problems of those files."""
    folder = directory / HOURS_DIR
    found: dict[str, Any] = {}
    problems: list[Problem] = []
    if not folder.is_dir():
        return found, problems
    for file in sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml")):
        try:
            document = read_document(file.read_text(encoding="utf-8"), str(file))
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(str(file), 0, "(file)", f"cannot read: {exc}"))
            continue
        except FlowError as exc:
            problems.extend(exc.problems)
            continue
        hours, wrong = parse_hours(document.data)
        problems.extend(
            Problem(str(file), line_at(document.lines, key), key or "(root)", message)
            for key, message in wrong
        )
        if hours is not None:
            found[file.stem] = document.data
    return found, problems


def load_flow_files(paths: list[Path], *, user_token: bool = True) -> list[tuple[str, Flow]]:
    """Parse every `*.yaml`/`*.yml` file under the paths; raise FlowError with every problem.

    Without `user_token` (CHATWOOT_USER_TOKEN unset), a flow saving contact attributes is a
    problem too: the bot's own token cannot write them.
    """
    files: list[Path] = []
    problems: list[Problem] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml")))
        elif path.is_file():
            files.append(path)
        else:
            problems.append(Problem(str(path), 0, "(file)", "no such file or directory"))
    flows: list[tuple[str, Flow]] = []
    shared: dict[Path, dict[str, Any]] = {}
    for file in files:
        if file.parent not in shared:
            shared[file.parent], wrong = read_shared_hours(file.parent)
            problems.extend(wrong)
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(str(file), 0, "(file)", f"cannot read: {exc}"))
            continue
        try:
            flows.append((str(file), parse_flow(text, str(file), shared_hours=shared[file.parent])))
        except FlowError as exc:
            problems.extend(exc.problems)
    problems.extend(check_flow_set(flows))
    if not user_token:
        problems.extend(
            Problem(
                file,
                flow.lines.get(f"blocks.{block.id}.save_to", 0),
                f"blocks.{block.id}.save_to",
                "contact attributes need CHATWOOT_USER_TOKEN (the bot's token may not write "
                "contacts): set it in env-workflows",
            )
            for file, flow in flows
            if flow_uses_contact_attributes(flow)
            for block in flow.blocks.values()
            if block.save_to is not None and block.save_to.scope == "contact"
        )
    if problems:
        raise FlowError(problems)
    return flows


class Catalog:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.current: dict[str, Flow] = {}
        self._versions: dict[tuple[str, str], Flow] = {}

    async def sync_files(self, flows_dir: Path, *, user_token: bool = True) -> list[Flow]:
        """Store each file's content as its flow's current version; new versions only on change."""
        # Reading a few small files at start-up: blocking the loop for it is harmless.
        present = flows_dir.is_dir()  # noqa: ASYNC240
        flows = (
            [flow for _, flow in load_flow_files([flows_dir], user_token=user_token)]
            if present
            else []
        )
        if not present:
            log.warning("flows.missing_dir", flows_dir=str(flows_dir))
        else:
            # A file removed from FLOWS_DIR retires its flow: no new session starts on it.
            for name in await self.store.retire_file_flows([f.name for f in flows]):
                log.warning("flows.retired", flow=name, reason="its file left FLOWS_DIR")
        for flow in flows:
            changed = await self.store.sync_flow(
                name=flow.name,
                version=flow.version,
                title=flow.title,
                definition=flow.definition,
                source="file",
            )
            log.info("flows.synced", flow=flow.name, version=flow.version, changed=changed)
        await self.reload()
        return flows

    async def store_api_flow(self, flow: Flow, *, file: str, user_token: bool) -> bool:
        """Validate `flow` beside the current ones and make it its name's current version
        (source `api`); True when that is a new version. Raises FlowError."""
        others = [(f"<flow {f.name}>", f) for f in self.current.values() if f.name != flow.name]
        problems = check_flow_set([*others, (file, flow)])
        if not user_token and flow_uses_contact_attributes(flow):
            problems.append(
                Problem(
                    file,
                    0,
                    "save_to",
                    "contact attributes need CHATWOOT_USER_TOKEN (the bot's token may not "
                    "write contacts): set it in env-workflows",
                )
            )
        if problems:
            raise FlowError(problems)
        changed = await self.store.sync_flow(
            name=flow.name,
            version=flow.version,
            title=flow.title,
            definition=flow.definition,
            source="api",
        )
        self._versions[(flow.name, flow.version)] = flow
        await self.reload()
        log.info(
            "flows.stored", flow=flow.name, version=flow.version, changed=changed, source="api"
        )
        return changed

    async def retire(self, name: str) -> str | None:
        """Stop `name` from starting new sessions; sessions in flight finish on their version.
        The version retired, or None when the flow had no current version."""
        version = await self.store.retire_flow(name)
        await self.reload()
        if version is not None:
            log.info("flows.retired", flow=name, version=version, reason="api")
        return version

    async def reload(self) -> None:
        current: dict[str, Flow] = {}
        for name, version, definition in await self.store.current_flows():
            flow = self._versions.get((name, version))
            if flow is None:
                try:
                    flow = flow_from_definition(definition, name=name, strict=False)
                except FlowError as exc:
                    log.error("flows.invalid_stored", flow=name, version=version, error=str(exc))
                    continue
                self._versions[(name, version)] = flow
            current[name] = flow
        self.current = current

    async def version(self, name: str, version: str) -> Flow | None:
        """The flow as it was at that version (the one a session started on)."""
        flow = self._versions.get((name, version))
        if flow is not None:
            return flow
        definition = await self.store.flow_definition(name, version)
        if definition is None:
            return None
        try:
            flow = flow_from_definition(definition, name=name, strict=False)
        except FlowError as exc:
            log.error("flows.invalid_stored", flow=name, version=version, error=str(exc))
            return None
        self._versions[(name, version)] = flow
        return flow
