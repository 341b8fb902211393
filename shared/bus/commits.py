"""A consumer runner's offset commits: what its batches finished, committed one commit at a time and
in order, in line or in the background; and only from the group member and cluster the consumer
joined (a broker restarted empty must never receive the old broker's positions)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError, UnknownMemberIdError
from aiokafka.structs import OffsetAndMetadata

from shared.bus.producer import ClusterCheck
from shared.logging import get_logger

log = get_logger(__name__)
Offsets = dict[TopicPartition, OffsetAndMetadata]


class OffsetCommits:
    """The next offset to commit per partition (``done``), committed after the commit in flight."""

    def __init__(self, consumer: AIOKafkaConsumer, name: str) -> None:
        self.consumer, self.name = consumer, name
        #: Partition → the offset after the last record whose effects are durable.
        self.done: dict[TopicPartition, int] = {}
        self._task: asyncio.Task[None] | None = None

    async def commit(self, only: set[TopicPartition] | None = None) -> None:
        """Commit what is done (of ``only``'s partitions), after the commit in flight."""
        await self.settled()
        await self._commit(self._take(only))

    def commit_soon(self) -> None:
        """Commit what is done in the background, after the commit in flight. The runner fetches the
        next batch and records its attempt meanwhile, and awaits :meth:`settled` before any of its
        records takes effect: a batch is still committed before the next one is handled."""
        offsets = self._take(None)
        if offsets:
            self._task = asyncio.create_task(self._after(self._task, offsets), name=f"commit-{self.name}")

    async def settled(self, quiet: bool = False) -> None:
        """Wait for the commit in flight; raises what it raised (``quiet``: logs it)."""
        task = self._task
        if task is None:
            return
        try:
            await asyncio.shield(task)
        except Exception as exc:
            if not quiet:
                raise
            log.warning("commit failed", consumer=self.name, error=f"{type(exc).__name__}: {exc}"[:500])
        if self._task is task:
            self._task = None

    async def _after(self, previous: asyncio.Task[None] | None, offsets: Offsets) -> None:
        if previous is not None:
            await previous
        await self._commit(offsets)

    def _take(self, only: set[TopicPartition] | None) -> Offsets:
        offsets = {tp: OffsetAndMetadata(offset, "") for tp, offset in self.done.items() if only is None or tp in only}
        for tp in offsets:
            del self.done[tp]
        return offsets

    async def _commit(self, offsets: Offsets) -> None:
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # The group moved on; whoever gets the partition re-reads and the inbox dedupes.
            log.warning("commit failed", consumer=self.name, error=str(exc))


def commit_only_as_member(consumer: AIOKafkaConsumer, cluster: ClusterCheck) -> None:
    """Refuse every offset commit, aiokafka's own retries included, made outside the group's current
    generation or to another cluster than the one the consumer started on (``cluster``).

    A commit that waited out a broker outage is sent to whatever broker comes back. aiokafka resets
    the generation to -1 when the coordinator does not know the member and still sends the commit,
    which a broker takes as a standalone consumer's when the group is empty; a broker restarted
    empty (Tansu) even takes the old member's commit. Positions read from the old broker would land
    on the new one and the records before them would never be read. Refused, the commit fails as
    after a rebalance (``CommitFailedError``) and the next owner re-reads (the inboxes dedupe). The
    coordinator is private to aiokafka (no public hook): without it, nothing is changed.

    The cluster is asked (a metadata request) only when the consumer's connections changed since it
    last answered (:class:`ClusterCheck`): over the same open connections the
    commit can only reach the broker that answered. Nothing is awaited between that check and the
    commit's send, so the connection the commit goes out on is the one checked."""
    coordinator = getattr(consumer, "_coordinator", None)
    send = getattr(coordinator, "_do_commit_offsets", None)
    if coordinator is None or send is None:
        return

    async def as_member(assignment: Any, offsets: Any) -> Any:
        if coordinator.generation < 0:
            raise UnknownMemberIdError("not a member of the group's current generation; not committing")
        other = await cluster.other()
        if other is not None:
            raise UnknownMemberIdError(f"the broker is another cluster ({other!r}); not committing")
        if coordinator.generation < 0:  # lost while the broker answered
            raise UnknownMemberIdError("not a member of the group's current generation; not committing")
        return await send(assignment, offsets)

    coordinator._do_commit_offsets = as_member
