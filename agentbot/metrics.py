"""`/metrics`: the service's figures in Prometheus' text format, behind `METRICS_TOKEN`.

Two sources, both read at each scrape:
- this process: webhook events by Chatwoot event and what became of them (`/health` shows the
  same table) and the delivery latency of the replies this process's outbox sent;
- the database, shared by every replica: outbox rows by status (and how many of them needed more
  than one attempt) and bot sessions by status.

Each app has its own `CollectorRegistry` (never the global one), so two apps in one process (the
tests) do not mix their figures.
"""

from __future__ import annotations

import hmac
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from agentbot.config import Secret

OUTBOX_STATUSES = ("pending", "sent", "dead", "cancelled")
SESSION_STATUSES = ("active", "completed", "handed_off", "abandoned", "closed")
# Seconds from deciding a reply (the outbox row) to Chatwoot accepting it.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)

OUTBOX_COUNTS = """
select status, count(*), count(*) filter (where attempts > 1)
from workflow_outbox group by status
"""
SESSION_COUNTS = "select status, count(*) from workflow_conversations group by status"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the database holds at one scrape."""

    outbox: Mapping[str, int] = field(default_factory=dict)
    retried: Mapping[str, int] = field(default_factory=dict)
    sessions: Mapping[str, int] = field(default_factory=dict)


class _Figures(Collector):
    """The event counts and the last database snapshot, as metric families."""

    def __init__(self, counts: Counter[tuple[str, str]]) -> None:
        self.counts = counts
        self.snapshot = Snapshot()

    def collect(self) -> Iterable[Metric]:
        events = CounterMetricFamily(
            "agentbot_events",
            "Chatwoot webhook events received by this process, by event and result",
            labels=["event", "result"],
        )
        for (event, result), n in sorted(self.counts.items()):
            events.add_metric([event, result], n)
        yield events
        yield _by_status(
            "agentbot_outbox_rows", "Outbox rows by status", OUTBOX_STATUSES, self.snapshot.outbox
        )
        yield _by_status(
            "agentbot_outbox_retried_rows",
            "Outbox rows that needed more than one attempt, by status",
            OUTBOX_STATUSES,
            self.snapshot.retried,
        )
        yield _by_status(
            "agentbot_sessions",
            "Bot sessions by status",
            SESSION_STATUSES,
            self.snapshot.sessions,
        )


def _by_status(
    name: str, doc: str, statuses: tuple[str, ...], values: Mapping[str, int]
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=["status"])
    for status in dict.fromkeys([*statuses, *sorted(values)]):
        family.add_metric([status], values.get(status, 0))
    return family


class Metrics:
    """One app's registry: feed it events and deliveries, render it at a scrape."""

    def __init__(self, counts: Counter[tuple[str, str]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._figures = _Figures(counts)
        self.registry.register(self._figures)
        self.delivery = Histogram(
            "agentbot_delivery_seconds",
            "Seconds from a reply being decided to Chatwoot accepting it (this process)",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def delivered(self, seconds: float) -> None:
        self.delivery.observe(max(0.0, seconds))

    def render(self, snapshot: Snapshot) -> bytes:
        self._figures.snapshot = snapshot
        return generate_latest(self.registry)


def snapshot_from_rows(
    outbox_rows: Iterable[tuple[Any, ...]], session_rows: Iterable[tuple[Any, ...]]
) -> Snapshot:
    outbox: dict[str, int] = {}
    retried: dict[str, int] = {}
    for status, total, again in outbox_rows:
        outbox[str(status)] = int(total)
        retried[str(status)] = int(again)
    sessions = {str(status): int(n) for status, n in session_rows}
    return Snapshot(outbox=outbox, retried=retried, sessions=sessions)


def authorized(token: Secret | None, request: Request) -> Response | None:
    """None when the request carries `Authorization: Bearer <METRICS_TOKEN>`, else the answer."""
    if token is None:
        return JSONResponse(
            {
                "error": "metrics_disabled",
                "message": "/metrics is off: set METRICS_TOKEN and scrape with "
                "Authorization: Bearer <METRICS_TOKEN>",
            },
            status_code=404,
        )
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), ("Bearer " + token.reveal()).encode()):
        return JSONResponse(
            {"error": "unauthorized", "message": "send Authorization: Bearer <METRICS_TOKEN>"},
            status_code=401,
        )
    return None


def response(body: bytes) -> Response:
    return Response(body, headers={"content-type": CONTENT_TYPE_LATEST})
