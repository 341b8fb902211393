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
   callbacks loading it at the same time; reported with its ratio to the single-hop limit.
4. **whole system** — ``cadencia serve`` of the orchestrator, SMS, email and the sandbox on fresh
   databases, from contact request published to ``delivered`` on the status topic:
   a closed-loop run of ``--requests`` (all published at once: the max sustained rate, and its ratio
   to the chain limit), then open-loop runs at 50% and 80% of that rate (published at a fixed rate
   whatever completes) with p50/p95/p99 latency request→dispatched and request→delivered, timed from
   the publish to this process consuming the status event (what a backend sees).

Requests dispatch at once: MX debtors (contact 07:00-22:00 any day) in a time zone where it is about
13:00 now, with a mobile number whose range spans many zones (so the policy uses the debtor's zone),
one debtor per request (no cap binds), channel ``sms``, the shipped ``reminder_early`` template the
orchestrator seeds. A warm-up request must come back ``delivered`` before the clock starts.

    .venv/bin/python bench/pipeline.py                                   # SQLite, full size
    .venv/bin/python bench/pipeline.py --messages 300 --requests 300 --open-seconds 5   # smoke
    .venv/bin/python bench/pipeline.py --postgres postgresql://postgres@127.0.0.1:5432/postgres --workers 2
    .venv/bin/python bench/pipeline.py --json var/bench/pipeline.json

Child processes log to a temporary folder, printed (with the logs' tails) when the run fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.bus import EventProducer, ensure_topics  # noqa: E402
from shared.bus.broker import EmbeddedBroker, free_port  # noqa: E402
from shared.config import DEV_TWILIO_ACCOUNT_SID, DEV_TWILIO_AUTH_TOKEN, KafkaSettings  # noqa: E402
from shared.events import Topics, encode_event, new_id, parse_event, utcnow  # noqa: E402
from shared.events.contracts import (  # noqa: E402
    Account,
    ContactDispatched,
    ContactDispatchedEvent,
    ContactRequested,
    ContactRequestedEvent,
    Debtor,
    DeliveryUpdated,
    DeliveryUpdatedEvent,
    StatusChanged,
    StatusChangedEvent,
    TemplateContent,
    TemplatePublished,
    TemplatePublishedEvent,
    TemplateRef,
)
from tooling.workers import parent_death_signal  # noqa: E402

REQUESTED = b"cadencia.contact.requested.v1"
MESSAGES_PATH = f"/2010-04-01/Accounts/{DEV_TWILIO_ACCOUNT_SID}/Messages.json"
FROM_NUMBER = "+15005550006"
#: Statuses after which a contact request changes no more in this bench (it sends once, no replies).
TERMINAL = frozenset({"delivered", "failed", "rejected", "expired", "unknown"})
#: What the sandbox's Twilio statuses become as outcomes (as the SMS service maps them).
TWILIO_OUTCOME = {"queued": "accepted", "accepted": "accepted", "sending": "sent", "sent": "sent",
                  "delivered": "delivered", "undelivered": "undelivered", "failed": "failed"}


class BenchError(RuntimeError):
    """The bench could not measure what it should (a service did not start, requests were deferred…)."""


# --- what is measured ------------------------------------------------------------------------------


def percentiles(values: Iterable[float]) -> dict[str, float] | None:
    data = sorted(values)
    if not data:
        return None
    if len(data) == 1:
        return {"p50": data[0], "p95": data[0], "p99": data[0]}
    cuts = statistics.quantiles(data, n=100, method="inclusive")
    return {"p50": cuts[49], "p95": cuts[94], "p99": cuts[98]}


def steady_rate(times: list[float], low: float = 0.1, high: float = 0.9) -> float | None:
    """Completions per second between the ``low`` and ``high`` fractions of them: the sustained rate,
    without the pipeline filling at the start and the tail at the end."""
    data = sorted(times)
    if len(data) < 20:
        return None
    i, j = int(len(data) * low), int(len(data) * high) - 1
    return (j - i) / (data[j] - data[i]) if data[j] > data[i] else None


@dataclass
class Progress:
    """Per request id, when each status (or outcome) was first consumed here (``time.perf_counter``)."""

    seen: dict[str, dict[str, float]] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    #: Every first (key, status) in arrival order: waiters read only what is new since they last looked.
    log: list[tuple[str, str]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    last_change: float = field(default_factory=time.perf_counter)

    def mark(self, key: str, status: str, reason: str | None = None) -> None:
        now = time.perf_counter()
        per = self.seen.setdefault(status, {})
        if key not in per:
            per[key] = now
            self.log.append((key, status))
            self.last_change = now
            self.changed.set()
        if reason and status not in ("dispatched", "delivered", "accepted"):
            self.reasons[key] = f"{status}: {reason}"

    def at(self, status: str) -> dict[str, float]:
        return self.seen.get(status, {})

    async def wait(self, ids: list[str], statuses: frozenset[str], stall_s: float, what: str,
                   report_every_s: float = 15.0) -> None:
        """Until every id reached one of ``statuses``; fails after ``stall_s`` without any progress."""
        wanted, remaining = set(ids), set(ids)
        read = 0
        last_report = time.perf_counter()
        while True:
            new, read = self.log[read:], len(self.log)
            remaining.difference_update(key for key, status in new if status in statuses)
            if not remaining:
                return
            done = len(wanted) - len(remaining)
            now = time.perf_counter()
            if now - self.last_change > stall_s:
                counts = {s: len(wanted & v.keys()) for s, v in self.seen.items() if wanted & v.keys()}
                examples = [r for k, r in self.reasons.items() if k in wanted][:3]
                raise BenchError(f"{what}: no progress for {stall_s:.0f}s at {done}/{len(wanted)}; "
                                 f"statuses seen {counts}; e.g. {examples}")
            if now - last_report >= report_every_s:
                counts = ", ".join(f"{s} {len(wanted & v.keys()):,}" for s, v in self.seen.items() if wanted & v.keys())
                print(f"  … {what}: {done:,}/{len(wanted):,} done ({counts or 'nothing yet'})",
                      file=sys.stderr, flush=True)
                last_report = now
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), timeout=1.0)


class Watch:
    """Reads topics from the beginning with assigned partitions (no group: no join delay) and marks
    what ``mark(record, progress)`` finds in each record."""

    def __init__(self, kafka: KafkaSettings, topics: list[str],
                 mark: Callable[[ConsumerRecord[bytes, bytes], Progress], None]) -> None:
        self.kafka, self.topics, self.mark = kafka, topics, mark
        self.progress = Progress()
        self._consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, enable_auto_commit=False,
                                          fetch_max_wait_ms=10, max_partition_fetch_bytes=4 * 1024 * 1024)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Progress:
        await self._consumer.start()
        partitions: list[TopicPartition] = []
        deadline = time.monotonic() + 30
        for topic in self.topics:
            while not (found := self._consumer.partitions_for_topic(topic)):
                if time.monotonic() > deadline:
                    raise BenchError(f"no metadata for {topic}")
                await self._consumer.topics()  # refreshes the cluster metadata
                await asyncio.sleep(0.1)
            partitions += [TopicPartition(topic, p) for p in sorted(found)]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)
        self._task = asyncio.create_task(self._pump(), name="bench-watch")
        return self.progress

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()

    async def _pump(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=50, max_records=5000)
            for records in batches.values():
                for record in records:
                    self.mark(record, self.progress)


