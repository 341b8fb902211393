"""The channel services' tables: the send log (one row per dispatch) and webhook receipts.

Send log ``state`` is the provider request's fate: ``sending`` (committed before the request),
``retrying`` (every attempt so far was refused unprocessed; ``next_attempt_at`` says when the durable
retry path resumes it, ``resume`` holds the composed request), ``sent`` (the provider accepted it;
``provider_id`` set), ``failed`` (refused, or never sent before
the deadline), ``expired`` (never sent: its ``send_before`` came first) or ``unknown`` (the request
may have been processed: never resent). ``status`` is the latest delivery status reported on
``contact.outcomes``; it only moves forward (:func:`advances`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import DateTime, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from shared.addresses import address_key
from shared.config import RetentionSettings
from shared.db import Base
from shared.db.retention import PruneTarget
from shared.events.contracts import STATUS_RANK
from shared.events.envelope import utcnow

SendState = str  # "sending" | "retrying" | "sent" | "failed" | "expired" | "unknown"

#: The delivery statuses a channel reports (``DeliveryUpdated.status``); a call's outcome and a failure
#: are final for the channel (:data:`TERMINAL`).
REPORTED = frozenset({
    "unknown", "accepted", "sent", "delivered", "read", "opened", "clicked", "failed", "undelivered", "bounced",
    "conversation", "voicemail", "no_answer", "busy", "expired",
})
TERMINAL = frozenset({
    "failed", "undelivered", "bounced", "conversation", "voicemail", "no_answer", "busy", "expired",
})


def advances(current: str | None, new: str) -> bool:
    """Whether reporting ``new`` after ``current`` moves the message forward.

    Along the one order of :data:`~shared.events.contracts.STATUS_RANK`, with two rules a channel adds as
    the one that reports: every final outcome is reported once — so a failure after a delivery (a spam
    report, an asynchronous bounce) still reaches the orchestrator, which suppresses on it but keeps the
    delivery — and after ``unknown`` whatever the provider says next is news. Nothing moves back to
    ``unknown`` and nothing moves past a final outcome.
    """
    if current is None:
        return True
    if current in TERMINAL or new not in REPORTED:
        return False
    if current not in REPORTED:
        return True
    if new == "unknown":
        return False
    if new in TERMINAL or current == "unknown":
        return True
    return STATUS_RANK[new] > STATUS_RANK[current]


def bare_address(address: str) -> str:
    """``whatsapp:+52 55…`` → ``+5255…``: the canonical key one person's messages share across
    prefixes and spellings (E.164; an e-mail with its domain lower-cased)."""
    return address_key("email" if "@" in address else "sms", address)


class SendLogView(Protocol):
    """What the outcome helpers read and move on a send-log row: an ORM ``SendLogRecord`` or a plain
    ``SendLogEntry`` read set-based (:mod:`shared.channels.sendlog`)."""

    dispatch_id: str
    request_id: str
    debtor_id: str
    channel: str
    address: str
    provider_id: str | None
    status: str | None
    error_code: str | None
    error_message: str | None
    updated_at: datetime


class SendLogRecord(Base):
    __tablename__ = "send_log"
    __table_args__ = (
        Index("ix_send_log_address_created", "address_key", "created_at"),
        Index("ix_send_log_state_next_attempt", "state", "next_attempt_at"),
    )

    dispatch_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(200))
    request_id: Mapped[str] = mapped_column(String(200))
    debtor_id: Mapped[str] = mapped_column(String(200))
    account_id: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(20))
    #: The dispatch's ``to`` as given; ``address_key`` is it without a channel prefix (for inbound lookups).
    address: Mapped[str] = mapped_column(String(320))
    address_key: Mapped[str] = mapped_column(String(320))
    locale: Mapped[str] = mapped_column(String(20))
    sender: Mapped[str] = mapped_column(String(100))
    template_key: Mapped[str] = mapped_column(String(200))
    template_version: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(20))
    status: Mapped[str | None] = mapped_column(String(20), nullable=True)
    provider_id: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    error_code: Mapped[str | None] = mapped_column(String(50), nullable=True)
    error_message: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: A send handed to the durable retry path (``shared.channels.deferred``): when it may be attempted
    #: next, and what to send (the dispatch event and the composed request, JSON). Both are cleared
    #: when the send ends; ``next_attempt_at`` stays set while the retry path holds a ``sending`` claim.
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    resume: Mapped[str | None] = mapped_column(Text, nullable=True)


def receipts_target(retention: RetentionSettings) -> PruneTarget:
    """Webhook receipts older than ``retention.receipts_days`` go (longer than providers retry)."""
    return PruneTarget(ProviderReceipt.__table__, ProviderReceipt.received_at,  # type: ignore[arg-type]
                       timedelta(days=retention.receipts_days))


class ProviderReceipt(Base):
    """One webhook already applied: ``(MessageSid, status)`` for status callbacks, ``(MessageSid, "inbound")``."""

    __tablename__ = "provider_receipts"
    __table_args__ = (Index("ix_provider_receipts_received_at", "received_at"),)

    provider_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    status: Mapped[str] = mapped_column(String(40), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
