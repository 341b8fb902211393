"""Progressive pacing per agent queue: calls in flight ≤ available agents × a ratio learned from answers,
agents handed to the people waiting for them in order, and the campaign's abandoned-call cap.

* A call is *in flight* from its admission (before the provider request) to its final status. The ratio
  is ``1 / human-answer rate`` over the queue's last ``ANSWERS`` ended calls, within [1, ``max_ratio``]
  (on average the people who answer do not outnumber the agents); it is 1 until ``min_samples`` calls
  have ended.
* The campaign's abandoned-call rate over the last 30 days (:class:`CampaignFigure`, from
  ``services.voice.abandonment``): from ``throttle_share × abandon_cap`` the ratio is 1 (no over-dialling);
  at ``abandon_cap`` (the US pack's 3%) :meth:`Pacer.bridging` says no and the campaign's calls are placed
  as automated IVR calls, which cannot be abandoned, until the rate is back under the cap.
* Agents: ``available`` (a dispatch's fixed number, or ``PUT /v1/agents/{queue}/availability``, which
  wins) less those *connected* (talking to, or being dialled for, a person). A person who reaches the
  bridge with none free waits in the queue's *hold line*; agents go to the line in order: the first
  ``free`` people in it may take one, a newcomer only when more are free than people wait.

The state lives in a :class:`PacingStore`: this process's memory (:class:`LocalPacingStore`) or, with
``REDIS_URL``, Redis (``services.voice.pacing_redis``), shared by every voice instance whichever one
admitted a call and whichever receives its webhooks.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

#: Ended calls the human-answer rate is learned from.
ANSWERS = 50


class PacingUnavailable(Exception):
    """The shared pacing state cannot be read: dial nothing and bridge no one until it can."""


@dataclass(frozen=True)
class CampaignFigure:
    """A campaign's answered and abandoned calls over the abandoned-call window (30 days)."""

    answered: int = 0
    abandoned: int = 0

    @property
    def rate(self) -> float:
        return self.abandoned / self.answered if self.answered else 0.0


NO_FIGURE = CampaignFigure()


@dataclass(frozen=True)
class QueueSnapshot:
    name: str
    available: int
    pinned: bool
    max_ratio: float
    in_flight: int
    connected: int
    #: The hold line, front first.
    waiting: tuple[str, ...]
    #: The last ended calls, newest first: whether a person answered.
    answers: tuple[bool, ...]
    counts: dict[str, int]
    peak_in_flight: int


class PacingStore(Protocol):
    """Where a queue's pacing state lives; each operation is atomic."""

    def version(self, queue: str) -> int:
        """A number that changes when this process changes the queue (see :meth:`changed`)."""
        ...

    async def changed(self, queue: str, since: int, timeout: float) -> None:
        """Return when the queue may have changed since ``version`` was ``since``, or after ``timeout``."""
        ...

    async def configure(self, queue: str, agents: int | None, max_ratio: float | None) -> None:
        """A dispatch's fixed agents (unless pinned by the API) and ratio bound."""
        ...

    async def set_available(self, queue: str, available: int) -> None: ...

    async def snapshot(self, queue: str) -> QueueSnapshot: ...

    async def admit(self, queue: str, dispatch_id: str, limit: int) -> bool:
        """Count the call in flight if fewer than ``limit`` are (``True`` also when it already is)."""
        ...

    async def release(self, queue: str, dispatch_id: str) -> None:
        """Out of the flight without teaching the ratio (the provider refused the call)."""
        ...

    async def finish(self, queue: str, dispatch_id: str, *, human: bool, outcome: str) -> bool:
        """The call ended: out of the flight, the line and the agents; counted once (``True`` that time)."""
        ...

    async def enqueue(self, queue: str, dispatch_id: str) -> None:
        """Join the hold line at the back (no-op if already in it)."""
        ...

    async def take_agent(self, queue: str, dispatch_id: str) -> bool:
        """Take a free agent if it is this call's turn (see the module docstring); ``True`` if connected."""
        ...

    async def disconnect(self, queue: str, dispatch_id: str) -> None: ...

    async def leave_hold(self, queue: str, dispatch_id: str) -> None: ...

    async def is_connected(self, queue: str, dispatch_id: str) -> bool: ...


