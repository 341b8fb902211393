"""Set-based reads and writes of the runtime's tables: one statement per table for a whole batch.

Reads return plain records (:mod:`.records`) that no session tracks, so a unit of work changes them in
memory and writes them back itself with Core bulk statements (``executemany``/``insertmanyvalues``):
the ORM's per-object bookkeeping stays out of the hot path.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import orjson
from sqlalchemy import JSON, Dialect, Table, Text, bindparam, insert, or_, select, type_coerce, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import TypeDecorator

from services.orchestrator.runtime import policy_port
from services.orchestrator.runtime.models import (
    AccountRow,
    ContactRequestRow,
    DebtorRow,
    DeferredContactRow,
    DispatchRow,
    ResponseRow,
    SuppressionRow,
)
from services.orchestrator.runtime.records import RECORDS
from services.orchestrator.runtime.statuses import ledger_outcome
from shared.db import Base

Row = TypeVar("Row", bound=Base)


def table_of(cls: type[Base]) -> Table:
    table = cls.__table__
    assert isinstance(table, Table)
    return table


def _rows(cls: type[Row], result: Any) -> list[Row]:
    """Plain records (:mod:`.records`) of the mapped class ``cls``: no session tracks them. ``result``'s
    rows hold the table's columns in table order (:func:`_columns`)."""
    return list(map(RECORDS[cls].from_row, result))


class _FastJSON(TypeDecorator[Any]):
    """A JSON column read with orjson (SQLite hands the text over; the standard ``json`` module decoding
    the requests' payloads was a tenth of a batch). Text orjson refuses (``NaN``) is read as before."""

    impl = Text
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if not isinstance(value, str | bytes):
            return value  # a driver that decodes JSON itself (asyncpg)
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return json.loads(value)


_FAST_JSON = _FastJSON()
_COLUMNS: dict[Table, list[Any]] = {}


def _columns(table: Table) -> list[Any]:
    """The table's columns to select, its JSON ones read through :class:`_FastJSON`."""
    found = _COLUMNS.get(table)
    if found is None:
        found = _COLUMNS[table] = [type_coerce(c, _FAST_JSON).label(c.key) if isinstance(c.type, JSON) else c
                                   for c in table.columns]
    return found


def _among(column: Any, name: str) -> Any:
    """``column IN (:name)``, the list given at execution (an expanding parameter)."""
    return column.in_(bindparam(name, expanding=True))


def _select(cls: type[Row], *where: Any, order: Sequence[Any] = (), lock: bool = False) -> Any:
    """The statement reading ``cls``'s columns where ``where``; built once by each caller's cached builder.

    The hot statements are built once per process and run with parameters: a statement object built
    anew for every batch cost more in SQLAlchemy's construction and cache-key walk than SQLite took to
    run it (docs/benchmarks.md, tenth round).
    """
    stmt = select(*_columns(table_of(cls))).where(*where)
    if order:
        stmt = stmt.order_by(*order)
    if lock:
        stmt = stmt.with_for_update()
    return stmt


async def _fetch(session: AsyncSession, cls: type[Row], stmt: Any, **params: Any) -> list[Row]:
    return _rows(cls, await session.execute(stmt, params))


@functools.cache
def _debtors_stmt(lock: bool) -> Any:
    t = table_of(DebtorRow)
    return _select(DebtorRow, _among(t.c.id, "ids"), order=[t.c.id], lock=lock)


@functools.cache
def _debtors_insert(postgres: bool) -> Any:
    insert_ = pg_insert if postgres else sqlite_insert
    return insert_(table_of(DebtorRow)).on_conflict_do_nothing(index_elements=["id"])


@functools.cache
def _accounts_stmt() -> Any:
    t = table_of(AccountRow)
    return _select(AccountRow, or_(_among(t.c.debtor_id, "debtor_ids"), _among(t.c.id, "ids")), order=[t.c.id])


@functools.cache
def _suppressions_stmt(by_address: bool) -> Any:
    t = table_of(SuppressionRow)
    who: Any = _among(t.c.debtor_id, "debtor_ids")
    if by_address:
        who = or_(who, _among(t.c.address, "addresses"))
    return _select(SuppressionRow, who, t.c.lifted_at.is_(None), order=[t.c.id])


