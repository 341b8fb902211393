"""Agent outcomes on the orchestrator's ledger, and the abandoned-call rate per campaign."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.agents.models import AgentCallRow
from services.orchestrator.runtime.models import ContactRequestRow, DispatchRow, OutcomeRow
from shared.events.contracts import DeliveryUpdated

AGENT_OUTCOMES = frozenset({"agent_connected", "abandoned"})
#: The US pack's cap: abandoned calls per campaign over 30 days (Reg F / TSR safe harbour).
ABANDON_WINDOW = timedelta(days=30)


async def record(session: AsyncSession, event_id: str, update: DeliveryUpdated) -> None:
    """Called in the outcome's transaction (the inbox already deduplicated the event)."""
    if update.status not in AGENT_OUTCOMES:
        return
    request = await session.get(ContactRequestRow, update.request_id)
    campaign = (request.payload or {}).get("campaign_id") if request is not None else None
    session.add(AgentCallRow(
        event_id=event_id, dispatch_id=update.dispatch_id, debtor_id=update.debtor_id, campaign_id=campaign or "",
        status=update.status, talk_time_s=update.talk_time_s, occurred_at=update.occurred_at,
    ))


async def campaign_stats(session: AsyncSession, campaign_id: str, now: datetime) -> dict[str, Any]:
    """Over the last 30 days: answered calls of the campaign's requests bridged or abandoned, and the rate."""
    since = now - ABANDON_WINDOW
    rows = (await session.execute(
        select(AgentCallRow.status, func.count(), func.coalesce(func.sum(AgentCallRow.talk_time_s), 0))
        .where(AgentCallRow.campaign_id == campaign_id, AgentCallRow.occurred_at >= since)
        .group_by(AgentCallRow.status)
    )).all()
    counts = {status: int(n) for status, n, _ in rows}
    talk = sum(int(t) for _, _, t in rows)
    # every answered call of the campaign (a person): the denominator of the abandonment rate
    answered = (await session.execute(
        select(func.count(func.distinct(OutcomeRow.dispatch_id)))
        .join(DispatchRow, DispatchRow.id == OutcomeRow.dispatch_id)
        .join(ContactRequestRow, ContactRequestRow.id == DispatchRow.request_id)
        .where(OutcomeRow.channel == "voice", OutcomeRow.status == "conversation", OutcomeRow.at >= since,
               ContactRequestRow.payload["campaign_id"].as_string() == campaign_id)
    )).scalar_one()
    abandoned = counts.get("abandoned", 0)
    return {"campaign_id": campaign_id, "window_days": ABANDON_WINDOW.days, "answered": int(answered),
            "agent_connected": counts.get("agent_connected", 0), "abandoned": abandoned,
            "abandoned_rate": abandoned / answered if answered else 0.0, "talk_time_s": talk}
