"""HTTP (viewer): a debtor's agent calls, and a campaign's abandoned-call rate over 30 days."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from sqlalchemy import select

from services.orchestrator.agents.models import AgentCallRow
from services.orchestrator.agents.service import campaign_stats
from shared.http import require_role

router = APIRouter(tags=["agents"], dependencies=[Depends(require_role("viewer"))])


class AgentCallView(BaseModel):
    dispatch_id: str
    status: str
    talk_time_s: int | None = None
    campaign_id: str | None = None
    occurred_at: str


class AgentCallList(BaseModel):
    items: list[AgentCallView]


class CampaignAgentCalls(BaseModel):
    """A campaign's answered calls over the abandoned-call window (US pack: abandoned ≤ 3%)."""

    campaign_id: str
    window_days: int
    answered: int
    agent_connected: int
    abandoned: int
    abandoned_rate: float
    talk_time_s: int


@router.get("/v1/debtors/{debtor_id}/agent-calls", response_model=AgentCallList)
async def agent_calls(debtor_id: str, request: Request) -> AgentCallList:
    async with request.app.state.ctx.db.sessions() as session:
        rows = (await session.execute(select(AgentCallRow).where(AgentCallRow.debtor_id == debtor_id)
                                      .order_by(AgentCallRow.occurred_at.desc()).limit(200))).scalars().all()
    return AgentCallList.model_validate({"items": [
        {"dispatch_id": r.dispatch_id, "status": r.status, "talk_time_s": r.talk_time_s,
         "campaign_id": r.campaign_id or None, "occurred_at": r.occurred_at.isoformat()} for r in rows]})


@router.get("/v1/campaigns/{campaign_id}/agent-calls", response_model=CampaignAgentCalls)
async def campaign_agent_calls(campaign_id: str, request: Request) -> CampaignAgentCalls:
    ctx = request.app.state.ctx
    async with ctx.db.sessions() as session:
        return CampaignAgentCalls.model_validate(await campaign_stats(session, campaign_id, ctx.clock()))
