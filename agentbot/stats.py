"""GET /api/stats: the sessions and the funnel of each flow, from the history.

Definitions (docs/operators.md says the same for operators). The window filters sessions by their
start (`workflow_conversations.created_at`), `since` inclusive, `until` exclusive; every number
below counts only sessions started in the window.

- started: the flow's sessions; completed / handed_off / abandoned / active / closed: those
  sessions by their status now.
- entered: the times the bot entered the block (an `entered` interaction: the first block of a
  session, each block a button, answer, timeout, fallback or restart led to). Asking again
  after a refused answer is not entering again.
- answered: the customer's answers accepted at the block (a button chosen, an input accepted).
- input_failures: the customer's answers refused there (no button matched, an invalid input).
- left_here: sessions whose status now is handed_off or abandoned and that stopped at this
  block; per flow they add up to handed_off + abandoned.
- choices: the choices recorded at the block (the `choice` of an inbound interaction: a button's
  value, an A/B arm), keyed by the button's title in the session's flow version, else the value.
- labels: how many times the sessions applied each label.

Counts come from `workflow_stats_rollup` (per flow version, day, block) for whole UTC days
inside the window and from `workflow_interactions` itself for the partial days at its edges and
for what the rollup has not summed yet (the last few minutes).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from agentbot.catalog import Catalog
from agentbot.flows import Flow
from agentbot.store import Store

# Interactions newer than this are left to the raw query: a transaction still open when the
# rollup ran could otherwise commit a lower id behind the watermark.
SETTLE = timedelta(minutes=5)

# One row per counted fact of an interaction: (metric, key). `i` is workflow_interactions.
_FACTS = """
cross join lateral (
    select 'entered', '' where i.kind = 'entered'
    union all select 'answered', '' where i.direction = 'in' and i.kind in ('chose', 'answered')
    union all select 'failed', '' where i.direction = 'in' and i.kind = 'missed'
    union all select 'choice', i.choice where i.direction = 'in' and i.choice is not null
    union all select 'label', l.value from jsonb_array_elements_text(
        case when i.direction = 'out' and i.kind = 'labels' then i.labels else '[]' end
    ) l(value)
) m(metric, key)
"""
_COUNTED = (
    "(i.kind in ('entered', 'chose', 'answered', 'missed', 'labels') or i.choice is not null)"
)

ROLL_FORWARD = f"""
with upto as (
    select coalesce(max(id), %(last)s) as id from workflow_interactions
    where id > %(last)s and created_at < now() - %(settle)s
), counted as (
    insert into workflow_stats_rollup (flow_name, flow_version, day, block, metric, key, n)
    select s.flow_name, s.flow_version, (s.created_at at time zone 'UTC')::date,
        coalesce(i.block, ''), m.metric, m.key, count(*)
    from workflow_interactions i
    join workflow_conversations s on s.id = i.session_id
    {_FACTS}
    where i.id > %(last)s and i.id <= (select id from upto) and {_COUNTED}
    group by 1, 2, 3, 4, 5, 6
    on conflict (day, flow_name, flow_version, block, metric, key)
    do update set n = workflow_stats_rollup.n + excluded.n
)
update workflow_stats_watermark set last_id = (select id from upto)
returning last_id
"""
LOCK_ROLLUP = "select pg_advisory_xact_lock(hashtextextended('agentbot:stats_rollup', 0))"
SELECT_WATERMARK = "select last_id from workflow_stats_watermark"

FROM_ROLLUP = """
select flow_name, flow_version, block, metric, key, sum(n)::bigint
from workflow_stats_rollup
where day >= %(first)s and day < %(last)s and (%(flow)s::text is null or flow_name = %(flow)s)
group by 1, 2, 3, 4, 5
"""
# The raw facts of sessions started in [lo, hi), up to interaction id `upto` (inclusive) and
# from id `after` (exclusive).
FROM_HISTORY = f"""
select s.flow_name, s.flow_version, coalesce(i.block, ''), m.metric, m.key, count(*)
from workflow_conversations s
join workflow_interactions i on i.session_id = s.id
{_FACTS}
where s.created_at >= %(lo)s and s.created_at < %(hi)s
  and (%(flow)s::text is null or s.flow_name = %(flow)s)
  and i.id > %(after)s and i.id <= %(upto)s and {_COUNTED}
