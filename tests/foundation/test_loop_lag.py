"""Every service times its event loop: work that holds the loop shows in ``/metrics`` as lag."""

from __future__ import annotations

import time

import httpx
from fastapi import FastAPI

from shared.app import build_app
from shared.loop_lag import lag_buckets
from tests.foundation.test_settings_and_http import DemoSettings
from tests.helpers import wait_for


async def served_lag(app: FastAPI) -> dict[float, float]:
    """The lag histogram as ``/metrics`` serves it: cumulative ticks by upper bound."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        return lag_buckets((await client.get("/metrics")).text)


def later_than(buckets: dict[float, float], bound: float) -> float:
    """Ticks that ran more than ``bound`` seconds late."""
    return buckets.get(float("inf"), 0.0) - buckets.get(bound, 0.0)


def ticks(buckets: dict[float, float]) -> float:
    return buckets.get(float("inf"), 0.0)


def hold_the_loop(seconds: float) -> None:
    """Run on the loop without yielding, as a long stretch of a batch would (the thing measured)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def test_work_that_holds_the_loop_shows_as_lag_for_as_long_as_it_held_it() -> None:
    app = build_app(DemoSettings(), "demo")
    async with app.router.lifespan_context(app):
        before = await served_lag(app)

        hold_the_loop(0.4)

        async def late_tick() -> dict[float, float] | None:
            now = await served_lag(app)
            return now if later_than(now, 0.25) > later_than(before, 0.25) else None

        after = await wait_for(late_tick, timeout=10, what="a tick later than 0.25 s")
        # A 0.4 s hold: no tick waited a second for it.
        assert later_than(after, 1.0) == later_than(before, 1.0)


async def test_the_timer_stops_with_the_lifespan_and_starts_again_with_the_next() -> None:
    app = build_app(DemoSettings(), "demo")
    for _ in range(2):  # the same app: its instruments are registered once, the timer starts each time
        async with app.router.lifespan_context(app):
            count = ticks(await served_lag(app))

            async def another_tick(count: float = count) -> bool:
                return ticks(await served_lag(app)) > count

            await wait_for(another_tick, timeout=10, what="another tick")
        assert not app.state.loop_lag.running  # nothing left scheduled on the loop
