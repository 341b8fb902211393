"""Cadencia's throughput as ratios of bare transport limits, every figure from the same run
(docs/internals.md: batches).

One run, one database kind (SQLite files by default; ``--postgres ADMIN_DSN`` creates a throwaway
PostgreSQL database per service and drops it at the end), on the embedded broker and the provider
sandbox (``cadencia serve sandbox``, delivery callbacks on, ``--sandbox-speed`` compresses its
provider delays). Measured, in this order:

1. **single-hop limit** — a bare loop in this process: consume a dispatch, one aiohttp POST to the
   sandbox's ``Messages.json``, produce the answer. No database.
2. **chain limit** — the real path's hops relayed bare in this process, no database, policy or
   rendering: request topic → dispatch topic (+ a ``dispatched`` status) → one POST to
   ``Messages.json`` with a ``StatusCallback`` (+ an ``accepted`` outcome) → the sandbox's status
   callbacks to a minimal aiohttp receiver → outcome topic → ``delivered`` on the status topic.
3. **SMS service alone** — ``cadencia serve sms`` from dispatch to its first outcome, the sandbox's
   callbacks loading it at the same time; reported with its ratio to the single-hop limit. Then on to
   each message's final outcome: the rate and CPU per message with all of its status callbacks, most
   of which are still queued at the sandbox when the first outcomes are in.
4. **whole system** — ``cadencia serve`` of the orchestrator, SMS, email and the sandbox on fresh
   databases, from contact request published to ``delivered`` on the status topic:
   a closed-loop run of ``--requests`` (all published at once: the max rate — requests over the time
   until the last is delivered — and its ratio to the chain limit), then open-loop runs at 50% and
   80% of that rate (published at a fixed rate whatever completes) with p50/p95/p99 latency
   request→dispatched and request→delivered, timed from the publish to this process consuming the
   status event (what a backend sees). The closed loop's 10–90% window of deliveries is reported as
   well but is not the max: deliveries bunch once the dispatch backlog is through, so that window
   runs up to twice the rate the system keeps up with when requests arrive steadily.

Requests dispatch at once: MX debtors (contact 07:00-22:00 any day) in a time zone where it is about
13:00 now, with a mobile number whose range spans many zones (so the policy uses the debtor's zone),
one debtor per request (no cap binds), channel ``sms``, the shipped ``reminder_early`` template the
orchestrator seeds. A warm-up request must come back ``delivered`` before the clock starts.

    .venv/bin/python bench/pipeline.py                                   # SQLite, full size
    .venv/bin/python bench/pipeline.py --messages 300 --requests 300 --open-seconds 5   # smoke
    .venv/bin/python bench/pipeline.py --postgres postgresql://postgres@127.0.0.1:5432/postgres --workers 2
    .venv/bin/python bench/pipeline.py --json var/bench/pipeline.json
    .venv/bin/python bench/pipeline.py --phases system --requests 3000 --open-rates 140 --open-seconds 40  # A/B

Child processes log to a temporary folder, printed (with the logs' tails) when the run fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline_kit import (  # noqa: E402
    TERMINAL,
    Batch,
    BenchError,
    Beside,
    Child,
    Databases,
    Processes,
    Progress,
    Watch,
    Window,
    dispatch,
    latencies,
    mark_outcome,
    mark_status,
    publish,
    steady_rate,
)
from pipeline_limits import (  # noqa: E402
    chain,
    single_hop,
)

from shared.bus import EventProducer, ensure_topics  # noqa: E402
from shared.bus.broker import EmbeddedBroker  # noqa: E402
from shared.config import KafkaSettings  # noqa: E402
from shared.events import Topics, encode_event  # noqa: E402
from shared.events.contracts import (  # noqa: E402
    TemplateContent,
    TemplatePublished,
    TemplatePublishedEvent,
)
from shared.ports import free_port  # noqa: E402

# --- 3. the SMS service alone ---------------------------------------------------------------------------

#: A message's last outcome (an SMS the provider delivers reports nothing after ``delivered``).
FINAL = frozenset({"delivered", "undelivered", "failed", "unknown", "expired"})


BENCH_TEMPLATE = TemplatePublishedEvent(subject="bench:sms:es-MX:A", data=TemplatePublished(
    key="bench", version=1, channel="sms", locale="es-MX", variant="A",
    content=TemplateContent(body="Hola {{ debtor.first_name }}, {{ creditor.name }}: saldo "
                                 "{{ account.balance | money }}. Responde BAJA para no recibir más."),
    published_at=datetime(2026, 1, 1, tzinfo=UTC)))


async def sms_alone(kafka: KafkaSettings, n: int, stall_s: float,
                    on_start: Callable[[], None] = lambda: None,
                    on_first: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """Dispatches through the running SMS service until each has its first outcome on contact.outcomes
    (the rate compared with the single hop; ``on_first`` is called then), and on until each has its
    final one (``all_rate``): under load most status callbacks still wait in the sandbox's queue when the
    first outcomes are in, so only the second figure holds all of the service's work."""
    topics = Topics(kafka.topic_prefix)
    producer = EventProducer(kafka, client_id="bench-sms")
    await producer.start()
    deadline = datetime.now(UTC) + timedelta(hours=1)
    try:
        async with Watch(kafka, [topics.contact_outcomes], mark_outcome) as progress:
            # The service is serving once a warm-up dispatch comes back (its group joined, template cached).
            warm = dispatch(n + 1, deadline)
            await producer.publish(topics.dispatch("sms"), warm)
            await progress.wait([warm.data.dispatch_id], frozenset({"first"}), 120, "SMS warm-up")
            events = [dispatch(i, deadline) for i in range(n)]
            ids = [e.data.dispatch_id for e in events]
            encoded = [(topics.dispatch("sms"), encode_event(e), e.key) for e in events]
            on_start()
            start = time.perf_counter()
            futures = [await producer.send_raw(t, v, k) for t, v, k in encoded]
            await asyncio.gather(*futures)
            await progress.wait(ids, frozenset({"first"}), stall_s, "SMS service")
            end = max(progress.at("first")[i] for i in ids)
            on_first()
            await progress.wait(ids, FINAL, stall_s, "SMS service, final outcomes")
            last = max(min(progress.at(s)[i] for s in FINAL if i in progress.at(s)) for i in ids)
            failed = sum(1 for i in ids if i in progress.at("failed"))
    finally:
        await producer.stop()
    return {"messages": n, "rate": n / (end - start), "all_rate": n / (last - start), "failed": failed}


