"""``ConnectionWatch``, which lets the relay and the commit guard skip the cluster check while the
client talks over the very connections it had when the cluster was confirmed."""

from __future__ import annotations

from aiokafka import AIOKafkaClient

from shared.bus.producer import ConnectionWatch, read_cluster
from shared.config import KafkaSettings


async def test_the_same_open_connections_are_unchanged_and_any_closed_or_new_one_is_not(
    kafka_settings: KafkaSettings,
) -> None:
    client = AIOKafkaClient(bootstrap_servers=kafka_settings.bootstrap_servers)
    await client.bootstrap()
    try:
        watch = ConnectionWatch(client)
        assert not watch.unchanged()  # never confirmed
        await read_cluster(client, ())
        watch.mark()
        assert watch.unchanged()
        await read_cluster(client, ())  # more requests over the same connections
        assert watch.unchanged()

        # A connection closed (as when the broker process dies): what follows may reach another broker.
        (conn,) = client._conns.values()
        conn.close()
        assert not watch.unchanged()
        await read_cluster(client, ())  # reconnects: a new connection, never the one marked
        assert not watch.unchanged()
        watch.mark()
        assert watch.unchanged()

        watch.forget()
        assert not watch.unchanged()
    finally:
        await client.close()
