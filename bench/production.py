"""agentbot as in production: Chatwoot configured, every event also costs a delivered reply.

One run prints:
1. intake flat out (wrk -t1, signed-less token auth, bench/post.lua events) with the outbox
   delivering to a fast fake Chatwoot (bench/fast_chatwoot.py), against the reference server
   (bench/reference_server.py: one small transaction per event), in alternating rounds on the
   same PostgreSQL server, with CPU seconds per event of each process and the ratio;
2. a fixed 200 events/s over 1,000 conversations for 60 s: acknowledgement and event-to-reply
   p50/p99 (the reply's arrival at the fake), replies lost, doubled and out of order;
3. agentbot's peak RSS, transactions and bytes stored per event;
and the targets, each met or missed.

    apt-get install wrk
    .venv/bin/python bench/production.py [--seconds 10] [--rounds 2] [--rate 200]
        [--conversations 1000] [--duration 60]

Needs a PostgreSQL server (BENCH_DATABASE_URL, default postgresql://postgres@127.0.0.1:5432/
postgres): it creates and drops its own databases there. Not run by CI.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import psycopg.conninfo

sys.path.insert(0, str(Path(__file__).resolve().parent))

from intake import database, free_port, process, wrk

BENCH = Path(__file__).resolve().parent
TOKEN = "bench-token"
# Each message gets one reply naming it ("eco <text>"; the first message of a conversation
# gets "eco "), so replies can be matched to events: lost, doubled, out of order.
FLOW = """
trigger: {default: true}
blocks:
  pergunta:
    message: "eco {{texto}}"
    input: {save_as: texto}
    next_block: pergunta
"""
TARGETS = {
    "ratio": 1.0,
    "ack_p99_ms": 25.0,
    "reply_p99_ms": 100.0,
    "rss_mb": 150.0,
}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def backends(dsn: str) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend serving this database (by pid)."""
    import psutil

    name = psycopg.conninfo.conninfo_to_dict(dsn).get("dbname")
    found: dict[int, float] = {}
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if cmdline.startswith("postgres: ") and f" {name} " in f"{cmdline} ":
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                found[proc.pid] = times.user + times.system
    return found


