"""Timers kept in the database: a restart loses none, two replicas fire each once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from psycopg_pool import AsyncConnectionPool

from agentbot.catalog import Catalog
from agentbot.service import Service
from agentbot.store import Store
from agentbot.timers import Timers
from tests.harness import incoming, running, write_flow

pytestmark = pytest.mark.anyio

FLOW = """
trigger: {default: true}
inactivity: {after: 1h, message: "Vou encerrar por inatividade."}
blocks:
  pergunta:
    message: "Ainda está aí?"
    buttons: [{text: Sim, next_block: fim}]
    timeout: {after: 10m, next_block: lembrete}
  lembrete:
    message: "Estou esperando sua resposta."
    buttons: [{text: Sim, next_block: fim}]
  fim:
    message: "Ótimo!"
"""


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 6, 20, 14, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


async def test_timeout_fires_once_after_restart(db_dsn: str, tmp_path: Path) -> None:
    """A deadline that passes while the service is down fires once after it starts again."""
    clock = Clock()
    flows = write_flow(tmp_path, FLOW, "espera.yaml")
    async with running(db_dsn, flows, clock=clock) as h:
        await h.post(incoming(60, 1, "Oi"))
        await h.until(lambda: len(h.sent(60)) == 1)
        [(timeout_at,)] = h.query("select timeout_at from workflow_conversations")
        assert timeout_at == clock.now + timedelta(minutes=10)
    clock.advance(minutes=11)  # passes while nothing runs
    async with running(db_dsn, flows, fake=h.fake, clock=clock) as h2:
        await h2.until(lambda: len(h2.sent(60)) == 2)
        await asyncio.sleep(0.5)  # several more timer polls
        await h2.settled()
        assert h2.contents(60) == ["Ainda está aí?", "Estou esperando sua resposta."]
        rows = h2.query("select current_block, timeout_at from workflow_conversations")
        assert rows == [("lembrete", None)]


async def test_customer_message_restarts_the_count(db_dsn: str, tmp_path: Path) -> None:
    """Any customer message restarts the block's timeout."""
    clock = Clock()
    async with running(db_dsn, write_flow(tmp_path, FLOW, "espera.yaml"), clock=clock) as h:
        await h.post(incoming(61, 1, "Oi"))
        clock.advance(minutes=8)
        await h.post(incoming(61, 2, "hmm"))  # a miss, but a message
        [(timeout_at,)] = h.query("select timeout_at from workflow_conversations")
        assert timeout_at == clock.now + timedelta(minutes=10)


async def test_inactivity_abandons(db_dsn: str, tmp_path: Path) -> None:
    """After the flow's inactivity period the session is abandoned, with its message."""
    clock = Clock()
    async with running(db_dsn, write_flow(tmp_path, FLOW, "espera.yaml"), clock=clock) as h:
        await h.post(incoming(62, 1, "Oi"))
        clock.advance(minutes=11)
        await h.until(lambda: len(h.sent(62)) == 2)
        clock.advance(hours=1)
        await h.until(lambda: len(h.sent(62)) == 3)
        assert h.contents(62)[-1] == "Vou encerrar por inatividade."
        assert h.query("select status from workflow_conversations") == [("abandoned",)]


async def test_two_replicas_fire_once(db_dsn: str, tmp_path: Path) -> None:
    """Two timer workers on one database (two replicas) fire each deadline exactly once."""
    clock = Clock()
    flows = write_flow(tmp_path, FLOW, "espera.yaml")
    async with running(db_dsn, flows, clock=clock, timer_interval=3600) as h:
        for i in range(20):
            await h.post(incoming(700 + i, 100 + i, "Oi"))
        clock.advance(minutes=11)
        async with (
            AsyncConnectionPool(db_dsn, min_size=2, max_size=8, open=False) as pool_a,
            AsyncConnectionPool(db_dsn, min_size=2, max_size=8, open=False) as pool_b,
        ):
            replicas = []
            for pool in (pool_a, pool_b):
                store = Store(pool)
                catalog = Catalog(store)
                await catalog.reload()
                replicas.append(Timers(Service(store, catalog), clock=clock))
            fired = await asyncio.gather(*(t.run_once() for t in replicas for _ in range(3)))
        assert sum(fired) == 20
        await h.until(lambda: all(len(h.sent(700 + i)) == 2 for i in range(20)))
        await h.settled()
        assert all(len(h.sent(700 + i)) == 2 for i in range(20))
        timed_out = h.query("select count(*) from workflow_interactions where kind = 'timed_out'")
        assert timed_out == [(20,)]


