"""The dashboard: a page for ops, the JSON behind it, and the same figures as Prometheus gauges.

The figures come from the pre-aggregated counters (``services.orchestrator.ops.counters``). Stats
are recomputed by one background task every few seconds (never per scrape or per viewer),
so many open dashboards cost the database nothing extra.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import BaseModel, ConfigDict

from services.orchestrator.agents.views import AgentsOverview
from services.orchestrator.context import OrchestratorContext
from services.orchestrator.dashboard.stats import agents_overview, collect
from services.orchestrator.ops.counters import prune
from shared.http import require_role
from shared.logging import get_logger

log = get_logger(__name__)
HERE = Path(__file__).parent
router = APIRouter(tags=["ops"])
DAYS = 2
PRUNE_EVERY = timedelta(minutes=10)
AGENTS_EVERY_S = 30.0
PAGE_HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY"}


class StatsCache:
    def __init__(self, ctx: OrchestratorContext, interval: float = 2.0) -> None:
        self.ctx, self.interval = ctx, interval
        self.snapshot: dict[str, Any] = {}
        self._task: asyncio.Task[None] | None = None
        self._pruned: datetime | None = None
        self._agents: dict[str, Any] = {}
        self._agents_at: float | None = None

    async def refresh(self, *, fresh: bool = False) -> dict[str, Any]:
        now = self.ctx.clock()
        async with self.ctx.db.read_sessions() as session:
            snapshot = await collect(session, now, DAYS)
            # 30 days of hour buckets: read less often than the live figures (or when asked to).
            due = self._agents_at is None or time.monotonic() - self._agents_at >= AGENTS_EVERY_S
            if fresh or due:
                self._agents, self._agents_at = await agents_overview(session, now), time.monotonic()
        snapshot["agents"] = self._agents
        self.snapshot = snapshot
        if self._pruned is None or now - self._pruned > PRUNE_EVERY:
            async with self.ctx.db.transaction() as session:
                await prune(session, now)
            self._pruned = now
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
        window = GaugeMetricFamily("cadencia_contact_events_window",
                                   "Contact events in the dashboard's hour window, by metric and channel",
                                   labels=["metric", "channel"])
        for channel, by_metric in snap["by_channel"].items():
            for metric, n in by_metric.items():
                window.add_metric([metric, channel], n)
        yield window
        yield GaugeMetricFamily(
            "cadencia_deferred_pending", "Deferred contacts waiting", value=snap["deferred_pending"]
        )
        yield GaugeMetricFamily("cadencia_contacts_held", "Contacts held by an ops pause", value=snap["held"])
        yield GaugeMetricFamily("cadencia_pauses_active", "Active ops pauses", value=len(snap["pauses"]))
        yield GaugeMetricFamily("cadencia_dead_letters", "Dead letters kept", value=snap["dead_letters"])
        yield GaugeMetricFamily("cadencia_outbox_backlog", "Outbox rows not yet relayed", value=snap["outbox_backlog"])
        agents = GaugeMetricFamily("cadencia_agent_calls_30d",
                                   "Voice calls over 30 days per campaign: answered, connected to an agent, abandoned",
                                   labels=["campaign", "outcome"])
        rate = GaugeMetricFamily("cadencia_abandoned_rate_30d", "Abandoned / answered calls per campaign, 30 days",
                                 labels=["campaign"])
        for figures in snap.get("agents", {}).get("campaigns", []):
            for outcome in ("answered", "agent_connected", "abandoned"):
                agents.add_metric([figures["campaign_id"], outcome], figures[outcome])
            rate.add_metric([figures["campaign_id"]], figures["abandoned_rate"])
        yield agents
        yield rate


class Stats(BaseModel):
    """The dashboard's figures (see docs/operations.md): series, totals, funnel, breakdowns, pauses."""

    model_config = ConfigDict(extra="allow")

    generated_at: str
    window: dict[str, int]
    axes: dict[str, list[str]]
    series: dict[str, dict[str, dict[str, list[int]]]]
    totals: dict[str, int]
    requests: dict[str, int]
    funnel: list[tuple[str, int]]
    breakdowns: dict[str, dict[str, dict[str, int]]]
    deferrals_by_rule: dict[str, int]
    rejections_by_rule: dict[str, int]
    failures_by_reason: dict[str, int]
    responses: dict[str, int]
    deferred_pending: int
    next_release: str | None = None
    dead_letters: int
    outbox_backlog: int
    pauses: list[dict[str, Any]]
    held: int
    recent: list[dict[str, Any]]
    #: Calls bridged to agents per campaign over 30 days (refreshed every ``AGENTS_EVERY_S``).
    agents: AgentsOverview | None = None


@router.get("/v1/stats", dependencies=[Depends(require_role("viewer"))], response_model=Stats,
            operation_id="get_stats")
async def stats(request: Request, fresh: bool = False, days: int = Query(DAYS, ge=1, le=14)) -> dict[str, Any]:
    """The dashboard's figures: the last hour by minute and the last ``days`` by hour, from counters."""
    cache: StatsCache = request.app.state.stats
    if days != DAYS:
        ctx: OrchestratorContext = request.app.state.ctx
        async with ctx.db.read_sessions() as session:
            now = ctx.clock()
            return {**await collect(session, now, days), "agents": await agents_overview(session, now)}
    return await cache.refresh(fresh=True) if fresh or not cache.snapshot else cache.snapshot


@router.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
async def dashboard() -> HTMLResponse:
    # The pages hold no data: they fetch the API with the viewer's key.
    return HTMLResponse((HERE / "dashboard.html").read_text(encoding="utf-8"), headers=PAGE_HEADERS)


@router.get("/requests", response_class=HTMLResponse, include_in_schema=False)
async def requests_page() -> HTMLResponse:
    return HTMLResponse((HERE / "requests.html").read_text(encoding="utf-8"), headers=PAGE_HEADERS)


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
