"""Fixtures every test layer shares: the real embedded broker, isolated topics, real databases."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from shared.bus.broker import EmbeddedBroker
from shared.config import DatabaseSettings, KafkaSettings
from tests import postgres

REDIS_URL = os.environ.get("CADENCIA_TEST_REDIS", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One Tansu broker for the session on a free loopback port; tests isolate by topic prefix."""
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=str(log)) as broker:
        yield broker


@pytest.fixture
def kafka_settings(kafka_broker: EmbeddedBroker) -> KafkaSettings:
    """Settings with a topic prefix of the test's own, so no two tests share a topic or group."""
    return KafkaSettings(
        bootstrap_servers=kafka_broker.bootstrap_servers,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        client_id="cadencia-test",
        fetch_max_wait_ms=10,
        partitions=3,
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
    )


@pytest.fixture(scope="session")
def pg_admin_dsn() -> Iterator[str]:
    """The PostgreSQL admin DSN: ``CADENCIA_TEST_PG``, 127.0.0.1:5432, or a throwaway cluster of our own."""
    dsn, cluster = postgres.admin_dsn()
    try:
        yield dsn
    finally:
        if cluster is not None:
            cluster.stop()


async def _create_pg_database(admin_dsn: str) -> str:
    import asyncpg

    name = f"cadencia_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name


async def _drop_pg_database(admin_dsn: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def _pg_url(admin_dsn: str, name: str) -> str:
    base = admin_dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return f"{base}/{name}"


@pytest.fixture
async def pg_database_url(pg_admin_dsn: str) -> AsyncIterator[str]:
    """A throwaway PostgreSQL database, dropped afterwards."""
    name = await _create_pg_database(pg_admin_dsn)
    try:
        yield _pg_url(pg_admin_dsn, name)
    finally:
        await _drop_pg_database(pg_admin_dsn, name)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Every database test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
        return
    admin: str = request.getfixturevalue("pg_admin_dsn")
    name = await _create_pg_database(admin)
    try:
        yield _pg_url(admin, name)
    finally:
        await _drop_pg_database(admin, name)


@pytest.fixture
def database_settings(database_url: str) -> DatabaseSettings:
    return DatabaseSettings(url=database_url, pool_size=5)


@pytest.fixture
def redis_url() -> str:
    """The Redis server at 127.0.0.1:6379 (override with ``CADENCIA_TEST_REDIS``); tests isolate by key prefix."""
    return REDIS_URL


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


__all__ = ["asyncio"]