# --- 4. the whole system ----------------------------------------------------------------------------


async def system_run(producer: EventProducer, topics: Topics, progress: Progress, batch: Batch,
                     stall_s: float, what: str, rate: float | None = None,
                     on_start: Callable[[], None] = lambda: None) -> dict[str, Any]:
    sent_at: dict[str, float] = {}
    on_start()
    start, published = await publish(producer, topics.contact_requests, batch, sent_at, rate)
    await progress.wait(batch.ids, TERMINAL, stall_s, what)
    delivered = {rid: t for rid, t in progress.at("delivered").items() if rid in sent_at}
    dispatched = {rid: t for rid, t in progress.at("dispatched").items() if rid in sent_at}
    others = {s: sum(1 for rid in batch.ids if rid in progress.at(s)) for s in TERMINAL - {"delivered"}}
    result: dict[str, Any] = {
        "requests": len(batch.items),
        "published_rate": len(batch.items) / (published - start) if published > start else None,
        "delivered": len(delivered),
        "not_delivered": {s: c for s, c in others.items() if c},
        "dispatched_rate": len(dispatched) / (max(dispatched.values()) - start) if dispatched else None,
        "delivered_rate": len(delivered) / (max(delivered.values()) - start) if delivered else None,
        "latency_dispatched_s": latencies(sent_at, dispatched),
        "latency_delivered_s": latencies(sent_at, delivered),
    }
    if rate is None:
        result["sustained_dispatched_rate"] = steady_rate(list(dispatched.values()))
        result["sustained_delivered_rate"] = steady_rate(list(delivered.values()))
    else:
        # Open loop: what was delivered while requests kept arriving, from the first delivery on.
        window = [t for t in delivered.values() if t <= published]
        first = min(delivered.values()) if delivered else published
        result["offered_rate"] = rate
        result["delivered_rate_while_offered"] = len(window) / (published - first) if published > first else None
        result["drained_after_s"] = (max(delivered.values()) - published) if delivered else None
    return result


