"""/metrics: Prometheus text format behind METRICS_TOKEN, read back with prometheus_client."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from agentbot.config import Secret, Settings
from tests.fakes import FakeChatwoot, FakeChatwootServer
from tests.harness import WEBHOOK_TOKEN, incoming, running, write_flow

pytestmark = pytest.mark.anyio

METRICS_TOKEN = "scrape-me"


def samples(text: str) -> dict[str, list[Sample]]:
    """Every sample of an exposition by metric family name, as Prometheus would read it."""
    return {f.name: list(f.samples) for f in text_string_to_metric_families(text)}


def value(found: list[Sample], name: str, **labels: str) -> float:
    """The one sample with this name and these labels."""
    hits = [s.value for s in found if s.name == name and s.labels == labels]
    assert len(hits) == 1, (name, labels, found)
    return hits[0]


async def test_metrics_after_a_conversation(db_dsn: str, tmp_path: Path) -> None:
    """Events, outbox rows (one retried), sessions and delivery latency parse as counted."""
    fake = FakeChatwoot()
    with FakeChatwootServer(fake) as chatwoot:
        settings = Settings(
            chatwoot_url=chatwoot.url,
            chatwoot_api_token=Secret(fake.bot_token),
            webhook_token=Secret(WEBHOOK_TOKEN),
            metrics_token=Secret(METRICS_TOKEN),
            flows_dir=write_flow(tmp_path),
        )
        async with running(db_dsn, tmp_path, fake=fake, settings=settings) as h:
            h.fake.fail_next(3, status=500)  # the first reply needs a second attempt
            await h.post(incoming(70, 1, "Oi"))
            await h.post(incoming(70, 2, "Sim"))
            await h.post(incoming(70, 2, "Sim"))  # the same message again: a duplicate
            await h.post(incoming(71, 3, "Oi", status="open"))  # quiet: a human has it
            await h.until(lambda: len(h.sent(70)) == 2)
            await h.settled()

            r = await h.http.get("/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"})
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/plain")
            found = samples(r.text)

    events = found["agentbot_events"]
    assert value(events, "agentbot_events_total", event="message_created", result="acted") == 2
    assert value(events, "agentbot_events_total", event="message_created", result="duplicate") == 1
    assert value(events, "agentbot_events_total", event="message_created", result="quiet") == 1

    outbox = found["agentbot_outbox_rows"]
    assert value(outbox, "agentbot_outbox_rows", status="sent") == 2
    assert value(outbox, "agentbot_outbox_rows", status="pending") == 0
    assert value(outbox, "agentbot_outbox_rows", status="dead") == 0
    retried = found["agentbot_outbox_retried_rows"]
    assert value(retried, "agentbot_outbox_retried_rows", status="sent") == 1

    sessions = found["agentbot_sessions"]
    assert value(sessions, "agentbot_sessions", status="active") == 1
    assert value(sessions, "agentbot_sessions", status="handed_off") == 0

    latency = found["agentbot_delivery_seconds"]
    assert value(latency, "agentbot_delivery_seconds_count") == 2
    assert value(latency, "agentbot_delivery_seconds_bucket", le="+Inf") == 2
    assert value(latency, "agentbot_delivery_seconds_sum") > 0


async def test_metrics_token(db_dsn: str, tmp_path: Path) -> None:
    """No token or the API's token: 401; METRICS_TOKEN unset: 404 saying how to turn it on."""
    fake = FakeChatwoot()
    with FakeChatwootServer(fake) as chatwoot:
        base = Settings(
            chatwoot_url=chatwoot.url,
            chatwoot_api_token=Secret(fake.bot_token),
            webhook_token=Secret(WEBHOOK_TOKEN),
            api_token=Secret("api-token"),
            flows_dir=write_flow(tmp_path),
        )
        on = dataclasses.replace(base, metrics_token=Secret(METRICS_TOKEN))
        async with running(db_dsn, tmp_path, fake=fake, settings=on) as h:
            r = await h.http.get("/metrics")
            assert r.status_code == 401
            assert r.json()["error"] == "unauthorized"
            r = await h.http.get("/metrics", headers={"authorization": "Bearer api-token"})
            assert r.status_code == 401
        async with running(db_dsn, tmp_path, fake=fake, settings=base) as h:
            r = await h.http.get("/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"})
            assert r.status_code == 404
            assert r.json()["error"] == "metrics_disabled"
            assert "METRICS_TOKEN" in r.json()["message"]
