"""Small builders so each test states only what matters to it."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from services.orchestrator.policy import (
    AccountState,
    DebtorContext,
    LedgerEntry,
    ProposedContact,
)


def local(tz: str, *args: int) -> datetime:
    """An aware instant given as local wall time in ``tz``, converted to UTC."""
    return datetime(*args, tzinfo=ZoneInfo(tz)).astimezone(UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def debtor(jurisdiction: str = "US", zones: tuple[str, ...] | None = ("America/Chicago",),
           phone: str | None = "+13125550100", channels: frozenset[str] | None = None) -> DebtorContext:
    return DebtorContext("d1", jurisdiction, zones, phone, channels)


def account(status: str = "active", promise_until: object = None) -> AccountState:
    return AccountState("D1", status, promise_until)  # type: ignore[arg-type]


def out(at: datetime, channel: str = "voice", outcome: str = "no_answer", account_id: str = "D1",
        consented: bool = False, kind: str = "collection") -> LedgerEntry:
    return LedgerEntry(channel, "outbound", at, account_id, outcome, consented, kind)  # type: ignore[arg-type]


def inbound(at: datetime, channel: str = "voice", outcome: str = "conversation",
            account_id: str = "D1") -> LedgerEntry:
    return LedgerEntry(channel, "inbound", at, account_id, outcome)  # type: ignore[arg-type]


def contact(at: datetime, channel: str = "voice", kind: str = "collection", consented: bool = False,
            account_id: str = "D1") -> ProposedContact:
    return ProposedContact(channel, at, account_id, kind, consented)  # type: ignore[arg-type]
