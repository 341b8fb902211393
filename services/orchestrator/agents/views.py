"""HTTP (viewer): a debtor's and a request's agent calls (with talk time), and a campaign's agent figures
over 30 days (answered, connected, abandoned, the abandoned-call rate, talk time)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from sqlalchemy import select

from services.orchestrator.agents.models import AgentCallRow
from services.orchestrator.agents.service import campaign_stats, request_agent_calls
from services.orchestrator.runtime.models import ContactRequestRow
from shared.http import Problem, require_role

router = APIRouter(tags=["agents"], dependencies=[Depends(require_role("viewer"))])


class AgentCallView(BaseModel):
    dispatch_id: str
    status: str
    talk_time_s: int | None = None
    campaign_id: str | None = None
    occurred_at: str


class AgentCallList(BaseModel):
    items: list[AgentCallView]


class AgentFigures(BaseModel):
    """Answered voice calls over the abandoned-call window, and how those bridged to agents went."""

    window_days: int
    #: Voice calls a person answered (the abandoned-call rate's denominator).
    answered: int
    agent_connected: int
    abandoned: int
    abandoned_rate: float
    #: The rate is over the US pack's cap (3% per campaign per 30 days).
    over_cap: bool = False
    #: Seconds debtors talked with agents.
    talk_time_s: int


class CampaignAgentCalls(AgentFigures):
    """A campaign's figures (``(none)``: requests without a campaign)."""

    campaign_id: str


class AgentsOverview(BaseModel):
    """The dashboard's agent figures: every campaign's, over the last 30 days by the hour."""

    window_days: int
    cap: float
    totals: AgentFigures
    campaigns: list[CampaignAgentCalls]


def _items(rows: list[AgentCallRow]) -> AgentCallList:
    return AgentCallList.model_validate({"items": [
        {"dispatch_id": r.dispatch_id, "status": r.status, "talk_time_s": r.talk_time_s,
         "campaign_id": r.campaign_id or None, "occurred_at": r.occurred_at.isoformat()} for r in rows]})


@router.get("/v1/debtors/{debtor_id}/agent-calls", response_model=AgentCallList)
async def agent_calls(debtor_id: str, request: Request) -> AgentCallList:
    async with request.app.state.ctx.db.sessions() as session:
        rows = (await session.execute(select(AgentCallRow).where(AgentCallRow.debtor_id == debtor_id)
                                      .order_by(AgentCallRow.occurred_at.desc()).limit(200))).scalars().all()
    return _items(list(rows))


@router.get("/v1/contact-requests/{request_id}/agent-calls", response_model=AgentCallList)
async def contact_request_agent_calls(request_id: str, request: Request) -> AgentCallList:
    """The request's calls bridged to agents (``agent_connected`` with its talk time) or abandoned, for its
    timeline."""
    async with request.app.state.ctx.db.sessions() as session:
        if await session.get(ContactRequestRow, request_id) is None:
            raise Problem(404, "Not found", f"no contact request {request_id!r}")
        return _items(await request_agent_calls(session, request_id))


@router.get("/v1/campaigns/{campaign_id}/agent-calls", response_model=CampaignAgentCalls)
async def campaign_agent_calls(campaign_id: str, request: Request) -> CampaignAgentCalls:
    ctx = request.app.state.ctx
    async with ctx.db.sessions() as session:
        return CampaignAgentCalls.model_validate(await campaign_stats(session, campaign_id, ctx.clock()))
