"""The dispatch consumer of a message channel: render, claim, send (rate-limited, retried), record.

At most once on ambiguity (DESIGN §4):

1. A dispatch already in the send log is a redelivery: its recorded outcome is re-emitted (a row
   still ``sending`` — a crash after the request may have left — becomes ``unknown``); nothing is sent.
2. Otherwise the pinned template version is rendered and the row is committed as ``sending``
   *before* the provider request.
3. The request is retried while the provider proves it did not process it (429, 503, connection
   refused), with exponential backoff and jitter, honouring ``Retry-After``, until the deadline.
   No request, retry or call starts at or after the dispatch's ``send_before`` (less the adapter's
   lead time: a call's ring time): the dispatch ends ``expired``, unsent, and the orchestrator
   moves it to the next lawful window.
4. The result — ``sent`` with the provider id, ``failed`` with the error code, ``unknown`` — is
   committed with its outcome event (outbox) and the dispatch event id (inbox) in one transaction.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import httpx
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shared.bus import PermanentError, RecordMeta, TransientError
from shared.channels.models import SendLogRecord, bare_address
from shared.channels.outcomes import advance, delivery_event, stage_opt_out
from shared.channels.ratelimit import SenderLimits
from shared.channels.retry import backoff_delay
from shared.channels.settings import SendingSettings
from shared.db import Database, add_to_outbox, first_time
from shared.events import Topics, utcnow
from shared.events.contracts import Channel, ContactDispatched, ContactDispatchedEvent, TemplatePublished
from shared.logging import get_logger
from shared.providers.base import Accepted, Ambiguous, Rejected, Retryable
from shared.providers.twilio import OPTED_OUT
from shared.templates import RenderedMessage, TemplateError, render_dispatch
from shared.templates.cache import TemplateAccessRefused, TemplateNotFound

log = get_logger(__name__)

DEADLINE = "deadline"
EXPIRED: Literal["expired"] = "expired"


@dataclass(frozen=True)
class OutboundMessage:
    """What one channel hands its provider: the address, the rate-limit key, the request payload
    (Twilio's form parameters, SendGrid's JSON mail body)."""

    to: str
    sender: str
    payload: dict[str, Any]


class Unsendable(Exception):
    """The rendered template cannot make a message for this channel (e.g. no body): fail the dispatch."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class ChannelAdapter(Protocol):
    """What a channel adds to the shared pipeline: composing its provider request, and sending it."""

    channel: Channel
    provider: str
    #: Seconds a provider request keeps contacting the debtor after it leaves (a call rings): it must
    #: leave this long before ``send_before``.
    lead_time_s: float

    async def compose(
        self, dispatch: ContactDispatched, rendered: RenderedMessage, status_callback: str
    ) -> OutboundMessage: ...

    async def send(self, message: OutboundMessage) -> Accepted: ...


class TemplateSource(Protocol):
    async def get(self, key: str, version: int) -> TemplatePublished: ...


@dataclass(frozen=True)
class SendResult:
    kind: Literal["sent", "rejected", "unknown", "deadline", "expired"]
    attempts: int
    accepted: Accepted | None = None
    error_code: str | None = None
    error_message: str | None = None


def aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class DispatchHandler:
    """``ConsumerRunner`` handler for ``cadencia.contact.dispatched.v1`` on one channel."""

    def __init__(
        self,
        *,
        adapter: ChannelAdapter,
        db: Database,
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
        self.adapter, self.db, self.topics, self.templates = adapter, db, topics, templates
        self.limits, self.sending, self.callback_url = limits, sending, callback_url
        self.consumer, self.source, self.clock = consumer, source, clock
        self.rng = rng or random.Random()
        self._slots = asyncio.Semaphore(sending.max_in_flight)
        self._stopping = asyncio.Event()
        #: Provider requests made, by result (for metrics and benchmarks).
        self.requests = 0
        self.results: dict[str, int] = {}

    def stop(self) -> None:
        """Stop waiting between retries: unsent dispatches are released for the next owner."""
        self._stopping.set()

    async def __call__(self, event: Any, meta: RecordMeta) -> None:
        if not isinstance(event, ContactDispatchedEvent):
            raise PermanentError(f"unexpected event type {getattr(event, 'type', '?')}")
        dispatch = event.data
        if dispatch.channel != self.adapter.channel:
            raise PermanentError(f"a {dispatch.channel} dispatch on the {self.adapter.channel} service")
        if await self._replay(event):
            return
        if self._remaining(dispatch) <= 0:
            late = self._out_of_time(dispatch, 0, None)
            status = EXPIRED if late.kind == EXPIRED else "failed"
            await self._fail_unsent(event, late.error_code or DEADLINE, late.error_message or "", status)
            return
        try:
            template = await self.templates.get(dispatch.template.key, dispatch.template.version)
            rendered = render_dispatch(template, dispatch.variables)
            message = await self.adapter.compose(dispatch, rendered, self.callback_url(dispatch.dispatch_id))
        except TemplateNotFound as exc:
            await self._fail_unsent(event, "template_not_found", str(exc))
            return
        except TemplateError as exc:
            await self._fail_unsent(event, "template_error", exc.message)
            return
        except Unsendable as exc:
            await self._fail_unsent(event, exc.code, exc.message)
            return
        except TemplateAccessRefused as exc:
            # Retrying would stall the partition forever; the dead letter is replayed once the key is fixed.
            raise PermanentError(str(exc)) from exc
        except httpx.HTTPError as exc:  # the orchestrator's template API is unreachable: retry the event
            raise TransientError(f"template lookup failed: {exc}") from exc
        async with self._slots:
            if not await self._claim(event, message):
                await self._replay(event)
                return
            result = await self._send(dispatch, message)
            self.results[result.kind] = self.results.get(result.kind, 0) + 1
            await self._record(event, result)

    # -- steps ----------------------------------------------------------------------------------------

    def _remaining(self, dispatch: ContactDispatched) -> float:
        """Seconds left to start a provider request: to the deadline or to ``send_before`` less the
        lead time, whichever comes first."""
        return min(self._to_deadline(dispatch), self._to_send_before(dispatch))

    def _to_deadline(self, dispatch: ContactDispatched) -> float:
        return (aware(dispatch.deadline) - self.clock()).total_seconds()

    def _to_send_before(self, dispatch: ContactDispatched) -> float:
        if dispatch.send_before is None:
            return math.inf
        return (aware(dispatch.send_before) - self.clock()).total_seconds() - self.adapter.lead_time_s

    def _new_row(self, event: ContactDispatchedEvent, state: str, sender: str) -> SendLogRecord:
        d = event.data
        now = self.clock()
        return SendLogRecord(
            dispatch_id=d.dispatch_id, event_id=event.id, request_id=d.request_id, debtor_id=d.debtor_id,
            account_id=d.account_id, channel=d.channel, address=d.to, address_key=bare_address(d.to),
            locale=d.locale, sender=sender, template_key=d.template.key, template_version=d.template.version,
            state=state, status=None, provider_id=None, attempts=0, created_at=now, updated_at=now,
        )

    async def _replay(self, event: ContactDispatchedEvent) -> bool:
        """Re-emit the outcome of a dispatch already in the send log; False if it is new."""
        async with self.db.transaction() as session:
            row = await self._locked(session, event.data.dispatch_id)
            if row is None:
                return False
            await first_time(session, self.consumer, event.id)
            if row.state == "sending":
                # Claimed, then the process died or lost the partition: the request may have left.
                row.state = "unknown"
                self._advance(session, row, "unknown", error_message="no provider answer was recorded")
                log.warning("dispatch left sending; reported unknown", dispatch_id=row.dispatch_id)
                return True
            status = row.status or ("failed" if row.state == "failed" else "unknown")
            self._emit(session, row, status, row.error_code, row.error_message)
            if row.error_code == OPTED_OUT:
                self._opt_out(session, row)
            log.info("redelivered dispatch; outcome re-emitted", dispatch_id=row.dispatch_id, state=row.state)
            return True

    async def _locked(self, session: AsyncSession, dispatch_id: str) -> SendLogRecord | None:
        stmt = select(SendLogRecord).where(SendLogRecord.dispatch_id == dispatch_id).with_for_update()
        return (await session.execute(stmt)).scalar_one_or_none()

    async def _insert(
        self, row: SendLogRecord, then: Callable[[AsyncSession, SendLogRecord], Awaitable[None]] | None = None
    ) -> bool:
        try:
            async with self.db.transaction() as session:
                session.add(row)
                await session.flush()
                if then is not None:
                    await then(session, row)
        except IntegrityError:
            return False  # someone claimed it first: the caller replays
        return True

    async def _claim(self, event: ContactDispatchedEvent, message: OutboundMessage) -> bool:
        """Commit ``sending`` before the request leaves."""
        return await self._insert(self._new_row(event, "sending", message.sender))

    async def _fail_unsent(
        self, event: ContactDispatchedEvent, code: str, message: str, status: str = "failed"
    ) -> None:
        """End a dispatch that was never sent: ``failed`` (deadline passed, template missing or unusable)
        or ``expired`` (its lawful window ended first)."""

        async def finish(session: AsyncSession, row: SendLogRecord) -> None:
            await first_time(session, self.consumer, event.id)
            self._advance(session, row, status, code, message)

        if not await self._insert(self._new_row(event, "expired" if status == EXPIRED else "failed", ""), finish):
            await self._replay(event)
            return
        log.warning("dispatch failed before sending", dispatch_id=event.data.dispatch_id, code=code)

    async def _send(self, dispatch: ContactDispatched, message: OutboundMessage) -> SendResult:
        bucket = self.limits.bucket(message.sender)
        attempt = 0
        last: Retryable | None = None
        while True:
            remaining = self._remaining(dispatch)
            if remaining <= 0 or not await bucket.acquire(max_wait=remaining) or self._remaining(dispatch) <= 0:
                return self._out_of_time(dispatch, attempt, last)
            attempt += 1
            self.requests += 1
            try:
                accepted = await self.adapter.send(message)
            except Retryable as exc:
                last = exc
                if exc.status == 429 and exc.retry_after:
                    bucket.pause(exc.retry_after)
                delay = backoff_delay(
                    attempt, base=self.sending.retry_base_s, cap=self.sending.retry_cap_s,
                    retry_after=exc.retry_after, rng=self.rng,
                )
                if delay >= self._remaining(dispatch):
                    return self._out_of_time(dispatch, attempt, last)
                log.info("transient provider error; retrying", dispatch_id=dispatch.dispatch_id,
                         attempt=attempt, status=exc.status, code=exc.code, delay=round(delay, 3))
                if await self._wait_or_stop(delay):
                    await self._release(dispatch.dispatch_id)
                    raise TransientError("stopping between retries; the dispatch was not sent") from exc
                continue
            except Rejected as exc:
                return SendResult("rejected", attempt, error_code=exc.code, error_message=exc.message)
            except Ambiguous as exc:
                log.warning("provider request outcome unknown", dispatch_id=dispatch.dispatch_id, error=exc.message)
                return SendResult("unknown", attempt, error_message=exc.message)
            return SendResult("sent", attempt, accepted=accepted)

    def _out_of_time(self, dispatch: ContactDispatched, attempts: int, last: Retryable | None) -> SendResult:
        detail = f"; last error: {last.message}" if last is not None else ""
        if self._to_send_before(dispatch) <= self._to_deadline(dispatch):
            return SendResult(EXPIRED, attempts, error_code=EXPIRED,
                              error_message=f"no provider request could start before send_before{detail}")
        return SendResult("deadline", attempts, error_code=DEADLINE,
                          error_message=f"deadline passed before the provider accepted the message{detail}")

    async def _wait_or_stop(self, delay: float) -> bool:
        try:
            await asyncio.wait_for(self._stopping.wait(), delay)
        except TimeoutError:
            return False
        return True

    async def _release(self, dispatch_id: str) -> None:
        """Forget a claim whose every attempt was refused unprocessed, so the next owner sends it."""
        async with self.db.transaction() as session:
            await session.execute(
                delete(SendLogRecord).where(
                    SendLogRecord.dispatch_id == dispatch_id, SendLogRecord.state == "sending"
                )
            )

    async def _record(self, event: ContactDispatchedEvent, result: SendResult) -> None:
        async with self.db.transaction() as session:
            row = await self._locked(session, event.data.dispatch_id)
            if row is None:
                return
            await first_time(session, self.consumer, event.id)
            row.attempts, row.updated_at = result.attempts, self.clock()
            if result.kind == "sent":
                assert result.accepted is not None
                if row.state in ("sending", "unknown"):
                    row.state = "sent"
                row.provider_id = row.provider_id or result.accepted.provider_id
                self._advance(session, row, "accepted")
            elif result.kind == "unknown":
                if row.state == "sending":
                    row.state = "unknown"
                    self._advance(session, row, "unknown", error_message=result.error_message)
            elif result.kind == EXPIRED:
                row.state = EXPIRED
                self._advance(session, row, EXPIRED, result.error_code, result.error_message)
            else:
                row.state = "failed"
                self._advance(session, row, "failed", result.error_code, result.error_message)
                if result.error_code == OPTED_OUT:
                    self._opt_out(session, row)

    # -- outcomes -------------------------------------------------------------------------------------

    def _advance(
        self, session: AsyncSession, row: SendLogRecord, status: str,
        error_code: str | None = None, error_message: str | None = None,
    ) -> None:
        advance(
            session, self.topics.contact_outcomes, row, status, source=self.source, provider=self.adapter.provider,
            now=self.clock(), error_code=error_code, error_message=error_message,
        )

    def _emit(
        self, session: AsyncSession, row: SendLogRecord, status: str, error_code: str | None, error_message: str | None
    ) -> None:
        event = delivery_event(
            row, status, source=self.source, provider=self.adapter.provider, occurred_at=self.clock(),
            error_code=error_code, error_message=error_message,
        )
        add_to_outbox(session, self.topics.contact_outcomes, event)

    def _opt_out(self, session: AsyncSession, row: SendLogRecord) -> None:
        stage_opt_out(session, self.topics.contact_outcomes, row, source=self.source, now=self.clock())
