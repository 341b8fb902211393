"""Per-sender rate limits shared by every replica: the same GCRA as :mod:`shared.channels.ratelimit`,
its state (the theoretical arrival time, TAT) kept in Redis and updated by one Lua script.

The script reads Redis's own clock (``TIME``), so replicas' clocks never matter, and reserves a slot
atomically: N processes on one sender together send at most ``burst + rate * w`` requests in any
window of ``w`` seconds, exactly like one process does. A provider's ``Retry-After`` seen by one
replica pauses the sender for all of them (it rides on that replica's next reservation).

If Redis cannot be reached, a send does not stall or fail: it waits on the process's own bucket
(the in-process limiter) and the outage is logged. With ``n`` replicas the sender may then briefly
get up to ``n`` times its rate, and the provider's ``429``s are honoured as always.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.channels.ratelimit import Bucket, SenderLimits
from shared.logging import get_logger

log = get_logger(__name__)

#: KEYS[1] the sender's TAT; ARGV interval, tolerance ((burst-1)*interval), max_wait (<0: none),
#: pause (seconds from now, 0: none), all in seconds, and "now" (1: take a slot only if one is free
#: now). Returns the wait as a string, or when nothing was reserved "-1" (the slot is further than
#: max_wait) or, with "now", minus the wait for the next free slot. Lua numbers would be truncated.
GCRA_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local pause = tonumber(ARGV[4])
local now_only = ARGV[5] == '1'
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
if pause > 0 then tat = math.max(tat, now + pause + tolerance) end
local wait = math.max(0, tat - tolerance - now)
local reserved = 1
if (now_only and wait > 0.000001) or (max_wait >= 0 and wait > max_wait) then
  reserved = 0
else
  tat = tat + interval
end
if reserved == 1 or pause > 0 then
  redis.call('SET', KEYS[1], string.format('%.6f', tat), 'PX', math.ceil((tat - now) * 1000) + 1000)
end
if reserved == 0 and now_only then return string.format('-%.6f', wait) end
if reserved == 0 then return '-1' end
return string.format('%.6f', wait)
"""


class RedisBucket:
    """One sender's GCRA in Redis; falls back to the local bucket while Redis is unreachable."""

    def __init__(self, limits: RedisSenderLimits, sender: str) -> None:
        self.limits, self.sender = limits, sender
        self.key = f"{limits.key_prefix}{sender}"
        self.rate = limits.rate_of(sender)
        self._interval = 1.0 / self.rate
        self._tolerance = (limits.burst - 1) * self._interval
        #: A ``Retry-After`` not yet written to Redis: the next reservation carries it.
        self._pending_pause = 0.0
        self._turn = asyncio.Lock()

    def pause(self, seconds: float) -> None:
        self._pending_pause = max(self._pending_pause, seconds)
        self.limits.local_bucket(self.sender).pause(seconds)

    async def reserve(self, max_wait: float | None = None) -> float | None:
        """Seconds to wait for the reserved slot, or None when it is further than ``max_wait``."""
        wait = await self._call(-1.0 if max_wait is None else max_wait, now=False)
        return None if wait < 0 else wait

    async def take_now(self) -> float:
        """Take a slot if one is free now (0.0); else reserve nothing and return the seconds until one is."""
        wait = await self._call(0.0, now=True)
        return 0.0 if wait >= 0 else -wait

    async def _call(self, max_wait: float, *, now: bool) -> float:
        pause, self._pending_pause = self._pending_pause, 0.0
        answer = await self.limits.script(
            keys=[self.key],
            args=[repr(self._interval), repr(self._tolerance), repr(max_wait), repr(pause), "1" if now else "0"],
        )
        return float(answer)

    async def acquire(self, max_wait: float | None = None) -> bool:
        """Wait for a slot, taken when leaving (as the local bucket does): this process's callers take
        turns, and each asks Redis for a slot free *now*, sleeping until the next one otherwise — a
        slot reserved ahead would let every waiter of a late-waking loop leave at once. False once no
        slot can be had within ``max_wait``."""
        loop = asyncio.get_running_loop()
        deadline = None if max_wait is None else loop.time() + max_wait
        async with self._turn:
            while True:
                try:
                    wait = await self.take_now()
                except (RedisError, OSError) as exc:
                    self.limits.report_outage(exc)
                    left = None if deadline is None else max(0.0, deadline - loop.time())
                    return await self.limits.local_bucket(self.sender).acquire(left)
                self.limits.report_recovery()
                if wait <= 0:
                    return True
                if deadline is not None and loop.time() + wait > deadline:
                    return False
                await asyncio.sleep(wait)


class RedisSenderLimits(SenderLimits):
    """:class:`SenderLimits` whose buckets live in Redis (``key_prefix`` + sender), shared by replicas."""

    def __init__(
        self,
        redis: Redis,
        key_prefix: str,
        default_rate: float,
        burst: int = 1,
        rates: dict[str, float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(default_rate, burst, rates, clock)
        self.redis, self.key_prefix = redis, key_prefix
        self.script: Any = redis.register_script(GCRA_SCRIPT)
        self._shared: dict[str, RedisBucket] = {}
        self._down = False
        #: Reservations that fell back to the local bucket (Redis unreachable).
        self.fallbacks = 0

    def bucket(self, sender: str) -> Bucket:
        found = self._shared.get(sender)
        if found is None:
            found = self._shared[sender] = RedisBucket(self, sender)
        return found

    def report_outage(self, exc: BaseException) -> None:
        self.fallbacks += 1
        if not self._down:
            self._down = True
            log.warning("redis unreachable; sender limits are per process until it returns",
                        error=f"{type(exc).__name__}: {exc}")

    def report_recovery(self) -> None:
        if self._down:
            self._down = False
            log.info("redis reachable again; sender limits are shared")