@functools.cache
def _deferrals_stmt() -> Any:
    t = table_of(DeferredContactRow)
    # ``state || ''``: the (state, not_before) index would read every pending deferral of the portfolio;
    # this way SQLite reads the debtors' own through (debtor_id, created_at)
    return _select(DeferredContactRow, _among(t.c.debtor_id, "debtor_ids"), t.c.state.concat("") == "pending",
                   order=[t.c.id])


@functools.cache
def _dispatches_since_stmt() -> Any:
    t = table_of(DispatchRow)
    return _select(DispatchRow, _among(t.c.debtor_id, "debtor_ids"), t.c.at >= bindparam("since"),
                   order=[t.c.at, t.c.id])


@functools.cache
def _dispatches_stmt() -> Any:
    t = table_of(DispatchRow)
    return _select(DispatchRow, or_(_among(t.c.id, "ids"), _among(t.c.request_id, "request_ids")),
                   order=[t.c.request_id, t.c.attempt])


@functools.cache
def _replies_stmt() -> Any:
    t = table_of(ResponseRow)
    return (select(t.c.debtor_id, t.c.channel, t.c.occurred_at, t.c.address, t.c.at)
            .where(_among(t.c.debtor_id, "debtor_ids"), t.c.at >= bindparam("since")).order_by(t.c.id))


@functools.cache
def _requests_stmt() -> Any:
    return _select(ContactRequestRow, _among(table_of(ContactRequestRow).c.id, "ids"))


# --- reads ----------------------------------------------------------------------------------------


async def lock_debtors(session: AsyncSession, ids: Collection[str], postgres: bool) -> list[DebtorRow]:
    """Insert the missing debtors, then read them all; on PostgreSQL each row locked ``FOR UPDATE``.

    Both statements go in sorted id order, so two instances locking overlapping sets take the locks
    in the same order and never deadlock; whoever comes second waits and then reads what the first
    committed (caps counted from the ledger hold). SQLite transactions already serialise writers.
    """
    ordered = sorted(set(ids))
    if not ordered:
        return []
    # executemany: compiled once and cached (a multi-row VALUES is compiled again for every batch size)
    await session.execute(_debtors_insert(postgres), [{"id": i} for i in ordered])
    return await _fetch(session, DebtorRow, _debtors_stmt(postgres), ids=ordered)


async def accounts(session: AsyncSession, debtor_ids: Collection[str], ids: Collection[str]) -> list[AccountRow]:
    return await _fetch(session, AccountRow, _accounts_stmt(), debtor_ids=list(debtor_ids), ids=list(ids))


async def suppressions(session: AsyncSession, debtor_ids: Collection[str],
                       addresses: Collection[str] = ()) -> list[SuppressionRow]:
    """Active suppressions of the debtors, and of any of the addresses whoever they were recorded for
    (a STOP from a number binds every debtor sharing that number)."""
    if addresses:
        return await _fetch(session, SuppressionRow, _suppressions_stmt(True), debtor_ids=list(debtor_ids),
                            addresses=list(addresses))
    return await _fetch(session, SuppressionRow, _suppressions_stmt(False), debtor_ids=list(debtor_ids))


async def pending_deferrals(session: AsyncSession, debtor_ids: Collection[str]) -> list[DeferredContactRow]:
    return await _fetch(session, DeferredContactRow, _deferrals_stmt(), debtor_ids=list(debtor_ids))


async def dispatches_since(session: AsyncSession, debtor_ids: Collection[str], since: datetime) -> list[DispatchRow]:
    """The debtors' dispatches from ``since`` on: reads only ``(debtor_id, at >= since)`` of the index."""
    return await _fetch(session, DispatchRow, _dispatches_since_stmt(), debtor_ids=list(debtor_ids), since=since)


async def dispatches(session: AsyncSession, ids: Collection[str] = (),
                     request_ids: Collection[str] = ()) -> list[DispatchRow]:
    """Dispatches by id, and every attempt of the given requests."""
    return await _fetch(session, DispatchRow, _dispatches_stmt(), ids=list(ids), request_ids=list(request_ids))