group by 1, 2, 3, 4, 5
"""
# The same for the interactions the rollup has not summed: few rows, found by id.
FROM_TAIL = f"""
select s.flow_name, s.flow_version, coalesce(i.block, ''), m.metric, m.key, count(*)
from workflow_interactions i
join workflow_conversations s on s.id = i.session_id
{_FACTS}
where i.id > %(after)s and {_COUNTED}
  and s.created_at >= %(lo)s and s.created_at < %(hi)s
  and (%(flow)s::text is null or s.flow_name = %(flow)s)
group by 1, 2, 3, 4, 5
"""
# Sessions by flow, status and the block they are at (left_here: handed off or abandoned there).
SESSIONS = """
select flow_name, status, current_block, count(*)::bigint
from workflow_conversations
where created_at >= %(lo)s and created_at < %(hi)s
  and (%(flow)s::text is null or flow_name = %(flow)s)
group by 1, 2, 3
"""
MEDIANS = """
select flow_name,
    percentile_cont(0.5) within group (order by date_part('epoch', ended_at - created_at))
from workflow_conversations
where created_at >= %(lo)s and created_at < %(hi)s
  and (%(flow)s::text is null or flow_name = %(flow)s)
  and status = 'completed' and ended_at is not null
group by 1
"""
EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, tzinfo=UTC)
LEFT = ("handed_off", "abandoned")
STATUSES = ("active", "completed", "handed_off", "abandoned", "closed")
METRICS = {"entered": "entered", "answered": "answered", "failed": "input_failures"}


@dataclass(frozen=True, slots=True)
class Window:
    since: datetime | None
    until: datetime | None

    @property
    def lo(self) -> datetime:
        return self.since or EARLIEST

    @property
    def hi(self) -> datetime:
        return self.until or LATEST


def parse_instant(raw: str | None) -> datetime | None:
    """An ISO 8601 instant; without an offset it is taken as UTC. ValueError when malformed."""
    if raw is None or raw == "":
        return None
    value = datetime.fromisoformat(raw.replace("Z", "+00:00") if raw.endswith("Z") else raw)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def split(window: Window) -> tuple[tuple[date, date] | None, list[tuple[datetime, datetime]]]:
    """The whole UTC days [first, last) inside the window, and the partial ranges beside them."""
    lo, hi = window.lo, window.hi
    first = lo.astimezone(UTC).date()
    if _midnight(first) < lo:
        first += timedelta(days=1)
    last = hi.astimezone(UTC).date()
    if first >= last:
        return None, [(lo, hi)] if lo < hi else []
    edges = [r for r in ((lo, _midnight(first)), (_midnight(last), hi)) if r[0] < r[1]]
    return (first, last), edges


async def roll_forward(store: Store) -> int:
    """Sum the settled interactions not summed yet into the rollup; the new watermark."""
    async with store.transaction() as tx:
        await tx.conn.execute(LOCK_ROLLUP)
        cur = await tx.conn.execute(SELECT_WATERMARK)
        row = await cur.fetchone()
        assert row is not None
        cur = await tx.conn.execute(ROLL_FORWARD, {"last": int(row[0]), "settle": SETTLE})
        done = await cur.fetchone()
        assert done is not None
        return int(done[0])


Key = tuple[str, str, str, str, str]  # flow, version, block, metric, key


async def stats(store: Store, window: Window, flow: str | None, catalog: Catalog) -> dict[str, Any]:
    """The /api/stats document. Buttons' titles come from each session's flow version, the
    blocks' order from the flow's current version."""
    # Three connections at once: the funnel's facts, the sessions, the medians.
    facts, sessions, medians = await asyncio.gather(
        _facts(store, window, flow),
        _rows(store, SESSIONS, window, flow),
        _medians(store, window, flow),
    )
    titles: dict[tuple[str, str], dict[str, dict[str, str]]] = {}
    for name, version, _, metric, _ in facts:
        if metric == "choice" and (name, version) not in titles:
            titles[(name, version)] = _titles(await catalog.version(name, version))
    order = {name: list(f.blocks) for name, f in catalog.current.items()}
    return _document(window, sessions, medians, facts, titles, order)


# None of these is prepared: a generic plan, made without knowing the window, scans the
# whole history.


async def _facts(store: Store, window: Window, flow: str | None) -> Counter[Key]:
    facts: Counter[Key] = Counter()
    params: dict[str, Any] = {"flow": flow, "lo": window.lo, "hi": window.hi}
    async with store.transaction() as tx:
        cur = await tx.conn.execute(SELECT_WATERMARK)
        row = await cur.fetchone()
        assert row is not None
        watermark = int(row[0])
        whole, edges = split(window)
        queries: list[tuple[str, dict[str, Any]]] = []
        if whole is not None:
            queries.append((FROM_ROLLUP, {"flow": flow, "first": whole[0], "last": whole[1]}))
        for lo, hi in edges:
            queries.append(
                (FROM_HISTORY, {"flow": flow, "lo": lo, "hi": hi, "after": 0, "upto": watermark})
            )
        queries.append((FROM_TAIL, {**params, "after": watermark}))
        for statement, args in queries:
            cur = await tx.conn.execute(statement, args, prepare=False)
            for name, version, block, metric, key, n in await cur.fetchall():
                facts[(name, version, block, metric, key)] += int(n)
    return facts


async def _rows(
    store: Store, statement: str, window: Window, flow: str | None
) -> list[tuple[Any, ...]]:
    params = {"flow": flow, "lo": window.lo, "hi": window.hi}
    async with store.transaction() as tx:
        cur = await tx.conn.execute(statement, params, prepare=False)
        return await cur.fetchall()


async def _medians(store: Store, window: Window, flow: str | None) -> dict[str, float]:
    rows = await _rows(store, MEDIANS, window, flow)
    return {str(n): float(m) for n, m in rows if m is not None}


def _titles(flow: Flow | None) -> dict[str, dict[str, str]]:
    """block -> button value -> title."""
    if flow is None:
        return {}
    return {
        block.id: {button.value: button.text for button in block.buttons}
        for block in flow.blocks.values()
    }


def _document(
    window: Window,
    sessions: list[tuple[Any, ...]],
    medians: Mapping[str, float],
    facts: Counter[Key],
    titles: Mapping[tuple[str, str], Mapping[str, Mapping[str, str]]],
    orders: Mapping[str, list[str]],
) -> dict[str, Any]:
    totals = dict.fromkeys(STATUSES, 0)
    per_flow: dict[str, dict[str, int]] = {}
    for name, status, _, n in sessions:
        totals[status] = totals.get(status, 0) + int(n)
        per_flow.setdefault(name, dict.fromkeys(STATUSES, 0))[status] += int(n)
    blocks: dict[str, dict[str, dict[str, Any]]] = {}
    labels: dict[str, Counter[str]] = {}

    def block_of(name: str, block: str) -> dict[str, Any]:
        return blocks.setdefault(name, {}).setdefault(
            block,
            {
                "block": block,
                "entered": 0,
                "answered": 0,
                "left_here": 0,
                "input_failures": 0,
                "choices": {},
            },
        )

    for name, status, block, n in sessions:
        if status in LEFT:
            block_of(name, block)["left_here"] += int(n)
    for (name, version, block, metric, key), n in sorted(facts.items()):
        if metric == "label":
            labels.setdefault(name, Counter())[key] += n
            continue
        entry = block_of(name, block)
        if metric == "choice":
            title = titles.get((name, version), {}).get(block, {}).get(key, key)
            entry["choices"][title] = entry["choices"].get(title, 0) + n
        else:
            entry[METRICS[metric]] += n
    flows = []
    for name in sorted(set(per_flow) | set(blocks)):
        counts = per_flow.get(name, dict.fromkeys(STATUSES, 0))
        started = sum(counts.values())
        order = orders.get(name, [])
        found = blocks.get(name, {})
        ranked = sorted(found, key=lambda b: (order.index(b) if b in order else len(order), b))
        flows.append(
            {
                "name": name,
                "started": started,
                "completed": counts["completed"],
                "handed_off": counts["handed_off"],
                "abandoned": counts["abandoned"],
                "active": counts["active"],
                "closed": counts["closed"],
                "completion_rate": round(counts["completed"] / started, 4) if started else 0.0,
                "median_seconds_to_complete": medians.get(name),
                "blocks": [found[b] for b in ranked],
                "labels": dict(sorted(labels.get(name, Counter()).items())),
            }
        )
    return {
        "since": None if window.since is None else window.since.isoformat(),
        "until": None if window.until is None else window.until.isoformat(),
        "sessions": totals,
        "flows": flows,
    }