@dataclass
class _LocalQueue:
    available: int = 1
    pinned: bool = False
    max_ratio: float = 2.0
    in_flight: set[str] = field(default_factory=set)
    connected: set[str] = field(default_factory=set)
    #: A dict keeps insertion order: the hold line.
    waiting: dict[str, None] = field(default_factory=dict)
    answers: deque[bool] = field(default_factory=lambda: deque(maxlen=ANSWERS))
    counts: dict[str, int] = field(default_factory=dict)
    peak_in_flight: int = 0


class LocalPacingStore:
    """Pacing state in this process: one voice instance, or each instance with its own share of agents."""

    def __init__(self) -> None:
        self._queues: dict[str, _LocalQueue] = {}
        self._version = 0
        self._changed = asyncio.Event()

    def _queue(self, name: str) -> _LocalQueue:
        found = self._queues.get(name)
        if found is None:
            found = self._queues[name] = _LocalQueue()
        return found

    def _touch(self) -> None:
        self._version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    def version(self, queue: str) -> int:
        return self._version

    async def changed(self, queue: str, since: int, timeout: float) -> None:
        if self._version != since:
            return
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            pass

    async def configure(self, queue: str, agents: int | None, max_ratio: float | None) -> None:
        state = self._queue(queue)
        if agents is not None and not state.pinned and agents != state.available:
            state.available = agents
            self._touch()
        if max_ratio is not None:
            state.max_ratio = max_ratio

    async def set_available(self, queue: str, available: int) -> None:
        state = self._queue(queue)
        state.available, state.pinned = available, True
        self._touch()

    async def snapshot(self, queue: str) -> QueueSnapshot:
        s = self._queue(queue)
        return QueueSnapshot(queue, s.available, s.pinned, s.max_ratio, len(s.in_flight), len(s.connected),
                             tuple(s.waiting), tuple(reversed(s.answers)), dict(s.counts), s.peak_in_flight)

    async def admit(self, queue: str, dispatch_id: str, limit: int) -> bool:
        state = self._queue(queue)
        if dispatch_id in state.in_flight:
            return True
        if len(state.in_flight) >= limit:
            return False
        state.in_flight.add(dispatch_id)
        state.peak_in_flight = max(state.peak_in_flight, len(state.in_flight))
        return True

    async def release(self, queue: str, dispatch_id: str) -> None:
        state = self._queue(queue)
        if dispatch_id in state.in_flight:
            state.in_flight.discard(dispatch_id)
            self._touch()

    async def finish(self, queue: str, dispatch_id: str, *, human: bool, outcome: str) -> bool:
        state = self._queue(queue)
        state.connected.discard(dispatch_id)
        state.waiting.pop(dispatch_id, None)
        if dispatch_id not in state.in_flight:
            return False
        state.in_flight.discard(dispatch_id)
        state.answers.append(human)
        state.counts[outcome] = state.counts.get(outcome, 0) + 1
        self._touch()
        return True

    async def enqueue(self, queue: str, dispatch_id: str) -> None:
        self._queue(queue).waiting.setdefault(dispatch_id, None)

    async def take_agent(self, queue: str, dispatch_id: str) -> bool:
        state = self._queue(queue)
        if dispatch_id in state.connected:
            return True
        free = state.available - len(state.connected)
        line = list(state.waiting)
        turn = line.index(dispatch_id) < free if dispatch_id in state.waiting else free > len(line)
        if not turn:
            return False
        state.waiting.pop(dispatch_id, None)
        state.connected.add(dispatch_id)
        return True

    async def disconnect(self, queue: str, dispatch_id: str) -> None:
        state = self._queue(queue)
        if dispatch_id in state.connected:
            state.connected.discard(dispatch_id)
            self._touch()

    async def leave_hold(self, queue: str, dispatch_id: str) -> None:
        self._queue(queue).waiting.pop(dispatch_id, None)

    async def is_connected(self, queue: str, dispatch_id: str) -> bool:
        return dispatch_id in self._queue(queue).connected


