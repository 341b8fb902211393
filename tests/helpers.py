"""Test helpers: wait on a condition with a deadline (never sleep for a result), read topics, and
draw addresses that no other test of the run uses."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.config import KafkaSettings
from shared.events import AnyEvent, parse_event

T = TypeVar("T")

_SEQUENCES: dict[int, Iterator[int]] = {}


def fresh(space: int) -> int:
    """A number in ``range(space)`` not handed out before in this process (until ``space`` of them
    were): a counter from a random start. Tests build phone numbers from a few random digits and then
    ask the shared sandbox what reached a number; two tests (or two debtors of one test) drawing the
    same digits would each see the other's messages."""
    sequence = _SEQUENCES.get(space)
    if sequence is None:
        sequence = _SEQUENCES[space] = itertools.count(random.randrange(space))
    return next(sequence) % space


async def wait_for(
    condition: Callable[[], Any | Awaitable[Any]], timeout: float = 15.0, interval: float = 0.02, what: str = ""
) -> Any:
    """Poll ``condition`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s: {what or condition!r} (last={last!r})")


class TopicReader:
    """Reads every event published to some topics from the beginning, for assertions.

    Partitions are assigned directly (no consumer group), so there is no group-join delay.
    """

    def __init__(self, kafka: KafkaSettings, *topics: str) -> None:
        self.events: list[AnyEvent] = []
        self.raw: list[Any] = []
        self.topics = topics
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=kafka.bootstrap_servers,
            client_id=f"reader-{uuid.uuid4().hex[:8]}",
            enable_auto_commit=False,
            fetch_max_wait_ms=10,
        )
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> TopicReader:
        await self._consumer.start()
        partitions: list[TopicPartition] = []
        for topic in self.topics:
            found = await wait_for(lambda t=topic: self._consumer.partitions_for_topic(t), timeout=15,
                                   what=f"metadata for {topic}")
            partitions += [TopicPartition(topic, p) for p in sorted(found)]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)
        self._task = asyncio.create_task(self._pump())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        await self._consumer.stop()

    async def _pump(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=50)
            for records in batches.values():
                for record in records:
                    self.raw.append(record)
                    try:
                        self.events.append(parse_event(record.value))
                    except Exception:  # noqa: BLE001 - poison records are kept in .raw only
                        pass

    def of_type(self, type_: str) -> list[Any]:
        return [e for e in self.events if e.type == type_]

    async def wait_count(self, type_: str, count: int, timeout: float = 15.0) -> list[Any]:
        await wait_for(lambda: len(self.of_type(type_)) >= count, timeout, what=f"{count} x {type_}")
        return self.of_type(type_)
