"""GET /api/stats against scripted conversations whose funnel is known."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from agentbot import stats
from agentbot.config import Secret, Settings
from agentbot.store import Store
from tests.fakes import FakeChatwoot, FakeChatwootServer
from tests.harness import WEBHOOK_TOKEN, Harness, incoming, running, write_flow

pytestmark = pytest.mark.anyio

API = "api-token"
AUTH = {"authorization": f"Bearer {API}"}

# Four conversations through tests.harness.SALES_FLOW; what each does to the funnel.
SCRIPT = {
    101: ["Oi", "Sim", "Plano Pro"],  # handed off at atendente; labels plano_pro, lead_quente
    102: ["Oi", "Não", "Só olhando"],  # completed at tchau; label lead_novo
    103: ["Oi", "banana", "Sim"],  # one refused answer, active at produto
    104: ["Oi", "xyz", "xyz"],  # two refused answers: handed off at boas_vindas
}
BLOCKS = [
    {
        "block": "boas_vindas",
        "entered": 4,
        "answered": 3,
        "left_here": 1,
        "input_failures": 3,
        "choices": {"Sim": 2, "Não": 1},
    },
    {
        "block": "produto",
        "entered": 3,
        "answered": 2,
        "left_here": 0,
        "input_failures": 0,
        "choices": {"Plano Pro": 1, "Só olhando": 1},
    },
    {
        "block": "atendente",
        "entered": 1,
        "answered": 0,
        "left_here": 1,
        "input_failures": 0,
        "choices": {},
    },
    {
        "block": "tchau",
        "entered": 1,
        "answered": 0,
        "left_here": 0,
        "input_failures": 0,
        "choices": {},
    },
]


@asynccontextmanager
async def scripted(db_dsn: str, tmp_path: Path) -> AsyncIterator[Harness]:
    fake = FakeChatwoot()
    flows = write_flow(tmp_path / "flows")
    with FakeChatwootServer(fake) as server:
        settings = Settings(
            chatwoot_url=server.url,
            chatwoot_api_token=Secret(fake.bot_token),
            webhook_token=Secret(WEBHOOK_TOKEN),
            api_token=Secret(API),
            flows_dir=flows,
        )
        async with running(db_dsn, flows, fake=fake, settings=settings) as h:
            message_id = 1
            for conversation_id, texts in SCRIPT.items():
                for text in texts:
                    await h.post(incoming(conversation_id, message_id, text))
                    message_id += 1
                    await h.settled()
            yield h


async def get_stats(h: Harness, **params: str) -> dict[str, Any]:
    r = await h.http.get("/api/stats", params=params, headers=AUTH)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def check_funnel(body: dict[str, Any]) -> None:
    assert body["sessions"] == {
        "active": 1,
        "completed": 1,
        "handed_off": 2,
        "abandoned": 0,
        "closed": 0,
    }
    [flow] = body["flows"]
    median = flow.pop("median_seconds_to_complete")
    assert isinstance(median, float)
    assert 0 <= median < 60
    assert flow["blocks"] == BLOCKS
    assert flow == {
        "name": "vendas",
        "started": 4,
        "completed": 1,
        "handed_off": 2,
        "abandoned": 0,
        "active": 1,
        "closed": 0,
        "completion_rate": 0.25,
        "blocks": BLOCKS,
        "labels": {"lead_novo": 1, "lead_quente": 1, "plano_pro": 1},
    }


async def test_stats_of_scripted_conversations(db_dsn: str, tmp_path: Path) -> None:
    """Every field of /api/stats matches the funnel of four scripted conversations."""
    async with scripted(db_dsn, tmp_path) as h:
        body = await get_stats(h)
        assert (body["since"], body["until"]) == (None, None)
        check_funnel(body)
        # Nothing else matches a window after them, or another flow's name.
        later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        empty = await get_stats(h, since=later)
        assert empty["flows"] == []
        assert empty["sessions"] == dict.fromkeys(stats.STATUSES, 0)
        assert (await get_stats(h, flow="outro"))["flows"] == []
        check_funnel(await get_stats(h, flow="vendas"))


async def test_stats_from_rollup_and_edges(db_dsn: str, tmp_path: Path) -> None:
    """The same numbers when the history is summed into the rollup and the window cuts days."""
    async with scripted(db_dsn, tmp_path) as h:
        # Move the history three days back: settled, so the rollup sums it.
        h.query("update workflow_interactions set created_at = %s returning 1", (THREE_DAYS,))
        h.query(
            "update workflow_conversations set created_at = %s, "
            "ended_at = %s + (ended_at - created_at) returning 1",
            (THREE_DAYS, THREE_DAYS),
        )
        async with AsyncConnectionPool(h.dsn, min_size=1, open=False) as pool:
            mark = await stats.roll_forward(Store(pool))
        assert mark == h.query("select max(id) from workflow_interactions")[0][0]
        assert h.query("select sum(n) from workflow_stats_rollup")[0][0] > 0
        check_funnel(await get_stats(h))  # whole days: the rollup alone
        # A window that starts and ends inside days: rollup plus the partial days' history.
        since = (THREE_DAYS - timedelta(days=1, hours=3)).isoformat()
        until = (THREE_DAYS + timedelta(days=1, hours=1)).isoformat()
        check_funnel(await get_stats(h, since=since, until=until))
        # Inside one day: the history alone.
        inside = await get_stats(
            h,
            since=(THREE_DAYS - timedelta(minutes=1)).isoformat(),
            until=(THREE_DAYS + timedelta(minutes=1)).isoformat(),
        )
        check_funnel(inside)
        # Sessions outside the window count nowhere, rolled up or not.
        before = await get_stats(h, until=(THREE_DAYS - timedelta(hours=1)).isoformat())
        assert before["flows"] == []
        # A split block's arm, recorded after the rollup ran, counts by its raw value.
        session = h.query("select id from workflow_conversations order by id limit 1")[0][0]
        h.query(
            "insert into workflow_interactions (session_id, account_id, conversation_id, "
            "direction, kind, block, choice) values (%s, 1, 101, 'in', 'split', 'produto', "
            "'braco_b') returning 1",
            (session,),
        )
        body = await get_stats(h)
        produto = next(b for b in body["flows"][0]["blocks"] if b["block"] == "produto")
        assert produto["choices"] == {"Plano Pro": 1, "Só olhando": 1, "braco_b": 1}


THREE_DAYS = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(
    days=3
)


async def test_stats_refuses_bad_requests(db_dsn: str, tmp_path: Path) -> None:
    """No token: 401; a malformed since: 422 naming the format."""
    async with scripted(db_dsn, tmp_path) as h:
        r = await h.http.get("/api/stats")
        assert (r.status_code, r.json()["error"]) == (401, "unauthorized")
        r = await h.http.get("/api/stats", params={"since": "yesterday"}, headers=AUTH)
        assert r.status_code == 422
        assert "ISO 8601" in r.json()["message"]


def test_split_window() -> None:
    """A window splits into whole UTC days and the partial ranges beside them."""
    day = datetime(2026, 3, 10, tzinfo=UTC)
    assert stats.split(stats.Window(day, day + timedelta(days=2))) == (
        (day.date(), (day + timedelta(days=2)).date()),
        [],
    )
    lo, hi = day + timedelta(hours=5), day + timedelta(days=2, hours=1)
    whole, edges = stats.split(stats.Window(lo, hi))
    assert whole == ((day + timedelta(days=1)).date(), (day + timedelta(days=2)).date())
    assert edges == [(lo, day + timedelta(days=1)), (day + timedelta(days=2), hi)]
    assert stats.split(stats.Window(lo, lo + timedelta(hours=1))) == (
        None,
        [(lo, lo + timedelta(hours=1))],
    )
    assert stats.split(stats.Window(hi, lo)) == (None, [])
    assert stats.parse_instant("2026-03-10T05:00:00Z") == lo
    assert stats.parse_instant("2026-03-10T05:00:00") == lo
    assert stats.parse_instant(None) is None
