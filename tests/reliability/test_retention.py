"""Rows needed only for a while are pruned past their retention, without breaking de-duplication.

* The inbox, consumer attempts and webhook receipts of a channel database: old rows go in chunks, recent
  rows stay, ``cadencia_rows_pruned_total{table}`` counts them (SQLite and PostgreSQL).
* The orchestrator: a contact request redelivered inside the inbox's retention is still recognised after
  a pruning pass (nothing is dispatched twice); past the retention its inbox row goes, and status
  history goes after its own, much longer retention.
* A de-duplication retention not longer than the broker's is refused at start-up.
* Every table a service prunes is read through an index on its time column in the migrated schema,
  so a pass costs the rows it deletes, not the table's size (SQLite: the plan says so too).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import ValidationError
from sqlalchemy import Connection, func, inspect, select, text

import services.email.app
import services.orchestrator.app
import services.orchestrator.settings
import services.sms.app
import services.sms.settings
import services.voice.app
import services.whatsapp.app
from services.orchestrator.runtime.models import StatusHistoryRow
from shared.channels.lifespan import retention_targets as channel_retention_targets
from shared.channels.models import ProviderReceipt, receipts_target
from shared.config import DatabaseSettings, KafkaSettings, RetentionSettings
from shared.db import Database
from shared.db.attempts import ConsumerAttempt
from shared.db.inbox import InboxRecord
from shared.db.migrate import prepare_schema
from shared.db.retention import Pruner, PruneTarget, attempts_target, inbox_target
from tests.helpers import TopicReader, wait_for
from tests.messaging.test_metrics import sample
from tests.orchestrator.conftest import FakeClock, make_settings, request_event, running

DAY = timedelta(days=1)
STATUS = "cadencia.contact.status_changed.v1"
DISPATCHED = "cadencia.contact.dispatched.v1"


@pytest.mark.parametrize("name", ["inbox_days", "receipts_days"])
def test_a_deduplication_retention_not_longer_than_the_brokers_is_refused(name: str) -> None:
    with pytest.raises(ValidationError, match=f"retention.{name}"):
        services.sms.settings.Settings(env="test", retention={name: 7})  # the broker keeps 7 days by default
    with pytest.raises(ValidationError, match=f"retention.{name}"):
        services.sms.settings.Settings(env="test", retention={name: 20},
                                       kafka={"broker_retention_ms": int(25 * DAY.total_seconds() * 1000)})
    assert getattr(services.sms.settings.Settings(env="test", retention={name: 8}).retention, name) == 8


async def test_old_inbox_attempts_and_receipts_go_in_chunks_and_recent_rows_stay(database_url: str) -> None:
    db = Database(DatabaseSettings(url=database_url))
    await prepare_schema(db, "sms", services.sms.app.MIGRATIONS, migrate=True)
    now = datetime.now(UTC)
    retention = RetentionSettings(chunk_rows=2)  # 30 days for the inbox, attempts and receipts
    old, recent = now - 31 * DAY, now - 29 * DAY
    async with db.transaction() as session:
        for n in range(7):
            session.add(InboxRecord(consumer="sms.dispatch", event_id=f"old-{n}", processed_at=old - n * DAY))
        for n in range(3):
            session.add(InboxRecord(consumer="sms.dispatch", event_id=f"new-{n}", processed_at=recent))
        for n in range(5):
            session.add(ProviderReceipt(provider_id=f"SMold{n}", status="delivered", received_at=old))
        for n in range(2):
            session.add(ProviderReceipt(provider_id=f"SMnew{n}", status="delivered", received_at=recent))
        for n, at in enumerate((old, old, recent)):
            session.add(ConsumerAttempt(group_id="g", topic="t", partition=n, first_offset=0, attempts=1,
                                        alone_attempts=0, updated_at=at))
    registry = CollectorRegistry()
    pruner = Pruner(db, [inbox_target(retention), attempts_target(retention), receipts_target(retention)],
                    retention, registry=registry)
    try:
        deleted = await pruner.prune(now)
        assert deleted == {"inbox": 7, "consumer_attempts": 2, "provider_receipts": 5}
        assert await pruner.prune(now) == {"inbox": 0, "consumer_attempts": 0, "provider_receipts": 0}
        async with db.sessions() as session:
            assert sorted(await session.scalars(select(InboxRecord.event_id))) == ["new-0", "new-1", "new-2"]
            assert sorted(await session.scalars(select(ProviderReceipt.provider_id))) == ["SMnew0", "SMnew1"]
            assert list(await session.scalars(select(ConsumerAttempt.partition))) == [2]
    finally:
        await db.dispose()
    text = generate_latest(registry).decode()
    for table, count in deleted.items():
        assert sample(text, "cadencia_rows_pruned_total", table=table) == count


async def test_a_request_redelivered_inside_the_retention_is_still_deduplicated_after_pruning(
    kafka_settings: KafkaSettings, tmp_path: Path,
) -> None:
    clock = FakeClock()
    settings = make_settings(kafka_settings, f"sqlite+aiosqlite:///{tmp_path / 'orchestrator.db'}")
    async with running(settings, clock) as orc:
        t = orc.topics
        pruner: Pruner = orc.app.state.pruner
        async with TopicReader(kafka_settings, t.dispatch("sms"), t.contact_status) as reader:
            first = request_event("deb-ret-1")
            await orc.publish(t.contact_requests, first)
            await wait_for(lambda: _dispatches(reader, first.id), timeout=30, what="the request dispatched")

            inside = datetime.now(UTC) + 20 * DAY  # the inbox keeps 30 days; the broker at most 7
            assert (await pruner.prune(inside))["inbox"] == 0
            await orc.publish(t.contact_requests, first)  # redelivered (a consumer crashed before its commit)
            sentinel = request_event("deb-ret-1")  # same debtor, same partition: handled after the redelivery
            await orc.publish(t.contact_requests, sentinel)
            await wait_for(lambda: _statuses(reader, sentinel.id), timeout=30, what="the request after it")
            assert len(_dispatches(reader, first.id)) == 1  # the redelivery changed nothing

        async with orc.app.state.ctx.db.sessions() as session:
            inbox = await session.scalar(select(func.count()).select_from(InboxRecord))
            history = await session.scalar(select(func.count()).select_from(StatusHistoryRow))
        assert inbox and history
        past = await pruner.prune(datetime.now(UTC) + 31 * DAY)
        assert past["inbox"] == inbox and past["contact_status_history"] == 0  # history is kept far longer
        later = await pruner.prune(clock() + timedelta(days=settings.retention.status_history_days + 1))
        assert later["contact_status_history"] == history
        metrics = (await orc.http.get("/metrics")).text
    assert sample(metrics, "cadencia_rows_pruned_total", table="inbox") == inbox
    assert sample(metrics, "cadencia_rows_pruned_total", table="contact_status_history") == history


def _dispatches(reader: TopicReader, request_id: str) -> list[object]:
    return [e for e in reader.of_type(DISPATCHED) if e.data.request_id == request_id]


def _statuses(reader: TopicReader, request_id: str) -> list[object]:
    return [e for e in reader.of_type(STATUS) if e.data.request_id == request_id]


def _targets(service: str) -> list[PruneTarget]:
    if service == "orchestrator":
        return services.orchestrator.app.retention_targets(services.orchestrator.settings.Settings(env="test"))
    return channel_retention_targets(RetentionSettings())


MIGRATIONS = {"orchestrator": services.orchestrator.app.MIGRATIONS, "sms": services.sms.app.MIGRATIONS,
              "email": services.email.app.MIGRATIONS, "voice": services.voice.app.MIGRATIONS,
              "whatsapp": services.whatsapp.app.MIGRATIONS}


@pytest.mark.parametrize("service", sorted(MIGRATIONS))
async def test_every_pruned_table_is_read_through_an_index_on_its_time_column(database_url: str, service: str) -> None:
    """The status history had none: each hourly pass read the whole table, the largest the orchestrator
    keeps, to find nothing old; on SQLite inside the DELETE's write transaction, holding every writer."""
    db = Database(DatabaseSettings(url=database_url))
    await prepare_schema(db, service, MIGRATIONS[service], migrate=True)
    targets = [target for target in _targets(service) if not target.bounded]
    assert targets
    cutoff = datetime.now(UTC) - DAY

    def indexed_by(sync: Connection) -> dict[str, set[str]]:
        found = inspect(sync)
        return {t.name: {str(ix["column_names"][0]) for ix in found.get_indexes(t.name)} for t in targets}

    def plans(sync: Connection) -> dict[str, list[str]]:
        out = {}
        for target in targets:
            chunk = select(*target.table.primary_key.columns).where(target.at < cutoff).limit(5000)
            compiled = chunk.compile(sync, compile_kwargs={"literal_binds": True})
            out[target.name] = [row[3] for row in sync.execute(text(f"EXPLAIN QUERY PLAN {compiled}"))]
        return out

    try:
        async with db.engine.connect() as conn:
            leading = await conn.run_sync(indexed_by)
            for target in targets:
                assert target.at.name in leading[target.name], f"{target.name}.{target.at.name} leads no index"
            if db.engine.dialect.name == "sqlite":
                for name, plan in (await conn.run_sync(plans)).items():
                    assert any("USING" in step and "INDEX" in step for step in plan), (name, plan)
                    assert not any(step == f"SCAN {name}" for step in plan), (name, plan)
    finally:
        await db.dispose()
