"""Inputs and decisions of the contact policy engine: frozen, slotted dataclasses (no pydantic here).

The engine is on the orchestrator's hot path, so these are plain dataclasses. Every instant is an
aware datetime normalised to UTC at construction; ``us`` caches its exact microseconds since the epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from shared.addresses import address_key

Channel = Literal["voice", "sms", "email", "whatsapp"]
Direction = Literal["outbound", "inbound"]
Outcome = Literal[
    "conversation", "voicemail", "no_answer", "busy", "not_connected", "sent", "delivered", "failed", "replied"
]
Kind = Literal["collection", "opt_out_confirmation", "cease_notice", "dispute_ack"]
AccountStatus = Literal["active", "promised", "paid", "disputed", "ceased"]

CHANNELS: tuple[str, ...] = ("voice", "sms", "email", "whatsapp")
PHONE_CHANNELS = frozenset({"voice", "sms", "whatsapp"})
OUTCOMES: tuple[str, ...] = (
    "conversation", "voicemail", "no_answer", "busy", "not_connected", "sent", "delivered", "failed", "replied"
)
KINDS: tuple[str, ...] = ("collection", "opt_out_confirmation", "cease_notice", "dispute_ack")
WEEKDAY_NAMES: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
STATUSES: tuple[str, ...] = ("active", "promised", "paid", "disputed", "ceased")


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got naive {value!r}")
    return value.astimezone(UTC)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


def epoch_us(at: datetime) -> int:
    """Exact microseconds since the epoch of an aware datetime (the engine's unit of time)."""
    return (at - EPOCH) // _ONE_US


def normalise_address(channel: str, address: str | None) -> str | None:
    """The canonical form addresses are compared in: E.164 phone numbers, e-mail with a lower-cased
    domain (``shared.addresses.address_key``)."""
    if address is None:
        return None
    return address_key(channel, address)


def _check(value: str, allowed: tuple[str, ...], name: str) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


@dataclass(frozen=True, slots=True)
class InconvenientTime:
    """A time the debtor said is inconvenient (12 CFR 1006.6(b)(1)): no contact then.

    ``days``: weekdays (``mon``..``sun``), every day when empty; ``start``/``end``: local ``HH:MM``,
    half-open, the whole day when both are None; ``channels``: those it binds, every one when empty;
    ``source``: who said so (``ops``, ``reply``), cited in decisions.
    """

    days: tuple[str, ...] = ()
    start: str | None = None
    end: str | None = None
    channels: tuple[str, ...] = ()
    source: str = "ops"

    def __post_init__(self) -> None:
        object.__setattr__(self, "days", tuple(self.days))
        object.__setattr__(self, "channels", tuple(self.channels))
        for day in self.days:
            if day not in WEEKDAY_NAMES:
                raise ValueError(f"days must be among {', '.join(WEEKDAY_NAMES)}, got {day!r}")
        for ch in self.channels:
            _check(ch, CHANNELS, "channels")


@dataclass(frozen=True, slots=True)
class DebtorContext:
    """Who is contacted: jurisdiction like ``US``/``US-MA``/``CO``, candidate IANA zones, phone, and the
    times the debtor said are inconvenient."""

    id: str
    jurisdiction: str
    time_zones: tuple[str, ...] | None = None
    phone: str | None = None
    authorized_channels: frozenset[str] | None = None
    inconvenient: tuple[InconvenientTime, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "jurisdiction", self.jurisdiction.strip().upper())
        object.__setattr__(self, "inconvenient", tuple(self.inconvenient))
        if self.time_zones is not None:
            object.__setattr__(self, "time_zones", tuple(self.time_zones) or None)
        if self.authorized_channels is not None:
            object.__setattr__(self, "authorized_channels", frozenset(self.authorized_channels))


@dataclass(frozen=True, slots=True)
class AccountState:
    """The debt. ``promise_until``: a promise to pay pauses collection until that instant/date."""

    id: str
    status: AccountStatus = "active"
    promise_until: datetime | date | None = None
    #: The debtor is represented by an attorney for this debt (12 CFR 1006.6(b)(2)).
    represented: bool = False

    def __post_init__(self) -> None:
        _check(self.status, STATUSES, "status")
        if isinstance(self.promise_until, datetime):
            object.__setattr__(self, "promise_until", _utc(self.promise_until, "promise_until"))


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One contact already in the ledger (outbound attempt or inbound contact by the debtor)."""

    channel: Channel
    direction: Direction
    at: datetime
    account_id: str | None = None
    outcome: Outcome = "sent"
    consented: bool = False
    kind: Kind = "collection"
    address: str | None = None
    us: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check(self.channel, CHANNELS, "channel")
        _check(self.direction, ("outbound", "inbound"), "direction")
        _check(self.outcome, OUTCOMES, "outcome")
        _check(self.kind, KINDS, "kind")
        at = _utc(self.at, "at")
        object.__setattr__(self, "at", at)
        object.__setattr__(self, "us", epoch_us(at))
        object.__setattr__(self, "address", normalise_address(self.channel, self.address))


@dataclass(frozen=True, slots=True)
class Suppression:
    """An opted-out medium: never used again for this channel+address (one confirmation allowed).

    ``at`` (when the opt-out was received) scopes the single confirmation: an outbound
    ``opt_out_confirmation`` on that channel+address at or after ``at`` uses it up. Without ``at``
    any earlier confirmation on that channel+address uses it up.
    """

    channel: Channel
    address: str
    at: datetime | None = None

    def __post_init__(self) -> None:
        _check(self.channel, CHANNELS, "channel")
        object.__setattr__(self, "address", normalise_address(self.channel, self.address))
        if self.at is not None:
            object.__setattr__(self, "at", _utc(self.at, "at"))


@dataclass(frozen=True, slots=True)
class ProposedContact:
    """The contact being decided; ``at`` is the proposed instant (the engine's ``now``)."""

    channel: Channel
    at: datetime
    account_id: str | None = None
    kind: Kind = "collection"
    consented: bool = False
    address: str | None = None
    #: The request's own end: no contact at or after it (it bounds ``Allow.send_before``).
    expires_at: datetime | None = None
    us: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check(self.channel, CHANNELS, "channel")
        _check(self.kind, KINDS, "kind")
        at = _utc(self.at, "at")
        object.__setattr__(self, "at", at)
        object.__setattr__(self, "us", epoch_us(at))
        object.__setattr__(self, "address", normalise_address(self.channel, self.address))
        if self.expires_at is not None:
            object.__setattr__(self, "expires_at", _utc(self.expires_at, "expires_at"))

    def at_time(self, at: datetime) -> ProposedContact:
        """The same contact proposed at another instant (for re-evaluation when a deferral is due)."""
        return ProposedContact(
            self.channel, at, self.account_id, self.kind, self.consented, self.address, self.expires_at
        )


#: The longest minimum gap an operator may set (a gap longer than a year is not a cadence), and the
#: most contacts a daily or weekly cap may allow. Both bound what the engine looks back over.
MAX_MIN_GAP = timedelta(days=366)
MAX_CAP = 1000


@dataclass(frozen=True, slots=True)
class StrategyLimits:
    """Operator limits on top of the law (all off by default). They bind ``collection`` contacts only.

    Daily caps count outbound entries per local calendar day; weekly caps per 7 consecutive local
    days; every outbound ledger entry counts, whatever its outcome.
    """

    min_gap: timedelta | None = None
    daily_caps: tuple[tuple[str, int], ...] = ()
    weekly_caps: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.daily_caps, dict):
            object.__setattr__(self, "daily_caps", tuple(sorted(self.daily_caps.items())))
        if isinstance(self.weekly_caps, dict):
            object.__setattr__(self, "weekly_caps", tuple(sorted(self.weekly_caps.items())))


NO_LIMITS = StrategyLimits()


@dataclass(frozen=True, slots=True)
class AppliedRule:
    """A rule that took part in a decision, with its legal source and why."""

    id: str
    source: str
    detail: str


@dataclass(frozen=True, slots=True)
class Allow:
    """Lawful now, and until ``send_before`` (UTC): the first instant any rule that allowed it would stop
    holding (a window closing in any candidate zone, the request's ``expires_at``), less the policy's
    safety margin. ``None`` when nothing ends it (a pack with no hours and no expiry)."""

    rules: tuple[AppliedRule, ...] = ()
    send_before: datetime | None = None
    decision: Literal["allow"] = "allow"


@dataclass(frozen=True, slots=True)
class Defer:
    """Not now: ``not_before`` is the earliest instant (UTC) at which every rule holds."""

    not_before: datetime
    rules: tuple[AppliedRule, ...] = ()
    decision: Literal["defer"] = "defer"


@dataclass(frozen=True, slots=True)
class Deny:
    """Never, or not within the search horizon: time cannot fix it."""

    rules: tuple[AppliedRule, ...] = ()
    decision: Literal["deny"] = "deny"


Decision = Allow | Defer | Deny