def max_rate(closed: dict[str, Any]) -> float:
    """The closed loop's delivered rate over the whole run: what the system delivers, start to end,
    when it has more than it can do. Not the 10–90% window of deliveries, which catches the burst of
    outcomes after the dispatch backlog (0.8 of that window was more than the system sustains)."""
    rate = closed.get("delivered_rate")
    if not rate:
        raise BenchError("the closed-loop run delivered nothing: no rate to load the open loop with")
    return float(rate)


# --- the run ------------------------------------------------------------------------------------------


def base_env(kafka: KafkaSettings, sandbox: str, args: argparse.Namespace) -> dict[str, str]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "CADENCIA_TOPIC_PREFIX": kafka.topic_prefix,
        "TWILIO_API_BASE_URL": sandbox,
        "SENDGRID_API_BASE_URL": sandbox,
        "CADENCIA_LOG_LEVEL": args.log_level,
        "PYTHONUNBUFFERED": "1",
        # Senders as fast as the sandbox: the bench measures Cadencia, not a long code's 1 msg/s.
        "CADENCIA_SMS_SENDER__MPS": "100000",
        "CADENCIA_SMS_SENDER__BURST": "1000",
        "CADENCIA_SMS_SENDING__MAX_IN_FLIGHT": str(args.concurrency),
        "CADENCIA_SMS_KAFKA__PARTITION_CONCURRENCY": os.environ.get("BENCH_PARTITION_CONCURRENCY", "64"),
        "CADENCIA_EMAIL_SENDER__RATE": "100000",
    }
    for name in ("orchestrator", "sms", "email", "sandbox"):
        env.pop(f"{name.upper()}_DATABASE_URL", None)
    env.pop("DATABASE_URL", None)
    return env


async def run(args: argparse.Namespace, tmp: Path, procs: Processes, dbs: Databases) -> dict[str, Any]:
    phases = set(args.phases.split(","))
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"), "database": dbs.kind, "workers": args.workers,
        "cpus": os.cpu_count(), "load_before": list(os.getloadavg()),
        "params": {"messages": args.messages, "requests": args.requests, "concurrency": args.concurrency,
                   "open_seconds": args.open_seconds, "open_loads": args.open_loads, "open_rates": args.open_rates,
                   "sandbox_speed": args.sandbox_speed},
    }
    with EmbeddedBroker(log_path=str(tmp / "broker.log")) as broker:
        bench_kafka, system_kafka = (
            KafkaSettings(bootstrap_servers=broker.bootstrap_servers, topic_prefix=f"{kind}{uuid.uuid4().hex[:6]}.")
            for kind in ("b", "s"))
        await ensure_topics(bench_kafka)
        await ensure_topics(system_kafka)
        ports = {name: free_port() for name in ("sandbox", "sms_alone", "orchestrator", "sms", "email")}
        sandbox = f"http://127.0.0.1:{ports['sandbox']}"
        sandbox_env = {
            **base_env(bench_kafka, sandbox, args),
            "CADENCIA_SANDBOX_SPEED_FACTOR": str(args.sandbox_speed),
            "CADENCIA_SANDBOX_INBOUND__SMS": f"http://127.0.0.1:{ports['sms']}/webhooks/twilio/inbound",
            "CADENCIA_SANDBOX_SENDGRID_WEBHOOK_URL": f"http://127.0.0.1:{ports['email']}/webhooks/sendgrid/events",
        }
        sandbox_child = procs.serve("sandbox", ports["sandbox"], sandbox_env)
        await procs.ready([sandbox_child], timeout=90)
        beside = Beside(broker.process.pid if broker.process else None, sandbox_child, await dbs.server_pid())

        if "single" in phases:
            print(f"single-hop limit: {args.messages:,} messages…", file=sys.stderr, flush=True)
            window = beside.window()
            results["single_hop"] = await single_hop(bench_kafka, sandbox, args.messages, args.concurrency,
                                                     args.stall_seconds, on_start=window.start)
            results["single_hop"].update(window.per(args.messages))
        if "chain" in phases:
            print(f"chain limit: {args.messages:,} requests…", file=sys.stderr, flush=True)
            window = beside.window()
            results["chain"] = await chain(bench_kafka, sandbox, args.messages, args.concurrency, args.stall_seconds,
                                           on_start=window.start)
            results["chain"].update(window.per(args.messages))
        if "sms" in phases:
            print(f"SMS service alone: {args.messages:,} dispatches…", file=sys.stderr, flush=True)
            producer = EventProducer(bench_kafka)
            await producer.start()
            await producer.publish(Topics(bench_kafka.topic_prefix).templates, BENCH_TEMPLATE)
            await producer.stop()
            env = {**base_env(bench_kafka, sandbox, args),
                   "SMS_DATABASE_URL": await dbs.fresh("sms_alone"),
                   "CADENCIA_ORCHESTRATOR_URL": "http://127.0.0.1:9"}  # templates come from the topic
            sms = procs.serve("sms", ports["sms_alone"], env, label="sms_alone", workers=args.workers)
            await procs.ready([sms])
            cpu, window = sms.cpu_seconds(), beside.window([sms])
            first: dict[str, Any] = {}

            def at_first(sms: Child = sms, cpu: float | None = cpu, window: Window = window) -> None:
                first["cpu_ms_per_message"] = cpu_per(sms, cpu, args.messages)
                first.update(window.per(args.messages))

            results["sms"] = await sms_alone(bench_kafka, args.messages, args.stall_seconds,
                                             on_start=window.start, on_first=at_first)
            results["sms"]["all_cpu_ms_per_message"] = cpu_per(sms, cpu, args.messages)
            results["sms"].update(first)
            procs.stop(sms)  # its CPU is the next phase's
        if "system" in phases:
            results.update(await whole_system(args, system_kafka, sandbox, ports, procs, dbs, beside))
    results["load_after"] = list(os.getloadavg())
    ratio(results, "sms", "single_hop")
    ratio(results, "system", "chain")
    return results


