"""The dashboard: a page for ops, the JSON behind it, and the same figures as Prometheus gauges.

Stats are recomputed by one background task every few seconds (never per scrape or per viewer),
so many open dashboards cost the database nothing extra.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import BaseModel

from services.orchestrator.context import OrchestratorContext
from services.orchestrator.dashboard.stats import collect
from shared.http import require_role
from shared.logging import get_logger

log = get_logger(__name__)
PAGE = (Path(__file__).parent / "dashboard.html").read_text(encoding="utf-8")
router = APIRouter(tags=["ops"])


class StatsCache:
    def __init__(self, ctx: OrchestratorContext, interval: float = 2.0) -> None:
        self.ctx, self.interval = ctx, interval
        self.snapshot: dict[str, Any] = {}
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> dict[str, Any]:
        async with self.ctx.db.read_sessions() as session:
            self.snapshot = await collect(session, self.ctx.clock())
        return self.snapshot

    async def _loop(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as exc:  # a stats hiccup must never take the service down
                log.warning("stats refresh failed", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(self.interval)

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._loop(), name="dashboard-stats")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class StatsCollector(Collector):
    def __init__(self, cache: StatsCache) -> None:
        self.cache = cache

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snap = self.cache.snapshot
        if not snap:
            return
        requests = GaugeMetricFamily("cadencia_contact_requests", "Contact requests by status", labels=["status"])
        for status, n in snap["requests"].items():
            requests.add_metric([status], n)
        yield requests
        dispatches = GaugeMetricFamily("cadencia_dispatches", "Dispatches by channel and status",
                                       labels=["channel", "status"])
        for channel, by_status in snap["dispatches"].items():
            for status, n in by_status.items():
                dispatches.add_metric([channel, status], n)
        yield dispatches
        suppressions = GaugeMetricFamily("cadencia_suppressions_active", "Active suppressions by reason",
                                         labels=["reason"])
        for reason, n in snap["suppressions"].items():
            suppressions.add_metric([reason], n)
        yield suppressions
        yield GaugeMetricFamily(
            "cadencia_deferred_pending", "Deferred contacts waiting", value=snap["deferred_pending"]
        )
        yield GaugeMetricFamily("cadencia_dead_letters", "Dead letters kept", value=snap["dead_letters"])
        yield GaugeMetricFamily("cadencia_outbox_backlog", "Outbox rows not yet relayed", value=snap["outbox_backlog"])


class RecentChange(BaseModel):
    at: str
    request_id: str
    debtor_id: str
    status: str
    channel: str | None = None
    reason: str | None = None
    not_before: str | None = None


class Stats(BaseModel):
    """Counts by status, channel and reason, as the dashboard shows them."""

    generated_at: str
    requests: dict[str, int]
    dispatches: dict[str, dict[str, int]]
    deferred_pending: int
    next_release: str | None = None
    suppressions: dict[str, int]
    responses: dict[str, int]
    dead_letters: int
    outbox_backlog: int
    recent: list[RecentChange]


@router.get("/v1/stats", dependencies=[Depends(require_role("viewer"))], response_model=Stats,
            operation_id="get_stats")
async def stats(request: Request, fresh: bool = False) -> dict[str, Any]:
    cache: StatsCache = request.app.state.stats
    return await cache.refresh() if fresh or not cache.snapshot else cache.snapshot


@router.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
async def dashboard() -> HTMLResponse:
    # The page holds no data: it fetches /v1/stats with the viewer's key.
    return HTMLResponse(PAGE)


class DashboardComponent:
    def install(self, app: FastAPI) -> None:
        app.include_router(router)

    async def start(self, app: FastAPI, ctx: OrchestratorContext, stack: AsyncExitStack) -> None:
        cache = StatsCache(ctx)
        await cache.start()
        stack.push_async_callback(cache.stop)
        app.state.stats = cache
        app.state.metrics.register(StatsCollector(cache))


component = DashboardComponent()