def mark_status(record: ConsumerRecord[bytes, bytes], progress: Progress) -> None:
    """Status events, by request id."""
    if b"status_changed" not in record.value:
        return
    data = orjson.loads(record.value)["data"]
    progress.mark(data["request_id"], data["status"], data.get("reason"))


def mark_outcome(record: ConsumerRecord[bytes, bytes], progress: Progress) -> None:
    """Delivery updates, by dispatch id; ``first`` for the first one of a dispatch, whatever it says."""
    if b"delivery_updated" not in record.value:
        return
    data = orjson.loads(record.value)["data"]
    progress.mark(data["dispatch_id"], "first")
    progress.mark(data["dispatch_id"], data["status"], data.get("error_message"))


# --- the requests and dispatches ---------------------------------------------------------------------


def lawful_zone(now: datetime) -> str:
    """An IANA zone where it is about 13:00 now: MX's hours (07:00-22:00, every day) then hold for
    about nine hours, longer than any run. ``Etc/GMT-11`` is UTC+11 (POSIX signs)."""
    offset = (13 - now.hour) % 24
    if offset > 14:
        offset -= 24
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


def phone(i: int) -> str:
    """A valid Russian mobile number: the range spans more zones than the policy trusts, so the debtor's
    own zone decides. It ends in 9, which no sandbox rule (``docs/sandbox.md``) scripts: delivered."""
    return f"+7912{(i * 10 + 9) % 10_000_000:07d}"


