"""UTCDateTime binds SQLite's text in one step: the stored text is the one SQLAlchemy's own path
(``process_bind_param``, then the dialect's DATETIME format) writes, and PostgreSQL is unchanged."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Column, Integer, MetaData, Table, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.types import TypeDecorator

from services.orchestrator.runtime.models import UTCDateTime
from shared.config import DatabaseSettings
from shared.db import Database


class _Later(datetime):
    """A datetime subclass: bound through the general path."""


def _values() -> list[Any]:
    rng = random.Random(12)
    zones = [None, UTC, timezone(timedelta(hours=-5, minutes=-30)), ZoneInfo("America/Mexico_City"),
             ZoneInfo("UTC"), ZoneInfo("Asia/Kolkata")]
    out: list[Any] = [None, datetime(2026, 11, 30, 12, 5, 57), datetime(2026, 11, 30, 12, 5, 57, tzinfo=UTC),
                      datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
                      datetime(2025, 3, 9, 2, 30, tzinfo=ZoneInfo("America/New_York")),  # skipped by DST
                      datetime(2025, 11, 2, 1, 30, fold=1, tzinfo=ZoneInfo("America/New_York")),  # repeated
                      _Later(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC), _Later(2026, 1, 2, 3, 4, 5)]
    for _ in range(3000):
        at = datetime(1900, 1, 1) + timedelta(seconds=rng.randrange(0, 6_000_000_000),
                                              microseconds=rng.choice([0, rng.randrange(1_000_000)]))
        out.append(at.replace(tzinfo=rng.choice(zones), fold=rng.randrange(2)))
    return out


def _general(dialect: Any) -> Any:
    """SQLAlchemy's own composition of ``process_bind_param`` and the dialect's DATETIME processor."""
    decorator = UTCDateTime().dialect_impl(dialect)
    return TypeDecorator.bind_processor(decorator, dialect)


def test_sqlite_text_is_the_general_paths_for_every_value() -> None:
    dialect = sqlite.dialect()
    fast = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    general = _general(dialect)
    assert fast is not None and general is not None
    for value in _values():
        assert fast(value) == general(value), repr(value)
    assert fast(datetime(2026, 11, 30, 12, 5, 57, tzinfo=UTC)) == "2026-11-30 12:05:57.000000"
    assert fast(datetime(2026, 6, 1, 7, tzinfo=ZoneInfo("America/Mexico_City"))) == "2026-06-01 13:00:00.000000"


def test_postgresql_binds_as_before() -> None:
    dialect = postgresql.asyncpg.dialect()  # type: ignore[attr-defined]
    bound = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    general = _general(dialect)
    for value in _values()[:200]:
        assert (bound(value) if bound else value) == (general(value) if general else value)


async def test_stored_values_are_what_the_general_path_writes(database_settings: DatabaseSettings) -> None:
    database = Database(database_settings)
    metadata = MetaData()
    table = Table("utc_datetime_probe", metadata, Column("id", Integer, primary_key=True),
                  Column("at", UTCDateTime, nullable=True))
    values = _values()
    try:
        async with database.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
            # executemany (the batch's path) and single-row inserts
            await conn.execute(insert(table), [{"id": i, "at": v} for i, v in enumerate(values[:-10])])
            for i, v in enumerate(values[-10:], start=len(values) - 10):
                await conn.execute(insert(table).values(id=i, at=v))
        async with database.engine.connect() as conn:
            read = dict((await conn.execute(select(table.c.id, table.c.at))).all())
            if database.is_sqlite:
                stored = dict((await conn.execute(text("SELECT id, at FROM utc_datetime_probe"))).all())
                general = _general(database.engine.dialect)
                for i, v in enumerate(values):
                    assert stored[i] == general(v), (i, repr(v))
        for i, v in enumerate(values):
            if v is None:
                assert read[i] is None
            else:
                # the same instant, in UTC (times in a DST gap or fold never equal another zone's)
                assert read[i] == (v if v.tzinfo else v.replace(tzinfo=UTC)).astimezone(UTC), (i, repr(v))
                assert read[i].tzinfo is UTC
    finally:
        async with database.engine.begin() as conn:
            await conn.run_sync(metadata.drop_all)
        await database.dispose()
