"""Token buckets per sender, shared by every concurrent send in the process.

The bucket is the generic cell rate algorithm (GCRA), the exact form of a token bucket: ``rate``
tokens per second, at most ``burst`` back to back. Callers take turns in arrival order, and each
takes its slot when it actually leaves (not when it starts waiting): in any window of ``w`` seconds
at most ``burst + rate * w`` requests leave, even when the event loop wakes the waiters late (a slot
reserved ahead and slept towards would let every waiter of a stalled loop leave at once). A
provider's ``429`` pauses the whole sender for its ``Retry-After``, waiters included.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol


class Bucket(Protocol):
    """What a send waits on: one sender's rate, local to the process or shared by every replica."""

    async def acquire(self, max_wait: float | None = None) -> bool:
        """Wait for a slot; False (without waiting) if none is free within ``max_wait`` seconds."""
        ...

    def pause(self, seconds: float) -> None:
        """No request leaves for ``seconds`` (the provider said ``Retry-After``)."""
        ...


class TokenBucket:
    def __init__(self, rate: float, burst: int = 1, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = max(1, burst)
        self._interval = 1.0 / rate
        self._tolerance = (self.burst - 1) * self._interval
        self._clock = clock
        #: Theoretical arrival time of the next request (GCRA's TAT).
        self._tat = clock()
        #: Callers take their slots one at a time, in arrival order (``asyncio.Lock`` is FIFO).
        self._turn = asyncio.Lock()
        self._waiting = 0

    def reserve(self, max_wait: float | None = None) -> float | None:
        """Reserve the next slot; returns the seconds to wait for it, or ``None`` (nothing reserved)
        when that would be longer than ``max_wait``."""
        now = self._clock()
        tat = max(self._tat, now)
        wait = max(0.0, tat - self._tolerance - now)
        if max_wait is not None and wait > max_wait:
            return None
        self._tat = tat + self._interval
        return wait

    async def acquire(self, max_wait: float | None = None) -> bool:
        """Wait for a slot; False (without waiting) if none is free within ``max_wait`` seconds,
        counting the callers already waiting ahead."""
        now = self._clock()
        ahead = max(self._tat, now) + self._waiting * self._interval - self._tolerance - now
        if max_wait is not None and ahead > max_wait:
            return False
        self._waiting += 1
        try:
            async with self._turn:
                # The slot is taken on leaving: a late wake-up (a busy loop) re-measures, never bunches.
                while (wait := self._tat - self._tolerance - self._clock()) > 0:
                    await asyncio.sleep(wait)
                self._tat = max(self._tat, self._clock()) + self._interval
        finally:
            self._waiting -= 1
        return True

    def pause(self, seconds: float) -> None:
        """No request leaves for ``seconds`` (the provider said ``Retry-After``); no burst after it."""
        resume = self._clock() + seconds
        self._tat = max(self._tat, resume + self._tolerance)


class SenderLimits:
    """One :class:`TokenBucket` per sender key (number or Messaging Service SID), created on first use.

    In-process: right for one replica. With several, :class:`~shared.channels.ratelimit_redis.RedisSenderLimits`
    keeps one bucket per sender in Redis for all of them (same interface)."""

    def __init__(
        self,
        default_rate: float,
        burst: int = 1,
        rates: dict[str, float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.default_rate, self.burst, self.rates, self._clock = default_rate, burst, dict(rates or {}), clock
        self._buckets: dict[str, TokenBucket] = {}

    def rate_of(self, sender: str) -> float:
        return self.rates.get(sender, self.default_rate)

    def bucket(self, sender: str) -> Bucket:
        return self.local_bucket(sender)

    def local_bucket(self, sender: str) -> TokenBucket:
        found = self._buckets.get(sender)
        if found is None:
            found = TokenBucket(self.rate_of(sender), self.burst, self._clock)
            self._buckets[sender] = found
        return found
