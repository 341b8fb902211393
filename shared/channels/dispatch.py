"""The dispatch consumer of a message channel: render, claim, send (rate-limited, retried), record.

At most once on ambiguity (docs/internals.md: delivery guarantees):

1. A dispatch already in the send log is a redelivery: its recorded outcome is re-emitted (a row
   still ``sending`` — a crash after the request may have left — becomes ``unknown``); nothing is sent.
2. Otherwise the pinned template version is rendered and the row is committed as ``sending``
   *before* the provider request.
3. The request is retried while the provider proves it did not process it (429, 503, connection
   refused), with exponential backoff and jitter, honouring ``Retry-After``, until the deadline. A
   send retries inside its batch for at most ``sending.inline_retry_s``; a retry due later is handed
   to the durable retry path (the row becomes ``retrying``, :mod:`shared.channels.deferred`), so one
   stuck send never holds back the other debtors of its partition.
   No request, retry or call starts at or after the dispatch's ``send_before`` (less the adapter's
   lead time: a call's ring time): the dispatch ends ``expired``, unsent, and the orchestrator
   moves it to the next lawful window.
4. The result — ``sent`` with the provider id, ``failed`` with the error code, ``unknown`` — is
   committed with its outcome event (outbox) and the dispatch event id (inbox) in one transaction.

A consumer batch is one unit of work (:meth:`DispatchHandler.batch`, docs/internals.md): one read of the
send log for all its dispatches; the redeliveries replayed, the dispatches that end unsent (late,
template missing or unusable) and the claims all committed in one transaction before the batch's
first provider request; the sends concurrent; the results committed by the process's group writer
(:class:`~shared.db.group.GroupWriter`), many per transaction. At most ``sending.max_claimed``
dispatches are claimed and not yet recorded at any time (a batch with more claims the rest in further
transactions as results are committed), while at most ``sending.max_in_flight`` provider requests
are open: claims are taken in large chunks (a transaction each) and a result waits for its group
commit while the next requests already leave, so the database's round trips neither idle the
provider connections nor cost a transaction per few messages. A process killed mid-batch leaves at
most ``max_claimed`` ``sending`` rows (reported ``unknown``, never resent; a provider callback still
proves the requested ones sent). A record handled alone (``__call__``, the runner's fallback to
isolate a poison record) is a batch of one.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import bindparam, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.bus import PermanentError, RecordMeta, TransientError, event_scope
from shared.channels.attempts import SendAttempts
from shared.channels.models import SendLogRecord, bare_address
from shared.channels.ports import (
    DEADLINE,
    EXPIRED,
    ChannelAdapter,
    OutboundMessage,
    TemplateSource,
    Unsendable,
    resume_record,
)
from shared.channels.ratelimit import SenderLimits
from shared.channels.results import SendRecorder
from shared.channels.sendlog import SEND_LOG, SendLogEntry, SendLogRows
from shared.channels.settings import SendingSettings
from shared.db import Database, GroupWriter, OutboxBatch, mark_processed
from shared.events import Topics, utcnow
from shared.events.contracts import ContactDispatchedEvent
from shared.logging import get_logger
from shared.templates import TemplateError, render_dispatch
from shared.templates.cache import TemplateAccessRefused, TemplateNotFound

log = get_logger(__name__)

# The statements every batch runs, built once and run with parameters (docs/benchmarks.md).
_KNOWN = select(SEND_LOG.c.dispatch_id).where(SEND_LOG.c.dispatch_id.in_(bindparam("ids", expanding=True)))


@functools.cache
def _claims_insert(postgres: bool) -> Any:
    insert = pg_insert if postgres else sqlite_insert
    return insert(SEND_LOG).on_conflict_do_nothing(index_elements=["dispatch_id"]).returning(SEND_LOG.c.dispatch_id)

@dataclass(frozen=True)
class _Unsent:
    """How a dispatch ended without a provider request: ``failed`` or ``expired``, with the reason."""

    status: str
    code: str
    message: str


@dataclass(frozen=True)
class _Prepared:
    """A new dispatch of a batch, ready to claim and send (``message``) or to end unsent (``unsent``)."""

    event: ContactDispatchedEvent
    message: OutboundMessage | None = None
    unsent: _Unsent | None = None
    #: The context ``_prepare`` composed the message in (the event's log scope and trace): its send
    #: runs in it, without binding the scope again.
    scope: contextvars.Context | None = None

    @property
    def dispatch_id(self) -> str:
        return self.event.data.dispatch_id


class DispatchHandler:
    """``ConsumerRunner`` handler for ``cadencia.contact.dispatched.v1`` on one channel: ``batch`` is its
    batch handler, ``__call__`` its handler for one record; both give a record the same outcome."""

    def __init__(
        self,
        *,
        adapter: ChannelAdapter,
        db: Database,
        writer: GroupWriter,
        topics: Topics,
        templates: TemplateSource,
        limits: SenderLimits,
        sending: SendingSettings,
        callback_url: Callable[[str], str],
        consumer: str,
        source: str,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
    ) -> None:
        self.adapter, self.db, self.writer, self.topics = adapter, db, writer, topics
        self.templates, self.limits, self.sending, self.callback_url = templates, limits, sending, callback_url
        self.consumer, self.source, self.clock = consumer, source, clock
        self._slots = asyncio.Semaphore(sending.max_in_flight)
        self._stopping = asyncio.Event()
        self.attempts = SendAttempts(adapter, limits, sending, clock, rng or random.Random(), self._stopping)
        self.recorder = SendRecorder(consumer=consumer, topics=topics, source=source, provider=adapter.provider,
                                     clock=clock)
        #: Sends ended, by result (for metrics and benchmarks).
        self.results: dict[str, int] = {}
        #: Claim transactions committed (each before the requests of the dispatches it claimed).
        self.claims = 0

    @property
    def requests(self) -> int:
        """Provider requests made (for metrics, benchmarks and tests)."""
        return self.attempts.requests

    def stop(self) -> None:
        """Stop waiting between retries: unsent dispatches are released for the next owner."""
        self._stopping.set()

    async def __call__(self, event: Any, meta: RecordMeta) -> None:
        await self.batch([(event, meta)])

    async def batch(self, items: Sequence[tuple[Any, RecordMeta]]) -> None:
        """Apply a consumer batch of dispatches; returns once every outcome is committed.

        Raises ``PermanentError`` (a record that is not a dispatch of this channel, a template we are
        refused) before anything is written, so the runner can isolate the record; ``TransientError``
        when it must be retried (the template API unreachable, or stopping with dispatches unsent).
        """
        events = [self._dispatch_of(event) for event, _ in items]
        first: dict[str, ContactDispatchedEvent] = {}
        repeated: list[ContactDispatchedEvent] = []
        for event in events:
            if event.data.dispatch_id in first:
                repeated.append(event)  # the same dispatch twice in one batch: sent once, then replayed
            else:
                first[event.data.dispatch_id] = event
        known = await self._known(list(first))
        redelivered = [e for e in first.values() if e.data.dispatch_id in known]
        prepared = [await self._prepare(e) for e in first.values() if e.data.dispatch_id not in known]
        await self._claim_and_send(redelivered, prepared)
        if repeated:
            async with self.db.transaction() as session:
                outbox, marks = OutboxBatch(), list[str]()
                await self._replay(session, outbox, marks, repeated)
                await mark_processed(session, self.consumer, marks)
                await outbox.insert(session)

    # -- steps ----------------------------------------------------------------------------------------

    def _dispatch_of(self, event: Any) -> ContactDispatchedEvent:
        if not isinstance(event, ContactDispatchedEvent):
            raise PermanentError(f"unexpected event type {getattr(event, 'type', '?')}")
        if event.data.channel != self.adapter.channel:
            raise PermanentError(f"a {event.data.channel} dispatch on the {self.adapter.channel} service")
        return event

    async def _known(self, dispatch_ids: list[str]) -> set[str]:
        """The dispatches of ``dispatch_ids`` already in the send log (one read, no lock)."""
        async with self.db.read_sessions() as session:
            # Core, not an ORM select: once per batch, and small batches are the whole system's normal case.
            return set((await session.execute(_KNOWN, {"ids": dispatch_ids})).scalars())

    async def _prepare(self, event: ContactDispatchedEvent) -> _Prepared:
        """Check the time left, render the pinned template and compose the provider request."""
        dispatch = event.data
        with event_scope(event):  # the callback URL and custom args carry the dispatch's trace
            if self.attempts.remaining(dispatch) <= 0:
                late = self.attempts.out_of_time(dispatch, 0, None)
                status = EXPIRED if late.kind == EXPIRED else "failed"
                return _Prepared(event, unsent=_Unsent(status, late.error_code or DEADLINE, late.error_message or ""))
            try:
                template = await self.templates.get(dispatch.template.key, dispatch.template.version)
                rendered = render_dispatch(template, dispatch.variables)
                message = await self.adapter.compose(dispatch, rendered, self.callback_url(dispatch.dispatch_id))
            except TemplateNotFound as exc:
                return _Prepared(event, unsent=_Unsent("failed", "template_not_found", str(exc)))
            except TemplateError as exc:
                return _Prepared(event, unsent=_Unsent("failed", "template_error", exc.message))
            except Unsendable as exc:
                return _Prepared(event, unsent=_Unsent("failed", exc.code, exc.message))
            except TemplateAccessRefused as exc:
                # Retrying would stall the partition forever; the dead letter is replayed once the key is fixed.
                raise PermanentError(str(exc)) from exc
            except httpx.HTTPError as exc:  # the orchestrator's template API is unreachable: retry the event
                raise TransientError(f"template lookup failed: {exc}") from exc
            return _Prepared(event, message=message, scope=contextvars.copy_context())

    async def _claim_and_send(self, redelivered: list[ContactDispatchedEvent], prepared: list[_Prepared]) -> None:
        """Claim, send and record. The first claim transaction also replays the redeliveries and ends
        the unsent dispatches. At most ``max_claimed`` dispatches are claimed and not yet recorded; the
        provider requests themselves are limited to ``max_in_flight`` at a time (``self._slots``)."""
        capacity = max(self.sending.max_claimed, self.sending.max_in_flight)
        waiting = deque(p for p in prepared if p.message is not None)
        unsent = [p for p in prepared if p.unsent is not None]
        open_claims = 0  # claimed, result not yet committed
        room = asyncio.Event()
        sends: list[asyncio.Task[asyncio.Future[Any] | None]] = []
        last_of: dict[str, asyncio.Task[Any]] = {}  # per debtor: its requests leave in batch order
        released: list[str] = []

        def closed(_: object = None) -> None:
            nonlocal open_claims
            open_claims -= 1
            room.set()

        def sent(task: asyncio.Task[asyncio.Future[Any] | None]) -> None:
            # A claim stays open until its result is committed: a kill leaves at most ``capacity`` of them.
            recorded = None if task.cancelled() or task.exception() is not None else task.result()
            if recorded is None:
                closed()
            else:
                recorded.add_done_callback(closed)

        first, failure = True, None
        try:
            while first or (waiting and not self._stopping.is_set()):
                free = capacity - open_claims
                if not first and free < min(len(waiting), max(1, capacity // 2)):
                    room.clear()
                    await room.wait()
                    continue
                chunk = [waiting.popleft() for _ in range(min(free, len(waiting)))]
                claimed = await self._claim(redelivered if first else [], unsent if first else [], chunk)
                first = False
                for p in claimed:
                    open_claims += 1
                    debtor = p.event.data.debtor_id
                    task = asyncio.create_task(self._send_one(p, last_of.get(debtor), released), context=p.scope)
                    task.add_done_callback(sent)
                    last_of[debtor] = task
                    sends.append(task)
        except Exception as exc:  # a claim failed: the dispatches claimed before it are still sent and recorded
            failure = exc
        outcomes = await asyncio.gather(*sends, return_exceptions=True)  # no send outlives its batch
        if released:
            await self._release(released)
        recorded = [o for o in outcomes if isinstance(o, asyncio.Future)]
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        errors += [r for r in await asyncio.gather(*recorded, return_exceptions=True) if isinstance(r, BaseException)]
        if failure is not None:
            raise failure
        if waiting or released:
            # Stopping: what was not sent stays uncommitted on the topic for the next owner.
            left = len(waiting) + len(released)
            raise TransientError(f"stopping; {left} dispatch(es) left unsent for the next owner")
        if errors:
            raise errors[0]

    async def _send_one(
        self, prepared: _Prepared, after: asyncio.Task[Any] | None, released: list[str]
    ) -> asyncio.Future[Any] | None:
        """Send one claimed dispatch (after its debtor's previous one); the future of its recorded result.

        Runs in the event's scope (its task is created in ``prepared.scope``)."""
        if after is not None:
            await asyncio.wait([after])
        event, message = prepared.event, prepared.message
        assert message is not None
        if self._stopping.is_set():
            released.append(event.data.dispatch_id)  # claimed, never requested: the next owner sends it
            return None
        async with self._slots:
            result = await self.attempts.send(event.data, message)
        if result.kind == "stopped":
            await self._release([event.data.dispatch_id])
            raise TransientError("stopping between retries; the dispatch was not sent")
        if result.kind == "retry":
            result = replace(result, resume=resume_record(event, message))
            log.info("send deferred to the durable retry path", dispatch_id=event.data.dispatch_id,
                     attempts=result.attempts)
        self.results[result.kind] = self.results.get(result.kind, 0) + 1
        return self.writer.submit(self.recorder.record, (event, result))

    def _new_row(self, event: ContactDispatchedEvent, state: str, sender: str) -> SendLogEntry:
        d = event.data
        now = self.clock()
        return SendLogEntry(
            dispatch_id=d.dispatch_id, event_id=event.id, request_id=d.request_id, debtor_id=d.debtor_id,
            account_id=d.account_id, channel=d.channel, address=d.to, address_key=bare_address(d.to),
            locale=d.locale, sender=sender, template_key=d.template.key, template_version=d.template.version,
            state=state, status=None, provider_id=None, error_code=None, error_message=None, attempts=0,
            created_at=now, updated_at=now,
        )

    async def _claim(
        self, redelivered: list[ContactDispatchedEvent], unsent: list[_Prepared], chunk: list[_Prepared]
    ) -> list[_Prepared]:
        """One transaction, committed before any request of ``chunk`` leaves: the ``sending`` claims of
        ``chunk``, the unsent dispatches ended with their outcomes, the redeliveries replayed. Returns
        the claimed part of ``chunk`` (a dispatch another consumer logged first is replayed instead)."""
        if not (redelivered or unsent or chunk):
            return []
        rows: list[SendLogEntry] = []
        staged: dict[str, OutboxBatch] = {}  # an unsent dispatch's outcome, kept if its row goes in
        for p in unsent:
            assert p.unsent is not None
            row = self._new_row(p.event, EXPIRED if p.unsent.status == EXPIRED else "failed", "")
            staged[p.dispatch_id] = OutboxBatch()
            with event_scope(p.event):
                self.recorder.advance(staged[p.dispatch_id], row, p.unsent.status, p.unsent.code, p.unsent.message)
            rows.append(row)
        for p in chunk:
            assert p.message is not None
            rows.append(self._new_row(p.event, "sending", p.message.sender))
        async with self.db.transaction() as session:
            inserted = await self._insert(session, rows)
            outbox, marks = OutboxBatch(), []
            for p in unsent:
                if p.dispatch_id in inserted:
                    outbox.extend(staged[p.dispatch_id])
                    marks.append(p.event.id)
                    with event_scope(p.event):
                        log.warning("dispatch failed before sending", dispatch_id=p.dispatch_id,
                                    code=p.unsent.code if p.unsent else None)
            taken = [p.event for p in (*unsent, *chunk) if p.dispatch_id not in inserted]
            await self._replay(session, outbox, marks, [*redelivered, *taken])
            await mark_processed(session, self.consumer, marks)
            await outbox.insert(session)
        self.claims += 1
        return [p for p in chunk if p.dispatch_id in inserted]

    async def _insert(self, session: AsyncSession, rows: list[SendLogEntry]) -> set[str]:
        """Insert send-log rows in one statement; returns the dispatch ids that were not there yet."""
        if not rows:
            return set()
        stmt = _claims_insert(self.db.is_postgres)
        # executemany: the statement is compiled once and sent as multi-row VALUES (insertmanyvalues).
        return set((await session.execute(stmt, [row.values() for row in rows])).scalars())

    async def _replay(
        self, session: AsyncSession, outbox: OutboxBatch, marks: list[str], events: list[ContactDispatchedEvent]
    ) -> None:
        """Re-emit the recorded outcome of dispatches already in the send log (redeliveries)."""
        if not events:
            return
        rows = await SendLogRows.by_dispatch(session, (e.data.dispatch_id for e in events))
        by_id = {row.dispatch_id: row for row in rows}
        for event in events:
            row = by_id.get(event.data.dispatch_id)
            if row is None:  # released by a stopping consumer since we read it: handle the batch again
                raise TransientError(f"dispatch {event.data.dispatch_id} left the send log while being replayed")
            marks.append(event.id)
            with event_scope(event):
                self.recorder.replay_row(outbox, row)
        await rows.save(session)

    async def _release(self, dispatch_ids: list[str]) -> None:
        """Forget claims whose every attempt was refused unprocessed (or never made), so the next owner
        sends them."""
        async with self.db.transaction() as session:
            await session.execute(
                delete(SendLogRecord).where(
                    SendLogRecord.dispatch_id.in_(dispatch_ids), SendLogRecord.state == "sending"
                )
            )
