"""Offset commits only from the group member and cluster a consumer joined (a broker restarted empty
must never receive the old broker's positions)."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import UnknownMemberIdError

from shared.bus.producer import ConnectionWatch, read_cluster


def commit_only_as_member(consumer: AIOKafkaConsumer, cluster_id: str | None) -> None:
    """Refuse every offset commit, aiokafka's own retries included, made outside the group's current
    generation or to another cluster than ``cluster_id`` (the one the consumer started on).

    A commit that waited out a broker outage is sent to whatever broker comes back. aiokafka resets
    the generation to -1 when the coordinator does not know the member and still sends the commit,
    which a broker takes as a standalone consumer's when the group is empty; a broker restarted
    empty (Tansu) even takes the old member's commit. Positions read from the old broker would land
    on the new one and the records before them would never be read. Refused, the commit fails as
    after a rebalance (``CommitFailedError``) and the next owner re-reads (the inboxes dedupe). The
    coordinator is private to aiokafka (no public hook): without it, nothing is changed.

    The cluster is asked (a metadata request) only when the consumer's connections changed since it
    last answered ``cluster_id`` (:class:`ConnectionWatch`): over the same open connections the
    commit can only reach the broker that answered. Nothing is awaited between that check and the
    commit's send, so the connection the commit goes out on is the one checked."""
    coordinator = getattr(consumer, "_coordinator", None)
    send = getattr(coordinator, "_do_commit_offsets", None)
    client = getattr(consumer, "_client", None)
    if coordinator is None or send is None or client is None:
        return

    watch = ConnectionWatch(client)

    async def as_member(assignment: Any, offsets: Any) -> Any:
        if coordinator.generation < 0:
            raise UnknownMemberIdError("not a member of the group's current generation; not committing")
        if not watch.unchanged():
            now, _ = await read_cluster(client, ())
            if cluster_id is not None and now is not None and now != cluster_id:
                watch.forget()
                raise UnknownMemberIdError(f"the broker is another cluster ({now!r}); not committing")
            watch.mark()
            if coordinator.generation < 0:  # lost while the broker answered
                raise UnknownMemberIdError("not a member of the group's current generation; not committing")
        return await send(assignment, offsets)

    coordinator._do_commit_offsets = as_member
