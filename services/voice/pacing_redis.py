"""Pacing state in Redis, shared by every voice instance (the approach of
``shared.channels.ratelimit_redis``: one Lua script per operation, Redis's own clock).

Per queue, under one hash tag (``{prefix}{queue}``, so a cluster keeps them on one slot): ``conf``
(``available``, ``pinned``, ``max_ratio``), ``flight`` and ``connected`` (sorted sets: dispatch id → the
instant it expires), ``hold`` (sorted set: dispatch id → when it joined the line), ``answers`` (a list of
``1``/``0``, newest first), ``counts`` (outcome → n) and ``peak``. Members expire (``flight_ttl_s``,
``hold_ttl_s``) so a call whose final status never arrives, or an instance that died holding one, cannot
keep an agent's slot for good; the reconciler normally finishes such calls long before.

Unlike the rate limiter, which falls back to a per-process bucket (the provider's 429s still bound the
rate), pacing fails *closed* while Redis is unreachable: no call is admitted and no one is bridged (the
person hears the callback offer). Over-dialling without a shared count is what makes abandoned calls,
and nothing downstream would stop it; a delayed call only waits for its next retry.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.voice.pacing import ANSWERS, PacingUnavailable, QueueSnapshot
from shared.logging import get_logger

log = get_logger(__name__)

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""
#: KEYS flight, peak; ARGV id, limit, ttl.
ADMIT = _NOW + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 1 end
local n = redis.call('ZCARD', KEYS[1])
if n >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
if n + 1 > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], n + 1) end
return 1
"""
#: KEYS flight, connected, hold, answers, counts; ARGV id, human (1/0), outcome, answers kept.
FINISH = """
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('LPUSH', KEYS[4], ARGV[2])
redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[4]) - 1)
redis.call('HINCRBY', KEYS[5], ARGV[3], 1)
return 1
"""
#: KEYS conf, connected, hold; ARGV id, connected ttl, hold ttl.
TAKE = _NOW + """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[3]))
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then return 1 end
local free = tonumber(redis.call('HGET', KEYS[1], 'available') or '1') - redis.call('ZCARD', KEYS[2])
local rank = redis.call('ZRANK', KEYS[3], ARGV[1])
local turn
if rank then turn = rank < free else turn = free > redis.call('ZCARD', KEYS[3]) end
if not turn then return 0 end
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
return 1
"""
#: KEYS hold; ARGV id.
ENQUEUE = _NOW + """
redis.call('ZADD', KEYS[1], 'NX', now, ARGV[1])
return 1
"""
#: KEYS conf; ARGV agents ('' for none), max_ratio ('' for none).
CONFIGURE = """
if ARGV[1] == '' then
  redis.call('HSETNX', KEYS[1], 'available', '1')
elseif redis.call('HGET', KEYS[1], 'pinned') ~= '1' then
  redis.call('HSET', KEYS[1], 'available', ARGV[1])
end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'max_ratio', ARGV[2]) end
return 1
"""
#: KEYS conf, flight, connected, hold, answers, counts, peak.
SNAPSHOT = _NOW + """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
return {redis.call('HGETALL', KEYS[1]), redis.call('ZCARD', KEYS[2]), redis.call('ZCARD', KEYS[3]),
        redis.call('ZRANGE', KEYS[4], 0, -1), redis.call('LRANGE', KEYS[5], 0, -1),
        redis.call('HGETALL', KEYS[6]), redis.call('GET', KEYS[7]) or '0'}
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(flat: list[Any]) -> dict[str, str]:
    return {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}


class RedisPacingStore:
    """:class:`~services.voice.pacing.PacingStore` in Redis; waits for changes by polling ``poll_s``."""

    def __init__(self, redis: Redis, prefix: str, *, flight_ttl_s: float = 4 * 3600, hold_ttl_s: float = 600,
                 poll_s: float = 0.2) -> None:
        self.redis, self.prefix = redis, prefix
        self.flight_ttl_s, self.hold_ttl_s, self.poll_s = flight_ttl_s, hold_ttl_s, poll_s
        self._scripts = {name: redis.register_script(body) for name, body in (
            ("admit", ADMIT), ("finish", FINISH), ("take", TAKE), ("enqueue", ENQUEUE), ("configure", CONFIGURE),
            ("snapshot", SNAPSHOT))}
        self._version = 0
        self._changed = asyncio.Event()
        self._down = False
        #: Operations that failed because Redis was unreachable.
        self.outages = 0

    def _key(self, queue: str, part: str) -> str:
        return f"{self.prefix}{{{queue}}}:{part}"

    def _keys(self, queue: str, *parts: str) -> list[str]:
        return [self._key(queue, part) for part in parts]

    def _touch(self) -> None:
        self._version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    def version(self, queue: str) -> int:
        return self._version

    async def changed(self, queue: str, since: int, timeout: float) -> None:
        # Other instances' changes are not signalled: poll.
        if self._version != since:
            return
        try:
            await asyncio.wait_for(self._changed.wait(), min(timeout, self.poll_s))
        except TimeoutError:
            pass

    async def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        try:
            answer = await self._scripts[name](keys=keys, args=args)
        except (RedisError, OSError) as exc:
            self.outages += 1
            if not self._down:
                self._down = True
                log.warning("redis unreachable; no agent-queue call is dialled or bridged until it returns",
                            error=f"{type(exc).__name__}: {exc}")
            raise PacingUnavailable(str(exc)) from exc
        if self._down:
            self._down = False
            log.info("redis reachable again; agent-queue pacing resumes")
        return answer

    async def _quietly(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """For operations whose loss only delays a slot's return (the members expire): never raise."""
        try:
            return await self._run(name, keys, args)
        except PacingUnavailable:
            return None

    async def configure(self, queue: str, agents: int | None, max_ratio: float | None) -> None:
        await self._quietly("configure", self._keys(queue, "conf"),
                            ["" if agents is None else str(agents), "" if max_ratio is None else repr(max_ratio)])

    async def set_available(self, queue: str, available: int) -> None:
        try:
            await self.redis.hset(self._key(queue, "conf"), mapping={"available": available, "pinned": "1"})
        except (RedisError, OSError) as exc:
            raise PacingUnavailable(str(exc)) from exc
        self._touch()

    async def snapshot(self, queue: str) -> QueueSnapshot:
        conf, flight, connected, hold, answers, counts, peak = await self._run(
            "snapshot", self._keys(queue, "conf", "flight", "connected", "hold", "answers", "counts", "peak"), [])
        settings = _pairs(conf)
        return QueueSnapshot(
            queue, int(settings.get("available", "1")), settings.get("pinned") == "1",
            float(settings.get("max_ratio", "2.0")), int(flight), int(connected),
            tuple(_text(member) for member in hold), tuple(_text(a) == "1" for a in answers),
            {k: int(v) for k, v in _pairs(counts).items()}, int(_text(peak)))

    async def admit(self, queue: str, dispatch_id: str, limit: int) -> bool:
        try:
            return bool(await self._run("admit", self._keys(queue, "flight", "peak"),
                                        [dispatch_id, limit, repr(self.flight_ttl_s)]))
        except PacingUnavailable:
            return False

    async def release(self, queue: str, dispatch_id: str) -> None:
        try:
            await self.redis.zrem(self._key(queue, "flight"), dispatch_id)
        except (RedisError, OSError) as exc:
            log.warning("could not release a refused call's slot; it expires", error=type(exc).__name__)
        self._touch()

    async def finish(self, queue: str, dispatch_id: str, *, human: bool, outcome: str) -> bool:
        done = await self._quietly("finish", self._keys(queue, "flight", "connected", "hold", "answers", "counts"),
                                   [dispatch_id, "1" if human else "0", outcome, ANSWERS])
        self._touch()
        return bool(done)

    async def enqueue(self, queue: str, dispatch_id: str) -> None:
        await self._quietly("enqueue", self._keys(queue, "hold"), [dispatch_id])

    async def take_agent(self, queue: str, dispatch_id: str) -> bool:
        try:
            return bool(await self._run("take", self._keys(queue, "conf", "connected", "hold"),
                                        [dispatch_id, repr(self.flight_ttl_s), repr(self.hold_ttl_s)]))
        except PacingUnavailable:
            return False

    async def disconnect(self, queue: str, dispatch_id: str) -> None:
        try:
            await self.redis.zrem(self._key(queue, "connected"), dispatch_id)
        except (RedisError, OSError) as exc:
            log.warning("could not free an agent's slot; it expires", error=type(exc).__name__)
        self._touch()

    async def leave_hold(self, queue: str, dispatch_id: str) -> None:
        try:
            await self.redis.zrem(self._key(queue, "hold"), dispatch_id)
        except (RedisError, OSError) as exc:
            log.warning("could not leave the hold line; the place expires", error=type(exc).__name__)

    async def is_connected(self, queue: str, dispatch_id: str) -> bool:
        try:
            return await self.redis.zscore(self._key(queue, "connected"), dispatch_id) is not None
        except (RedisError, OSError):
            return False
