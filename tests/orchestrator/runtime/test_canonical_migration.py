"""The migration that canonicalises addresses written before intake did (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import command
from sqlalchemy import select
from sqlalchemy.engine import Connection

from services.orchestrator.app import MIGRATIONS
from services.orchestrator.runtime.models import DebtorRow, DispatchRow, SuppressionRow
from services.orchestrator.runtime.operations import active_suppressions
from shared.config import DatabaseSettings
from shared.db import Database
from shared.db.migrate import alembic_config, upgrade

NOW = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)


async def _upgrade_to(db: Database, target: str) -> None:
    cfg = alembic_config("orchestrator", MIGRATIONS)

    def run(connection: Connection) -> None:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, target)

    async with db.engine.connect() as conn:
        await conn.run_sync(run)
        await conn.commit()


async def test_rows_written_as_typed_become_canonical(database_settings: DatabaseSettings) -> None:
    db = Database(database_settings)
    try:
        await _upgrade_to(db, "orc_rt_0003")
        async with db.transaction() as session:
            session.add(DebtorRow(id="d-mx", jurisdiction="MX", phone="55 1234 5678", email=" Ana@Example.COM ",
                                  whatsapp="+52 (55) 1234-5678"))
            session.add(DebtorRow(id="d-bad", jurisdiction="MX", phone="not a number"))
            session.add(DispatchRow(
                id="x1", request_id="r1", debtor_id="d-mx", account_id="a1", channel="sms",
                address="+52.55.1234.5678", kind="collection", attempt=1, template_key="t", template_version=1,
                consented=False, status="delivered", at=NOW, updated_at=NOW,
            ))
            # suppressions used to be stored by their digits
            session.add(SuppressionRow(debtor_id="d-mx", channel="sms", address="525512345678", reason="opt_out",
                                       source="debtor", at=NOW))
        await upgrade(db, "orchestrator", MIGRATIONS)
        async with db.transaction() as session:
            mx = await session.get(DebtorRow, "d-mx")
            assert mx is not None
            assert (mx.phone, mx.whatsapp, mx.email) == ("+525512345678", "+525512345678", "Ana@example.com")
            bad = await session.get(DebtorRow, "d-bad")
            assert bad is not None and bad.phone == "not a number"  # never valid: not guessed
            assert (await session.get(DispatchRow, "x1")).address == "+525512345678"  # type: ignore[union-attr]
            (suppression,) = (await session.execute(select(SuppressionRow))).scalars()
            assert suppression.address == "+525512345678"
            # and it binds another debtor who uses the number
            found = await active_suppressions(session, "someone-else", ["+525512345678"])
            assert [s.id for s in found] == [suppression.id]
    finally:
        await db.dispose()
