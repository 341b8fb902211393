"""Injectable clock and the scheduler that compresses provider time by the speed factor."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch (what the sandbox stamps on records and signatures)."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class Scheduler:
    """Delays are in provider seconds; they run ``speed`` times faster. Owns every task it starts.

    ``call_after`` does not create a task until the step is due, so thousands of pending lifecycle steps
    cost one timer handle each.
    """

    def __init__(self, clock: Clock, speed: float) -> None:
        self.clock = clock
        self.speed = speed
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._closed = False

    def real_seconds(self, provider_seconds: float) -> float:
        return max(0.0, provider_seconds) / self.speed

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any] | None:
        if self._closed:
            coro.close()
            return None
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def call_after(self, provider_seconds: float, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        holder: list[asyncio.TimerHandle] = []

        def fire() -> None:
            self._timers.discard(holder[0])
            self.spawn(fn(*args))  # type: ignore[arg-type]

        handle = loop.call_later(self.real_seconds(provider_seconds), fire)
        holder.append(handle)
        self._timers.add(handle)

    async def sleep(self, provider_seconds: float) -> None:
        await asyncio.sleep(self.real_seconds(provider_seconds))

    async def sleep_real(self, seconds: float) -> None:
        """Injected latency is real time (it models the network, not the provider's clock)."""
        await asyncio.sleep(seconds)

    @property
    def pending(self) -> int:
        return len(self._tasks) + len(self._timers)

    async def aclose(self) -> None:
        self._closed = True
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
