"""Progressive pacing per agent queue: calls in flight ≤ available agents × a ratio learned from answers.

A call is *in flight* from the moment it is admitted (before the provider request) until its final
status. The ratio is ``1 / human-answer rate`` over the last ``window`` answered-or-not calls (so that,
on average, the people who answer do not exceed the agents), bounded by the queue's ``max_ratio``;
it falls back to 1 (no over-dialling) until ``min_samples`` calls have ended and whenever the queue's
recent abandonment reaches ``abandon_cap`` (the US pack's 3%).

State is per process: run one voice instance per queue, or give each instance its share of agents.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class QueueState:
    name: str
    available: int
    max_ratio: float = 2.0
    #: Set by ``PUT /v1/agents/{queue}/availability``: wins over the dispatches' fixed number.
    pinned: bool = False
    in_flight: set[str] = field(default_factory=set)
    #: Calls whose person is talking to (or being dialled to) an agent now.
    connected: set[str] = field(default_factory=set)
    answers: deque[bool] = field(default_factory=lambda: deque(maxlen=50))
    humans: deque[bool] = field(default_factory=lambda: deque(maxlen=100))
    counts: dict[str, int] = field(default_factory=dict)
    peak_in_flight: int = 0

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1


class Pacer:
    def __init__(self, *, min_samples: int = 5, abandon_cap: float = 0.03) -> None:
        self.queues: dict[str, QueueState] = {}
        self.min_samples, self.abandon_cap = min_samples, abandon_cap
        self._changed = asyncio.Condition()
        self._queue_of: dict[str, str] = {}

    def queue(self, name: str, agents: int | None = None, max_ratio: float | None = None) -> QueueState:
        """The queue's state; a dispatch's fixed ``agents`` applies unless availability was set by the API."""
        state = self.queues.get(name)
        if state is None:
            state = self.queues[name] = QueueState(name, 1 if agents is None else agents, max_ratio or 2.0)
        else:
            if agents is not None and not state.pinned:
                state.available = agents
            if max_ratio is not None:
                state.max_ratio = max_ratio
        return state

    def ratio(self, state: QueueState) -> float:
        abandoned = state.counts.get("abandoned", 0)
        humans = sum(state.humans)
        if len(state.answers) < self.min_samples or (humans and abandoned / humans >= self.abandon_cap):
            return 1.0
        rate = sum(state.answers) / len(state.answers)
        return min(state.max_ratio, max(1.0, 1.0 / rate if rate else state.max_ratio))

    def limit(self, state: QueueState) -> int:
        return math.floor(state.available * self.ratio(state))

    async def set_available(self, name: str, available: int) -> QueueState:
        async with self._changed:
            state = self.queue(name)
            state.available, state.pinned = available, True
            self._changed.notify_all()
        return state

    async def admit(self, name: str, dispatch_id: str, timeout: float) -> bool:
        """Wait up to ``timeout`` s for room in the queue; ``True`` once the call is counted in flight."""
        async with self._changed:
            state = self.queues[name]
            if dispatch_id in state.in_flight:
                return True
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: len(state.in_flight) < self.limit(state)),
                                       timeout)
            except TimeoutError:
                return False
            state.in_flight.add(dispatch_id)
            state.peak_in_flight = max(state.peak_in_flight, len(state.in_flight))
            self._queue_of[dispatch_id] = name
            return True

    def free_agent(self, name: str) -> bool:
        state = self.queues.get(name)
        return state is not None and len(state.connected) < state.available

    async def connect(self, name: str, dispatch_id: str) -> None:
        async with self._changed:
            self.queue(name).connected.add(dispatch_id)

    async def disconnect(self, name: str, dispatch_id: str) -> None:
        async with self._changed:
            self.queue(name).connected.discard(dispatch_id)
            self._changed.notify_all()

    async def release(self, dispatch_id: str) -> None:
        """The provider refused the call: it leaves the flight without teaching the ratio anything."""
        async with self._changed:
            name = self._queue_of.pop(dispatch_id, None)
            if name is not None:
                self.queues[name].in_flight.discard(dispatch_id)
                self._changed.notify_all()

    async def finish(self, dispatch_id: str, *, human: bool, outcome: str) -> None:
        """The call ended: it leaves the queue's flight and teaches the ratio whether a person answered."""
        async with self._changed:
            name = self._queue_of.pop(dispatch_id, None)
            if name is None:
                return
            state = self.queues[name]
            state.in_flight.discard(dispatch_id)
            state.connected.discard(dispatch_id)
            state.answers.append(human)
            if human:
                state.humans.append(True)
            state.count(outcome)
            self._changed.notify_all()

    def view(self, name: str) -> dict[str, Any]:
        state = self.queue(name)
        return {"queue": name, "available": state.available, "pinned": state.pinned,
                "in_flight": len(state.in_flight), "connected": len(state.connected),
                "ratio": round(self.ratio(state), 3), "limit": self.limit(state),
                "peak_in_flight": state.peak_in_flight, "counts": dict(state.counts)}
