"""Ops tables: counters (pre-aggregated per minute and hour), request tags for search, pauses."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from services.orchestrator.runtime.models import UTCDateTime
from shared.db import Base

_ID = 200


class CounterRow(Base):
    """``value`` events of ``metric`` in one bucket, for one ``dim=key`` (``channel=sms``, ``campaign=x``).

    Written in the transaction of the events it counts. Concurrent transactions on PostgreSQL spread
    over ``shard`` rows so they rarely wait on one row lock; readers sum the shards.
    """

    __tablename__ = "ops_counters"

    #: ``m`` (minute buckets, kept a few hours) or ``h`` (hour buckets).
    grain: Mapped[str] = mapped_column(String(1), primary_key=True)
    bucket: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    metric: Mapped[str] = mapped_column(String(40), primary_key=True)
    dim: Mapped[str] = mapped_column(String(40), primary_key=True)
    key: Mapped[str] = mapped_column(String(_ID), primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True, default=0)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class RequestTagRow(Base):
    """What request search filters on that the runtime's request row does not hold as a column."""

    __tablename__ = "ops_request_tags"
    __table_args__ = (Index("ix_ops_request_tags_campaign", "campaign_id", "created_at"),)

    request_id: Mapped[str] = mapped_column(String(_ID), primary_key=True)
    campaign_id: Mapped[str] = mapped_column(String(_ID))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PauseRow(Base):
    """An active pause: ``scope`` ``all`` (the kill switch, key ``*``), ``campaign`` or ``channel``."""

    __tablename__ = "ops_pauses"

    scope: Mapped[str] = mapped_column(String(20), primary_key=True)
    key: Mapped[str] = mapped_column(String(_ID), primary_key=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    by: Mapped[str] = mapped_column(String(40))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
