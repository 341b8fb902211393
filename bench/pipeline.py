"""Cadencia's SMS pipeline as a ratio of the transport limit, both measured in the same run (DESIGN §12).

Processes: the embedded broker, the Twilio sandbox (``cadencia serve sandbox``) and the SMS service
(``cadencia serve sms``); this script drives and measures.

1. **Transport limit** — a bare loop in this process: consume a dispatch from the broker, one POST to
   the sandbox's ``Messages.json`` (aiohttp, 32 in flight), produce a result. Nothing else.
2. **Cadencia** — the same number of ``ContactDispatchedEvent``s through the real SMS service: inbox,
   send log (``sending`` committed before the request, ``sent`` after), template render, per-sender
   token bucket, the Twilio request with a StatusCallback, the outcome through the outbox — measured
   until every dispatch's first outcome (``sent``, or ``failed`` for the sandbox's
   scripted bad numbers) is on ``contact.outcomes``. The sandbox's delivery callbacks load the
   service at the same time, as in production.

    .venv/bin/python bench/pipeline.py --messages 2000
    BENCH_SMS_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/<empty db> .venv/bin/python bench/pipeline.py
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaConsumer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.bus import EventProducer, ensure_topics  # noqa: E402
from shared.bus.broker import EmbeddedBroker, free_port  # noqa: E402
from shared.config import DEV_TWILIO_ACCOUNT_SID, DEV_TWILIO_AUTH_TOKEN, KafkaSettings  # noqa: E402
from shared.events import Topics, parse_event  # noqa: E402
from shared.events.contracts import (  # noqa: E402
    ContactDispatched,
    ContactDispatchedEvent,
    TemplateContent,
    TemplatePublished,
    TemplatePublishedEvent,
    TemplateRef,
)


def _serve(name: str, port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "ab")  # noqa: SIM115 - owned by the child
    return subprocess.Popen([sys.executable, "-m", "shared.cli", "serve", name, "--port", str(port)],
                            cwd=ROOT, env=env, stdout=out, stderr=out)


def _wait_ready(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/ready", timeout=1) as r:  # noqa: S310 - loopback
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


async def _consume_until(kafka: KafkaSettings, topic: str, group: str, want, count: int, timeout: float) -> float:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka.bootstrap_servers, group_id=group,
                                auto_offset_reset="earliest", fetch_max_wait_ms=10, enable_auto_commit=False)
    await consumer.start()
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    try:
        while len(seen) < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=100)).values():
                seen.update(key for key in map(want, records) if key)
        return time.perf_counter()
    finally:
        await consumer.stop()
        if len(seen) < count:
            raise TimeoutError(f"only {len(seen)}/{count} seen on {topic}")


def _dispatch(i: int, deadline: datetime) -> ContactDispatchedEvent:
    debtor = f"bench-{i % 500}"
    return ContactDispatchedEvent(subject=debtor, data=ContactDispatched(
        dispatch_id=str(uuid.uuid4()), request_id=str(uuid.uuid4()), debtor_id=debtor, account_id=f"a{i}",
        channel="sms", to=f"+5255{10_000_000 + i:08d}", template=TemplateRef(key="bench", version=1),
        variables={"debtor": {"first_name": "Ana"}, "account": {"balance": "1234.50", "currency": "MXN"},
                   "creditor": {"name": "Financiera"}},
        deadline=deadline,
    ))


def _first_outcome(ids: set[str]):
    """The dispatch id of a delivery update for one of ours: the first outcome is the send's result."""

    def key(record) -> str | None:
        if b"delivery_updated" not in record.value:
            return None
        dispatch_id = parse_event(record.value).data.dispatch_id
        return dispatch_id if dispatch_id in ids else None

    return key


async def bare_loop(kafka: KafkaSettings, sandbox: str, n: int, concurrency: int) -> float:
    topics = Topics(kafka.topic_prefix)
    src, dst = topics.name("bench.bare.in"), topics.name("bench.bare.out")
    await ensure_topics(kafka, [src, dst])
    producer = EventProducer(kafka)
    await producer.start()
    deadline = datetime.now(UTC) + timedelta(hours=1)
    await producer.publish_many([(src, _dispatch(i, deadline)) for i in range(n)])
    consumer = AIOKafkaConsumer(src, bootstrap_servers=kafka.bootstrap_servers, group_id=f"bare-{uuid.uuid4()}",
                                auto_offset_reset="earliest", fetch_max_wait_ms=10, enable_auto_commit=False)
    await consumer.start()
    await consumer.getmany(timeout_ms=1)  # join before the clock starts, as the service has joined
    while not consumer.assignment():
        await consumer.getmany(timeout_ms=50)
    await consumer.seek_to_beginning()
    url = f"{sandbox}/2010-04-01/Accounts/{DEV_TWILIO_ACCOUNT_SID}/Messages.json"
    headers = {"Authorization": aiohttp.encode_basic_auth(DEV_TWILIO_ACCOUNT_SID, DEV_TWILIO_AUTH_TOKEN)}
    done = 0
    sem = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:

        async def one(record) -> None:
            event = parse_event(record.value)
            async with sem, http.post(url, data={"To": event.data.to, "From": "+15005550006",
                                                 "Body": "Hola Ana"}, headers=headers) as response:
                body = await response.read()
            await (await producer.send_raw(dst, body, record.key))

        start = time.perf_counter()
        while done < n:
            batches = await consumer.getmany(timeout_ms=100)
            records = [r for rs in batches.values() for r in rs]
            await asyncio.gather(*(one(r) for r in records))
            done += len(records)
            await consumer.commit()
        elapsed = time.perf_counter() - start
    await consumer.stop()
    await producer.stop()
    return n / elapsed


