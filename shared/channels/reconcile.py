"""Finalising messages whose delivery callbacks never arrived: ask the provider, then close them.

A message the provider accepted (send log ``sent``) whose status is still ``accepted``/``sent``
after ``reconcile_after_s`` — its callbacks hit the service while it was down, say — is looked up
at the provider (Twilio ``GET …/Messages/{sid}.json`` or ``…/Calls/{sid}.json``) and what the
provider reports is applied exactly as its callback would have been (same receipts, same outcome
ids, so a callback arriving later changes nothing). One still without a final status
``give_up_after_s`` after it was sent is finalised as ``unknown``: never re-sent, visible to ops.
A channel whose provider offers no lookup (SendGrid without its paid activity API) passes no
``ask`` and only finalises.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from sqlalchemy import or_, select

from shared.channels.models import SendLogRecord
from shared.channels.outcomes import delivery_event
from shared.channels.settings import SendingSettings
from shared.db import Database, add_to_outbox
from shared.events import Topics, utcnow
from shared.logging import get_logger

log = get_logger(__name__)

#: Statuses that are not final: the provider has the message, nobody has said what became of it.
PENDING = ("accepted", "sent")

#: Asks the provider about one send-log row and applies its answer (through the webhook path).
AskProvider = Callable[[SendLogRecord], Awaitable[None]]


class Reconciler:
    def __init__(
        self, *, db: Database, topics: Topics, sending: SendingSettings, ask: AskProvider | None, source: str,
        provider: str, clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db, self.topics, self.sending, self.ask = db, topics, sending, ask
        self.source, self.provider, self.clock = source, provider, clock
        self._task: asyncio.Task[None] | None = None
        #: Messages looked up at the provider, and finalised as unknown (for metrics and tests).
        self.asked = 0
        self.given_up = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="reconciler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def ping(self) -> None:
        if self._task is not None and self._task.done():
            raise RuntimeError("reconciler stopped")

    async def _run(self) -> None:
        while True:
            try:
                await self.reconcile_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database hiccup: try again next round
                log.warning("reconciliation pass failed", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(self.sending.reconcile_interval_s)

    async def reconcile_once(self) -> int:
        """One pass over overdue messages; returns how many were looked up."""
        now = self.clock()
        overdue = now - timedelta(seconds=self.sending.reconcile_after_s)
        stmt = (
            select(SendLogRecord)
            .where(SendLogRecord.state == "sent", SendLogRecord.provider_id.is_not(None),
                   or_(SendLogRecord.status.is_(None), SendLogRecord.status.in_(PENDING)),
                   SendLogRecord.updated_at < overdue)
            .order_by(SendLogRecord.updated_at)
            .limit(self.sending.reconcile_batch)
        )
        async with self.db.read_sessions() as session:
            rows = (await session.execute(stmt)).scalars().all()
        for row in rows:
            try:
                if self.ask is not None:
                    await self.ask(row)
                    self.asked += 1
            except Exception as exc:  # the provider is unreachable: ask again next round
                log.warning("provider lookup failed", dispatch_id=row.dispatch_id, error=f"{type(exc).__name__}: {exc}")
            await self._settle(row.dispatch_id)
        return len(rows)

    async def _settle(self, dispatch_id: str) -> None:
        """Still pending after asking: wait another period, or finalise as unknown past the limit."""
        now = self.clock()
        async with self.db.transaction() as session:
            stmt = select(SendLogRecord).where(SendLogRecord.dispatch_id == dispatch_id).with_for_update()
            row = (await session.execute(stmt)).scalar_one_or_none()
            if row is None or (row.status is not None and row.status not in PENDING):
                return
            sent_at = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=now.tzinfo)
            if (now - sent_at).total_seconds() < self.sending.give_up_after_s:
                row.updated_at = now
                return
            message = (f"no final delivery status from the provider {self.sending.give_up_after_s:.0f} s "
                       "after sending")
            row.status, row.error_message, row.updated_at = "unknown", message, now
            add_to_outbox(session, self.topics.contact_outcomes, delivery_event(
                row, "unknown", source=self.source, provider=self.provider, occurred_at=now, error_message=message))
            self.given_up += 1
            log.warning("message finalised as unknown", dispatch_id=dispatch_id)
