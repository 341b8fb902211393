"""What a send's result writes: the send-log row's new state and its outcome events (outbox), with the
dispatch event's inbox mark, in the group writer's transaction (:class:`~shared.db.group.GroupWriter`);
and what a redelivered dispatch re-emits from its row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from shared.channels.outcomes import advance as advance_outcome
from shared.channels.outcomes import delivery_event, stage_opt_out
from shared.channels.ports import EXPIRED, RETRYING, SendResult
from shared.channels.sendlog import SendLogEntry, SendLogRows
from shared.db import OutboxBatch, Write, add_to_outbox, mark_processed
from shared.events import Topics
from shared.events.contracts import ContactDispatchedEvent
from shared.logging import get_logger
from shared.providers.reasons import delivery_reason

log = get_logger(__name__)


class SendRecorder:
    """Records send results and replays recorded ones for one channel's dispatch consumer."""

    def __init__(
        self, *, consumer: str, topics: Topics, source: str, provider: str, clock: Callable[[], datetime]
    ) -> None:
        self.consumer, self.topics, self.source, self.provider, self.clock = consumer, topics, source, provider, clock

    async def record(
        self, session: AsyncSession, writes: Sequence[Write[tuple[ContactDispatchedEvent, SendResult]]]
    ) -> list[None]:
        """The group writer's kind for send results: one read of their rows, one insert of their outcomes."""
        rows = await SendLogRows.by_dispatch(session, (w.item[0].data.dispatch_id for w in writes))
        by_id = {row.dispatch_id: row for row in rows}
        outbox, marks = OutboxBatch(), []
        for write in writes:
            event, result = write.item
            row = by_id.get(event.data.dispatch_id)
            if row is None:
                continue
            marks.append(event.id)
            write.run(self.apply, outbox, row, result)
        await rows.save(session)
        await mark_processed(session, self.consumer, marks)
        await outbox.insert(session)
        return [None] * len(writes)

    def apply(self, outbox: OutboxBatch, row: SendLogEntry, result: SendResult) -> None:
        row.attempts, row.updated_at = result.attempts, self.clock()
        if result.kind == "retry":
            if row.state == "sending":  # no outcome yet: the retry path reports it when the send ends
                row.state, row.next_attempt_at = RETRYING, result.retry_at
                row.resume = result.resume or row.resume
                row.error_code, row.error_message = result.error_code, result.error_message
            return
        if row.next_attempt_at is not None:  # a deferred send ends: its last transient error is history
            row.error_code = row.error_message = None
        row.next_attempt_at = row.resume = None
        if result.kind == "sent":
            assert result.accepted is not None
            if row.state in ("sending", "unknown"):
                row.state = "sent"
            row.provider_id = row.provider_id or result.accepted.provider_id
            self.advance(outbox, row, "accepted")
        elif result.kind == "unknown":
            if row.state == "sending":
                row.state = "unknown"
                self.advance(outbox, row, "unknown", error_message=result.error_message)
        elif result.kind == EXPIRED:
            row.state = EXPIRED
            self.advance(outbox, row, EXPIRED, result.error_code, result.error_message)
        else:
            row.state = "failed"
            self.advance(outbox, row, "failed", result.error_code, result.error_message)
            if delivery_reason(self.provider, result.error_code) == "opted_out":
                self.opt_out(outbox, row)

    def advance(
        self, outbox: OutboxBatch, row: SendLogEntry, status: str,
        error_code: str | None = None, error_message: str | None = None,
    ) -> None:
        advance_outcome(
            outbox, self.topics.contact_outcomes, row, status, source=self.source, provider=self.provider,
            now=self.clock(), error_code=error_code, error_message=error_message,
        )

    def emit(
        self, outbox: OutboxBatch, row: SendLogEntry, status: str, error_code: str | None, error_message: str | None
    ) -> None:
        event = delivery_event(
            row, status, source=self.source, provider=self.provider, occurred_at=self.clock(),
            error_code=error_code, error_message=error_message,
        )
        add_to_outbox(outbox, self.topics.contact_outcomes, event)

    def opt_out(self, outbox: OutboxBatch, row: SendLogEntry) -> None:
        stage_opt_out(outbox, self.topics.contact_outcomes, row, source=self.source, now=self.clock())

    def replay_row(self, outbox: OutboxBatch, row: SendLogEntry) -> None:
        if row.state == RETRYING or (row.state == "sending" and row.next_attempt_at is not None):
            # The durable retry path owns it (its outcome comes from there): nothing to re-emit.
            log.info("redelivered dispatch is with the retry path", dispatch_id=row.dispatch_id, state=row.state)
            return
        if row.state == "sending":
            # Claimed, then the process died or lost the partition: the request may have left.
            row.state = "unknown"
            self.advance(outbox, row, "unknown", error_message="no provider answer was recorded")
            log.warning("dispatch left sending; reported unknown", dispatch_id=row.dispatch_id)
            return
        status = row.status or ("failed" if row.state == "failed" else "unknown")
        self.emit(outbox, row, status, row.error_code, row.error_message)
        if delivery_reason(self.provider, row.error_code) == "opted_out":
            self.opt_out(outbox, row)
        log.info("redelivered dispatch; outcome re-emitted", dispatch_id=row.dispatch_id, state=row.state)