def contact_request(run: str, i: int, zone: str, today: date) -> ContactRequestedEvent:
    debtor_id = f"bench-{run}-{i}"
    return ContactRequestedEvent(subject=debtor_id, source="cadencia/bench", data=ContactRequested(
        debtor=Debtor(id=debtor_id, name="Ana Bench", locale="es-MX", jurisdiction="MX", time_zone=zone,
                      phone=phone(i)),
        account=Account(id=f"acct-{run}-{i}", product="personal_loan", balance="1234.50", currency="MXN",
                        days_past_due=12, due_date=today - timedelta(days=12),
                        payment_url="https://pay.example.com/bench"),
        channel="sms", template="reminder_early",
    ))


@dataclass
class Batch:
    """Requests encoded before the clock starts: (request id, Kafka key, value)."""

    items: list[tuple[str, bytes, bytes]]

    @classmethod
    def of_requests(cls, run: str, count: int, start: int = 0) -> Batch:
        now = datetime.now(UTC)
        zone, today = lawful_zone(now), now.date()
        events = [contact_request(run, start + i, zone, today) for i in range(count)]
        return cls([(e.id, e.key, encode_event(e)) for e in events])

    @property
    def ids(self) -> list[str]:
        return [rid for rid, _, _ in self.items]


def dispatch(i: int, deadline: datetime, template: str = "bench") -> ContactDispatchedEvent:
    debtor = f"bench-d-{i}"
    return ContactDispatchedEvent(subject=debtor, data=ContactDispatched(
        dispatch_id=new_id(), request_id=new_id(), debtor_id=debtor, account_id=f"a{i}", channel="sms",
        to=f"+5255{(i * 10 + 9) % 100_000_000:08d}", template=TemplateRef(key=template, version=1),
        variables={"debtor": {"first_name": "Ana"}, "account": {"balance": "1234.50", "currency": "MXN"},
                   "creditor": {"name": "Financiera"}},
        deadline=deadline,
    ))


async def publish(producer: EventProducer, topic: str, batch: Batch, sent_at: dict[str, float],
                  rate: float | None = None) -> tuple[float, float]:
    """Publish every request (all at once, or ``rate`` per second on a fixed schedule whatever completes);
    returns when publishing started and ended. ``sent_at`` gets each request's publish time."""
    futures = []
    start = time.perf_counter()
    for n, (rid, key, value) in enumerate(batch.items):
        if rate is not None:
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        sent_at[rid] = time.perf_counter()
        futures.append(await producer.send_raw(topic, value, key, headers=[("ce_type", REQUESTED)]))
    await asyncio.gather(*futures)
    return start, time.perf_counter()


def latencies(sent_at: dict[str, float], reached: dict[str, float]) -> dict[str, float] | None:
    return percentiles(reached[rid] - sent_at[rid] for rid in sent_at if rid in reached)


# --- processes and databases ---------------------------------------------------------------------------


@dataclass
class Child:
    name: str
    url: str
    log: Path
    process: subprocess.Popen[bytes]

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) the process used so far, its reaped children's included (Linux)."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