WINDOW_FLOW = """
trigger: {default: true}
inactivity: {after: 30h, message: "Vou encerrar por inatividade.", then: %s}
%s
blocks:
  pergunta:
    message: "Ainda está aí?"
    buttons: [{text: Sim, next_block: fim}]
    timeout: {after: 25h, next_block: lembrete}
  lembrete:
    message: "Estou esperando sua resposta, {{nome}}."
    buttons: [{text: Sim, next_block: fim}]
  fim:
    message: "Ótimo!"
"""
TEMPLATE = (
    "template: {name: retomada, language: pt_BR, category: UTILITY,"
    ' params: {body: {"1": "{{nome}}"}}}'
)


async def test_outside_whatsapp_window_timer_uses_the_template(db_dsn: str, tmp_path: Path) -> None:
    """25 hours after the customer's message the reminder goes out as the flow's approved
    template (Chatwoot's template_params); so does the inactivity message, and the abandoned
    session is then resolved."""
    clock = Clock()
    flows = write_flow(tmp_path, WINDOW_FLOW % ("resolve", TEMPLATE), "janela.yaml")
    async with running(db_dsn, flows, clock=clock) as h:
        await h.post(incoming(63, 1, "Oi"))
        await h.until(lambda: len(h.sent(63)) == 1)
        clock.advance(hours=25)
        await h.until(lambda: len(h.sent(63)) == 2)
        reminder = h.sent(63)[1]
        assert reminder["content"] == "Estou esperando sua resposta, Maria Silva."
        assert reminder["template_params"] == {
            "name": "retomada",
            "language": "pt_BR",
            "processed_params": {"body": {"1": "Maria Silva"}},
            "category": "UTILITY",
        }
        clock.advance(hours=6)
        await h.until(lambda: h.fake.status(63) == "resolved")
        await h.settled()
        assert len(h.sent(63)) == 3  # the inactivity message went out as the template too
        assert h.query("select status from workflow_conversations") == [("abandoned",)]
        assert h.fake.violations == []


async def test_outside_whatsapp_window_without_template_nothing_is_sent(
    db_dsn: str, tmp_path: Path
) -> None:
    """Without a template, what the timers say after 24 hours is not sent but recorded as
    withheld; the abandoned session hands the conversation to humans."""
    clock = Clock()
    flows = write_flow(tmp_path, WINDOW_FLOW % ("handoff", ""), "janela.yaml")
    async with running(db_dsn, flows, clock=clock) as h:
        await h.post(incoming(64, 1, "Oi"))
        await h.until(lambda: len(h.sent(64)) == 1)
        clock.advance(hours=25)
        await h.until(
            lambda: h.query("select current_block from workflow_conversations") == [("lembrete",)]
        )
        clock.advance(hours=6)
        await h.until(lambda: h.fake.status(64) == "open")
        await h.settled()
        assert h.contents(64)[0] == "Ainda está aí?"
        assert [m["private"] for m in h.sent(64)] == [False]
        withheld = h.query(
            "select block, content from workflow_interactions where kind = 'withheld' order by id"
        )
        assert withheld == [
            ("lembrete", "Estou esperando sua resposta, Maria Silva."),
            ("lembrete", "Vou encerrar por inatividade."),
        ]
        assert h.query("select status from workflow_conversations") == [("handed_off",)]
