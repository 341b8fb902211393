"""The bench's parts: what it measures (progress, percentiles), the requests and dispatches it
publishes, and the processes and databases it runs (``bench/pipeline.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.bus import EventProducer  # noqa: E402
from shared.config import DEV_TWILIO_ACCOUNT_SID, KafkaSettings  # noqa: E402
from shared.events import encode_event, new_id  # noqa: E402
from shared.events.contracts import (  # noqa: E402
    Account,
    ContactDispatched,
    ContactDispatchedEvent,
    ContactRequested,
    ContactRequestedEvent,
    Debtor,
    TemplateRef,
)
from shared.loop_lag import lag_buckets  # noqa: E402
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
        """CPU time (user + system) the process and its descendants used so far, live ones (the workers
        of ``--workers``) and reaped ones alike (Linux)."""
        return tree_cpu_seconds(self.process.pid)


def tree_cpu_seconds(root: int, procs: ProcTable | None = None) -> float | None:
    """CPU time (user + system) a process and its descendants, live and reaped, used so far (Linux);
    ``procs``: one reading of ``/proc`` shared by several such sums."""
    procs = read_procs() if procs is None else procs
    tree = procs.tree(root)
    if not tree:
        return None
    # Each one's own time and its reaped children's.
    return sum(int(x) for pid in tree for x in procs.stats[pid][11:15]) / os.sysconf("SC_CLK_TCK")


def main_threads(root: int, procs: ProcTable) -> dict[int, tuple[int, int]]:
    """For each process of ``root``'s tree, its main thread's time on a core and its time runnable but
    waiting for one, in nanoseconds so far (``/proc/PID/task/PID/schedstat``; empty where the kernel
    keeps no such figures). A service's main thread runs its event loop."""
    threads = {}
    for pid in procs.tree(root):
        try:
            on_cpu, waiting, _ = (int(x) for x in Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split())
        except (OSError, ValueError):
            continue
        threads[pid] = (on_cpu, waiting)
    return threads


class Beside:
    """The CPU of what shares the machine with the measured code: the broker, the provider sandbox,
    this process (the load generator and the bare limits' loops) and, with ``--postgres`` on this
    machine, the PostgreSQL server. Each phase reads it over its timed window (:meth:`window`), so a
    run shows where the machine's cores went, and whether a rate was bound by them."""

    def __init__(self, broker_pid: int | None, sandbox: Child, postgres_pid: int | None = None) -> None:
        # Every database on that server counts, the bench's or not.
        self.trees = {name: pid for name, pid in (("broker", broker_pid), ("sandbox", sandbox.process.pid),
                                                  ("postgres", postgres_pid)) if pid is not None}

    def read(self, services: list[Child]) -> tuple[dict[str, float | None], dict[str, dict[int, tuple[int, int]]]]:
        """Each one's CPU seconds so far, and the main threads of ``services``, from one reading of ``/proc``."""
        procs = read_procs()
        cpu = {**{name: tree_cpu_seconds(pid, procs) for name, pid in self.trees.items()},
               "bench": time.process_time()}
        return cpu, {child.name: main_threads(child.process.pid, procs) for child in services}

    def window(self, services: list[Child] | None = None) -> Window:
        """A window over the phase; ``services``: the measured services, whose event-loop threads it reads too."""
        return Window(self, services or [])