async def cadencia(kafka: KafkaSettings, n: int) -> float:
    topics = Topics(kafka.topic_prefix)
    producer = EventProducer(kafka)
    await producer.start()
    deadline = datetime.now(UTC) + timedelta(hours=1)
    events = [_dispatch(i, deadline) for i in range(n)]
    ids = {e.data.dispatch_id for e in events}
    # Wait until the service's consumer group is serving (one warm-up dispatch comes back as sent).
    warm = _dispatch(n + 1, deadline)
    await producer.publish(topics.dispatch("sms"), warm)
    await _consume_until(kafka, topics.contact_outcomes, f"warm-{uuid.uuid4()}",
                         lambda r: "warm" if warm.data.dispatch_id.encode() in r.value else None, 1, 90)
    watcher = asyncio.create_task(_consume_until(
        kafka, topics.contact_outcomes, f"bench-{uuid.uuid4()}",
        _first_outcome(ids), n, 300))
    await asyncio.sleep(1)  # the watcher's group join (the broker delays first joins ~3 s)
    start = time.perf_counter()
    await producer.publish_many([(topics.dispatch("sms"), e) for e in events])
    end = await watcher
    await producer.stop()
    return n / (end - start)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cadencia-bench-"))
    with EmbeddedBroker(log_path=str(tmp / "broker.log")) as broker:
        kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers, topic_prefix=f"b{uuid.uuid4().hex[:6]}.")
        await ensure_topics(kafka)
        sandbox_port, sms_port = free_port(), free_port()
        sandbox = f"http://127.0.0.1:{sandbox_port}"
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
               "CADENCIA_TOPIC_PREFIX": kafka.topic_prefix, "TWILIO_API_BASE_URL": sandbox,
               "CADENCIA_LOG_LEVEL": "WARNING", "CADENCIA_SANDBOX_LOG_LEVEL": "WARNING",
               "CADENCIA_SMS_LOG_LEVEL": "WARNING", "CADENCIA_SANDBOX_SPEED_FACTOR": "1000",
               "SMS_DATABASE_URL": os.environ.get("BENCH_SMS_DATABASE_URL", f"sqlite+aiosqlite:///{tmp / 'sms.db'}"),
               "CADENCIA_SMS_SENDER__MPS": "100000", "CADENCIA_SMS_SENDER__BURST": "1000",
               "CADENCIA_SMS_SENDING__MAX_IN_FLIGHT": str(args.concurrency),
               "CADENCIA_SMS_KAFKA__PARTITION_CONCURRENCY": os.environ.get("BENCH_PARTITION_CONCURRENCY", "64")}
        producer = EventProducer(kafka)
        await producer.start()
        await producer.publish(Topics(kafka.topic_prefix).templates, TemplatePublishedEvent(
            subject="bench:sms:es-MX:A", data=TemplatePublished(
                key="bench", version=1, channel="sms", locale="es-MX", variant="A",
                content=TemplateContent(body="Hola {{ debtor.first_name }}, {{ creditor.name }}: saldo "
                                             "{{ account.balance | money }}. Responde BAJA para no recibir más."),
                published_at=datetime.now(UTC))))
        await producer.stop()
        procs = [_serve("sandbox", sandbox_port, env, tmp / "sandbox.log"),
                 _serve("sms", sms_port, env, tmp / "sms.log")]
        try:
            _wait_ready(sandbox)
            _wait_ready(f"http://127.0.0.1:{sms_port}")
            bare = await bare_loop(kafka, sandbox, args.messages, args.concurrency)
            ours = await cadencia(kafka, args.messages)
        finally:
            for p in procs:
                p.terminate()
                p.wait(timeout=20)
    print(f"{args.messages} messages, {args.concurrency} in flight, one run on this machine:")
    print(f"  transport limit (consume → POST Messages.json → produce): {bare:,.0f} msg/s")
    print(f"  Cadencia SMS pipeline (dispatch → sent outcome, with callbacks): {ours:,.0f} msg/s")
    print(f"  ratio: {ours / bare:.2f} of the transport limit")


if __name__ == "__main__":
    asyncio.run(main())
