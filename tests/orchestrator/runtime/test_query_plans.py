"""Reads that grow with the ledger go through an index, not a scan of the table.

The orchestrator's largest tables (status history, dispatches, outcomes) hold years of rows. A read
asked for one debtor or one request must find its rows through an index: SQLite's query plan for every
statement a read runs names an index for each table it reads (``SEARCH … USING INDEX``), never a bare
``SCAN`` of it. The plans are taken from the statements the real code runs on a migrated schema,
so a new read, or an index a migration drops, fails here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

import services.orchestrator.app
from services.orchestrator.agents.service import request_agent_calls
from services.orchestrator.audit.records import audit_record
from shared.config import DatabaseSettings
from shared.db import Database
from shared.db.migrate import prepare_schema

Read = Callable[[AsyncSession], Awaitable[Any]]


async def _plans(tmp_path: Path, read: Read) -> list[tuple[str, list[str]]]:
    """Each statement ``read`` ran, with SQLite's plan for it (the steps' details)."""
    path = tmp_path / "orchestrator.db"
    db = Database(DatabaseSettings(url=f"sqlite+aiosqlite:///{path}"))
    await prepare_schema(db, "orchestrator", services.orchestrator.app.MIGRATIONS, migrate=True)
    ran: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        ran.append((statement, parameters))

    event.listen(db.engine.sync_engine, "before_cursor_execute", capture)
    try:
        async with db.sessions() as session:
            await read(session)
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", capture)
        await db.dispose()
    with sqlite3.connect(path) as con:
        return [(statement, [row[3] for row in con.execute(f"EXPLAIN QUERY PLAN {statement}", parameters)])
                for statement, parameters in ran if statement.lstrip().upper().startswith("SELECT")]


def _scans(plans: list[tuple[str, list[str]]]) -> list[tuple[str, str]]:
    return [(" ".join(statement.split())[:160], step) for statement, steps in plans for step in steps
            if step.startswith("SCAN ") and "USING" not in step and "CONSTANT ROW" not in step]


NOW = datetime(2026, 12, 3, tzinfo=UTC)

READS: dict[str, Read] = {
    "a debtor's audit record": lambda session: audit_record(session, "deb-plans", NOW),
    "a request's agent calls": lambda session: request_agent_calls(session, "req-plans"),
}


@pytest.mark.parametrize("what", sorted(READS))
async def test_a_read_for_one_debtor_or_request_goes_through_an_index(tmp_path: Path, what: str) -> None:
    plans = await _plans(tmp_path, READS[what])
    assert plans, f"{what} ran no SELECT"
    assert _scans(plans) == []
