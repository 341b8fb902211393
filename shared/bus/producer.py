"""One producer per process: batched (``linger_ms``), acks from all replicas, JSON via orjson.

The producer remembers the cluster it started on (the cluster id of the metadata, v2+).
:meth:`EventProducer.confirm` tells whether the broker it reaches now is still that cluster and
still has Cadencia's topics it had then: a broker restarted empty acknowledges writes to topics it
does not have (Tansu does, and loses them) or auto-creates them with its default partitions (Apache
Kafka), so the outbox relay confirms before it publishes and again before it deletes what it
published (``shared.db.outbox``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from aiokafka.protocol.metadata import MetadataRequest

from shared.config import KafkaSettings
from shared.events import CloudEvent, encode_event
from shared.events.topics import Topics
from shared.tracing import stamped


async def read_cluster(client: Any, topics: Iterable[str] | None = None) -> tuple[str | None, set[str]]:
    """The cluster id (None below metadata v2) of the broker an aiokafka ``client`` reaches now, and
    which of ``topics`` it has (every topic when None), with a metadata request that creates none."""
    node = client.get_random_node()
    if node is None:
        raise KafkaConnectionError("no broker known")
    names = sorted(topics) if topics is not None else None
    response = await client.send(node, MetadataRequest(names, allow_auto_topic_creation=False))
    present = {topic[1] for topic in response.topics if topic[0] == 0}
    return getattr(response, "cluster_id", None), present


class ConnectionWatch:
    """Whether an aiokafka client still talks over the very connections it had when the cluster was
    last confirmed (:meth:`mark`), each still open.

    A broker restarted on the same address is reached only over a new connection: an open TCP
    connection cannot pass to another process. So while every connection is the one marked and still
    open, what the client sends or reads goes to the broker processes that were confirmed, and the
    confirming metadata request can be skipped; any new, closed or dropped connection means asking
    again. The connections are private to aiokafka (no public hook): without them, always ask."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._seen: dict[Any, Any] | None = None

    def _connections(self) -> dict[Any, Any] | None:
        conns = getattr(self._client, "_conns", None)
        return conns if isinstance(conns, dict) else None

    def mark(self) -> None:
        """The cluster was just confirmed over the connections the client has now."""
        conns = self._connections()
        ok = conns is not None and all(_open(conn) for conn in conns.values())
        self._seen = dict(conns) if ok and conns is not None else None

    def forget(self) -> None:
        self._seen = None

    def unchanged(self) -> bool:
        """Every connection is the one seen at :meth:`mark`, still open, and none was added."""
        conns, seen = self._connections(), self._seen
        if conns is None or seen is None or conns.keys() != seen.keys():
            return False
        return all(conn is seen[key] and _open(conn) for key, conn in conns.items())


class ClusterCheck:
    """Whether an aiokafka client still reaches the cluster it started on (``cluster_id``): a metadata
    request only when its connections changed since the cluster last answered (:class:`ConnectionWatch`).

    One per consumer, shared by its fetches (the runner) and its offset commits
    (:func:`shared.bus.commits.commit_only_as_member`)."""

    def __init__(self, client: Any, cluster_id: str | None) -> None:
        self.client, self.cluster_id = client, cluster_id
        self._watch = ConnectionWatch(client)
        self._watch.mark()

    async def other(self) -> str | None:
        """The id of the other cluster the client reaches now, or None when it is the one it started on
        (or either id is unknown). Raises the broker's ``KafkaError`` when it does not answer."""
        if self._watch.unchanged():
            return None
        now, _ = await read_cluster(self.client, ())
        if self.cluster_id is not None and now is not None and now != self.cluster_id:
            self._watch.forget()
            return now
        self._watch.mark()
        return None


def _open(conn: Any) -> bool:
    connected = getattr(conn, "connected", None)
    return bool(connected()) if callable(connected) else False


class BrokerChanged(RuntimeError):
    """The broker reached now is not the cluster this process started on, or lacks our topics."""


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
        #: The cluster id seen at start (None when the broker does not tell, metadata < v2).
        self.cluster_id: str | None = None
        #: Cadencia's topics the broker had at start: a broker without one of them lost it.
        self.known_topics: set[str] = set()
        #: Topics the last confirmation found, and whether the broker reached since is still that one.
        self._confirmed: set[str] = set()
        self._watch = ConnectionWatch(self._producer.client)

    async def start(self) -> None:
        await self._producer.start()
        self._started = True
        self.cluster_id, self.known_topics = await self.cluster(Topics(self.settings.topic_prefix).all())
        self._confirmed = set(self.known_topics)
        self._watch.mark()

    async def stop(self) -> None:
        """Flush and close; a producer that was never started is closed too (aiokafka warns of an
        unclosed one when it is collected)."""
        if self._started:
            await self._producer.flush()
            self._started = False
        await self._producer.stop()

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
        return (await self.cluster())[1]

    async def cluster(self, topics: Iterable[str] | None = None) -> tuple[str | None, set[str]]:
        """The cluster id of the broker reached now, and which of ``topics`` it has (every topic when
        None): one metadata request that creates no topic (aiokafka's own requests may)."""
        return await read_cluster(self._producer.client, topics)

    def changed(self, cluster_id: str | None) -> bool:
        """Whether ``cluster_id`` is another cluster than the one this producer started on."""
        return self.cluster_id is not None and cluster_id is not None and cluster_id != self.cluster_id

    async def confirm(self, topics: Iterable[str]) -> set[str]:
        """The topics of ``topics`` the broker does not have; raises :class:`BrokerChanged` when the
        broker is not the cluster this producer started on or lost a topic it had then, and the
        broker's KafkaError when it cannot be reached.

        Asks the broker (a metadata request) unless every topic of ``topics`` was there at the last
        confirmation and the producer still talks over the same open connections
        (:class:`ConnectionWatch`): then it is the same broker, which had them."""
        wanted = set(topics)
        if wanted <= self._confirmed and self._watch.unchanged():
            return set()
        self._watch.forget()
        cluster_id, present = await asyncio.wait_for(
            self.cluster(self.known_topics | wanted), timeout=self.settings.request_timeout_ms / 1000)
        if self.changed(cluster_id):
            raise BrokerChanged(f"the broker is another cluster ({cluster_id!r}; started on {self.cluster_id!r})")
        lost = sorted(self.known_topics - present)
        if lost:
            raise BrokerChanged(f"the broker lost {len(lost)} of our topics, e.g. {lost[0]} (a new, empty broker?)")
        self._confirmed = present
        self._watch.mark()
        return wanted - present

    async def ping(self) -> None:
        """Readiness: the cluster metadata can be fetched."""
        await asyncio.wait_for(self._producer.client.fetch_all_metadata(), timeout=5)
