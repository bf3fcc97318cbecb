"""Flow files synced into workflow_configs: a new version only when the content changes."""

from __future__ import annotations

from pathlib import Path

import pytest
from psycopg_pool import AsyncConnectionPool

from agentbot.catalog import Catalog, load_flow_files
from agentbot.errors import FlowError
from agentbot.store import Store
from tests.harness import SALES_FLOW, write_flow

pytestmark = pytest.mark.anyio


async def test_sync_versions(db_dsn: str, tmp_path: Path) -> None:
    """Same content: no new row. Edited: a new current version. Reverted: the old one again."""
    flows = write_flow(tmp_path)
    async with AsyncConnectionPool(db_dsn, min_size=1, open=False) as pool:
        store = Store(pool)
        catalog = Catalog(store)
        [first] = await catalog.sync_files(flows)
        await catalog.sync_files(flows)
        write_flow(tmp_path, "# a comment changes nothing\n" + SALES_FLOW)
        await catalog.sync_files(flows)
        async with store.transaction() as tx:
            cur = await tx.conn.execute("select count(*) from workflow_configs")
            assert await cur.fetchone() == (1,)

        write_flow(tmp_path, SALES_FLOW.replace("Qual produto", "Que produto"))
        [second] = await catalog.sync_files(flows)
        assert second.version != first.version
        assert catalog.current["vendas"].version == second.version
        old = await Catalog(store).version("vendas", first.version)
        assert old is not None
        assert old.blocks["produto"].message is not None
        assert old.blocks["produto"].message.source == "Qual produto te interessa?"

        write_flow(tmp_path, SALES_FLOW)
        await catalog.sync_files(flows)
        async with store.transaction() as tx:
            cur = await tx.conn.execute(
                "select version, is_current from workflow_configs order by id"
            )
            assert await cur.fetchall() == [(first.version, True), (second.version, False)]
        assert await catalog.version("vendas", "nope") is None


def test_load_reports_every_file(tmp_path: Path) -> None:
    """Problems of every file and path are reported together."""
    write_flow(tmp_path, "blocks: {a: {message: ''}}\n", "a.yaml")
    write_flow(tmp_path, SALES_FLOW, "b.yaml")
    write_flow(tmp_path, SALES_FLOW, "c.yaml")
    with pytest.raises(FlowError) as info:
        load_flow_files([tmp_path, tmp_path / "missing.yaml"])
    lines = [str(p) for p in info.value.problems]
    assert f"{tmp_path}/missing.yaml:0: (file): no such file or directory" in lines
    assert any(line.startswith(f"{tmp_path}/a.yaml:1: blocks.a.message") for line in lines)
    assert any("flow name 'vendas' is already used" in line for line in lines)


async def test_refresh_picks_up_other_replicas_flows(db_dsn: str, tmp_path: Path) -> None:
    """A flow another replica stored becomes current here at the next refresh."""
    import asyncio
    import contextlib

    from agentbot.app import Credentials, WebhookAuth, refresh_flows
    from agentbot.loader import parse_flow
    from agentbot.tokens import Verifier

    async with AsyncConnectionPool(db_dsn, min_size=1, open=False) as pool:
        here, there = Catalog(Store(pool)), Catalog(Store(pool))
        await here.reload()
        flow = parse_flow(SALES_FLOW, "vendas.yaml")
        await there.store_api_flow(flow, file="<request>", user_token=False)
        assert "vendas" not in here.current
        credentials = Credentials(
            WebhookAuth(secret=None, token=Verifier.of("t")), Verifier.of("a")
        )
        task = asyncio.create_task(refresh_flows(here, credentials, here.store, interval=0.01))
        for _ in range(200):
            if "vendas" in here.current:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert here.current["vendas"].version == flow.version
