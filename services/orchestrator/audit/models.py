"""What each dispatch said: the content rendered from its pinned version, kept for the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from services.orchestrator.runtime.models import UTCDateTime
from shared.db import Base


class DispatchContentRow(Base):
    __tablename__ = "audit_dispatch_contents"
    __table_args__ = (Index("ix_audit_dispatch_contents_debtor", "debtor_id", "dispatched_at"),)

    dispatch_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(200))
    debtor_id: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(20))
    to: Mapped[str] = mapped_column(String(320))
    template_key: Mapped[str] = mapped_column(String(200))
    template_version: Mapped[int] = mapped_column(Integer)
    locale: Mapped[str] = mapped_column(String(20))
    variant: Mapped[str | None] = mapped_column(String(40), nullable=True)
    #: The rendered fields (``body``, ``subject``/``text``/``html``, voice scripts...), or None on an error.
    content: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    render_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    dispatched_at: Mapped[datetime] = mapped_column(UTCDateTime)
