"""Agent outcomes on the orchestrator's ledger, and each campaign's agent figures over 30 days.

Each voice call a person answered (``conversation``), connected to an agent (``agent_connected``, with
its talk time) or abandoned is counted per campaign in the hour buckets of the ops counters, in the
outcome's own transaction; the figures (answered, connected, abandoned, the abandoned-call rate, talk
time) then cost one grouped read of at most 720 hour buckets per campaign, whatever the ledger's size.
``agent_calls`` keeps each agent outcome for a debtor's and a request's views.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.agents.models import AgentCallRow
from services.orchestrator.ops import counters
from services.orchestrator.ops.models import CounterRow
from services.orchestrator.runtime.models import ContactRequestRow, DispatchRow
from shared.events.contracts import DeliveryUpdated

AGENT_OUTCOMES = frozenset({"agent_connected", "abandoned"})
#: The US pack's cap: abandoned calls per campaign over 30 days (Reg F / TSR safe harbour).
ABANDON_WINDOW = timedelta(days=30)
ABANDON_CAP = 0.03
FIGURES = ("answered", "agent_connected", "abandoned", counters.TALK_TIME)


async def record(session: AsyncSession, event_id: str, update: DeliveryUpdated) -> None:
    """Called in the outcome's transaction (the inbox already deduplicated the event)."""
    if update.channel != "voice" or update.status not in counters.AGENT_METRICS:
        return
    request = await session.get(ContactRequestRow, update.request_id)
    campaign = (request.payload or {}).get("campaign_id") if request is not None else None
    counters.note_agent(session, campaign, update.status, update.talk_time_s, update.occurred_at)
    if update.status in AGENT_OUTCOMES:
        session.add(AgentCallRow(
            event_id=event_id, dispatch_id=update.dispatch_id, debtor_id=update.debtor_id,
            campaign_id=campaign or "", status=update.status, talk_time_s=update.talk_time_s,
            occurred_at=update.occurred_at,
        ))


def summary(figures: list[dict[str, Any]]) -> dict[str, Any]:
    """Every campaign's figures added up."""
    added = {metric: sum(f[metric] for f in figures) for metric in ("answered", "agent_connected", "abandoned")}
    added[counters.TALK_TIME] = sum(f["talk_time_s"] for f in figures)
    total = _figures("", added)
    del total["campaign_id"]
    return total


def _figures(campaign_id: str, by_metric: dict[str, int]) -> dict[str, Any]:
    answered, abandoned = by_metric.get("answered", 0), by_metric.get("abandoned", 0)
    rate = abandoned / answered if answered else 0.0
    return {"campaign_id": campaign_id, "window_days": ABANDON_WINDOW.days, "answered": answered,
            "agent_connected": by_metric.get("agent_connected", 0), "abandoned": abandoned,
            "abandoned_rate": round(rate, 4), "over_cap": rate > ABANDON_CAP,
            "talk_time_s": by_metric.get(counters.TALK_TIME, 0)}


async def agent_figures(session: AsyncSession, now: datetime, campaign_id: str | None = None) -> list[dict[str, Any]]:
    """Per campaign (``(none)`` without one), over the last 30 days by the hour, the busiest first."""
    c = CounterRow
    stmt = (select(c.key, c.metric, func.sum(c.value))
            .where(c.grain == "h", c.dim == "campaign", c.metric.in_(FIGURES),
                   c.bucket >= counters.hour(now - ABANDON_WINDOW))
            .group_by(c.key, c.metric))
    if campaign_id is not None:
        stmt = stmt.where(c.key == (campaign_id or counters.NONE))
    by_campaign: dict[str, dict[str, int]] = {}
    for key, metric, value in (await session.execute(stmt)).all():
        by_campaign.setdefault(key, {})[metric] = int(value or 0)
    found = [_figures(key, metrics) for key, metrics in by_campaign.items()]
    return sorted(found, key=lambda f: (-f["answered"], f["campaign_id"]))


async def campaign_stats(session: AsyncSession, campaign_id: str, now: datetime) -> dict[str, Any]:
    """The campaign's figures over the last 30 days (zeros for a campaign with no answered call)."""
    found = await agent_figures(session, now, campaign_id)
    return found[0] if found else _figures(campaign_id or counters.NONE, {})


async def request_agent_calls(session: AsyncSession, request_id: str) -> list[AgentCallRow]:
    """The agent outcomes of a request's dispatches, in order."""
    stmt = (select(AgentCallRow).join(DispatchRow, DispatchRow.id == AgentCallRow.dispatch_id)
            .where(DispatchRow.request_id == request_id).order_by(AgentCallRow.occurred_at))
    return list((await session.execute(stmt)).scalars())
