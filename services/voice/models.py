"""The voice service's own table: one call session per dispatch (what was rendered, what happened)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base
from shared.events.envelope import utcnow


class CallSession(Base):
    """Written when the call is composed (before it is placed), so the TwiML webhooks serve exactly the
    scripts rendered for this dispatch; ``answered_by``, ``digits`` and ``outcome`` follow the call."""

    __tablename__ = "call_sessions"

    dispatch_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    call_sid: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    debtor_id: Mapped[str] = mapped_column(String(200))
    request_id: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(320))
    locale: Mapped[str] = mapped_column(String(20))
    voice_script: Mapped[str] = mapped_column(Text)
    #: Limited content (who to call back, never the debt: docs/internals.md: limited content); ``None``
    #: hangs up on a machine.
    voicemail_script: Mapped[str | None] = mapped_column(Text, nullable=True)
    ivr_prompt: Mapped[str | None] = mapped_column(Text, nullable=True)
    answered_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    digits: Mapped[str | None] = mapped_column(String(50), nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
