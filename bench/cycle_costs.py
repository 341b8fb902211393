"""What the shared infrastructure costs per cycle, whatever a batch holds (docs/benchmarks.md: per-cycle
costs), on SQLite and the embedded broker, in this process:

- a one-statement write transaction (``Database.transaction``): CPU, and round trips to aiosqlite's thread;
- an outbox relay pass of 3 rows (``OutboxRelay.relay_once``): CPU (user), wall time, round trips;
- an idle hot-path consumer (``ConsumerRunner``, 6 partitions): CPU a second, here and at the broker
  (the embedded broker long-polls by sleeping, and each empty fetch costs it CPU: what an idle system's
  consumers cost the machine), and how long a record reaching it after an idle spell waits before it
  is handled.

    .venv/bin/python bench/cycle_costs.py
"""

from __future__ import annotations

import asyncio
import resource
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiosqlite.core  # noqa: E402
from pipeline_kit import tree_cpu_seconds  # noqa: E402
from sqlalchemy import text  # noqa: E402

from shared.bus import ConsumerRunner, EventProducer, ensure_topics  # noqa: E402
from shared.bus.broker import EmbeddedBroker  # noqa: E402
from shared.config import DatabaseSettings, KafkaSettings  # noqa: E402
from shared.db import Database, OutboxRelay, add_to_outbox  # noqa: E402
from shared.db.migrate import upgrade  # noqa: E402
from shared.events import Topics  # noqa: E402
from shared.events.contracts import PromiseBroken, PromiseBrokenEvent  # noqa: E402

HOPS: Counter[str] = Counter()
_execute = aiosqlite.core.Connection._execute


async def _counted(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
    HOPS["all"] += 1
    return await _execute(self, fn, *args, **kwargs)


def cpu(user_only: bool = False) -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + (0.0 if user_only else usage.ru_stime)


def event(n: int) -> PromiseBrokenEvent:
    return PromiseBrokenEvent(subject=f"deb-{n}", data=PromiseBroken(debtor_id=f"deb-{n}", account_id=f"a{n}"))


async def transactions(db: Database, n: int = 500) -> None:
    HOPS.clear()
    started = cpu()
    for _ in range(n):
        async with db.transaction() as session:
            await session.execute(text("SELECT 1"))
    print(f"write transaction:  {(cpu() - started) / n * 1000:.3f} ms CPU, {HOPS['all'] / n:.0f} round trips")


async def relay_passes(db: Database, kafka: KafkaSettings, n: int = 500) -> None:
    producer = EventProducer(kafka)
    await producer.start()
    relay = OutboxRelay(db, producer, batch_size=3)
    topic = Topics(kafka.topic_prefix).account_events
    async with db.transaction() as session:
        for i in range(3 * (n + 1)):
            add_to_outbox(session, topic, event(i))
    await relay.relay_once()
    HOPS.clear()
    started, wall = cpu(user_only=True), time.perf_counter()
    for _ in range(n):
        await relay.relay_once()
    print(f"relay pass, 3 rows: {(cpu(True) - started) / n * 1000:.3f} ms CPU (user), "
          f"{(time.perf_counter() - wall) / n * 1000:.2f} ms wall, {HOPS['all'] / n:.0f} round trips")
    await producer.stop()


async def idle_consumer(kafka: KafkaSettings, broker_pid: int) -> None:
    producer = EventProducer(kafka)
    await producer.start()
    topic = Topics(kafka.topic_prefix).contact_outcomes  # a topic of its own: nothing there before
    handled: asyncio.Queue[float] = asyncio.Queue()

    async def handle(_event: Any, _meta: Any) -> None:
        handled.put_nowait(time.perf_counter())

    runner = ConsumerRunner(name="bench", service="bench", topics=[topic], group_id=f"g-{uuid.uuid4().hex}",
                            kafka=kafka, handler=handle, producer=producer)
    await runner.start()
    await producer.publish(topic, event(0))
    await handled.get()
    await asyncio.sleep(1)
    started, at_broker = cpu(), tree_cpu_seconds(broker_pid) or 0.0
    await asyncio.sleep(5)
    idle, broker_idle = (cpu() - started) / 5, ((tree_cpu_seconds(broker_pid) or 0.0) - at_broker) / 5
    waits = []
    for i in range(20):
        await asyncio.sleep(0.3 + (i % 7) * 0.013)
        sent = time.perf_counter()
        await producer.publish(topic, event(i))
        waits.append(await handled.get() - sent)
    waits.sort()
    print(f"idle consumer:      {idle * 1000:.1f} ms CPU a second here, {broker_idle * 1000:.1f} at the broker; "
          f"a record after idling handled in "
          f"{waits[10] * 1000:.0f} ms (p50), {waits[-1] * 1000:.0f} ms (max)")
    await runner.stop()
    await producer.stop()


async def main() -> None:
    aiosqlite.core.Connection._execute = _counted  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as folder, EmbeddedBroker() as broker:
        kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers, topic_prefix=f"b{uuid.uuid4().hex[:6]}.",
                              partitions=6)
        await ensure_topics(kafka)
        db = Database(DatabaseSettings(url=f"sqlite+aiosqlite:///{folder}/bench.db"))
        await upgrade(db, "bench")
        try:
            await transactions(db)
            await relay_passes(db, kafka)
            assert broker.process is not None
            await idle_consumer(kafka, broker.process.pid)
        finally:
            await db.dispose()


if __name__ == "__main__":
    asyncio.run(main())
