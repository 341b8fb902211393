"""The consumer runner: decode → validate → handle → commit, with one error boundary.

* ``getmany`` batches, auto-commit off; offsets are committed per partition only after every
  record of the batch was handled (its effects durable) or dead-lettered. The commit runs while the
  next batch is fetched and its attempt recorded; none of that batch's records takes effect before
  it is done.
* A batch takes a share of every partition with records buffered (aiokafka alone drains one
  partition's buffer after another): a backlog on one topic never holds back another's records.
* Within a partition, records with different keys run concurrently (bounded); records with the
  same key — one debtor — run in order.
* **Batch mode** (``batch_handler``, docs/internals.md: batches): the records of a ``getmany`` batch that decode and
  validate go to the batch handler together, every partition's in offset order, as one unit of work
  (one transaction). When the batch handler fails for anything but a transient error, the batch is
  handled again record by record through ``handler``, so a poison record is isolated and
  dead-lettered exactly as in record mode and its neighbours still apply. A batch handler must
  therefore be all-or-nothing, and ``handler`` must give the same result for each record.
* Invalid input (undecodable, failing validation, unexpected type, ``PermanentError``) goes to
  the DLQ with the reason; transient failures are retried with backoff and never dead-lettered;
  anything else is retried a few times, then dead-lettered so one bad record cannot stall a
  partition forever.
* A rebalance listener waits for the in-flight batch and commits what is done before giving
  partitions up; ``stop()`` finishes the in-flight batch, commits and closes. Nothing is committed
  while the consumer is not a member of the group's current generation (an expired session, a
  broker restarted empty): the broker would take it as a standalone consumer's commit
  (:func:`shared.bus.commits.commit_only_as_member`). Nor is anything handled that a broker
  other than the one the runner started on served: the runner fails with ``BrokerChanged`` instead,
  before any effect, and its process restarts on the new broker.
* A consumer whose polls find nothing long-polls ``kafka.quiet_fetch_max_wait_ms`` until records
  come again, then ``kafka.fetch_max_wait_ms``: an idle consumer is cheap, a busy one quick.
* While records flow, a batch consumer whose fetch is small lingers ``kafka.batch_linger_ms`` (100 ms)
  for the records that follow, so a steady stream does not pay each batch's fixed work every few
  records; a record after a pause goes at once.
* A consumer that wants only some event types right now (``wanted_types``, asked once a batch: the
  webhooks consumer with no endpoint subscribed) passes over the records whose ``ce_type`` header
  names a known type it does not want, unread; a record without that header, or naming no known
  type, is read and validated as always (poison in it is dead-lettered).
* Records over ``kafka.max_event_bytes`` are dead-lettered unread; dead letters are bounded
  (:mod:`shared.bus.deadletter`), so publishing one can never fail for its size.
* The runner never dies silently: an exception escaping its loop is logged with its traceback and
  the records in hand, ``ping`` fails (not ready) and ``on_fatal`` is called (a served process exits
  non-zero so its supervisor restarts it). With a :class:`CrashLog`, each partition batch counts
  its attempts in the service database before it is handled; a batch that did not finish (the
  process crashed or was killed) is retried one record at a time, and a record that crashed the
  consumer ``kafka.max_crash_attempts`` times when handled alone is dead-lettered instead of
  handled again.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from shared.bus.commits import OffsetCommits, commit_only_as_member
from shared.bus.deadletter import PayloadKeeper, dead_letter
from shared.bus.metrics import ConsumerMetrics
from shared.bus.producer import BrokerChanged, ClusterCheck, EventProducer, read_cluster
from shared.config import KafkaSettings
from shared.db.database import connection_lost
from shared.db.sqlite_cursor import on_the_loop
from shared.events import AnyEvent, CloudEvent, parse_event
from shared.events.topics import TOPIC_OF_TYPE, Topics
from shared.logging import get_logger
from shared.tracing import context_of, continued

log = get_logger(__name__)


class PermanentError(Exception):
    """The event can never be applied (bad data the schema could not catch): dead-letter it."""


class TransientError(Exception):
    """A dependency is down; retry the same event until it works (never dead-letter)."""


@dataclass(frozen=True)
class RecordMeta:
    topic: str
    partition: int
    offset: int
    key: bytes | None


Handler = Callable[[AnyEvent, RecordMeta], Awaitable[None]]
#: One unit of work over a consumer batch: every item or none of them takes effect.
BatchHandler = Callable[[Sequence[tuple[AnyEvent, RecordMeta]]], Awaitable[None]]


@contextlib.contextmanager
def event_scope(event: CloudEvent) -> Iterator[None]:
    """Logs and traces of the block belong to ``event``: its ids bound to the log context, its trace
    current (so what the block stages on the outbox continues it). Batch handlers enter it per event."""
    # Bound and reset by token (as ``tracing.continued``): ``bound_contextvars`` copies the whole log
    # context to find what to restore, and this runs for every event of every batch.
    bound = structlog.contextvars.bind_contextvars(
        event_id=event.id, event_type=event.type, correlation_id=event.correlationid or event.id
    )
    try:
        with continued(context_of(event)):
            yield
    finally:
        structlog.contextvars.reset_contextvars(**bound)


class CrashLog(Protocol):
    """Durable attempt counts per partition (``shared.db.attempts.ConsumerAttempts``)."""

    async def begin(self, group: str, topic: str, partition: int, offset: int, alone: bool = False) -> int:
        """Record an attempt at the records from ``offset`` (a batch), or at that record ``alone``.

        A batch gets 1 when nothing crashed there before; a record alone, its attempts alone."""

    async def begin_batch(self, group: str, firsts: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
        """:meth:`begin` for the batches of several partitions (``(topic, partition) → first offset``)
        at once; their counts by partition."""

    async def forget(self, group: str, partitions: list[tuple[str, int]]) -> None:
        """An attempt ended without a crash (a clean shutdown): do not count it."""

    async def keep_only(self, group: str, key: str) -> None:
        """Drop the counts ``group`` kept under any other key than ``key`` (another cluster's)."""


def crash_key(group_id: str, cluster_id: str | None) -> str:
    """The crash log's key for a group's attempts on one cluster: offsets mean something only on the
    cluster that gave them (a broker restarted empty numbers its records from 0 again)."""
    return f"{group_id[:150]}@{cluster_id[:49]}" if cluster_id else group_id[:200]


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: ConsumerRunner) -> None:
        self.runner = runner

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # Wait for the batch in flight, then commit what it finished before the partitions move.
        async with self.runner._batch_lock:
            await self.runner._commits.commit(set(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.runner.assignments += 1
        log.info("partitions assigned", consumer=self.runner.name, count=len(assigned))


class ConsumerRunner:
    def __init__(
        self,
        *,
        name: str,
        service: str,
        topics: list[str],
        group_id: str,
        kafka: KafkaSettings,
        handler: Handler,
        producer: EventProducer,
        accept_types: set[str] | None = None,
        max_attempts: int = 5,
        retry_base: float = 0.05,
        retry_cap: float = 5.0,
        auto_offset_reset: str = "earliest",
        crash_log: CrashLog | None = None,
        keep_payload: PayloadKeeper | None = None,
        on_fatal: Callable[[BaseException], None] | None = None,
        batch_handler: BatchHandler | None = None,
        idle: bool = False,
        wanted_types: Callable[[], Awaitable[frozenset[str] | None]] | None = None,
    ) -> None:
        self.name, self.service, self.topics, self.group_id = name, service, topics, group_id
        self.kafka, self.handler, self.producer = kafka, handler, producer
        self.batch_handler = batch_handler
        #: Batches the batch handler applied whole, and those handled again record by record.
        self.batches = 0
        self.batch_fallbacks = 0
        self.accept_types = accept_types
        #: Asked once a batch: the event types the handler wants now (None: all of them).
        self.wanted_types = wanted_types
        #: Records passed over unread because their header named a type the handler did not want.
        self.passed_over = 0
        self.max_attempts, self.retry_base, self.retry_cap = max_attempts, retry_base, retry_cap
        self.dlq_topic = Topics(kafka.topic_prefix).dlq
        self.crash_log, self.keep_payload, self.on_fatal = crash_log, keep_payload, on_fatal
        #: Dead letters carry the whole record up to half the event limit: with base64 and the
        #: envelope a letter stays under the limit, so the DLQ consumer can read it back.
        self.inline_bytes = kafka.max_event_bytes // 2
        #: Why the runner stopped, when it crashed.
        self.failure: BaseException | None = None
        self._in_hand: dict[tuple[str, int], int] = {}
        # ``idle``: a topic of rare records whose latency does not matter (dead letters) long-polls longer.
        self._fetch_wait_ms = max(kafka.fetch_max_wait_ms, kafka.idle_fetch_max_wait_ms if idle else 0)
        self._quiet_wait_ms = kafka.quiet_fetch_max_wait_ms
        self._quieted = False
        self._linger_s, self._linger_below = kafka.batch_linger_ms / 1000, kafka.batch_linger_below
        self._flowing_s = kafka.batch_linger_flowing_ms / 1000
        self._records_at = -float("inf")  # loop time of the last fetch that brought records
        self._max_records = kafka.max_poll_records_for(name)
        self._next_partition = 0
        #: The cluster the runner started on, confirmed before its fetches are handled and its commits sent.
        self._cluster: ClusterCheck | None = None
        #: The crash log's key for this group on the cluster the runner started on (:func:`crash_key`).
        self.crash_group = group_id
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=kafka.bootstrap_servers,
            group_id=group_id,
            client_id=f"{kafka.client_id}-{name}",
            enable_auto_commit=False,
            auto_offset_reset=auto_offset_reset,
            fetch_max_wait_ms=self._fetch_wait_ms,
            max_poll_records=self._max_records,
            max_poll_interval_ms=kafka.max_poll_interval_ms,
            session_timeout_ms=kafka.session_timeout_ms,
            heartbeat_interval_ms=kafka.heartbeat_interval_ms,
            request_timeout_ms=kafka.request_timeout_ms,
        )
        self._batch_lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sem = asyncio.Semaphore(max(1, kafka.partition_concurrency))
        self.handled = 0
        self.dead_lettered = 0
        #: Times the group gave this member partitions: 1 while it keeps its place, more after a rebalance.
        self.assignments = 0
        #: What the batches finished, committed after them (in the background, before the next takes effect).
        self._commits = OffsetCommits(self._consumer, name)
        #: Batch sizes and lag; a service registers it on its ``/metrics`` registry.
        self.metrics = ConsumerMetrics(name, self._consumer)

    async def start(self) -> None:
        await self._consumer.start()
        cluster_id, _ = await read_cluster(self._consumer._client, ())
        self._cluster = ClusterCheck(self._consumer._client, cluster_id)
        commit_only_as_member(self._consumer, self._cluster)
        self.crash_group = crash_key(self.group_id, cluster_id)
        if self.crash_log is not None:
            await self.crash_log.keep_only(self.group_id, self.crash_group)
        self._consumer.subscribe(self.topics, listener=_Listener(self))
        self._task = asyncio.create_task(self._run(), name=f"consumer-{self.name}")

    async def stop(self) -> None:
        """Finish the batch in flight, commit it, leave the group."""
        self._stopping.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()

    async def ping(self) -> None:
        if self.failure is not None:
            raise RuntimeError(f"consumer {self.name} crashed: {_short(self.failure)}")
        if self._task is not None and self._task.done():
            raise RuntimeError(f"consumer {self.name} stopped")

    @property
    def assignment(self) -> set[TopicPartition]:
        return set(self._consumer.assignment())

    async def _run(self) -> None:
        try:
            await self._loop()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            in_hand = self._coordinates()
            if self._stopping.is_set():
                # Shutting down mid-retry: the records stay uncommitted for the next owner.
                log.info("consumer stopped with records unfinished", consumer=self.name, records=in_hand)
                if self.crash_log is not None:
                    await self.crash_log.forget(self.crash_group, list(self._in_hand))
                return
            self.failure = exc
            if isinstance(exc, BrokerChanged):
                log.error("the broker is another cluster; handling nothing it serves", consumer=self.name,
                          records=in_hand, error=str(exc))
            else:
                log.exception("consumer crashed", consumer=self.name, group=self.group_id, records=in_hand,
                              error=_short(exc))
            if self.on_fatal is not None:
                self.on_fatal(exc)

    def _coordinates(self) -> list[str]:
        return [f"{topic}/{partition}@{offset}" for (topic, partition), offset in sorted(self._in_hand.items())]

    async def _loop(self) -> None:
        try:
            await self._poll()
        finally:
            await self._commits.settled(quiet=True)

    async def _poll(self) -> None:
        while not self._stopping.is_set():
            try:
                batches = await self._fetch()
            except KafkaError as exc:
                log.warning("fetch failed", consumer=self.name, error=str(exc))
                await asyncio.sleep(0.5)
                continue
            if not batches:
                self._quiet(True)
                continue
            self._quiet(False)
            # Linger only while records flow: a record after a pause (one request, a test's event)
            # goes at once; a stream of them shares each batch's fixed work.
            now = asyncio.get_running_loop().time()
            flowing, self._records_at = now - self._records_at < self._flowing_s, now
            if self.batch_handler is not None and self._linger_s and flowing:
                await self._fill(batches)
            if not await self._same_cluster():
                return  # stopping while the broker was away: the records stay uncommitted
            self.metrics.batch(batches)
            # A batch's statements are short and indexed: on SQLite they run on this thread.
            with on_the_loop():
                await self._handle(batches)

    async def _handle(self, batches: dict[TopicPartition, list[Any]]) -> None:
        async with self._batch_lock:
            if self.batch_handler is not None:
                await self._as_batch(batches)
            else:
                await asyncio.gather(*(self._partition(tp, records) for tp, records in batches.items()))
            self._commits.commit_soon()
            self._in_hand.clear()

    async def _same_cluster(self) -> bool:
        """Whether the records in hand come from the cluster the runner started on; raises
        :class:`BrokerChanged` when they may not.

        A broker restarted empty on the same address (the embedded one) is another cluster: the
        consumer rejoins it and reads its topics from the start, and the records there — another
        process's fresh dispatches — must be handled by a process that starts afresh on it, not by
        this one, which the topic guard restarts within seconds (a send in flight then would end
        ``unknown``). Asked only when the client's connections changed since the cluster was last
        confirmed (:class:`~shared.bus.producer.ClusterCheck`), so a steady consumer pays nothing.
        While the broker does not answer, the records wait in hand (their positions are taken): False
        only when the runner is stopped meanwhile."""
        if self._cluster is None:
            return True
        delay = self.retry_base
        while not self._stopping.is_set():
            try:
                other = await self._cluster.other()
            except (KafkaError, OSError) as exc:
                log.warning("cannot confirm the broker of the records in hand; retrying", consumer=self.name,
                            error=_short(exc))
                await asyncio.sleep(delay)
                delay = min(self.retry_cap, delay * 2)
                continue
            if other is not None:
                raise BrokerChanged(f"the broker is another cluster ({other!r}; started on "
                                    f"{self._cluster.cluster_id!r})")
            return True
        return False

    async def _fetch(self) -> dict[TopicPartition, list[Any]]:
        """A batch with a share of every partition that has records buffered, ``max_poll_records`` in all.

        aiokafka's ``getmany`` drains its buffered partitions one after another, and refetches a
        partition only once its buffer is empty: behind a backlog on one topic (a morning's contact
        requests, up to ``max_partition_fetch_bytes`` buffered per partition) the records of another
        (their delivery outcomes) waited until the whole backlog was through, and a consumer that
        reads several topics worked through them one at a time. Taken in rounds of an equal share per
        partition, starting each batch one partition further on, every partition with records moves
        in every batch. Order within a partition is kept: each round takes the records that follow.
        With nothing buffered it waits for the first records as before."""
        consumer, budget = self._consumer, self._max_records
        partitions = sorted(consumer.assignment())
        if len(partitions) > 1:
            start = self._next_partition % len(partitions)
            self._next_partition += 1
            partitions = partitions[start:] + partitions[:start]
            batches: dict[TopicPartition, list[Any]] = {}
            while budget > 0:
                share, taken = max(1, budget // len(partitions)), 0
                for tp in partitions:
                    got = (await consumer.getmany(tp, timeout_ms=0, max_records=min(share, budget))).get(tp)
                    if got:
                        batches.setdefault(tp, []).extend(got)
                        taken += len(got)
                        budget -= len(got)
                        if budget <= 0:
                            break
                if not taken:
                    break
            if batches:
                return batches
        waited: dict[TopicPartition, list[Any]] = await consumer.getmany(timeout_ms=100,
                                                                          max_records=self._max_records)
        return waited

    async def _fill(self, batches: dict[TopicPartition, list[Any]]) -> None:
        """A small fetch takes the records that come within ``kafka.batch_linger_ms`` of it, until it
        holds ``kafka.batch_linger_below``: per partition, the records that follow the ones in hand
        (aiokafka's positions), so each partition's order is kept."""
        count = sum(len(records) for records in batches.values())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._linger_s
        # A batch never grows past ``max_poll_records`` (which may be below ``batch_linger_below``).
        wanted = min(self._linger_below, self._max_records)
        while count < wanted and (left := deadline - loop.time()) > 0:
            try:
                more = await self._consumer.getmany(timeout_ms=max(1, int(left * 1000)),
                                                    max_records=self._max_records - count)
            except KafkaError:
                return  # the records in hand are handled; the next poll reports the failure
            for tp, records in more.items():
                batches.setdefault(tp, []).extend(records)
                count += len(records)

    def _quiet(self, quiet: bool) -> None:
        """Long-poll ``kafka.quiet_fetch_max_wait_ms`` while polls find nothing, the configured wait
        again once records come. aiokafka reads its fetcher's wait for each fetch it sends; the
        attribute is private (no public setter): without it, the wait stays as configured."""
        if quiet == self._quieted or self._quiet_wait_ms <= self._fetch_wait_ms:
            return
        fetcher = getattr(self._consumer, "_fetcher", None)
        if fetcher is None or not hasattr(fetcher, "_fetch_max_wait_ms"):
            return
        fetcher._fetch_max_wait_ms = self._quiet_wait_ms if quiet else self._fetch_wait_ms
        self._quieted = quiet

    async def _as_batch(self, batches: dict[TopicPartition, list[Any]]) -> None:
        """Batch mode: one call of the batch handler for every partition's admitted records."""
        assert self.batch_handler is not None
        whole: list[tuple[TopicPartition, list[Any]]] = []
        firsts = {(tp.topic, tp.partition): records[0].offset for tp, records in batches.items()}
        self._in_hand.update(firsts)
        # Every partition's attempt recorded in one transaction, before any of them is handled.
        attempts = await self._begin_batch(firsts) if self.crash_log is not None else {}
        await self._commits.settled()  # the previous batch's commit, before any effect of this one
        for tp, records in batches.items():
            attempt = attempts.get((tp.topic, tp.partition), 1)
            if attempt > 1:  # this partition's batch crashed the process before: isolate the culprit
                await self._one_by_one(tp, records, attempt)
                continue
            whole.append((tp, records))
        items: list[tuple[CloudEvent, RecordMeta, Any]] = []
        wanted = await self._wanted() if self.wanted_types is not None and whole else None
        for _tp, records in whole:
            for record in records:
                if wanted is not None and _unwanted(record, wanted):
                    self.passed_over += 1
                    continue
                event = await self._admit(record)
                if event is not None:
                    items.append((event, RecordMeta(record.topic, record.partition, record.offset, record.key), record))
        if items and not await self._batch_with_retries(items):
            self.batch_fallbacks += 1
            by_key: dict[bytes | None, list[tuple[CloudEvent, RecordMeta, Any]]] = defaultdict(list)
            for item in items:
                by_key[item[2].key].append(item)

            async def run_key(group: list[tuple[CloudEvent, RecordMeta, Any]]) -> None:
                async with self._sem:
                    for event, meta, record in group:
                        self._in_hand[(record.topic, record.partition)] = record.offset
                        with event_scope(event):
                            await self._handle_with_retries(event, meta, record)

            await asyncio.gather(*(run_key(group) for group in by_key.values()))
        for tp, records in whole:
            self._commits.done[tp] = records[-1].offset + 1

    async def _wanted(self) -> frozenset[str] | None:
        """The handler's wanted types for this batch; all of them when it cannot say (its database is
        away: the handler meets the same failure and retries it as it always did)."""
        assert self.wanted_types is not None
        try:
            return await self.wanted_types()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("cannot tell which event types are wanted; reading every record", consumer=self.name,
                        error=_short(exc))
            return None

    async def _batch_with_retries(self, items: list[tuple[CloudEvent, RecordMeta, Any]]) -> bool:
        """Apply ``items`` through the batch handler; False when it must be handled record by record."""
        assert self.batch_handler is not None
        attempt = 0
        while True:
            attempt += 1
            try:
                await self.batch_handler([(event, meta) for event, meta, _ in items])  # type: ignore[misc]
                self.handled += len(items)
                self.batches += 1
                return True
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not _transient(exc):
                    log.warning("batch failed; handling its records one by one", consumer=self.name,
                                records=len(items), error=_short(exc))
                    return False
                if self._stopping.is_set():
                    raise  # shutting down: the records stay uncommitted for the next owner
                delay = min(self.retry_cap, self.retry_base * 2 ** min(attempt, 10)) * random.uniform(0.5, 1)
                log.warning("batch failed; retrying", consumer=self.name, attempt=attempt, error=_short(exc))
                await asyncio.sleep(delay)

    async def _partition(self, tp: TopicPartition, records: list[Any]) -> None:
        self._in_hand[(tp.topic, tp.partition)] = records[0].offset
        if self.crash_log is not None:
            attempt = await self._begin(tp, records[0].offset)
            if attempt > 1:
                await self._one_by_one(tp, records, attempt)
                return
        await self._commits.settled()  # the previous batch's commit, before any effect of this one
        by_key: dict[bytes | None, list[Any]] = defaultdict(list)
        for record in records:
            by_key[record.key].append(record)

        async def run_key(group: list[Any]) -> None:
            async with self._sem:
                for record in group:
                    await self._record(record)

        await asyncio.gather(*(run_key(group) for group in by_key.values()))
        self._commits.done[tp] = records[-1].offset + 1

    async def _begin(self, tp: TopicPartition, offset: int, alone: bool = False) -> int:
        """The crash log's attempt count for the records from ``offset``; its write is retried while
        the database is away (a lost connection is no crash of this consumer)."""
        assert self.crash_log is not None
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self.crash_log.begin(self.crash_group, tp.topic, tp.partition, offset, alone=alone)
            except Exception as exc:
                if not _transient(exc) or self._stopping.is_set():
                    raise
                log.warning("crash log write failed; retrying", consumer=self.name, error=_short(exc))
                await asyncio.sleep(min(self.retry_cap, self.retry_base * 2 ** min(attempt, 10)))

    async def _begin_batch(self, firsts: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
        """:meth:`_begin` for every partition of a fetch, in one write (retried the same way)."""
        assert self.crash_log is not None
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self.crash_log.begin_batch(self.crash_group, firsts)
            except Exception as exc:
                if not _transient(exc) or self._stopping.is_set():
                    raise
                log.warning("crash log write failed; retrying", consumer=self.name, error=_short(exc))
                await asyncio.sleep(min(self.retry_cap, self.retry_base * 2 ** min(attempt, 10)))

    async def _one_by_one(self, tp: TopicPartition, records: list[Any], attempt: int) -> None:
        """After a crash: find the record that caused it by committing after each one; a record that
        crashed the consumer while handled alone is dead-lettered on its next attempt."""
        assert self.crash_log is not None
        await self._commits.settled()  # the previous batch's commit, before any effect of these records
        log.warning("records crashed this consumer before; handling them one at a time", consumer=self.name,
                    topic=tp.topic, partition=tp.partition, offset=records[0].offset, attempt=attempt)
        for record in records:
            self._in_hand[(tp.topic, tp.partition)] = record.offset
            alone = await self._begin(tp, record.offset, alone=True)
            if alone > self.kafka.max_crash_attempts:
                await self._dead_letter(
                    record, f"crashed the consumer {alone - 1} time(s) when handled alone (the process died or "
                    "failed while handling it)"
                )
            else:
                await self._record(record)
            self._commits.done[tp] = record.offset + 1
            await self._commits.commit({tp})

    async def _admit(self, record: Any) -> CloudEvent | None:
        """The record's event, or None when it was dead-lettered (too large, undecodable, unexpected)."""
        self._in_hand[(record.topic, record.partition)] = record.offset
        size = len(record.value or b"")
        if size > self.kafka.max_event_bytes:
            await self._dead_letter(record, f"event too large: {size} bytes; the limit is {self.kafka.max_event_bytes}")
            return None
        try:
            event = parse_event(record.value)
        except (ValidationError, orjson.JSONDecodeError, UnicodeDecodeError, TypeError) as exc:
            await self._dead_letter(record, f"invalid event: {_short(exc)}")
            return None
        if self.accept_types is not None and event.type not in self.accept_types:
            await self._dead_letter(record, f"unexpected event type {event.type!r} on {record.topic}")
            return None
        return event

    async def _record(self, record: Any) -> None:
        meta = RecordMeta(record.topic, record.partition, record.offset, record.key)
        event = await self._admit(record)
        if event is None:
            return
        with event_scope(event):  # what the handler publishes continues this event's trace
            await self._handle_with_retries(event, meta, record)

    async def _handle_with_retries(self, event: CloudEvent, meta: RecordMeta, record: Any) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                await self.handler(event, meta)  # type: ignore[arg-type]
                self.handled += 1
                return
            except (PermanentError, ValidationError) as exc:
                await self._dead_letter(record, f"rejected by handler: {_short(exc)}")
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                transient = _transient(exc)
                if not transient and attempt >= self.max_attempts:
                    log.error("handler failed; dead-lettering", consumer=self.name, error=_short(exc))
                    await self._dead_letter(record, f"handler failed {attempt} times: {_short(exc)}")
                    return
                delay = min(self.retry_cap, self.retry_base * 2 ** min(attempt, 10)) * random.uniform(0.5, 1)
                log.warning("handler failed; retrying", consumer=self.name, attempt=attempt, error=_short(exc))
                if self._stopping.is_set() and transient:
                    # Shutting down: leave the record uncommitted for the next owner.
                    raise
                await asyncio.sleep(delay)

    async def _dead_letter(self, record: Any, reason: str) -> None:
        letter = dead_letter(record, reason, self.service, self.inline_bytes)
        if self.keep_payload is not None:
            await self.keep_payload(letter, record.value or b"")
        await self.producer.publish(self.dlq_topic, letter)
        self.dead_lettered += 1
        log.warning("dead-lettered", consumer=self.name, topic=record.topic, partition=record.partition,
                    offset=record.offset, size=letter.data.size, reason=reason[:500])


def _transient(exc: BaseException) -> bool:
    """A dependency is away (the broker, the database connection): the same work is retried."""
    return isinstance(exc, TransientError | ConnectionError | OSError | TimeoutError) or connection_lost(exc)


def _unwanted(record: Any, wanted: frozenset[str]) -> bool:
    """Whether the record's ``ce_type`` header names a known event type that is not ``wanted``."""
    for key, value in record.headers or ():
        if key == "ce_type":
            try:
                kind = value.decode() if isinstance(value, bytes) else None
            except UnicodeDecodeError:
                return False
            return kind in TOPIC_OF_TYPE and kind not in wanted
    return False


def _short(exc: BaseException) -> str:
    text = str(exc).replace("\n", "; ")
    return f"{type(exc).__name__}: {text[:1500]}"
