"""The orchestrator's ledger and state: debtors, accounts, requests, dispatches, outcomes, suppressions.

Every table a decision reads is indexed by ``(debtor_id, at)`` so a decision reads only that
debtor's recent rows, whatever the size of the portfolio.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, BigInteger, Date, DateTime, Dialect, Index, Integer, Numeric, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from shared.db import Base


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on both databases (SQLite stores naive UTC text, so compare in UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        processor = super().bind_processor(dialect)
        if dialect.name != "sqlite" or processor is None:
            return processor
        general = processor

        # The text SQLite's DATETIME writes (``2026-11-30 12:05:57.000000``, always six digits of
        # microseconds), in one step: ``process_bind_param`` and the dialect's ``%``-format of a dict
        # of the fields were a third of binding a batch's rows. Anything but a plain datetime takes
        # the general path (tests/orchestrator/runtime/test_utc_datetime_storage.py compares the two).
        def process(value: Any) -> Any:
            if type(value) is not datetime:
                return general(value)
            tz = value.tzinfo
            if tz is None:
                return value.isoformat(" ", "microseconds")
            if tz is not UTC:
                value = value.astimezone(UTC)
            return value.isoformat(" ", "microseconds")[:26]

        return process

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_ID = 200
_PK = BigInteger().with_variant(Integer, "sqlite")


class DebtorRow(Base):
    __tablename__ = "debtors"

    id: Mapped[str] = mapped_column(String(_ID), primary_key=True)
    name: Mapped[str] = mapped_column(String(300), default="")
    locale: Mapped[str] = mapped_column(String(20), default="es-MX")
    jurisdiction: Mapped[str | None] = mapped_column(String(10), nullable=True)
    time_zone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    phone: Mapped[str | None] = mapped_column(String(40), nullable=True)
    email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    whatsapp: Mapped[str | None] = mapped_column(String(40), nullable=True)
    authorized_channels: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    preferred_channel: Mapped[str | None] = mapped_column(String(20), nullable=True)
    consents: Mapped[dict[str, bool] | None] = mapped_column(JSON, nullable=True)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: Times the debtor said are inconvenient (12 CFR 1006.6(b)(1)), each with its ``source`` and ``at``.
    inconvenient_times: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)


class AccountRow(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(_ID), primary_key=True)
    debtor_id: Mapped[str] = mapped_column(String(_ID), index=True)
    product: Mapped[str] = mapped_column(String(100), default="")
    balance: Mapped[Decimal | None] = mapped_column(Numeric(18, 4), nullable=True)
    currency: Mapped[str | None] = mapped_column(String(3), nullable=True)
    days_past_due: Mapped[int | None] = mapped_column(Integer, nullable=True)
    due_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    risk_score: Mapped[float | None] = mapped_column(nullable=True)
    payment_url: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    #: active | promised | paid | disputed | ceased
    status: Mapped[str] = mapped_column(String(20), default="active")
    #: A promise pauses collection until an instant (a reply: now + horizon) or through a date
    #: (a backend's promise: the end of that date in the debtor's zone, which the policy resolves).
    promise_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    promise_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    status_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: The attorney representing the debtor for this debt (12 CFR 1006.6(b)(2)): ``name``, ``phone``,
    #: ``email``, ``since``; None when not represented. Collection contact then goes to the attorney only.
    attorney: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class ContactRequestRow(Base):
    __tablename__ = "contact_requests"
    __table_args__ = (Index("ix_contact_requests_debtor_at", "debtor_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(_ID), primary_key=True)
    debtor_id: Mapped[str] = mapped_column(String(_ID))
    account_id: Mapped[str] = mapped_column(String(_ID))
    kind: Mapped[str] = mapped_column(String(30), default="collection")
    template: Mapped[str] = mapped_column(String(_ID))
    #: The request as received (``ContactRequested`` JSON), re-read at release and fallback.
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: The channels to try, in order (strategy order for ``auto``), and those that failed.
    channels: Mapped[list[str]] = mapped_column(JSON, default=list)
    tried_channels: Mapped[list[str]] = mapped_column(JSON, default=list)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    segment: Mapped[str | None] = mapped_column(String(100), nullable=True)
    #: The result the intake answered with (returned again for a repeated id).
    intake_status: Mapped[str] = mapped_column(String(20))
    intake_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class StatusHistoryRow(Base):
    __tablename__ = "contact_status_history"

    id: Mapped[int] = mapped_column(_PK, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(_ID), index=True)
    #: Not indexed: every decision writes history rows, and an index on a random key costs each insert
    #: about twice what the row costs (docs/benchmarks.md, twentieth round). A debtor's history is
    #: read through their requests (``request_id``), whose debtor it always is.
    debtor_id: Mapped[str] = mapped_column(String(_ID))
    status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    channel: Mapped[str | None] = mapped_column(String(20), nullable=True)
    dispatch_id: Mapped[str | None] = mapped_column(String(_ID), nullable=True)
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    rules: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: Indexed for the pruner (``retention.status_history_days``): without it each pass read the whole
    #: history, the largest table the orchestrator keeps, and on SQLite inside a write transaction.
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class DispatchRow(Base):
    """One attempt of a request on one channel; in the ledger from the moment it is decided."""

    __tablename__ = "dispatches"
    __table_args__ = (
        Index("ix_dispatches_debtor_at", "debtor_id", "at"),
        # belt and braces: one dispatch per attempt of a request, whatever happens above
        Index("ux_dispatches_request_attempt", "request_id", "attempt", unique=True),
    )

    id: Mapped[str] = mapped_column(String(_ID), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(_ID), index=True)
    debtor_id: Mapped[str] = mapped_column(String(_ID))
    account_id: Mapped[str] = mapped_column(String(_ID))
    channel: Mapped[str] = mapped_column(String(20))
    address: Mapped[str] = mapped_column(String(320))
    kind: Mapped[str] = mapped_column(String(30), default="collection")
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    template_key: Mapped[str] = mapped_column(String(_ID))
    template_version: Mapped[int] = mapped_column(Integer)
    consented: Mapped[bool] = mapped_column(default=False)
    #: Latest delivery status; only moves forward (see ``shared.events.contracts.STATUS_RANK``).
    status: Mapped[str] = mapped_column(String(20), default="dispatched")
    error_code: Mapped[str | None] = mapped_column(String(50), nullable=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: The policy's end of the lawful window (less the margin) the dispatch carried.
    send_before: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class OutcomeRow(Base):
    __tablename__ = "outcomes"
    __table_args__ = (Index("ix_outcomes_debtor_at", "debtor_id", "at"),)

    id: Mapped[int] = mapped_column(_PK, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(_ID))
    dispatch_id: Mapped[str] = mapped_column(String(_ID), index=True)
    request_id: Mapped[str] = mapped_column(String(_ID))
    debtor_id: Mapped[str] = mapped_column(String(_ID))
    channel: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))
    provider: Mapped[str] = mapped_column(String(50), default="")
    error_code: Mapped[str | None] = mapped_column(String(50), nullable=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class ResponseRow(Base):
    __tablename__ = "responses"
    __table_args__ = (Index("ix_responses_debtor_at", "debtor_id", "at"),)

    id: Mapped[int] = mapped_column(_PK, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(_ID))
    debtor_id: Mapped[str] = mapped_column(String(_ID))
    dispatch_id: Mapped[str | None] = mapped_column(String(_ID), nullable=True)
    channel: Mapped[str] = mapped_column(String(20))
    kind: Mapped[str] = mapped_column(String(30))
    text: Mapped[str | None] = mapped_column(Text, nullable=True)
    digits: Mapped[str | None] = mapped_column(String(50), nullable=True)
    address: Mapped[str | None] = mapped_column(String(320), nullable=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class SuppressionRow(Base):
    """Per address and channel (STOP, bounce, invalid number) or per debtor and channel (cease)."""

    __tablename__ = "suppressions"
    __table_args__ = (
        Index("ix_suppressions_debtor_at", "debtor_id", "at"),
        # an address's opt-outs bind every debtor using it
        Index("ix_suppressions_address", "address"),
    )

    id: Mapped[int] = mapped_column(_PK, primary_key=True, autoincrement=True)
    debtor_id: Mapped[str] = mapped_column(String(_ID))
    channel: Mapped[str] = mapped_column(String(20))
    #: Canonical address (E.164, e-mail with a lower-cased domain); None for a debtor-wide suppression.
    address: Mapped[str | None] = mapped_column(String(320), nullable=True)
    reason: Mapped[str] = mapped_column(String(50))
    source: Mapped[str] = mapped_column(String(50))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    lifted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class DeferredContactRow(Base):
    __tablename__ = "deferred_contacts"
    __table_args__ = (
        Index("ix_deferred_contacts_due", "state", "not_before"),
        Index("ix_deferred_contacts_debtor_at", "debtor_id", "created_at"),
        # at most one pending deferral per request
        Index("ux_deferred_contacts_pending", "request_id", unique=True,
              postgresql_where=text("state = 'pending'"), sqlite_where=text("state = 'pending'")),
    )

    id: Mapped[int] = mapped_column(_PK, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(_ID), index=True)
    debtor_id: Mapped[str] = mapped_column(String(_ID))
    account_id: Mapped[str] = mapped_column(String(_ID))
    not_before: Mapped[datetime] = mapped_column(UTCDateTime)
    #: pending | released | cancelled
    state: Mapped[str] = mapped_column(String(20), default="pending")
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    rules: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