def backend_cpu(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


@contextmanager
def spawn(args: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


def pid_on(port: int) -> int:
    """The pid of the process listening on 127.0.0.1:port (the server under test)."""
    import psutil

    for conn in psutil.net_connections("tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == "LISTEN" and conn.pid:
            return int(conn.pid)
    raise SystemExit(f"nothing listens on {port}")


def pending(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        statement = "select count(*) from workflow_outbox where status = 'pending'"
        row = conn.execute(statement).fetchone()
    return int(row[0]) if row else 0


def drain(dsn: str, limit: float = 120.0) -> float:
    started = time.monotonic()
    while pending(dsn) and time.monotonic() - started < limit:
        time.sleep(0.2)
    return time.monotonic() - started


def db_stats(dsn: str) -> tuple[int, int]:
    """(transactions committed in this database, bytes in agentbot's tables)."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "select xact_commit from pg_stat_database where datname = current_database()"
        ).fetchone()
        size = conn.execute(
            "select coalesce(sum(pg_total_relation_size(c.oid)), 0) from pg_class c"
            " where c.relkind = 'r' and c.relname like 'workflow_%'"
        ).fetchone()
    return int(row[0]) if row else 0, int(size[0]) if size else 0


def event(conv: int, message_id: int, text: str) -> bytes:
    return json.dumps(
        {
            "event": "message_created",
            "id": message_id,
            "content": text,
            "message_type": "incoming",
            "content_type": "text",
            "private": False,
            "conversation": {"id": conv, "status": "pending", "channel": "Channel::Api"},
            "sender": {"id": conv, "name": "Ana"},
            "account": {"id": 1},
            "inbox": {"id": 1},
        }
    ).encode()


async def fixed_rate(
    url: str, rate: float, conversations: int, duration: float, workers: int = 32
) -> tuple[dict[int, list[tuple[str, float]]], list[float], int]:
    """Send `rate` events/s round-robin over `conversations` for `duration` s (open loop).

    Each event has its time in the schedule; `workers` keep-alive connections send them as they
    fall due, and latencies count from the scheduled time, so a service that falls behind is
    charged for the wait (no coordinated omission), and the generator never queues requests in
    its HTTP client. Returns, per conversation, the acknowledged (text, scheduled epoch) in
    order; the acknowledgement latencies (ms); the number of events not acknowledged."""
    base = 1_000_000
    sent: dict[int, list[tuple[str, float]]] = {}
    acks: list[float] = []
    failed = 0
    reasons: dict[str, int] = {}
    due: asyncio.Queue[tuple[int, float, float] | None] = asyncio.Queue()
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:

        async def worker() -> None:
            nonlocal failed
            while (item := await due.get()) is not None:
                i, scheduled, epoch = item
                conv = base + i % conversations
                text = f"e{i}"
                try:
                    answer = await http.post(
                        url,
                        content=event(conv, base + i, text),
                        headers={
                            "content-type": "application/json",
                            "x-chatwoot-delivery": str(uuid.uuid4()),
                        },
                    )
                except httpx.HTTPError as exc:
                    failed += 1
                    reasons[type(exc).__name__] = reasons.get(type(exc).__name__, 0) + 1
                    continue
                if answer.status_code != 200:
                    failed += 1
                    reasons[str(answer.status_code)] = reasons.get(str(answer.status_code), 0) + 1
                    continue
                acks.append((time.perf_counter() - scheduled) * 1000)
                sent.setdefault(conv, []).append((text, epoch))

        tasks = [asyncio.create_task(worker()) for _ in range(workers)]
        total = int(rate * duration)
        start, start_epoch = time.perf_counter(), time.time()
        for i in range(total):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            due.put_nowait((i, start + i / rate, start_epoch + i / rate))
        for _ in tasks:
            due.put_nowait(None)
        await asyncio.gather(*tasks)
    if reasons:
        print(f"  not acknowledged: {reasons}")
    return sent, acks, failed


def taken_order(dsn: str) -> dict[int, list[str]]:
    """Each conversation's messages in the order agentbot took them in (its history)."""
    order: dict[int, list[str]] = {}
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "select conversation_id, content from workflow_interactions"
            " where direction = 'in' and content is not null order by id"
        ).fetchall()
    for conv, content in rows:
        order.setdefault(int(conv), []).append(str(content))
    return order


def judge(
    sent: dict[int, list[tuple[str, float]]], records: list[list[Any]], taken: dict[int, list[str]]
) -> tuple[list[float], int, int, int]:
    """Event-to-reply latencies (ms), and replies lost, doubled and out of order.

    A conversation's replies must follow the order agentbot took its messages in (when two
    messages of one conversation are in flight at once, which goes first is not defined)."""
    replies: dict[int, list[tuple[str, float]]] = {}
    for conv, content, at in records:
        replies.setdefault(int(conv), []).append((str(content), float(at)))
    latencies: list[float] = []
    lost = doubled = disordered = 0
    for conv, acked in sent.items():
        at_of = dict(acked)
        order = taken.get(conv, [])
        events = [(t, at_of[t]) for t in order if t in at_of]
        lost += len(acked) - len(events)  # acknowledged, never taken in
        expected = ["eco " if i == 0 else f"eco {t}" for i, t in enumerate(order)]
        expected = [e for e, t in zip(expected, order, strict=True) if t in at_of]
        got = [c for c, _ in replies.get(conv, [])]
        seen = set()
        for content in got:
            if content in seen:
                doubled += 1
            seen.add(content)
        lost += sum(1 for e in expected if e not in seen)
        shown = [c for c in got if c in expected]
        deduped = list(dict.fromkeys(shown))
        if deduped != [e for e in expected if e in seen]:
            disordered += 1
        arrival = {}
        for content, at in replies.get(conv, []):
            arrival.setdefault(content, at)
        for e, (_, at) in zip(expected, events, strict=True):
            if e in arrival:
                latencies.append((arrival[e] - at) * 1000)
    return latencies, lost, doubled, disordered


def py_spy(pid: int, seconds: float, out: str) -> subprocess.Popen[bytes]:
    """py-spy recording `pid` for `seconds` into `out` (collapsed stacks)."""
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "py-spy"),
            "record",
            "--format",
            "raw",
            "--rate",
            "50",
            "-d",
            str(int(seconds)),
            "-p",
            str(pid),
            "-o",
            out,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def profile_summary(paths: list[Path], during: str, top: int = 30) -> None:
    """The functions holding most of py-spy's samples (inclusive), from collapsed stacks."""
    total = 0
    inclusive: dict[str, int] = {}
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack:
                continue
            n = int(count)
            total += n
            names = {frame.rsplit(":", 1)[0] + ")" for frame in stack.split(";")}
            for name in names:
                inclusive[name] = inclusive.get(name, 0) + n
    if not total:
        return
    print(f"  py-spy, {total} samples of agentbot during {during} (inclusive):")
    shown = 0
    for name, n in sorted(inclusive.items(), key=lambda kv: -kv[1]):
        if n == total or "importlib" in name or "runpy" in name:
            continue
        print(f"    {100 * n / total:5.1f}%  {name}")
        shown += 1
        if shown == top:
            break


def mark(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument(
        "--profile",
        type=Path,
        help="record agentbot with py-spy during its flat-out rounds and the fixed rate "
        "(collapsed stacks at this path .1, .2, ... and .fixed)",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    admin = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    work = Path(tempfile.mkdtemp(prefix="agentbot-bench-"))
    (work / "flows").mkdir()
    (work / "flows" / "eco.yaml").write_text(FLOW)
    fake_port, ref_port, bot_port = free_port(), free_port(), free_port()
    fake_url = f"http://127.0.0.1:{fake_port}"
    flat: dict[str, list[tuple[float, dict[str, float], float]]] = {"reference": [], "agentbot": []}
    with (
        database(admin) as ref_dsn,
        database(admin) as bot_dsn,
        spawn([sys.executable, str(BENCH / "fast_chatwoot.py"), str(fake_port)], work / "fake.log"),
    ):
        base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
        ref_env = {**base, "DSN": ref_dsn, "PORT": str(ref_port)}
        bot_env = {
            **base,
            "DATABASE_URL": bot_dsn,
            "WEBHOOK_TOKEN": TOKEN,
            "CHATWOOT_URL": fake_url,
            "CHATWOOT_API_TOKEN": "bench-bot-token",
            "WORKFLOWS_HOST": "127.0.0.1",
            "WORKFLOWS_PORT": str(bot_port),
            "FLOWS_DIR": str(work / "flows"),
            "LOG_LEVEL": "warning",
            "LOG_FORMAT": "json",
        }
        reference = [sys.executable, str(BENCH / "reference_server.py")]
        agentbot = [sys.executable, "-m", "agentbot", "serve"]
        ref_url = f"http://127.0.0.1:{ref_port}"
        bot_url = f"http://127.0.0.1:{bot_port}"
        hook = f"{bot_url}/webhooks/chatwoot?token={TOKEN}"
        with (
            process(reference, ref_env, f"{ref_url}/noop", work),
            process(agentbot, bot_env, f"{bot_url}/health", work),
        ):
            pids = {"reference": pid_on(ref_port), "agentbot": pid_on(bot_port)}
            print(
                "1. intake flat out, delivery running (wrk -t1 "
                f"-c{args.connections} -d{args.seconds}s, alternating rounds)",
                flush=True,
            )
            for round_ in range(1, args.rounds + 1):
                for name, url in (("reference", f"{ref_url}/tx"), ("agentbot", hook)):
                    before = cpu_seconds(pids[name])
                    dsn = bot_dsn if name == "agentbot" else ref_dsn
                    pg_before = backends(dsn)
                    httpx.post(f"{fake_url}/_reset")
                    spy = None
                    if args.profile is not None and name == "agentbot":
                        spy = py_spy(pids[name], args.seconds, f"{args.profile}.{round_}")
                    rps, lat = wrk(url, args.seconds, args.connections)
                    if spy is not None:
                        spy.wait(30)
                    cpu = cpu_seconds(pids[name]) - before
                    extra = ""
                    if name == "agentbot":
                        replies = len(httpx.get(f"{fake_url}/_records").json())
                        waited = drain(bot_dsn)
                        cpu = cpu_seconds(pids[name]) - before  # with the delivery of it all
                        extra = (
                            f"  replies during round {replies}"
                            f"  backlog delivered {waited:4.1f} s after"
                        )
                    per_event = cpu / (rps * args.seconds) * 1e6
                    pg = backend_cpu(pg_before, backends(dsn)) / (rps * args.seconds) * 1e6
                    flat[name].append((rps, lat, per_event))
                    print(
                        f"  round {round_} {name:9} {rps:8.0f} ev/s  p50 {lat['p50']:6.2f} ms"
                        f"  p99 {lat['p99']:6.2f} ms  cpu {per_event:5.0f} us/ev"
                        f"  postgres {pg:4.0f} us/ev{extra}",
                        flush=True,
                    )
            med = {
                name: (
                    statistics.median(r for r, _, _ in rows),
                    statistics.median(lat["p99"] for _, lat, _ in rows),
                    statistics.median(c for _, _, c in rows),
                )
                for name, rows in flat.items()
            }
            ratio = med["agentbot"][0] / med["reference"][0]
            for name, (rps, p99, cpu) in med.items():
                print(f"  median {name:9} {rps:8.0f} ev/s  p99 {p99:6.2f} ms  cpu {cpu:5.0f} us/ev")
            print(f"  ratio agentbot/reference: {ratio:.2f}", flush=True)
            if args.profile is not None:
                profile_summary(
                    [Path(f"{args.profile}.{r}") for r in range(1, args.rounds + 1)],
                    "its flat-out rounds",
                    top=40,
                )

            print(
                f"2. fixed {args.rate:.0f} events/s over {args.conversations} conversations "
                f"for {args.duration:.0f} s",
                flush=True,
            )
            httpx.post(f"{fake_url}/_reset")
            xacts0, _ = db_stats(bot_dsn)
            cpu0 = cpu_seconds(pids["agentbot"])
            pg0 = backends(bot_dsn)
            spy = None
            if args.profile is not None:
                spy = py_spy(pids["agentbot"], args.duration, f"{args.profile}.fixed")
            sent, acks, failed = asyncio.run(
                fixed_rate(hook, args.rate, args.conversations, args.duration)
            )
            if spy is not None:
                spy.wait(30)
            drain(bot_dsn)
            time.sleep(1.0)
            cpu = cpu_seconds(pids["agentbot"]) - cpu0
            pg_cpu = backend_cpu(pg0, backends(bot_dsn))
            xacts1, size = db_stats(bot_dsn)
            records = httpx.get(f"{fake_url}/_records").json()
            latencies, lost, doubled, disordered = judge(sent, records, taken_order(bot_dsn))
            events = sum(len(v) for v in sent.values())
            rss = peak_rss_mb(pids["agentbot"])
            with psycopg.connect(bot_dsn) as conn:
                row = conn.execute("select count(*) from workflow_events").fetchone()
                scans = conn.execute(
                    "select relname, seq_scan, seq_tup_read, idx_scan, n_tup_ins, n_tup_upd"
                    " from pg_stat_user_tables where relname like 'workflow_%' order by relname"
                ).fetchall()
            stored_events = int(row[0]) if row else 1
            print(f"  events acknowledged {events}, not acknowledged {failed}")
            print(f"  ack      p50 {pct(acks, 50):6.2f} ms  p99 {pct(acks, 99):6.2f} ms")
            print(f"  reply    p50 {pct(latencies, 50):6.2f} ms  p99 {pct(latencies, 99):6.2f} ms")
            print(
                f"  replies lost {lost}, doubled {doubled}, conversations out of order {disordered}"
            )
            print(
                f"  agentbot cpu {cpu / max(events, 1) * 1e6:5.0f} us/event all in"
                f" ({cpu / args.duration * 100:4.1f} % of a core);"
                f" its PostgreSQL backends {pg_cpu / max(events, 1) * 1e6:4.0f} us/event;"
                f" {(xacts1 - xacts0) / max(events, 1):.2f} transactions/event;"
                f" {size / max(stored_events, 1):.0f} bytes stored/event (tables + indexes)"
            )
            print("  tables over the whole run: seq scans, rows read by them, index scans,")
            print("  rows inserted, rows updated")
            for name, seq, seq_rows, idx, ins, upd in scans:
                print(f"    {name:24} {seq:7} {seq_rows:10} {idx or 0:9} {ins:8} {upd:8}")
            if args.profile is not None:
                profile_summary([Path(f"{args.profile}.fixed")], "the fixed rate", top=40)
            print(f"3. agentbot peak RSS {rss:.0f} MB")
    shutil.rmtree(work, ignore_errors=True)
    ack_p99, reply_p99 = pct(acks, 99), pct(latencies, 99)
    print("targets:")
    print(f"  intake >= {TARGETS['ratio']:.1f}x reference: {ratio:.2f}  {mark(ratio >= 1.0)}")
    print(f"  ack p99 <= 25 ms: {ack_p99:.1f} ms  {mark(ack_p99 <= TARGETS['ack_p99_ms'])}")
    print(
        f"  event-to-reply p99 <= 100 ms: {reply_p99:.1f} ms"
        f"  {mark(reply_p99 <= TARGETS['reply_p99_ms'])}"
    )
    print(f"  RSS <= 150 MB: {rss:.0f} MB  {mark(rss <= TARGETS['rss_mb'])}")
    clean = lost == doubled == disordered == failed == 0
    print(
        f"  zero lost, doubled, out of order (and every event acknowledged): "
        f"{lost}/{doubled}/{disordered}/{failed}  {mark(clean)}"
    )


if __name__ == "__main__":
    main()