async def whole_system(args: argparse.Namespace, kafka: KafkaSettings, sandbox: str, ports: dict[str, int],
                       procs: Processes, dbs: Databases, beside: Beside) -> dict[str, Any]:
    topics = Topics(kafka.topic_prefix)
    env = {**base_env(kafka, sandbox, args),
           "CADENCIA_ORCHESTRATOR_URL": f"http://127.0.0.1:{ports['orchestrator']}",
           "ORCHESTRATOR_DATABASE_URL": await dbs.fresh("orchestrator"),
           "SMS_DATABASE_URL": await dbs.fresh("sms"),
           "EMAIL_DATABASE_URL": await dbs.fresh("email")}
    print("whole system: starting orchestrator, sms, email…", file=sys.stderr, flush=True)
    children = [procs.serve("orchestrator", ports["orchestrator"], env, workers=args.workers),
                procs.serve("sms", ports["sms"], env, workers=args.workers),
                procs.serve("email", ports["email"], env)]
    await procs.ready(children)
    out: dict[str, Any] = {}
    producer = EventProducer(kafka, client_id="bench-requests")
    await producer.start()
    run_id = uuid.uuid4().hex[:6]
    try:
        async with Watch(kafka, [topics.contact_status], mark_status) as progress:
            warm = Batch.of_requests(f"w{run_id}", 1)
            await publish(producer, topics.contact_requests, warm, {})
            await progress.wait(warm.ids, TERMINAL | {"deferred"}, 180, "system warm-up")
            (rid,) = warm.ids
            if rid not in progress.at("delivered"):
                raise BenchError(f"the warm-up request did not dispatch and deliver at once: "
                                 f"{progress.reasons.get(rid, 'no reason given')}")
            print(f"whole system, closed loop: {args.requests:,} requests…", file=sys.stderr, flush=True)
            cpu, window = {child.name: child.cpu_seconds() for child in children}, beside.window(children)
            closed = await system_run(producer, topics, progress, Batch.of_requests(f"c{run_id}", args.requests),
                                      args.stall_seconds, "system closed loop", on_start=window.start)
            closed["cpu_ms_per_request"] = {c.name: cpu_per(c, cpu[c.name], args.requests) for c in children}
            closed.update(window.per(args.requests))
            if args.settle:
                closed.update(await settled_cpu(children, cpu, args.requests, args.stall_seconds))
            out["system"] = closed
            peak = max_rate(closed)
            out["open_loop"] = []
            rates = args.open_rates or [peak * load for load in args.open_loads]
            for n, rate in enumerate(rates):
                load = rate / peak
                count = max(1, round(rate * args.open_seconds))
                print(f"whole system, open loop at {load:.0%} ({rate:,.1f}/s for {args.open_seconds:.0f}s)…",
                      file=sys.stderr, flush=True)
                batch = Batch.of_requests(f"o{n}{run_id}", count, start=args.requests + 10 + n * count)
                cpu, window = {child.name: child.cpu_seconds() for child in children}, beside.window(children)
                result = await system_run(producer, topics, progress, batch, args.stall_seconds,
                                          f"open loop {load:.0%}", rate=rate, on_start=window.start)
                # A steady stream costs more per request than a burst (smaller batches and commits).
                result["cpu_ms_per_request"] = {c.name: cpu_per(c, cpu[c.name], count) for c in children}
                result.update(window.per(count))
                out["open_loop"].append({"load": load, **result})
    finally:
        await producer.stop()
        for child in children:
            procs.stop(child)
    return out


