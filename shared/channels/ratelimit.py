"""Token buckets per sender, shared by every concurrent send in the process.

The bucket is the generic cell rate algorithm (GCRA), the exact form of a token bucket: ``rate``
tokens per second, at most ``burst`` back to back. Callers reserve a slot in arrival order and
sleep until it; in any window of ``w`` seconds at most ``burst + rate * w`` requests leave. A
provider's ``429`` pauses the whole sender for its ``Retry-After``.
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
        """Wait for a slot; False (without waiting) if none is free within ``max_wait`` seconds."""
        wait = self.reserve(max_wait)
        if wait is None:
            return False
        if wait > 0:
            await asyncio.sleep(wait)
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