class Processes:
    """Every child process of the run: started in their own session (dying with this one), stopped always."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.children: list[Child] = []

    def serve(self, name: str, port: int, env: dict[str, str], label: str = "", workers: int = 1) -> Child:
        label = label or name
        log = self.logs / f"{label}.log"
        command = [sys.executable, "-m", "tooling.cli", "serve", name, "--port", str(port)]
        if profile := os.environ.get("BENCH_PROFILE"):  # a folder: cProfile each child (not the sandbox)
            if name != "sandbox":  # CPU time of the event loop's thread, not wall time (idle waits)
                prof = str(Path(profile) / f"{label}.prof")
                command[1:3] = ["-c", "import cProfile, runpy, sys, time; p = cProfile.Profile(time.thread_time); "
                                "sys.argv = ['cadencia', *sys.argv[1:]]; p.enable()\n"
                                "try: runpy.run_module('tooling.cli', run_name='__main__')\n"
                                f"except BaseException: pass\nfinally: p.disable(); p.dump_stats({prof!r})"]
        if workers > 1:
            command += ["--workers", str(workers)]
        with open(log, "ab") as out:
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out,
                                       start_new_session=True, preexec_fn=parent_death_signal())
        child = Child(label, f"http://127.0.0.1:{port}", log, process)
        self.children.append(child)
        return child

    async def ready(self, children: list[Child], timeout: float = 180) -> None:
        """Until every child answers ``/ready`` with 200; fails at once if one exits."""
        deadline = time.monotonic() + timeout
        pending = list(children)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while pending:
                for child in list(pending):
                    if child.process.poll() is not None:
                        raise BenchError(f"{child.name} exited with {child.process.returncode} (log: {child.log})")
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                        async with http.get(f"{child.url}/ready") as response:
                            if response.status == 200:
                                pending.remove(child)
                if time.monotonic() > deadline:
                    raise BenchError("not ready in time: " + ", ".join(c.name for c in pending))
                await asyncio.sleep(0.2)

    def stop(self, child: Child, timeout: float = 45) -> None:
        if child.process.poll() is None:
            # Under BENCH_PROFILE, SIGINT: uvicorn re-raises the signal it stopped on, and only a
            # KeyboardInterrupt (not a SIGTERM death) lets cProfile write its file.
            child.process.send_signal(signal.SIGINT if os.environ.get("BENCH_PROFILE") else signal.SIGTERM)
            try:
                child.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
        if child in self.children:
            self.children.remove(child)

    def stop_all(self) -> None:
        for child in reversed(list(self.children)):
            self.stop(child)

    def tails(self, lines: int = 25) -> str:
        out = []
        for log in sorted(self.logs.glob("*.log")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {log} (last {len(text)} lines)\n" + "\n".join(text))
        return "\n".join(out)


class Databases:
    """One fresh database per service and phase: SQLite files, or throwaway PostgreSQL databases."""

    def __init__(self, folder: Path, postgres_admin: str | None) -> None:
        self.folder, self.admin = folder, postgres_admin
        self.created: list[str] = []

    @property
    def kind(self) -> str:
        return "postgresql" if self.admin else "sqlite"

    async def fresh(self, label: str) -> str:
        if not self.admin:
            return f"sqlite+aiosqlite:///{self.folder / label}.db"
        import asyncpg
        from sqlalchemy.engine import make_url

        name = f"cadencia_bench_{uuid.uuid4().hex[:8]}_{label}"
        conn = await asyncpg.connect(self._admin_dsn())
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        self.created.append(name)
        url = make_url(self.admin).set(drivername="postgresql+asyncpg", database=name)
        return url.render_as_string(hide_password=False)

    def _admin_dsn(self) -> str:
        from sqlalchemy.engine import make_url

        assert self.admin is not None
        return make_url(self.admin).set(drivername="postgresql").render_as_string(hide_password=False)

    async def drop_all(self) -> None:
        if not self.admin or not self.created:
            return
        import asyncpg

        conn = await asyncpg.connect(self._admin_dsn())
        try:
            for name in self.created:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
        self.created.clear()


# --- 1. single-hop transport limit -----------------------------------------------------------------------


async def joined(kafka: KafkaSettings, topic: str, group: str, timeout: float = 60) -> AIOKafkaConsumer:
    """A group consumer of ``topic`` that has its partitions (joined before any clock starts)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka.bootstrap_servers, group_id=group,
                                auto_offset_reset="earliest", fetch_max_wait_ms=10, enable_auto_commit=False)
    await consumer.start()
    deadline = time.monotonic() + timeout
    while not consumer.assignment():
        if time.monotonic() > deadline:
            await consumer.stop()
            raise BenchError(f"consumer of {topic} got no partitions in {timeout:.0f}s")
        await consumer.getmany(timeout_ms=50)
    return consumer