async def latest_dispatch_on(session: AsyncSession, debtor_id: str, channel: str) -> DispatchRow | None:
    table = table_of(DispatchRow)
    found = _rows(DispatchRow, await session.execute(
        select(*_columns(table)).where(table.c.debtor_id == debtor_id, table.c.channel == channel)
        .order_by(table.c.at.desc()).limit(1)))
    return found[0] if found else None


async def replies_since(session: AsyncSession, debtor_ids: Collection[str], since: datetime) -> list[Any]:
    """``(debtor_id, channel, occurred_at, address, at)`` of the debtors' responses recorded from ``since``."""
    return list((await session.execute(_replies_stmt(), {"debtor_ids": list(debtor_ids), "since": since})).all())


async def requests(session: AsyncSession, ids: Collection[str]) -> list[ContactRequestRow]:
    return await _fetch(session, ContactRequestRow, _requests_stmt(), ids=list(ids))


# --- one debtor (tools, tests, the policy simulation) ---------------------------------------------


async def active_suppressions(session: AsyncSession, debtor_id: str,
                              addresses: Sequence[str] = ()) -> list[SuppressionRow]:
    return await suppressions(session, [debtor_id], addresses)


def ledger_entries(dispatched: Iterable[DispatchRow], replies: Iterable[Any]) -> list[policy_port.LedgerEntry]:
    """The policy's ledger: dispatches (an expired one never reached a provider: it counts nowhere)
    and the debtor's replies, in time order."""
    entries = [
        policy_port.LedgerEntry(
            channel=d.channel, direction="outbound", at=d.at, account_id=d.account_id,  # type: ignore[arg-type]
            outcome=ledger_outcome(d.channel, d.status), consented=d.consented,  # type: ignore[arg-type]
            kind=policy_port.policy_kind(d.kind), address=d.address,  # type: ignore[arg-type]
        )
        for d in dispatched if d.status != "expired"
    ]
    entries.extend(
        policy_port.LedgerEntry(channel=r.channel, direction="inbound", at=r.occurred_at, outcome="replied",
                                address=r.address)
        for r in replies
    )
    entries.sort(key=lambda e: e.at)
    return entries


async def load_ledger(session: AsyncSession, debtor_id: str, since: datetime) -> list[policy_port.LedgerEntry]:
    """One debtor's recent contacts, both ways; reads only ``(debtor_id, at >= since)``."""
    return ledger_entries(await dispatches_since(session, [debtor_id], since),
                          await replies_since(session, [debtor_id], since))


# --- writes ---------------------------------------------------------------------------------------


def values_of(obj: Base, table: Table) -> dict[str, Any]:
    """Every column of a row object (autoincrement ids left to the database while unset)."""
    values = {c.key: getattr(obj, c.key) for c in table.columns}
    for column in table.primary_key.columns:
        if values.get(column.key) is None:
            values.pop(column.key)
    return values


@functools.cache
def _insert(table: Table) -> Any:
    return insert(table)


@functools.cache
def _update_by_id(table: Table) -> Any:
    return update(table).where(table.c.id == bindparam("_id"))


async def insert_rows(session: AsyncSession, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await session.execute(_insert(table), list(rows))


async def update_rows(session: AsyncSession, table: Table, objects: Iterable[Base],
                      columns: Sequence[str]) -> None:
    """``UPDATE … SET columns WHERE id = …`` for every object, as one ``executemany``."""
    params = [{"_id": obj.id, **{c: getattr(obj, c) for c in columns}} for obj in objects]  # type: ignore[attr-defined]
    if params:
        await session.execute(_update_by_id(table), params)


async def remember_links(session: AsyncSession, rows: Sequence[dict[str, Any]], postgres: bool) -> None:
    """Self-service link refs, inserted once (``ON CONFLICT DO NOTHING``), in one statement."""
    if not rows:
        return
    unique = {r["ref"]: r for r in rows}
    await session.execute(_links_insert(postgres), [unique[k] for k in sorted(unique)])


@functools.cache
def _links_insert(postgres: bool) -> Any:
    from services.orchestrator.selfservice.models import SelfServiceLinkRow

    insert_ = pg_insert if postgres else sqlite_insert
    return insert_(table_of(SelfServiceLinkRow)).on_conflict_do_nothing(index_elements=["ref"])
