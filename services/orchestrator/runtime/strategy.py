"""Collection strategy: which segment an account is in, and what that means for contacting it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from services.orchestrator.policy.models import MAX_CAP, MAX_MIN_GAP
from shared.events.contracts import CHANNELS, Account, Channel

Cap = Annotated[int, Field(ge=0, le=MAX_CAP)]

DEFAULT_PATH = Path(__file__).with_name("strategy.yaml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Plan(_Strict):
    """What a segment decides; every field optional so segments override only what they name."""

    channels: list[Channel] | None = None
    variant: str | None = None
    template_suffix: str | None = None
    min_gap_hours: float | None = Field(None, ge=0, le=MAX_MIN_GAP / timedelta(hours=1))
    daily_caps: dict[Channel, Cap] | None = None
    weekly_caps: dict[Channel, Cap] | None = None
    no_answer_fallback_after: int | None = Field(None, ge=1)
    #: Record this segment's calls; the opening script then starts with the jurisdiction's notice.
    record_calls: bool | None = None
    #: Bridge answered calls to this agent queue (a key of ``agent_queues``) while it is open.
    agent_queue: str | None = None


class Segment(Plan):
    name: str
    days_past_due: tuple[int | None, int | None] | None = None
    balance: tuple[Decimal | None, Decimal | None] | None = None
    risk_score: tuple[float | None, float | None] | None = None
    products: list[str] | None = None

    def matches(self, account: Account) -> bool:
        return (
            _within(account.days_past_due, self.days_past_due)
            and _within(account.balance, self.balance)
            and (self.risk_score is None or (account.risk_score is not None and _within(account.risk_score,
                                                                                           self.risk_score)))
            and (self.products is None or account.product in self.products)
        )


def _within(value: Any, bounds: tuple[Any, Any] | None) -> bool:
    if bounds is None:
        return True
    low, high = bounds
    return (low is None or value >= low) and (high is None or value <= high)


class PlanOffer(_Strict):
    """The payment plans the page offers: ``min``..``max`` instalments, each at least ``min_instalment``."""

    min_instalments: int = Field(2, ge=2, le=60)
    max_instalments: int = Field(6, ge=2, le=60)
    min_instalment: Decimal = Field(Decimal("0"), ge=0)
    interval_days: int = Field(30, ge=7, le=92)


class SelfService(_Strict):
    """The debtor's self-service page: link lifetime, and what a promise or a plan may be."""

    enabled: bool = True
    link_ttl_days: int = Field(14, ge=1, le=90)
    #: A promise (or a plan's first instalment) falls within this many days of today.
    max_promise_days: int = Field(30, ge=1, le=365)
    #: The smallest promise, as a share of the balance (0..1); the promise never exceeds the balance.
    min_promise_share: Decimal = Field(Decimal("0.1"), ge=0, le=1)
    plans: PlanOffer | None = PlanOffer()
    #: Sent once, through the channel the debtor last heard from, after a confirmed promise or plan.
    confirmation_template: str | None = "promise_confirmation"
    #: Answers a "1"/PAGAR reply with the link (when published), at an hour the policy allows.
    reply_template: str | None = "self_service_link"


class AgentQueueConfig(_Strict):
    """A queue of agents: where they answer, when, how many, how long a debtor waits for one."""

    dial: str = Field(min_length=1)
    agents: int = Field(1, ge=0)
    wait_s: int = Field(20, ge=1, le=120)
    max_ratio: float = Field(2.0, ge=1, le=5)
    time_zone: str = "UTC"
    #: ``{"mon-fri": ["09:00-18:00"], "sat": ["09:00-13:00"]}``; empty: always open.
    hours: dict[str, list[str]] = Field(default_factory=dict)


class StrategyConfig(_Strict):
    send_window_hours: float = Field(24, gt=0)
    promise_horizon_days: int = Field(7, ge=1)
    ledger_window_days: int = Field(14, ge=8)
    opt_out_confirmation_template: str | None = "opt_out_confirmation"
    creditor: dict[str, Any] = Field(default_factory=dict)
    defaults: Plan = Plan()
    segments: list[Segment] = Field(default_factory=list)
    self_service: SelfService = SelfService()
    agent_queues: dict[str, AgentQueueConfig] = Field(default_factory=dict)


@dataclass(frozen=True)
class SegmentPlan:
    """The resolved plan for one account."""

    segment: str
    channels: tuple[Channel, ...]
    variant: str | None
    template_suffix: str
    min_gap: timedelta | None
    daily_caps: dict[str, int] = field(default_factory=dict)
    weekly_caps: dict[str, int] = field(default_factory=dict)
    no_answer_fallback_after: int = 2
    record_calls: bool = False
    agent_queue: str | None = None


@dataclass(frozen=True)
class Strategy:
    config: StrategyConfig
    #: Plans by what decides them (days past due, balance, risk score, product): a decision asks often.
    _plans: dict[tuple[Any, ...], SegmentPlan] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def load(cls, path: str | Path | None = None) -> Strategy:
        raw = yaml.safe_load(Path(path or DEFAULT_PATH).read_text(encoding="utf-8")) or {}
        return cls(StrategyConfig.model_validate(raw))

    @property
    def send_window(self) -> timedelta:
        return timedelta(hours=self.config.send_window_hours)

    @property
    def promise_horizon(self) -> timedelta:
        return timedelta(days=self.config.promise_horizon_days)

    @property
    def ledger_window(self) -> timedelta:
        return timedelta(days=self.config.ledger_window_days)

    def plan(self, account: Account) -> SegmentPlan:
        key = (account.days_past_due, account.balance, account.risk_score, account.product)
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) > 10_000:
                self._plans.clear()
            plan = self._plans[key] = self._plan(account)
        return plan

    def _plan(self, account: Account) -> SegmentPlan:
        segment = next((s for s in self.config.segments if s.matches(account)), None)
        layers = [self.config.defaults] + ([segment] if segment else [])

        def pick(name: str, fallback: Any) -> Any:
            value = fallback
            for layer in layers:
                if getattr(layer, name) is not None:
                    value = getattr(layer, name)
            return value

        gap_hours = pick("min_gap_hours", 0)
        return SegmentPlan(
            segment=segment.name if segment else "default",
            channels=tuple(pick("channels", list(CHANNELS))),
            variant=pick("variant", None),
            template_suffix=pick("template_suffix", ""),
            min_gap=timedelta(hours=gap_hours) if gap_hours else None,
            daily_caps=dict(pick("daily_caps", {})),
            weekly_caps=dict(pick("weekly_caps", {})),
            no_answer_fallback_after=pick("no_answer_fallback_after", 2),
            record_calls=bool(pick("record_calls", False)),
            agent_queue=pick("agent_queue", None),
        )
