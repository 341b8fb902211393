"""The orchestrator's record of call recordings (metadata only; the audio stays at the provider)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from services.orchestrator.runtime.models import UTCDateTime
from shared.db import Base

_ID = 200


class CallRecordingRow(Base):
    __tablename__ = "call_recordings"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    recording_sid: Mapped[str] = mapped_column(String(_ID), unique=True)
    dispatch_id: Mapped[str] = mapped_column(String(_ID))
    request_id: Mapped[str] = mapped_column(String(_ID))
    debtor_id: Mapped[str] = mapped_column(String(_ID), index=True)
    call_sid: Mapped[str] = mapped_column(String(_ID))
    provider: Mapped[str] = mapped_column(String(50))
    duration_s: Mapped[int] = mapped_column(Integer)
    url: Mapped[str] = mapped_column(String(2000))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