class CampaignFigures(Protocol):
    """Where the pacer reads a campaign's 30-day figure (``services.voice.abandonment``)."""

    async def figure(self, campaign: str) -> CampaignFigure: ...

    def forget(self, campaign: str) -> None:
        """A call of the campaign ended: the next figure must count it."""
        ...


class NoFigures:
    """No abandoned-call history (a pacer on its own, in unit tests)."""

    async def figure(self, campaign: str) -> CampaignFigure:
        return NO_FIGURE

    def forget(self, campaign: str) -> None:
        return None


class Pacer:
    """The pacing rules over a :class:`PacingStore` and a campaign's figures."""

    def __init__(
        self,
        store: PacingStore | None = None,
        *,
        min_samples: int = 5,
        abandon_cap: float = 0.03,
        throttle_share: float = 2 / 3,
        figures: CampaignFigures | None = None,
    ) -> None:
        self.store: PacingStore = store or LocalPacingStore()
        self.min_samples, self.abandon_cap, self.throttle_share = min_samples, abandon_cap, throttle_share
        self.figures: CampaignFigures = figures or NoFigures()

    def ratio(self, queue: QueueSnapshot, figure: CampaignFigure = NO_FIGURE) -> float:
        if figure.rate >= self.abandon_cap * self.throttle_share or len(queue.answers) < self.min_samples:
            return 1.0
        rate = sum(queue.answers) / len(queue.answers)
        return min(queue.max_ratio, max(1.0, 1.0 / rate if rate else queue.max_ratio))

    def limit(self, queue: QueueSnapshot, figure: CampaignFigure = NO_FIGURE) -> int:
        return math.floor(queue.available * self.ratio(queue, figure))

    async def bridging(self, campaign: str) -> bool:
        """Whether the campaign's calls may still be bridged to agents (its 30-day rate is under the cap)."""
        return (await self.figures.figure(campaign)).rate < self.abandon_cap

    def ended(self, campaign: str) -> None:
        """A call of the campaign ended (answered or not): its figure is read again next time."""
        self.figures.forget(campaign)

    async def configure(self, queue: str, agents: int | None = None, max_ratio: float | None = None) -> None:
        await self.store.configure(queue, agents, max_ratio)

    async def set_available(self, queue: str, available: int) -> QueueSnapshot:
        await self.store.set_available(queue, available)
        return await self.store.snapshot(queue)

    async def admit(self, queue: str, dispatch_id: str, timeout: float, campaign: str = "") -> bool:
        """Wait up to ``timeout`` s for room in the queue; ``True`` once the call is counted in flight."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            since = self.store.version(queue)
            try:
                state = await self.store.snapshot(queue)
            except PacingUnavailable:
                return False
            if await self.store.admit(queue, dispatch_id, self.limit(state, await self.figures.figure(campaign))):
                return True
            left = deadline - loop.time()
            if left <= 0:
                return False
            await self.store.changed(queue, since, left)

    async def release(self, queue: str, dispatch_id: str) -> None:
        await self.store.release(queue, dispatch_id)

    async def finish(self, queue: str, dispatch_id: str, *, human: bool, outcome: str) -> bool:
        return await self.store.finish(queue, dispatch_id, human=human, outcome=outcome)

    async def take_agent(self, queue: str, dispatch_id: str) -> bool:
        return await self.store.take_agent(queue, dispatch_id)

    async def hold(self, queue: str, dispatch_id: str) -> None:
        await self.store.enqueue(queue, dispatch_id)

    async def leave_hold(self, queue: str, dispatch_id: str) -> None:
        await self.store.leave_hold(queue, dispatch_id)

    async def disconnect(self, queue: str, dispatch_id: str) -> None:
        await self.store.disconnect(queue, dispatch_id)

    async def is_connected(self, queue: str, dispatch_id: str) -> bool:
        return await self.store.is_connected(queue, dispatch_id)

    async def view(self, queue: str) -> dict[str, Any]:
        state = await self.store.snapshot(queue)
        return {"queue": queue, "available": state.available, "pinned": state.pinned,
                "in_flight": state.in_flight, "connected": state.connected, "waiting": len(state.waiting),
                "ratio": round(self.ratio(state), 3), "limit": self.limit(state),
                "peak_in_flight": state.peak_in_flight, "counts": state.counts}
