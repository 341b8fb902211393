"""A minimal consuming service for process-level tests (crash, SIGTERM).

It applies each event once (inbox + an ``effects`` row in one transaction) through the real
ConsumerRunner. ``--hang-after ID`` makes it stop dead after committing the effects of event ID
but before the Kafka offset is committed, so the test can kill it in exactly that window.
``--die-on ACCOUNT`` makes the process die (``os._exit``, like an OOM kill) while handling the event
of that account, before its effects commit. Attempts are counted in the worker's database, and a
crashed consumer exits with status 70, as ``cadencia serve`` does.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from sqlalchemy import text

from shared.bus import ConsumerRunner, EventProducer, RecordMeta
from shared.config import DatabaseSettings, KafkaSettings
from shared.db import Database, first_time
from shared.db.attempts import ConsumerAttempts
from shared.db.migrate import upgrade
from shared.events import AnyEvent


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--hang-after", default="")
    parser.add_argument("--die-on", default="")
    args = parser.parse_args()

    kafka = KafkaSettings(bootstrap_servers=args.bootstrap, topic_prefix=args.prefix, fetch_max_wait_ms=10,
                          session_timeout_ms=6000, heartbeat_interval_ms=500)
    db = Database(DatabaseSettings(url=args.db))
    await upgrade(db, "worker")
    async with db.transaction() as session:
        await session.execute(
            text("CREATE TABLE IF NOT EXISTS effects (event_id VARCHAR(200), account_id VARCHAR(200))")
        )
    producer = EventProducer(kafka)
    await producer.start()
    hang = asyncio.Event()

    async def handle(event: AnyEvent, meta: RecordMeta) -> None:
        if args.die_on and getattr(event.data, "account_id", "") == args.die_on:
            print(f"DYING {meta.offset}", flush=True)
            os._exit(9)
        async with db.transaction() as session:
            if await first_time(session, "worker", event.id):
                await session.execute(
                    text("INSERT INTO effects (event_id, account_id) VALUES (:e, :a)"),
                    {"e": event.id, "a": getattr(event.data, "account_id", "")},
                )
        if event.id == args.hang_after:
            print(f"EFFECTS-DONE {event.id}", flush=True)
            await hang.wait()  # never set: the process is killed here, before the offset commit

    stop = asyncio.Event()
    fatal: list[BaseException] = []

    def on_fatal(exc: BaseException) -> None:
        fatal.append(exc)
        stop.set()

    runner = ConsumerRunner(name="worker", service="worker", topics=[args.topic], group_id=args.group,
                            kafka=kafka, handler=handle, producer=producer, crash_log=ConsumerAttempts(db),
                            on_fatal=on_fatal)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await runner.start()
    print("READY", flush=True)
    await stop.wait()
    await runner.stop()
    await producer.stop()
    await db.dispose()
    print(f"STOPPED handled={runner.handled}", flush=True)
    return 70 if fatal else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