def twilio_headers() -> dict[str, str]:
    return {"Authorization": aiohttp.encode_basic_auth(DEV_TWILIO_ACCOUNT_SID, DEV_TWILIO_AUTH_TOKEN)}


async def single_hop(kafka: KafkaSettings, sandbox: str, n: int, concurrency: int, stall_s: float) -> dict[str, Any]:
    topics = Topics(kafka.topic_prefix)
    src, dst = topics.name("bench.hop.in"), topics.name("bench.hop.out")
    await ensure_topics(kafka, [src, dst])
    producer = EventProducer(kafka, client_id="bench-hop")
    await producer.start()
    deadline = datetime.now(UTC) + timedelta(hours=1)
    await producer.publish_many([(src, dispatch(i, deadline)) for i in range(n)])
    consumer = await joined(kafka, src, f"hop-{uuid.uuid4().hex[:8]}")
    await consumer.seek_to_beginning()
    headers = twilio_headers()
    sem = asyncio.Semaphore(concurrency)
    done = 0
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:

            async def one(record: ConsumerRecord[bytes, bytes]) -> asyncio.Future[Any]:
                event = parse_event(record.value)
                async with sem, http.post(f"{sandbox}{MESSAGES_PATH}", headers=headers, data={
                        "To": event.data.to, "From": FROM_NUMBER, "Body": "Hola Ana"}) as response:
                    body = await response.read()
                return await producer.send_raw(dst, body, record.key)

            start = last = time.perf_counter()
            while done < n:
                batches = await consumer.getmany(timeout_ms=100)
                records = [r for rs in batches.values() for r in rs]
                if records:
                    await asyncio.gather(*await asyncio.gather(*(one(r) for r in records)))
                    await consumer.commit()
                    done += len(records)
                    last = time.perf_counter()
                elif time.perf_counter() - last > stall_s:
                    raise BenchError(f"single hop: no progress for {stall_s:.0f}s at {done}/{n}")
            elapsed = time.perf_counter() - start
    finally:
        await consumer.stop()
        await producer.stop()
    return {"messages": n, "rate": n / elapsed}


# --- 2. chain limit ------------------------------------------------------------------------------------


def _out(topic: str, event: Any) -> tuple[str, bytes, bytes]:
    return topic, encode_event(event), event.key


async def relay(consumer: AIOKafkaConsumer, producer: EventProducer,
                step: Callable[[ConsumerRecord[bytes, bytes]], Awaitable[list[tuple[str, bytes, bytes]]]]) -> None:
    """One bare hop: a batch in, its records stepped concurrently, everything produced, then the commit."""
    while True:
        batches = await consumer.getmany(timeout_ms=100, max_records=500)
        records = [r for rs in batches.values() for r in rs]
        if not records:
            continue
        produced = await asyncio.gather(*(step(r) for r in records))
        futures = [await producer.send_raw(topic, value, key) for out in produced for topic, value, key in out]
        await asyncio.gather(*futures)
        await consumer.commit()


