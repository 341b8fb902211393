"""The runtime as the rest of the orchestrator uses it, inside a transaction it already holds.

Self-service, ops and the scheduler call these with their own session: each call applies its work
to a :class:`~.state.Batch` — the one the session is applying when there is one (a reply answered
inside a consumer batch), else a batch of its own, loaded, applied and written back at once.
The flows themselves live in :mod:`.events` (per event type) and :mod:`.decisions` (the decision).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from services.orchestrator.runtime import events
from services.orchestrator.runtime.decisions import channel_order
from services.orchestrator.runtime.events import AccountEvent
from services.orchestrator.runtime.models import AccountRow, DebtorRow
from services.orchestrator.runtime.repository import active_suppressions, load_ledger
from services.orchestrator.runtime.state import ACTIVE, Batch
from services.orchestrator.runtime.statuses import STATUS_RANK, ledger_outcome
from services.orchestrator.runtime.unit import IntakeResult, Runtime
from shared.events.contracts import CHANNELS, ContactRequestedEvent

__all__ = [
    "CHANNELS", "STATUS_RANK", "AccountEvent", "IntakeResult", "Runtime", "active_suppressions", "batch_for",
    "channel_order", "get_account", "intake", "ledger_outcome", "load_ledger", "lock_debtor", "promise",
]


@asynccontextmanager
async def batch_for(rt: Runtime, session: AsyncSession, now: datetime,
                    debtor_ids: Iterable[str]) -> AsyncIterator[Batch]:
    """The session's batch with these debtors loaded: the one it is applying, else a new one written
    back when the block ends."""
    active = Batch.active(session)
    if active is not None:
        await active.load(debtor_ids)
        yield active
        return
    batch = Batch(rt, session, now)
    session.info[ACTIVE] = batch
    try:
        await batch.load(debtor_ids)
        yield batch
        await batch.flush()
    finally:
        session.info.pop(ACTIVE, None)


async def intake(rt: Runtime, session: AsyncSession, event: ContactRequestedEvent, now: datetime) -> IntakeResult:
    """Apply one contact request in the caller's transaction (an internal request: a confirmation, a link)."""
    async with batch_for(rt, session, now, [event.data.debtor.id]) as batch:
        return await events.intake(batch, event, now)


async def promise(rt: Runtime, session: AsyncSession, account: AccountRow, until: datetime | date,
                  now: datetime) -> None:
    """Pause collection of ``account`` (an ORM row of the caller's) under a promise to pay."""
    async with batch_for(rt, session, now, [account.debtor_id]) as batch:
        promised = batch.account(account.debtor_id, account.id)
        await events.promise(batch, promised, until, now)
    for name in ("status", "promise_until", "promise_date", "status_changed_at"):
        set_committed_value(account, name, getattr(promised, name))  # the caller's row says what was written


async def lock_debtor(rt: Runtime, session: AsyncSession, debtor_id: str) -> DebtorRow:
    """The debtor's row through the ORM (created when missing), locked ``FOR UPDATE`` on PostgreSQL:
    for the views that change a debtor outside a batch, serialised with its decisions."""
    insert = pg_insert if rt.postgres else sqlite_insert
    await session.execute(insert(DebtorRow).values(id=debtor_id).on_conflict_do_nothing(index_elements=["id"]))
    stmt = select(DebtorRow).where(DebtorRow.id == debtor_id).execution_options(populate_existing=True)
    if rt.postgres:
        stmt = stmt.with_for_update()
    debtor: DebtorRow = (await session.execute(stmt)).scalar_one()
    return debtor


async def get_account(session: AsyncSession, debtor_id: str, account_id: str) -> AccountRow:
    account = await session.get(AccountRow, account_id)
    if account is None:
        account = AccountRow(id=account_id, debtor_id=debtor_id, product="", status="active")
        session.add(account)
        await session.flush()
    return account
