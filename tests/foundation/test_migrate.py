"""Production migrates once (``cadencia migrate``) before the services; a service only checks its schema."""

from __future__ import annotations

import asyncio

import pytest

import services.sms.app as sms_app
from services.sms.settings import Settings as SmsSettings
from shared.config import DatabaseSettings
from shared.db import Database
from shared.db.migrate import SchemaBehind, missing_revisions, prepare_schema
from tooling.cli import main


async def test_a_service_that_does_not_migrate_refuses_a_schema_behind_its_code(database_url: str) -> None:
    db = Database(DatabaseSettings(url=database_url))
    try:
        assert await missing_revisions(db, "sms", sms_app.MIGRATIONS) == {"shared_0003", "sms_0004"}
        with pytest.raises(SchemaBehind, match="cadencia migrate sms"):
            await prepare_schema(db, "sms", sms_app.MIGRATIONS, migrate=False)
        await prepare_schema(db, "sms", sms_app.MIGRATIONS, migrate=True)  # what `cadencia migrate` does
        assert await missing_revisions(db, "sms", sms_app.MIGRATIONS) == set()
        await prepare_schema(db, "sms", sms_app.MIGRATIONS, migrate=False)  # current: starts
    finally:
        await db.dispose()


async def test_the_sms_app_does_not_start_on_an_unmigrated_database_when_told_not_to_migrate(
    database_url: str,
) -> None:
    settings = SmsSettings(database=DatabaseSettings(url=database_url), migrate_on_start=False, create_topics=False)
    app = sms_app.create_app(settings)
    with pytest.raises(SchemaBehind):
        async with app.router.lifespan_context(app):
            pass


async def test_cadencia_migrate_migrates_then_checks_each_service(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    for service in ("sms", "email"):
        monkeypatch.setenv(f"{service.upper()}_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/{service}.db")
    # The CLI runs its own event loop: keep it off this test's loop.
    assert await asyncio.to_thread(main, ["migrate", "sms", "email", "--check"]) == 1
    assert await asyncio.to_thread(main, ["migrate", "sms", "email"]) == 0
    assert await asyncio.to_thread(main, ["migrate", "sms", "email", "--check"]) == 0
    with pytest.raises(SystemExit):
        main(["migrate", "sandbox"])  # no database of its own
