"""Wire models of the simulation API (pydantic at the edge only) and their conversion."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.orchestrator.policy.models import (
    MAX_CAP,
    MAX_MIN_GAP,
    AccountState,
    Allow,
    DebtorContext,
    Decision,
    Defer,
    InconvenientTime,
    LedgerEntry,
    ProposedContact,
    StrategyLimits,
    Suppression,
)
from services.orchestrator.policy.zones import zone
from shared.http import AwareUtcInstant

ChannelName = Literal["voice", "sms", "email", "whatsapp"]
OutcomeName = Literal[
    "conversation", "voicemail", "no_answer", "busy", "not_connected", "sent", "delivered", "failed", "replied"
]
KindName = Literal["collection", "opt_out_confirmation", "cease_notice", "dispute_ack"]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InconvenientTimeIn(_Wire):
    """A time the debtor said is inconvenient (12 CFR 1006.6(b)(1)); empty ``days`` = every day."""

    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(default_factory=list)
    start: str | None = Field(default=None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    end: str | None = Field(default=None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")
    channels: list[ChannelName] = Field(default_factory=list)
    source: str = Field(default="ops", min_length=1, max_length=50)

    def to_model(self) -> InconvenientTime:
        return InconvenientTime(tuple(self.days), self.start, self.end, tuple(self.channels), self.source)


class DebtorIn(_Wire):
    id: str = Field(min_length=1)
    jurisdiction: str = Field(min_length=2, max_length=10, pattern=r"^[A-Za-z]{2}(-[A-Za-z0-9]{1,3})?$|^default$")
    time_zones: list[str] | None = None
    phone: str | None = None
    authorized_channels: list[ChannelName] | None = None
    inconvenient_times: list[InconvenientTimeIn] = Field(default_factory=list)

    @field_validator("time_zones")
    @classmethod
    def _known_zones(cls, value: list[str] | None) -> list[str] | None:
        for name in value or ():
            zone(name)  # ValueError -> 422 naming debtor.time_zones
        return value


class AccountIn(_Wire):
    id: str = Field(min_length=1)
    status: Literal["active", "promised", "paid", "disputed", "ceased"] = "active"
    promise_until: AwareUtcInstant | date | None = None
    represented_by_attorney: bool = False


class HistoryEntryIn(_Wire):
    channel: ChannelName
    direction: Literal["outbound", "inbound"]
    at: AwareUtcInstant
    account_id: str | None = None
    outcome: OutcomeName
    consented: bool = False
    kind: KindName = "collection"
    address: str | None = None


class SuppressionIn(_Wire):
    channel: ChannelName
    address: str = Field(min_length=1)
    at: AwareUtcInstant | None = None


#: The instants a contact may be evaluated at: the engine looks back over the longest gap and
#: forward over its horizon, so two years from either end of the calendar stay out of reach.
EARLIEST_CONTACT = datetime(3, 1, 1, tzinfo=UTC)
LATEST_CONTACT = datetime(9997, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


class ContactIn(_Wire):
    channel: ChannelName
    at: AwareUtcInstant
    account_id: str | None = None
    kind: KindName = "collection"
    consented: bool = False
    address: str | None = None
    expires_at: AwareUtcInstant | None = None

    @field_validator("at")
    @classmethod
    def _within_reach(cls, value: datetime) -> datetime:
        if not EARLIEST_CONTACT <= value <= LATEST_CONTACT:
            raise ValueError(
                f"must be between {EARLIEST_CONTACT:%Y-%m-%d} and {LATEST_CONTACT:%Y-%m-%d}: the policy "
                "looks back over the history and forward over its horizon from it"
            )
        return value


Cap = Annotated[int, Field(ge=0, le=MAX_CAP)]


class StrategyIn(_Wire):
    min_gap_minutes: int | None = Field(default=None, ge=0, le=MAX_MIN_GAP // timedelta(minutes=1))
    daily_caps: dict[ChannelName, Cap] = Field(default_factory=dict)
    weekly_caps: dict[ChannelName, Cap] = Field(default_factory=dict)


class EvaluateRequest(_Wire):
    debtor: DebtorIn
    account: AccountIn
    history: list[HistoryEntryIn] = Field(default_factory=list)
    suppressions: list[SuppressionIn] = Field(default_factory=list)
    contact: ContactIn
    strategy: StrategyIn | None = None

    def to_inputs(
        self,
    ) -> tuple[DebtorContext, AccountState, list[LedgerEntry], ProposedContact, list[Suppression], StrategyLimits]:
        d, a, c = self.debtor, self.account, self.contact
        debtor = DebtorContext(
            d.id, d.jurisdiction, tuple(d.time_zones) if d.time_zones else None, d.phone,
            frozenset(d.authorized_channels) if d.authorized_channels is not None else None,
            tuple(x.to_model() for x in d.inconvenient_times),
        )
        account = AccountState(a.id, a.status, a.promise_until, a.represented_by_attorney)
        ledger = [
            LedgerEntry(h.channel, h.direction, h.at, h.account_id, h.outcome, h.consented, h.kind, h.address)
            for h in self.history
        ]
        contact = ProposedContact(c.channel, c.at, c.account_id, c.kind, c.consented, c.address, c.expires_at)
        suppressions = [Suppression(s.channel, s.address, s.at) for s in self.suppressions]
        limits = StrategyLimits()
        if self.strategy is not None:
            s = self.strategy
            limits = StrategyLimits(
                timedelta(minutes=s.min_gap_minutes) if s.min_gap_minutes else None,
                tuple(sorted(s.daily_caps.items())), tuple(sorted(s.weekly_caps.items())),
            )
        return debtor, account, ledger, contact, suppressions, limits


class RuleOut(BaseModel):
    id: str
    source: str
    detail: str


class EvaluateResponse(BaseModel):
    decision: Literal["allow", "defer", "deny"]
    not_before: datetime | None = None
    #: For ``allow``: start the provider request before this instant (the lawful window's end less
    #: the safety margin); absent when no rule ends the window.
    send_before: datetime | None = None
    rules: list[RuleOut]

    @classmethod
    def of(cls, decision: Decision) -> EvaluateResponse:
        return cls(
            decision=decision.decision,
            not_before=decision.not_before if isinstance(decision, Defer) else None,
            send_before=decision.send_before if isinstance(decision, Allow) else None,
            rules=[RuleOut(id=r.id, source=r.source, detail=r.detail) for r in decision.rules],
        )
