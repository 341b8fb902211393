"""One producer per process: batched (``linger_ms``), acks from all replicas, JSON via orjson."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

from shared.config import KafkaSettings
from shared.events import CloudEvent, encode_event
from shared.tracing import stamped


class EventProducer:
    def __init__(self, settings: KafkaSettings, client_id: str | None = None) -> None:
        self.settings = settings
        self._producer = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap_servers,
            client_id=client_id or settings.client_id,
            acks="all",
            enable_idempotence=False,
            linger_ms=settings.linger_ms,
            request_timeout_ms=settings.request_timeout_ms,
            max_batch_size=256 * 1024,
        )
        self._started = False

    async def start(self) -> None:
        await self._producer.start()
        self._started = True

    async def stop(self) -> None:
        if self._started:
            await self._producer.flush()
            await self._producer.stop()
            self._started = False

    async def send_raw(
        self, topic: str, value: bytes, key: bytes | None = None, headers: list[tuple[str, bytes]] | None = None
    ) -> asyncio.Future[Any]:
        """Queue one record; await the returned future for the broker's acknowledgement."""
        future: asyncio.Future[Any] = await self._producer.send(topic, value=value, key=key, headers=headers)
        return future

    async def publish(self, topic: str, event: CloudEvent) -> None:
        """Publish one event keyed by its subject (the debtor id) and wait for the ack; it carries the
        current trace context (``traceparent``)."""
        event = stamped(event)
        future = await self.send_raw(
            topic, encode_event(event), event.key, headers=[("ce_type", event.type.encode())]
        )
        await future

    async def publish_many(self, items: Sequence[tuple[str, CloudEvent]]) -> None:
        stamped_items = [(topic, stamped(ev)) for topic, ev in items]
        futures = [
            await self.send_raw(topic, encode_event(ev), ev.key, headers=[("ce_type", ev.type.encode())])
            for topic, ev in stamped_items
        ]
        await asyncio.gather(*futures)

    async def topics(self) -> set[str]:
        """The topics the cluster has now (fresh metadata)."""
        cluster = await self._producer.client.fetch_all_metadata()
        return set(cluster.topics())

    async def ping(self) -> None:
        """Readiness: the cluster metadata can be fetched."""
        await asyncio.wait_for(self._producer.client.fetch_all_metadata(), timeout=5)
