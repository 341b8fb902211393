"""One dispatch's provider requests: rate-limited, retried while the provider proves it processed
nothing, never started at or after ``send_before`` (docs/internals.md: delivery guarantees).

A request is retried on 429, 503 and refused connections with exponential backoff and jitter, honouring
``Retry-After``, until the dispatch's deadline. Inside a consumer batch a send retries for at most
``sending.inline_retry_s``; a retry due later ends the attempts with a ``retry`` result, which the
durable retry path (:mod:`shared.channels.deferred`) resumes, so one stuck send never holds back the
other debtors of its partition.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable
from datetime import datetime, timedelta

from shared.channels.ports import DEADLINE, EXPIRED, ChannelAdapter, OutboundMessage, SendResult
from shared.channels.ratelimit import SenderLimits
from shared.channels.retry import backoff_delay
from shared.channels.settings import SendingSettings
from shared.events import aware
from shared.events.contracts import ContactDispatched
from shared.logging import get_logger
from shared.providers.base import Ambiguous, Rejected, Retryable

log = get_logger(__name__)


class SendAttempts:
    """The attempts of every send of one channel process (the consumer's and the retry path's)."""

    def __init__(
        self,
        adapter: ChannelAdapter,
        limits: SenderLimits,
        sending: SendingSettings,
        clock: Callable[[], datetime],
        rng: random.Random,
        stopping: asyncio.Event,
    ) -> None:
        self.adapter, self.limits, self.sending, self.clock, self.rng = adapter, limits, sending, clock, rng
        self._stopping = stopping
        #: Provider requests made (for metrics and benchmarks).
        self.requests = 0

    async def send(
        self, dispatch: ContactDispatched, message: OutboundMessage, *, attempts: int = 0, until: float | None = None
    ) -> SendResult:
        """Attempt the request until it is answered, the time left runs out, or the next attempt would
        start after ``until`` (loop time; by default ``inline_retry_s`` after the first attempt): then
        the send is deferred (``retry``). ``attempts`` were made before (by earlier holders)."""
        loop = asyncio.get_running_loop()
        bucket = self.limits.bucket(message.sender)
        attempt = attempts
        last: Retryable | None = None
        while True:
            remaining = self.remaining(dispatch)
            if remaining <= 0:
                return self.out_of_time(dispatch, attempt, last)
            queue = remaining if until is None else min(remaining, max(0.0, until - loop.time()))
            if not await bucket.acquire(max_wait=queue):
                if queue < remaining:  # the sender is paused past the bound: resume it later
                    return self.deferred(attempt, last, self.sending.inline_retry_s)
                return self.out_of_time(dispatch, attempt, last)
            if self.remaining(dispatch) <= 0:
                return self.out_of_time(dispatch, attempt, last)
            if until is None:
                until = loop.time() + self.sending.inline_retry_s
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
                if delay >= self.remaining(dispatch):
                    return self.out_of_time(dispatch, attempt, last)
                if loop.time() + delay > until:
                    return self.deferred(attempt, last, delay)
                log.info("transient provider error; retrying", dispatch_id=dispatch.dispatch_id,
                         attempt=attempt, status=exc.status, code=exc.code, delay=round(delay, 3))
                if await self.wait_or_stop(delay):
                    return SendResult("stopped", attempt, error_message=exc.message)
                continue
            except Rejected as exc:
                return SendResult("rejected", attempt, error_code=exc.code, error_message=exc.message)
            except Ambiguous as exc:
                log.warning("provider request outcome unknown", dispatch_id=dispatch.dispatch_id, error=exc.message)
                return SendResult("unknown", attempt, error_message=exc.message)
            return SendResult("sent", attempt, accepted=accepted)

    def deferred(self, attempts: int, last: Retryable | None, delay: float) -> SendResult:
        return SendResult("retry", attempts, error_code=last.code if last is not None else None,
                          error_message=last.message if last is not None else "the sender is paused",
                          retry_at=self.clock() + timedelta(seconds=delay))

    def out_of_time(self, dispatch: ContactDispatched, attempts: int, last: Retryable | None) -> SendResult:
        detail = f"; last error: {last.message}" if last is not None else ""
        if self.to_send_before(dispatch) <= self.to_deadline(dispatch):
            return SendResult(EXPIRED, attempts, error_code=EXPIRED,
                              error_message=f"no provider request could start before send_before{detail}")
        return SendResult("deadline", attempts, error_code=DEADLINE,
                          error_message=f"deadline passed before the provider accepted the message{detail}")

    async def wait_or_stop(self, delay: float) -> bool:
        try:
            await asyncio.wait_for(self._stopping.wait(), delay)
        except TimeoutError:
            return False
        return True

    def remaining(self, dispatch: ContactDispatched) -> float:
        """Seconds left to start a provider request: to the deadline or to ``send_before`` less the
        lead time, whichever comes first."""
        return min(self.to_deadline(dispatch), self.to_send_before(dispatch))

    def to_deadline(self, dispatch: ContactDispatched) -> float:
        return (aware(dispatch.deadline) - self.clock()).total_seconds()

    def to_send_before(self, dispatch: ContactDispatched) -> float:
        if dispatch.send_before is None:
            return math.inf
        return (aware(dispatch.send_before) - self.clock()).total_seconds() - self.adapter.lead_time_s
