"""Fixtures of the foundation tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shared.config import DatabaseSettings
from shared.db import Database
from shared.db.migrate import upgrade


@pytest.fixture
async def db(database_settings: DatabaseSettings) -> AsyncIterator[Database]:
    """The foundation tests' tables (inbox, outbox, crash log) migrated on the parametrised database."""
    database = Database(database_settings)
    await upgrade(database, "foundationtest")
    yield database
    await database.dispose()
