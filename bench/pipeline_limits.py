"""The bare transport limits the bench divides by: the single hop and the chain (``bench/pipeline.py``)."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, ConsumerRecord

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline_kit import (  # noqa: E402
    FROM_NUMBER,
    MESSAGES_PATH,
    TWILIO_OUTCOME,
    Batch,
    BenchError,
    Watch,
    dispatch,
    latencies,
    mark_status,
    publish,
)

from shared.bus import EventProducer, ensure_topics  # noqa: E402
from shared.config import DEV_TWILIO_ACCOUNT_SID, DEV_TWILIO_AUTH_TOKEN, KafkaSettings  # noqa: E402
from shared.events import Topics, encode_event, new_id, parse_event, utcnow  # noqa: E402
from shared.events.contracts import (  # noqa: E402
    ContactDispatched,
    ContactDispatchedEvent,
    ContactRequestedEvent,
    DeliveryUpdated,
    DeliveryUpdatedEvent,
    StatusChanged,
    StatusChangedEvent,
    TemplateRef,
)
from shared.ports import free_port  # noqa: E402

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


async def single_hop(kafka: KafkaSettings, sandbox: str, n: int, concurrency: int, stall_s: float,
                     on_start: Callable[[], None] = lambda: None) -> dict[str, Any]:
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

            on_start()
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


async def chain(kafka: KafkaSettings, sandbox: str, n: int, concurrency: int, stall_s: float,
                on_start: Callable[[], None] = lambda: None) -> dict[str, Any]:
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
            on_start()
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
