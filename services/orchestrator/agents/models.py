"""Outcomes of calls bridged to agents: who was connected, who was abandoned, and the talk time."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from services.orchestrator.runtime.models import UTCDateTime
from shared.db import Base

_ID = 200


class AgentCallRow(Base):
    __tablename__ = "agent_calls"

    event_id: Mapped[str] = mapped_column(String(_ID), primary_key=True)
    #: Indexed: a request's view reads its agent calls through its dispatches.
    dispatch_id: Mapped[str] = mapped_column(String(_ID), index=True)
    debtor_id: Mapped[str] = mapped_column(String(_ID), index=True)
    #: ``""`` for requests without a campaign: the abandoned-call rate is per campaign.
    campaign_id: Mapped[str] = mapped_column(String(_ID), index=True)
    status: Mapped[str] = mapped_column(String(20))
    talk_time_s: Mapped[int | None] = mapped_column(Integer, nullable=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