async def chain(kafka: KafkaSettings, sandbox: str, n: int, concurrency: int, stall_s: float) -> dict[str, Any]:
    topics = Topics(kafka.topic_prefix)
    requests_t, dispatch_t, outcomes_t, status_t = (topics.name(f"bench.chain.{t}")
                                                    for t in ("requests", "dispatch", "outcomes", "status"))
    await ensure_topics(kafka, [requests_t, dispatch_t, outcomes_t, status_t])
    producer = EventProducer(kafka, client_id="bench-chain")
    await producer.start()
    receiver_port = free_port()
    receiver_url = f"http://127.0.0.1:{receiver_port}/status"
    deadline = datetime.now(UTC) + timedelta(hours=1)

    async def on_callback(request: web.Request) -> web.Response:
        form, q = await request.post(), request.query
        event = DeliveryUpdatedEvent(subject=q["debtor"], data=DeliveryUpdated(
            dispatch_id=q["dispatch"], request_id=q["request"], debtor_id=q["debtor"], channel="sms",
            status=TWILIO_OUTCOME.get(str(form.get("MessageStatus")), "unknown"),  # type: ignore[arg-type]
            provider="twilio", provider_id=str(form.get("MessageSid")), occurred_at=utcnow()))
        await (await producer.send_raw(*_out(outcomes_t, event)))  # answer once it is durable
        return web.Response(status=204)

    async def decide(record: ConsumerRecord[bytes, bytes]) -> list[tuple[str, bytes, bytes]]:
        event = parse_event(record.value)
        assert isinstance(event, ContactRequestedEvent)
        data, dispatch_id = event.data, new_id()
        dispatched = ContactDispatchedEvent(subject=event.subject, data=ContactDispatched(
            dispatch_id=dispatch_id, request_id=event.id, debtor_id=data.debtor.id, account_id=data.account.id,
            channel="sms", to=data.debtor.phone or "", template=TemplateRef(key=data.template, version=1),
            deadline=deadline))
        status = StatusChangedEvent(subject=event.subject, data=StatusChanged(
            request_id=event.id, debtor_id=data.debtor.id, status="dispatched", channel="sms",
            dispatch_id=dispatch_id))
        return [_out(dispatch_t, dispatched), _out(status_t, status)]

    headers = twilio_headers()
    sem = asyncio.Semaphore(concurrency)
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency))

    async def send(record: ConsumerRecord[bytes, bytes]) -> list[tuple[str, bytes, bytes]]:
        event = parse_event(record.value)
        assert isinstance(event, ContactDispatchedEvent)
        d = event.data
        callback = f"{receiver_url}?dispatch={d.dispatch_id}&request={d.request_id}&debtor={d.debtor_id}"
        async with sem, http.post(f"{sandbox}{MESSAGES_PATH}", headers=headers, data={
                "To": d.to, "From": FROM_NUMBER, "Body": "Hola Ana, recordatorio de pago", "StatusCallback": callback,
        }) as response:
            resource = orjson.loads(await response.read())
        accepted = DeliveryUpdatedEvent(subject=event.subject, data=DeliveryUpdated(
            dispatch_id=d.dispatch_id, request_id=d.request_id, debtor_id=d.debtor_id, channel="sms",
            status="accepted", provider="twilio", provider_id=resource.get("sid"), occurred_at=utcnow()))
        return [_out(outcomes_t, accepted)]

    async def conclude(record: ConsumerRecord[bytes, bytes]) -> list[tuple[str, bytes, bytes]]:
        event = parse_event(record.value)
        assert isinstance(event, DeliveryUpdatedEvent)
        if event.data.status != "delivered":
            return []
        status = StatusChangedEvent(subject=event.subject, data=StatusChanged(
            request_id=event.data.request_id, debtor_id=event.data.debtor_id, status="delivered", channel="sms",
            dispatch_id=event.data.dispatch_id))
        return [_out(status_t, status)]

    app = web.Application()
    app.router.add_post("/status", on_callback)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", receiver_port).start()
    group = f"chain-{uuid.uuid4().hex[:8]}"
    consumers = await asyncio.gather(*(joined(kafka, t, f"{group}-{t}")
                                       for t in (requests_t, dispatch_t, outcomes_t)))
    hops = [asyncio.create_task(relay(consumer, producer, step))
            for consumer, step in zip(consumers, (decide, send, conclude), strict=True)]
    batch = Batch.of_requests(f"c{uuid.uuid4().hex[:6]}", n)
    sent_at: dict[str, float] = {}
    try:
        async with Watch(kafka, [status_t], mark_status) as progress:
            waiting = asyncio.create_task(progress.wait(batch.ids, frozenset({"delivered"}), stall_s, "chain"))
            start, _ = await publish(producer, requests_t, batch, sent_at)
            await _first_of(waiting, hops)
            end = max(progress.at("delivered")[rid] for rid in batch.ids)
            return {"messages": n, "rate": n / (end - start),
                    "latency_dispatched_s": latencies(sent_at, progress.at("dispatched")),
                    "latency_delivered_s": latencies(sent_at, progress.at("delivered"))}
    finally:
        for hop in hops:
            hop.cancel()
        await asyncio.gather(*hops, return_exceptions=True)
        for consumer in consumers:
            await consumer.stop()
        await http.close()
        await runner.cleanup()
        await producer.stop()