async def settled_cpu(children: list[Child], before: dict[str, float | None], count: int,
                      limit: float) -> dict[str, Any]:
    """CPU per request of each service until it is idle again: work a service put off (a consumer far
    behind, still applying the closed loop's events) is counted too. A service is idle from the start
    of two windows of a second in a row under ``IDLE_CORE`` of a core (its consumers polling); its
    figure stops there, so the time others take to settle adds nothing to it."""
    started = time.monotonic()
    at: dict[str, float | None] = {c.name: c.cpu_seconds() for c in children}
    quiet: dict[str, int] = {c.name: 0 for c in children}
    quiet_from: dict[str, float | None] = {}
    settled: dict[str, float | None] = {}
    since = time.monotonic()
    while len(settled) < len(children) and time.monotonic() - started < limit:
        await asyncio.sleep(1.0)
        now = {c.name: c.cpu_seconds() for c in children}
        elapsed, since = time.monotonic() - since, time.monotonic()
        for name, used in now.items():
            if name in settled:
                continue
            last = at[name]
            if used is not None and last is not None and (used - last) / elapsed < IDLE_CORE:
                quiet_from.setdefault(name, last)
                quiet[name] += 1
                if quiet[name] >= 2:
                    settled[name] = quiet_from[name]
            else:
                quiet[name] = 0
                quiet_from.pop(name, None)
        at = now
    per: dict[str, float | None] = {}
    for c in children:
        used, first = settled.get(c.name, c.cpu_seconds()), before[c.name]
        per[c.name] = None if used is None or first is None or not count else (used - first) * 1000 / count
    return {"cpu_ms_per_request_settled": per, "settle_s": time.monotonic() - started,
            "settled": len(settled) == len(children)}


#: Below this share of a core a service counts as idle (its consumers polling, nothing to apply).
IDLE_CORE = 0.25


def cpu_per(child: Child, before: float | None, count: int) -> float | None:
    """Milliseconds of the child's CPU per item since ``before``: what the other work on the machine
    does not change (as much as rates), so runs under different load compare."""
    after = child.cpu_seconds()
    return None if before is None or after is None or not count else (after - before) * 1000 / count


def ratio(results: dict[str, Any], of: str, to: str) -> None:
    if of not in results or to not in results:
        return
    # Whole-run rates on both sides (count / first publish → last completion), measured the same way.
    mine = results[of].get("delivered_rate") or results[of].get("rate")
    limit = results[to]["rate"]
    results[of][f"ratio_to_{to}"] = mine / limit if mine and limit else None


# --- the report ---------------------------------------------------------------------------------------


def _pct(p: dict[str, float] | None) -> str:
    return "—" if not p else f"{p['p50']:.2f} / {p['p95']:.2f} / {p['p99']:.2f}"


def _num(x: float | None, digits: int = 0) -> str:
    return "—" if x is None else f"{x:,.{digits}f}"


def _rate(x: float | None) -> str:
    return _num(x, 0 if x is None or x >= 100 else 1 if x >= 1 else 2)


def _beside(r: dict[str, Any], mine: dict[str, float | None] | None, count: int | None, cpus: int | None) -> str:
    """The CPU beside the measured code per item, and the cores all of it used over the phase's window."""
    beside = {k: v for k, v in (r.get("cpu_ms_beside") or {}).items() if v is not None}
    if not beside:
        return ""
    total = sum(beside.values()) + sum(v for v in (mine or {}).values() if v is not None)
    line = "  CPU beside it (ms): " + ", ".join(f"{k} {v:.2f}" for k, v in beside.items())
    if count and r.get("cpu_wall_s"):  # until the last item was done: an open loop's drain included
        line += f"; all of it {total:.2f} ms, {total * count / 1000 / r['cpu_wall_s']:.2f} of {cpus or '?'} cores"
    return line


