"""A campaign's answered and abandoned calls over the abandoned-call window (30 days), from this service's
own ``queue_calls``, for the pacer (:class:`~services.voice.pacing.CampaignFigure`).

Why the voice service's records and not the orchestrator's ledger: the voice service is where a call
ends ``abandoned`` (it publishes the outcome), so its rows are complete the moment a call ends, while the
ledger lags by the outbox, the broker and the orchestrator's backlog, most when dialling is busiest.
Pacing keeps working while the orchestrator is slow or down, needs no new API between the two, and every
voice instance shares the figure through the service's database. The price: the voice service learns a
call's campaign only from its ``agent_queue``, so the figure counts the campaign's calls that carried an
agent queue (bridged or, at the cap, placed as plain IVR calls), a subset of the campaign's answered calls
the orchestrator's dashboard counts; the rate can only err high, so the cap is never reached later here.

A figure is read at most every ``ttl_s`` seconds per campaign and process; a call of the campaign that
ends in this process drops it at once, so the next decision here sees that call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.voice.agents import AgentCall
from services.voice.pacing import CampaignFigure
from shared.db import Database
from shared.events import utcnow


async def campaign_figure(session: AsyncSession, campaign: str, since: datetime) -> CampaignFigure:
    """Calls of the campaign that ended since ``since``: answered by a person, and abandoned."""
    answered, abandoned = (await session.execute(
        select(func.coalesce(func.sum(case((AgentCall.answered.is_(True), 1), else_=0)), 0),
               func.coalesce(func.sum(case((AgentCall.outcome == "abandoned", 1), else_=0)), 0))
        .where(AgentCall.campaign_id == campaign, AgentCall.ended_at >= since)
    )).one()
    return CampaignFigure(answered=int(answered), abandoned=int(abandoned))


class AbandonmentFigures:
    """``await figures.figure(campaign)``: the campaign's figure over the window, cached ``ttl_s``."""

    def __init__(self, db: Database, *, window: timedelta = timedelta(days=30), ttl_s: float = 5.0,
                 clock: Callable[[], datetime] = utcnow, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.db, self.window, self.ttl_s, self.clock, self.monotonic = db, window, ttl_s, clock, monotonic
        self._cache: dict[str, tuple[float, CampaignFigure]] = {}

    async def figure(self, campaign: str) -> CampaignFigure:
        cached = self._cache.get(campaign)
        if cached is not None and self.monotonic() - cached[0] < self.ttl_s:
            return cached[1]
        async with self.db.sessions() as session:
            found = await campaign_figure(session, campaign, self.clock() - self.window)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[campaign] = (self.monotonic(), found)
        return found

    def forget(self, campaign: str) -> None:
        self._cache.pop(campaign, None)
