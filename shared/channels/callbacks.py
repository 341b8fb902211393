"""What every channel's provider callbacks share, whatever the provider.

* :class:`ChannelWebhookContext` — the fields every channel's webhook context has (the channel's
  database, topics, group writer, source, provider, clock and counters); each channel extends it with
  its provider's signature check and its own hooks.
* :func:`new_receipts` / :func:`first_receipt` — a callback is applied once: its ``(id, status)``
  receipt is inserted first, and a receipt already there means a replay.
* :class:`SendLogIndex` / :func:`find_send_log` — the send-log rows a group of callbacks is about,
  found by the dispatch id in the callback URL, else by the provider's id; :func:`proven_sent` — what
  a callback proves about a row that never recorded the provider's answer.
* :func:`by_context` — a group writer's writes grouped by the context that submitted them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.channels.models import ProviderReceipt, SendLogRecord
from shared.channels.sendlog import SEND_LOG, SendLogEntry, SendLogRows
from shared.db import Database, GroupWriter, Write
from shared.events import Topics, utcnow
from shared.events.contracts import Channel


@dataclass(kw_only=True)
class ChannelWebhookContext:
    """A channel service's webhook state (``app.state``), shared by its routes and group-writer kinds."""

    channel: Channel
    db: Database
    topics: Topics
    #: The CloudEvents ``source`` of the outcomes the webhooks stage (``cadencia/<service>``).
    source: str
    #: The service's group writer: every callback is committed through it (docs/internals.md).
    writer: GroupWriter
    provider: str
    clock: Callable[[], datetime] = utcnow
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1


async def find_send_log(session: AsyncSession, provider_id: str, dispatch_hint: str | None) -> SendLogRecord | None:
    """The send-log row a provider callback is about, locked: by the dispatch id in the callback URL
    (set even when the send's answer was lost), else by the provider's id. The first callback for a
    row that never recorded its answer adopts the provider id and proves the provider has it."""
    row = None
    if dispatch_hint:
        row = await _locked(session, SendLogRecord.dispatch_id == dispatch_hint)
        if row is not None and row.provider_id not in (None, provider_id):
            row = None
    if row is None:
        row = await _locked(session, SendLogRecord.provider_id == provider_id)
    if row is not None:
        if row.provider_id is None:
            row.provider_id = provider_id
        proven_sent(row)
    return row


def proven_sent(row: SendLogRecord | SendLogEntry) -> None:
    """A provider callback about ``row``'s message proves the provider has it: a row that never recorded
    its answer (``sending``, ``unknown``) is ``sent``. A claim of the retry path (``next_attempt_at``
    set) ends there as well: its next attempt, its composed request and its last transient error go,
    as its holder's result would clear them. So a holder that dies after the provider accepted leaves
    none of them on a ``sent`` row, and that result, when it does come, does not clear an error a later
    callback recorded (an undelivered message's code)."""
    if row.state in ("sending", "unknown"):
        row.state = "sent"
        if row.next_attempt_at is not None:
            row.next_attempt_at = row.resume = None
            row.error_code = row.error_message = None


async def first_receipt(session: AsyncSession, provider_id: str, status: str, now: datetime) -> bool:
    """Record a webhook as applied; False if it already was."""
    return (provider_id, status) in await new_receipts(session, [(provider_id, status)], now)


async def new_receipts(session: AsyncSession, keys: Iterable[tuple[str, str]], now: datetime) -> set[tuple[str, str]]:
    """Record many webhooks as applied in one statement; returns the ``(id, status)`` keys that were not yet."""
    unique = list(dict.fromkeys(keys))
    if not unique:
        return set()
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    values = [{"provider_id": key, "status": status, "received_at": now} for key, status in unique]
    return {(key, status) for key, status in (await session.execute(_receipts_insert(dialect), values)).all()}


