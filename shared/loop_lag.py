"""How late a service's event loop runs what is due: the measure of a loop held by its own work.

Everything a service does shares one event loop: a consumer's batch, the group writer's commits, the
HTTP answers (``/ready``, provider callbacks, the ops API) and the Kafka client's heartbeats. Code
that runs without awaiting holds all of them until it yields. Since the hot paths' SQLite statements
run on the loop's own thread (``shared.db.sqlite_cursor.on_the_loop``), a batch's transaction after
its ``BEGIN`` is one such stretch, its Python work included.

:class:`LoopLag` schedules a timer every ``interval_s`` and observes how late it ran, in
``cadencia_event_loop_lag_seconds``. A timer due at an arbitrary moment waits as long as a request
arriving then would before the loop reads it, so the histogram is the share of time the loop was
held and for how long: a few milliseconds on an idle or steadily busy loop, the length of a stretch
when one holds it. Ten wake-ups a second cost next to nothing; the instrument only adds to CPU-bound
work what a histogram's ``observe`` costs.
"""

from __future__ import annotations

import asyncio
import contextvars

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.parser import text_string_to_metric_families

METRIC = "cadencia_event_loop_lag_seconds"
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def lag_buckets(exposition: str) -> dict[float, float]:
    """The lag histogram in a ``/metrics`` text: the ticks so far, cumulative by upper bound in seconds."""
    return {float(s.labels["le"]): s.value for family in text_string_to_metric_families(exposition)
            if family.name == METRIC for s in family.samples if s.name.endswith("_bucket")}


class LoopLag:
    """A timer every ``interval_s`` on the running loop, and how late each one ran (``start``/``stop``)."""

    def __init__(self, registry: CollectorRegistry, interval_s: float = 0.1) -> None:
        self.histogram = Histogram(
            METRIC, f"How late the event loop ran a timer due every {interval_s:g} s: how long anything ready "
            "to run (a request, a heartbeat) waited while other work held the loop",
            buckets=BUCKETS, registry=registry)
        self.interval_s = interval_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0
        # Its own context: the first timer would otherwise carry whatever the starting task had bound.
        self._context = contextvars.Context()

    @property
    def running(self) -> bool:
        return self._handle is not None

    def start(self) -> None:
        if self.running:
            return
        self._loop = asyncio.get_running_loop()
        self._schedule(self._loop.time())

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _schedule(self, now: float) -> None:
        assert self._loop is not None
        self._due = now + self.interval_s
        self._handle = self._loop.call_at(self._due, self._tick, context=self._context)

    def _tick(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        # A loop may run a timer up to its clock's resolution early.
        self.histogram.observe(max(0.0, now - self._due))
        self._schedule(now)
