"""Self-service tables: the link lookup (ref → debtor and account) and the signed agreements."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from services.orchestrator.runtime.models import UTCDateTime
from shared.db import Base

_ID = 200


class SelfServiceLinkRow(Base):
    """Written when a dispatch is made; the token carries only ``ref`` and its signature."""

    __tablename__ = "self_service_links"

    ref: Mapped[str] = mapped_column(String(32), primary_key=True)
    debtor_id: Mapped[str] = mapped_column(String(_ID))
    account_id: Mapped[str] = mapped_column(String(_ID))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AgreementRow(Base):
    __tablename__ = "self_service_agreements"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: The form's one-time id: confirming twice (a double click, a reload) yields one agreement.
    submission_id: Mapped[str] = mapped_column(String(64), unique=True)
    debtor_id: Mapped[str] = mapped_column(String(_ID), index=True)
    account_id: Mapped[str] = mapped_column(String(_ID))
    choice: Mapped[str] = mapped_column(String(20))
    terms: Mapped[dict[str, Any]] = mapped_column(JSON)
    terms_sha256: Mapped[str] = mapped_column(String(64))
    signed_name: Mapped[str] = mapped_column(String(300))
    ip: Mapped[str] = mapped_column(String(64))
    user_agent: Mapped[str] = mapped_column(String(500), default="")
    seal: Mapped[str] = mapped_column(String(64))
    pdf: Mapped[bytes] = mapped_column(LargeBinary)
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime)