@functools.cache
def _receipts_insert(dialect: str) -> Any:
    """Built once per dialect: every group of callbacks runs it (the statements of the hot paths are
    built once and run with parameters, docs/benchmarks.md)."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    table = cast(Table, ProviderReceipt.__table__)
    return (
        insert(table)
        .on_conflict_do_nothing(index_elements=["provider_id", "status"])
        .returning(table.c.provider_id, table.c.status)
    )


@functools.cache
def _index_select(by_dispatch: bool, by_provider: bool, by_channel: bool) -> Any:
    """:meth:`SendLogIndex.load`'s query for the ids it is given, built once per shape."""
    conditions = []
    if by_dispatch:
        conditions.append(SEND_LOG.c.dispatch_id.in_(bindparam("dispatch_ids", expanding=True)))
    if by_provider:
        conditions.append(SEND_LOG.c.provider_id.in_(bindparam("provider_ids", expanding=True)))
    where = [or_(*conditions)]
    if by_channel:
        where.append(SEND_LOG.c.channel == bindparam("channel"))
    return SendLogRows.locking(*where)


class SendLogIndex:
    """Send-log rows loaded (and locked) for a group of callbacks, found as :func:`find_send_log` would;
    :meth:`save` writes back what the callbacks changed, in one statement."""

    def __init__(self, rows: SendLogRows) -> None:
        self.rows = rows
        self.by_dispatch: dict[str, SendLogEntry] = {}
        self.by_provider: dict[str, SendLogEntry] = {}
        for row in rows:
            self.by_dispatch[row.dispatch_id] = row
            self._index(row)

    @classmethod
    async def load(
        cls, session: AsyncSession, provider_ids: Iterable[str], dispatch_ids: Iterable[str], channel: str | None = None
    ) -> SendLogIndex:
        """One query for every row named by a dispatch id or a provider id (locked in dispatch id order)."""
        providers, dispatches = sorted(set(provider_ids)), sorted(set(dispatch_ids))
        if not providers and not dispatches:
            return cls(SendLogRows([]))
        params: dict[str, Any] = {}
        if dispatches:
            params["dispatch_ids"] = dispatches
        if providers:
            params["provider_ids"] = providers
        if channel is not None:
            params["channel"] = channel
        stmt = _index_select(bool(dispatches), bool(providers), channel is not None)
        return cls(await SendLogRows.run(session, stmt, params))

    async def save(self, session: AsyncSession) -> int:
        return await self.rows.save(session)

    def _index(self, row: SendLogEntry) -> None:
        if row.provider_id is None:
            return
        current = self.by_provider.get(row.provider_id)
        if current is None or row.created_at > current.created_at:  # the latest message with that id
            self.by_provider[row.provider_id] = row

    def find(self, provider_id: str, dispatch_hint: str | None) -> SendLogEntry | None:
        """As :func:`find_send_log`: by the dispatch id, else by the provider id; adopts the provider id."""
        row = self.by_dispatch.get(dispatch_hint) if dispatch_hint else None
        if row is not None and row.provider_id not in (None, provider_id):
            row = None
        if row is None:
            row = self.by_provider.get(provider_id)
        if row is not None:
            if row.provider_id is None:
                row.provider_id = provider_id
                self._index(row)
            proven_sent(row)
        return row


def by_context(writes: Sequence[Write[tuple[Any, Any]]]) -> dict[int, tuple[Any, list[int]]]:
    """Writes whose item is ``(context, ...)``, grouped by their context object (a writer may serve two)."""
    groups: dict[int, tuple[Any, list[int]]] = {}
    for index, write in enumerate(writes):
        ctx = write.item[0]
        groups.setdefault(id(ctx), (ctx, []))[1].append(index)
    return groups


async def _locked(session: AsyncSession, condition: object) -> SendLogRecord | None:
    stmt = select(SendLogRecord).where(condition).order_by(SendLogRecord.created_at.desc()).limit(1)  # type: ignore[arg-type]
    return (await session.execute(stmt.with_for_update())).scalars().first()