def _loops(r: dict[str, Any]) -> str:
    """Where each service's event-loop thread spent the phase's window (see ``Window.per``)."""
    loops = r.get("loop_thread") or {}
    if not loops:
        return ""
    return "  event-loop thread, share of the window on a core / waiting for one: " + ", ".join(
        f"{name} {v['on_cpu']:.0%} / {v['waiting_for_cpu']:.0%}" for name, v in loops.items())


def _lags(r: dict[str, Any]) -> str:
    """How late each service's event loop ran its timer in the window (see ``lag_over``): how long work
    ready to run (a callback, a heartbeat, an API request) waited while other work held the loop."""
    lags = r.get("loop_lag") or {}
    if not lags:
        return ""

    def bound(seconds: float) -> str:
        return "over 10 s" if seconds == float("inf") else f"≤ {seconds * 1000:g} ms"

    return "  event loop late (a timer every 0.1 s): " + ", ".join(
        f"{name} p99 {bound(v['p99_s'])}, worst {bound(v['worst_s'])}, {v['over_100ms']:.0f} of {v['ticks']:.0f} "
        "ticks over 100 ms" for name, v in lags.items())


def table(r: dict[str, Any]) -> str:
    load = f"load {r['load_before'][0]:.1f} → {r['load_after'][0]:.1f}"
    lines = [f"Cadencia pipeline, one run: {r['database']}, {r['workers']} worker(s) per service, "
             f"{r['cpus']} CPUs, {load}, sandbox speed ×{r['params']['sandbox_speed']:g}",
             f"{'measure':<44}{'count':>8}{'rate/s':>10}{'ratio':>8}   {'→dispatched p50/p95/p99 s':<27}"
             f"{'→delivered p50/p95/p99 s'}"]

    def row(name: str, count: Any, rate: float | None, ratio_: float | None = None,
            disp: dict[str, float] | None = None, deliv: dict[str, float] | None = None) -> None:
        lines.append(f"{name:<44}{_num(count):>8}{_rate(rate):>10}{_num(ratio_, 3) if ratio_ else '':>8}   "
                     f"{_pct(disp) if disp else '':<27}{_pct(deliv) if deliv else ''}")

    if "single_hop" in r:
        row("single-hop limit (consume→POST→produce)", r["single_hop"]["messages"], r["single_hop"]["rate"])
        if line := _beside(r["single_hop"], None, r["single_hop"]["messages"], r["cpus"]):
            lines.append(line)
    if "chain" in r:
        c = r["chain"]
        row("chain limit (request→…→delivered, bare)", c["messages"], c["rate"], None,
            c["latency_dispatched_s"], c["latency_delivered_s"])
        if line := _beside(c, None, c["messages"], r["cpus"]):
            lines.append(line)
    if "sms" in r:
        s = r["sms"]
        row("SMS service alone (÷ single-hop)", s["messages"], s["rate"], s.get("ratio_to_single_hop"))
        if s.get("cpu_ms_per_message") is not None:
            lines.append(f"  CPU of the SMS service: {s['cpu_ms_per_message']:.2f} ms per message")
        if s.get("all_rate"):
            every = s.get("all_cpu_ms_per_message")
            lines.append(f"  until every message's final outcome (all its callbacks): {_rate(s['all_rate'])}/s"
                         + (f", {every:.2f} ms of the SMS service's CPU per message" if every is not None else ""))
        if line := _beside(s, {"sms": s.get("cpu_ms_per_message")}, s["messages"], r["cpus"]):
            lines.append(line)
        if line := _loops(s):
            lines.append(line)
        if line := _lags(s):
            lines.append(line)
    if "system" in r:
        s = r["system"]
        row("whole system → delivered (÷ chain)", s["requests"], s["delivered_rate"], s.get("ratio_to_chain"),
            s["latency_dispatched_s"], s["latency_delivered_s"])
        row("  → dispatched", s["requests"], s["dispatched_rate"])
        sustained = _rate(s.get("sustained_delivered_rate")), _rate(s.get("sustained_dispatched_rate"))
        lines.append(f"  10-90% of completions: delivered {sustained[0]}/s, "
                     f"dispatched {sustained[1]}/s"
                     + (f"; not delivered: {s['not_delivered']}" if s["not_delivered"] else ""))
        if cpu := {k: v for k, v in (s.get("cpu_ms_per_request") or {}).items() if v is not None}:
            lines.append("  CPU per request (ms): " + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items()))
        if line := _beside(s, s.get("cpu_ms_per_request"), s["requests"], r["cpus"]):
            lines.append(line)
        if line := _loops(s):
            lines.append(line)
        if line := _lags(s):
            lines.append(line)
        if settled := {k: v for k, v in (s.get("cpu_ms_per_request_settled") or {}).items() if v is not None}:
            lines.append(f"  … once idle again ({s['settle_s']:.0f} s later"
                         + ("" if s["settled"] else ", not idle yet") + "): "
                         + ", ".join(f"{k} {v:.2f}" for k, v in settled.items()))
    for o in r.get("open_loop", []):
        rate = o["delivered_rate_while_offered"] or o["delivered_rate"]
        row(f"open loop {o['load']:.0%} of max ({o['offered_rate']:,.1f}/s)", o["requests"], rate, None,
            o["latency_dispatched_s"], o["latency_delivered_s"])
        if o["not_delivered"]:
            lines.append(f"  not delivered: {o['not_delivered']}")
        if cpu := {k: v for k, v in (o.get("cpu_ms_per_request") or {}).items() if v is not None}:
            lines.append("  CPU per request (ms): " + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items()))
        if line := _beside(o, o.get("cpu_ms_per_request"), o["requests"], r["cpus"]):
            lines.append(line)
        if line := _loops(o):
            lines.append(line)
        if line := _lags(o):
            lines.append(line)
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=5000, help="messages of the single-hop, chain and SMS runs")
    parser.add_argument("--requests", type=int, default=20_000, help="contact requests of the closed-loop run")
    parser.add_argument("--concurrency", type=int, default=32, help="provider requests in flight")
    parser.add_argument("--open-seconds", type=float, default=60.0, help="length of each open-loop run")
    parser.add_argument("--open-loads", type=lambda s: [float(x) for x in s.split(",")], default=[0.5, 0.8],
                        help="open-loop loads as fractions of the measured max rate (default 0.5,0.8)")
    parser.add_argument("--open-rates", type=lambda s: [float(x) for x in s.split(",")], default=None,
                        help="open-loop rates in requests/s instead of --open-loads: the same offered load for "
                             "an A/B pair whatever each closed loop measured")
    parser.add_argument("--postgres", metavar="ADMIN_DSN",
                        help="PostgreSQL admin DSN: a throwaway database per service (dropped at the end)")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes of the orchestrator and the SMS service (PostgreSQL only)")
    parser.add_argument("--sandbox-speed", type=float, default=1000.0,
                        help="the sandbox's speed factor: provider delays (sent 0.5 s, delivered 1.5 s) divided by it")
    parser.add_argument("--phases", default="single,chain,sms,system",
                        help="comma-separated subset of single,chain,sms,system")
    parser.add_argument("--stall-seconds", type=float, default=120.0,
                        help="fail a phase after this long without any progress")
    parser.add_argument("--settle", action="store_true",
                        help="after the closed loop, wait until every service is idle and give their CPU per request "
                             "including the work they put off")
    parser.add_argument("--log-level", default="WARNING", help="log level of the services")
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, SQLite files)")
    args = parser.parse_args(argv)
    if args.workers > 1 and not args.postgres:
        parser.error("--workers > 1 needs --postgres (cadencia serve refuses several processes on one SQLite file)")
    unknown = set(args.phases.split(",")) - {"single", "chain", "sms", "system"}
    if unknown:
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")
    return args


async def amain(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="cadencia-bench-"))
    procs, dbs = Processes(tmp), Databases(tmp, args.postgres)
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    print(f"logs: {tmp}", file=sys.stderr, flush=True)
    ok = False
    try:
        results = await run(args, tmp, procs, dbs)
        ok = True
    except Exception as exc:  # noqa: BLE001 - report any failure with the children's logs
        if not isinstance(exc, BenchError):
            traceback.print_exc()
        print(f"\nbench failed: {type(exc).__name__}: {exc}\nlogs: {tmp}\n{procs.tails()}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
        await dbs.drop_all()
        if ok and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print(table(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"json: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(amain(parse_args())))