class Window:
    """A phase's timed window: ``start`` is called when its clock starts (after its setup: a group
    joined, the load published), ``per`` when it ends."""

    def __init__(self, beside: Beside, services: list[Child]) -> None:
        self.beside, self.services = beside, services
        self.start()

    def start(self) -> None:
        (self.at, self.threads_at), self.wall = self.beside.read(self.services), time.monotonic()
        self.lag_at = {child.name: loop_lag(child) for child in self.services}

    def per(self, count: int) -> dict[str, Any]:
        """Milliseconds of each one's CPU per item in the window (``cpu_ms_beside``), the seconds it
        lasted (``cpu_wall_s``: with every process's CPU per item, the cores they used), and for each
        service the share of the window its busiest event-loop thread spent on a core and runnable but
        waiting for one (``loop_thread``): a loop on a core nearly all the window is bound by its own
        work; one that waits for a core, by the machine's; one that is neither waits for I/O."""
        (after, threads), wall = self.beside.read(self.services), time.monotonic() - self.wall
        per: dict[str, float | None] = {}
        for name, value in after.items():
            before = self.at.get(name)
            per[name] = None if before is None or value is None or not count else (value - before) * 1000 / count
        loops: dict[str, dict[str, float]] = {}
        for name, now in threads.items():
            then = self.threads_at.get(name, {})
            spent = [(now[pid][0] - then[pid][0], now[pid][1] - then[pid][1]) for pid in now if pid in then]
            if spent and wall > 0:
                on_cpu, waiting = max(spent)
                loops[name] = {"on_cpu": on_cpu / 1e9 / wall, "waiting_for_cpu": waiting / 1e9 / wall}
        lag = {child.name: lag_over(self.lag_at.get(child.name), loop_lag(child)) for child in self.services}
        return {"cpu_ms_beside": per, "cpu_wall_s": wall, "loop_thread": loops,
                "loop_lag": {name: v for name, v in lag.items() if v is not None}}


def loop_lag(child: Child) -> dict[float, float] | None:
    """A service's event-loop lag so far (``shared.loop_lag``): its timer's ticks by how late they ran,
    cumulative by upper bound in seconds, from its ``/metrics``; None when it does not answer. With
    ``--workers`` it is whichever worker answers."""
    try:
        text = httpx.get(f"{child.url}/metrics", timeout=10).text
    except httpx.HTTPError:
        return None
    return lag_buckets(text) or None


def lag_over(before: dict[float, float] | None, after: dict[float, float] | None) -> dict[str, float] | None:
    """The ticks of a window and how late they ran: ``p99_s`` and ``worst_s`` are the upper bounds of
    the buckets that hold the 99th percentile and the latest tick; ``over_100ms`` the ticks later than
    0.1 s."""
    if before is None or after is None:
        return None
    window = {bound: after[bound] - before.get(bound, 0.0) for bound in sorted(after)}
    ticks = window.get(float("inf"), 0.0)
    if ticks <= 0:
        return None
    p99 = next(bound for bound, count in window.items() if count >= 0.99 * ticks)
    worst = next(bound for bound, count in window.items() if count >= ticks)
    return {"ticks": ticks, "p99_s": p99, "worst_s": worst, "over_100ms": ticks - window.get(0.1, 0.0)}


@dataclass(frozen=True)
class ProcTable:
    """One reading of ``/proc``: every process's ``stat`` fields after the command name (state, ppid,
    …) and, from them, each process's children."""

    stats: dict[int, list[str]]
    children: dict[int, list[int]]

    def tree(self, root: int) -> list[int]:
        """``root`` and its live descendants; empty when ``root`` is gone."""
        if root not in self.stats:
            return []
        found, todo = [], [root]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(self.children.get(pid, ()))
        return found


def read_procs() -> ProcTable:
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # gone meanwhile
    children: dict[int, list[int]] = {}
    for pid, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(pid)
    return ProcTable(stats, children)


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

    async def server_pid(self) -> int | None:
        """The PostgreSQL server's main process when it runs on this machine (its reaped backends'
        CPU counts in its own ``/proc`` figures), else None."""
        if not self.admin:
            return None
        import asyncpg

        conn = await asyncpg.connect(self._admin_dsn())
        try:  # read while the backend lives: it exits with the connection
            backend = await conn.fetchval("SELECT pg_backend_pid()")
            fields = (Path("/proc") / str(backend) / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None  # another machine (or another PID namespace): nothing to read here
        finally:
            await conn.close()
        return int(fields[1])

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