async def _first_of(main: asyncio.Task[None], helpers: list[asyncio.Task[None]]) -> None:
    """Await ``main``; a helper that dies first (it never returns on its own) fails the measurement."""
    done, _ = await asyncio.wait([main, *helpers], return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        if task is not main:
            main.cancel()
            task.result()
            raise BenchError("a relay hop stopped")
    main.result()


# --- 3. the SMS service alone ---------------------------------------------------------------------------


BENCH_TEMPLATE = TemplatePublishedEvent(subject="bench:sms:es-MX:A", data=TemplatePublished(
    key="bench", version=1, channel="sms", locale="es-MX", variant="A",
    content=TemplateContent(body="Hola {{ debtor.first_name }}, {{ creditor.name }}: saldo "
                                 "{{ account.balance | money }}. Responde BAJA para no recibir más."),
    published_at=datetime(2026, 1, 1, tzinfo=UTC)))


async def sms_alone(kafka: KafkaSettings, n: int, stall_s: float) -> dict[str, Any]:
    """Dispatches through the running SMS service until each has its first outcome on contact.outcomes."""
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
            start = time.perf_counter()
            futures = [await producer.send_raw(t, v, k) for t, v, k in encoded]
            await asyncio.gather(*futures)
            await progress.wait(ids, frozenset({"first"}), stall_s, "SMS service")
            end = max(progress.at("first")[i] for i in ids)
            failed = sum(1 for i in ids if i in progress.at("failed"))
    finally:
        await producer.stop()
    return {"messages": n, "rate": n / (end - start), "failed": failed}


# --- 4. the whole system ----------------------------------------------------------------------------


async def system_run(producer: EventProducer, topics: Topics, progress: Progress, batch: Batch,
                     stall_s: float, what: str, rate: float | None = None) -> dict[str, Any]:
    sent_at: dict[str, float] = {}
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
    """The closed loop's sustained delivered rate (its whole-run rate when the run was too short)."""
    rate = closed.get("sustained_delivered_rate") or closed.get("delivered_rate")
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
                   "open_seconds": args.open_seconds, "open_loads": args.open_loads,
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
        await procs.ready([procs.serve("sandbox", ports["sandbox"], sandbox_env)], timeout=90)

        if "single" in phases:
            print(f"single-hop limit: {args.messages:,} messages…", file=sys.stderr, flush=True)
            results["single_hop"] = await single_hop(bench_kafka, sandbox, args.messages, args.concurrency,
                                                     args.stall_seconds)
        if "chain" in phases:
            print(f"chain limit: {args.messages:,} requests…", file=sys.stderr, flush=True)
            results["chain"] = await chain(bench_kafka, sandbox, args.messages, args.concurrency, args.stall_seconds)
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
            cpu = sms.cpu_seconds()
            results["sms"] = await sms_alone(bench_kafka, args.messages, args.stall_seconds)
            results["sms"]["cpu_ms_per_message"] = cpu_per(sms, cpu, args.messages)
            procs.stop(sms)  # its CPU is the next phase's
        if "system" in phases:
            results.update(await whole_system(args, system_kafka, sandbox, ports, procs, dbs))
    results["load_after"] = list(os.getloadavg())
    ratio(results, "sms", "single_hop")
    ratio(results, "system", "chain")
    return results


async def whole_system(args: argparse.Namespace, kafka: KafkaSettings, sandbox: str, ports: dict[str, int],
                       procs: Processes, dbs: Databases) -> dict[str, Any]:
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
            cpu = {child.name: child.cpu_seconds() for child in children}
            closed = await system_run(producer, topics, progress, Batch.of_requests(f"c{run_id}", args.requests),
                                      args.stall_seconds, "system closed loop")
            closed["cpu_ms_per_request"] = {c.name: cpu_per(c, cpu[c.name], args.requests) for c in children}
            out["system"] = closed
            peak = max_rate(closed)
            out["open_loop"] = []
            for n, load in enumerate(args.open_loads):
                rate = peak * load
                count = max(1, round(rate * args.open_seconds))
                print(f"whole system, open loop at {load:.0%} ({rate:,.1f}/s for {args.open_seconds:.0f}s)…",
                      file=sys.stderr, flush=True)
                batch = Batch.of_requests(f"o{n}{run_id}", count, start=args.requests + 10 + n * count)
                result = await system_run(producer, topics, progress, batch, args.stall_seconds,
                                          f"open loop {load:.0%}", rate=rate)
                out["open_loop"].append({"load": load, **result})
    finally:
        await producer.stop()
        for child in children:
            procs.stop(child)
    return out


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
    if "chain" in r:
        c = r["chain"]
        row("chain limit (request→…→delivered, bare)", c["messages"], c["rate"], None,
            c["latency_dispatched_s"], c["latency_delivered_s"])
    if "sms" in r:
        s = r["sms"]
        row("SMS service alone (÷ single-hop)", s["messages"], s["rate"], s.get("ratio_to_single_hop"))
        if s.get("cpu_ms_per_message") is not None:
            lines.append(f"  CPU of the SMS service: {s['cpu_ms_per_message']:.2f} ms per message")
    if "system" in r:
        s = r["system"]
        row("whole system → delivered (÷ chain)", s["requests"], s["delivered_rate"], s.get("ratio_to_chain"),
            s["latency_dispatched_s"], s["latency_delivered_s"])
        row("  → dispatched", s["requests"], s["dispatched_rate"])
        sustained = _rate(s.get("sustained_delivered_rate")), _rate(s.get("sustained_dispatched_rate"))
        lines.append(f"  sustained (10-90% of completions; the open loop's max): delivered {sustained[0]}/s, "
                     f"dispatched {sustained[1]}/s"
                     + (f"; not delivered: {s['not_delivered']}" if s["not_delivered"] else ""))
        if cpu := {k: v for k, v in (s.get("cpu_ms_per_request") or {}).items() if v is not None}:
            lines.append("  CPU per request (ms): " + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items()))
    for o in r.get("open_loop", []):
        rate = o["delivered_rate_while_offered"] or o["delivered_rate"]
        row(f"open loop {o['load']:.0%} of max ({o['offered_rate']:,.1f}/s)", o["requests"], rate, None,
            o["latency_dispatched_s"], o["latency_delivered_s"])
        if o["not_delivered"]:
            lines.append(f"  not delivered: {o['not_delivered']}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=5000, help="messages of the single-hop, chain and SMS runs")
    parser.add_argument("--requests", type=int, default=20_000, help="contact requests of the closed-loop run")
    parser.add_argument("--concurrency", type=int, default=32, help="provider requests in flight")
    parser.add_argument("--open-seconds", type=float, default=60.0, help="length of each open-loop run")
    parser.add_argument("--open-loads", type=lambda s: [float(x) for x in s.split(",")], default=[0.5, 0.8],
                        help="open-loop loads as fractions of the measured max rate (default 0.5,0.8)")
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
