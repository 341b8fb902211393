"""Compiled rules. Every instant is an int of microseconds since the epoch (exact arithmetic).

A time rule answers, for a candidate instant ``t`` seen in one local zone, either ``None`` (holds)
or ``(earliest, detail)`` where the rule fails on all of ``[t, earliest)``. The engine jumps to the
largest such bound until every rule holds in every zone: the first instant found is the earliest.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from services.orchestrator.policy.models import (
    CHANNELS,
    KINDS,
    OUTCOMES,
    AccountState,
    AppliedRule,
    DebtorContext,
    LedgerEntry,
    ProposedContact,
    Suppression,
    epoch_us,
)
from services.orchestrator.policy.zones import holiday_ordinals, local_ordinal, local_ts, midnight

US = 1_000_000  # microseconds per second
DAY_US = 86_400 * US
NEVER = 2**62
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def fmt(tz: ZoneInfo, t: int) -> str:
    return datetime.fromtimestamp(t // US, tz).strftime("%a %Y-%m-%d %H:%M %Z")


def day_str(ordinal: int) -> str:
    return date.fromordinal(ordinal).isoformat()


class ZoneView:
    """A candidate instant as seen in one zone: local day (ordinal), weekday, microsecond of day."""

    __slots__ = ("tz", "t", "day", "weekday", "sod")

    def __init__(self, tz: ZoneInfo, t: int) -> None:
        lt = datetime.fromtimestamp(t // US, tz)
        self.tz, self.t = tz, t
        self.day = lt.toordinal()
        self.weekday = lt.weekday()
        self.sod = (lt.hour * 3600 + lt.minute * 60 + lt.second) * US + t % US


class EvalContext:
    """Everything one evaluation needs, computed once."""

    __slots__ = (
        "debtor", "account", "contact", "t0", "ledger", "entries", "suppressions", "direct_t",
        "holiday_country", "holiday_subdivision",
    )

    def __init__(
        self,
        debtor: DebtorContext,
        account: AccountState,
        contact: ProposedContact,
        t0: int,
        ledger: Sequence[LedgerEntry],
        entries: list[tuple[int, LedgerEntry]],
        suppressions: Sequence[Suppression],
        direct_t: int,
        holiday_country: str | None,
        holiday_subdivision: str | None,
    ) -> None:
        self.debtor, self.account, self.contact, self.t0 = debtor, account, contact, t0
        self.ledger, self.entries, self.suppressions = ledger, entries, suppressions
        self.direct_t = direct_t
        self.holiday_country, self.holiday_subdivision = holiday_country, holiday_subdivision

    def is_holiday(self, ordinal: int) -> bool:
        if self.holiday_country is None:
            return False
        year = date.fromordinal(ordinal).year
        return ordinal in holiday_ordinals(self.holiday_country, self.holiday_subdivision, year)


class Rule:
    """Base: identity, legal source, and which contacts it binds."""

    kind = "rule"
    deny_rule = False

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.id: str = spec["id"]
        self.source: str = str(spec.get("source") or "")
        if not self.source:
            raise ValueError(f"rule {self.id}: every rule must name its source")
        self.title: str = str(spec.get("title") or self.id)
        self.channels = frozenset(_names(spec.get("channels", CHANNELS), CHANNELS, self.id, "channels"))
        self.kinds = frozenset(_names(spec.get("kinds", self.default_kinds()), KINDS, self.id, "kinds"))
        self.satisfied = AppliedRule(self.id, self.source, f"holds: {self.title}")

    def default_kinds(self) -> tuple[str, ...]:
        return ("collection",)

    def applies(self, contact: ProposedContact) -> bool:
        return contact.channel in self.channels and contact.kind in self.kinds

    def applied(self, detail: str) -> AppliedRule:
        return AppliedRule(self.id, self.source, detail)


class DenyRule(Rule):
    deny_rule = True

    def deny(self, ctx: EvalContext) -> str | None:  # pragma: no cover - interface
        raise NotImplementedError


class TimeRule(Rule):
    def prepare(self, ctx: EvalContext) -> Any:
        """Per-evaluation state, or ``None`` when the rule does not bind this contact."""
        return True

    def check(self, state: Any, ctx: EvalContext, zv: ZoneView) -> tuple[int, str] | None:
        raise NotImplementedError  # pragma: no cover - interface


def _names(value: Any, allowed: Sequence[str], rule_id: str, what: str) -> list[str]:
    items = [value] if isinstance(value, str) else list(value)
    for item in items:
        if item not in allowed:
            raise ValueError(f"rule {rule_id}: unknown {what} value {item!r}")
    return items


def _parse_hhmm(text: str, rule_id: str) -> int:
    hh, _, mm = text.strip().partition(":")
    seconds = int(hh) * 3600 + int(mm or 0) * 60
    if not 0 <= seconds <= 86_400:
        raise ValueError(f"rule {rule_id}: time {text!r} out of range")
    return seconds


def _day_keys(key: str, rule_id: str) -> list[int]:
    key = key.strip().lower()
    if key in ("daily", "all", "mon-sun"):
        return list(range(7))
    if "-" in key:
        a, b = key.split("-", 1)
        return list(range(WEEKDAYS.index(a), WEEKDAYS.index(b) + 1))
    if key not in WEEKDAYS:
        raise ValueError(f"rule {rule_id}: unknown day {key!r}")
    return [WEEKDAYS.index(key)]


class HoursRule(TimeRule):
    """Local-time windows per weekday, half-open [start, end); optionally closed on holidays."""

    kind = "hours"

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        per_day: list[list[tuple[int, int]]] = [[] for _ in range(7)]
        for key, spans in (spec.get("windows") or {}).items():
            for day in _day_keys(str(key), self.id):
                for span in [spans] if isinstance(spans, str) else spans:
                    a, b = str(span).split("-")
                    start, end = _parse_hhmm(a, self.id), _parse_hhmm(b, self.id)
                    if start >= end:
                        raise ValueError(f"rule {self.id}: empty window {span!r}")
                    per_day[day].append((start * US, end * US))
        self.windows = tuple(tuple(sorted(w)) for w in per_day)
        self.closed_on_holidays = bool(spec.get("closed_on_holidays", False))

    def default_kinds(self) -> tuple[str, ...]:
        return KINDS

    def open_windows(self, ctx: EvalContext, day: int, weekday: int) -> tuple[tuple[int, int], ...]:
        """The windows (microseconds of the local day) open on a day: none on a closed holiday."""
        if self.closed_on_holidays and ctx.is_holiday(day):
            return ()
        return self.windows[weekday]

    def check(self, state: Any, ctx: EvalContext, zv: ZoneView) -> tuple[int, str] | None:
        sod = zv.sod
        today = self.open_windows(ctx, zv.day, zv.weekday)
        for start, end in today:
            if start <= sod < end:
                return None
        why = "holiday" if self.closed_on_holidays and not today and self.windows[zv.weekday] and \
            ctx.is_holiday(zv.day) else "outside the permitted hours"
        for offset in range(0, 400):
            day = zv.day + offset
            for start, _end in self.open_windows(ctx, day, (zv.weekday + offset) % 7):
                if offset == 0 and start <= sod:
                    continue
                opening = local_ts(zv.tz, day, start // US) * US
                if opening > zv.t:
                    return opening, f"{fmt(zv.tz, zv.t)} is {why}; opens {fmt(zv.tz, opening)}"
        return NEVER, f"{fmt(zv.tz, zv.t)}: no permitted hours in the next 400 days"


class _Window:
    """A counting window: the local day, the ISO week, or N consecutive local days."""

    def __init__(self, value: Any, rule_id: str) -> None:
        if value in ("day", "calendar_day"):
            self.mode, self.days = "day", 1
        elif value in ("iso_week", "week"):
            self.mode, self.days = "iso_week", 7
        elif isinstance(value, dict) and "rolling_days" in value:
            self.mode, self.days = "rolling", int(value["rolling_days"])
            if self.days < 1:
                raise ValueError(f"rule {rule_id}: rolling_days must be >= 1")
        else:
            raise ValueError(f"rule {rule_id}: unknown window {value!r}")

    def first_day(self, zv: ZoneView) -> int:
        if self.mode == "iso_week":
            return zv.day - zv.weekday
        return zv.day - self.days + 1

    def describe(self) -> str:
        return {"day": "this local day", "iso_week": "this ISO week"}.get(
            self.mode, f"the last {self.days} local days"
        )


def _outcome_set(spec: dict[str, Any], rule_id: str) -> frozenset[str]:
    return frozenset(_names(spec.get("exclude_outcomes", ()), OUTCOMES, rule_id, "outcomes"))


class CapRule(TimeRule):
    """At most ``max`` counted contacts per window, optionally ``min_day_gap`` local days apart."""

    kind = "cap"

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        self.max = int(spec["max"]) if spec.get("max") is not None else None
        self.window = _Window(spec.get("window", "day"), self.id)
        self.min_day_gap = int(spec.get("min_day_gap") or 0)
        self.per_debt = spec.get("per", "debt") == "debt"
        self.count_channels = frozenset(
            _names(spec.get("count_channels", sorted(self.channels)), CHANNELS, self.id, "channels")
        )
        self.excluded = _outcome_set(spec, self.id)
        self.exclude_consented = bool(spec.get("exclude_consented", False))
        self.include_inbound = bool(spec.get("include_inbound", False))
        self.requires_direct = bool(spec.get("requires_direct_contact", False))
        if self.max is None and not self.min_day_gap:
            raise ValueError(f"rule {self.id}: a cap needs max or min_day_gap")
        # lookback in days the engine must keep for this rule
        self.lookback_days = max(self.window.days, self.min_day_gap) + 2

    def counts(self, e: LedgerEntry, account_id: str | None) -> bool:
        if self.per_debt and e.account_id != account_id:
            return False
        if e.direction == "inbound":
            return self.include_inbound
        return (
            e.channel in self.count_channels
            and e.outcome not in self.excluded
            and not (self.exclude_consented and e.consented)
        )

    def prepare(self, ctx: EvalContext) -> Any:
        c = ctx.contact
        if self.exclude_consented and c.consented:
            return None
        acct = c.account_id
        return [t for t, e in ctx.entries if self.counts(e, acct)]

    def check(self, state: Any, ctx: EvalContext, zv: ZoneView) -> tuple[int, str] | None:
        if self.requires_direct and ctx.direct_t > zv.t:
            return None
        times: list[int] = state
        hi = bisect_right(times, zv.t)
        if not hi:
            return None
        if self.max is not None:
            first = self.window.first_day(zv)
            lo = bisect_left(times, midnight(zv.tz, first) * US, 0, hi)
            n = hi - lo
            if n >= self.max:
                if self.window.mode == "rolling":
                    leaving = local_ordinal(zv.tz, times[lo + n - self.max] // US)
                    until = midnight(zv.tz, leaving + self.window.days) * US
                else:
                    until = midnight(zv.tz, first + self.window.days) * US
                return until, (
                    f"{n} counted contact(s) in {self.window.describe()} ({fmt(zv.tz, zv.t)}), "
                    f"limit {self.max}; next slot {fmt(zv.tz, until)}"
                )
        if self.min_day_gap:
            last = local_ordinal(zv.tz, times[hi - 1] // US)
            if zv.day - last < self.min_day_gap:
                until = midnight(zv.tz, last + self.min_day_gap) * US
                return until, (
                    f"last counted contact on {day_str(last)}; {self.min_day_gap - 1} full day(s) must "
                    f"pass first ({fmt(zv.tz, until)})"
                )
        return None


class AfterConversationRule(TimeRule):
    """No contact on the channels for ``days`` local days from a conversation's day (day 1)."""

    kind = "after_conversation"

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        self.days = int(spec.get("days", 7))
        self.per_debt = spec.get("per", "debt") == "debt"
        self.triggers = frozenset(_names(spec.get("trigger_channels", ["voice"]), CHANNELS, self.id, "channels"))
        self.exclude_consented = bool(spec.get("exclude_consented", False))
        self.lookback_days = self.days + 2

    def prepare(self, ctx: EvalContext) -> Any:
        c = ctx.contact
        if self.exclude_consented and c.consented:
            return None
        acct = c.account_id
        return [
            t for t, e in ctx.entries
            if e.outcome == "conversation" and e.channel in self.triggers
            and (not self.per_debt or e.account_id == acct)
        ]

    def check(self, state: Any, ctx: EvalContext, zv: ZoneView) -> tuple[int, str] | None:
        times: list[int] = state
        hi = bisect_right(times, zv.t)
        if not hi:
            return None
        day1 = local_ordinal(zv.tz, times[hi - 1] // US)
        if zv.day < day1 + self.days:
            until = midnight(zv.tz, day1 + self.days) * US
            return until, (
                f"telephone conversation on {day_str(day1)} (day 1 of {self.days}); "
                f"no call before {fmt(zv.tz, until)}"
            )
        return None


class SingleChannelRule(TimeRule):
    """Once direct contact exists, the collector uses one channel per week."""

    kind = "single_channel"

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        self.window = _Window(spec.get("window", "iso_week"), self.id)
        self.per_debt = spec.get("per", "debtor") == "debt"
        self.excluded = _outcome_set(spec, self.id)
        self.requires_direct = bool(spec.get("requires_direct_contact", True))
        self.lookback_days = self.window.days + 2

    def prepare(self, ctx: EvalContext) -> Any:
        c = ctx.contact
        acct = c.account_id
        return [
            (t, e.channel) for t, e in ctx.entries
            if e.direction == "outbound" and e.channel != c.channel and e.outcome not in self.excluded
            and (not self.per_debt or e.account_id == acct)
        ]

    def check(self, state: Any, ctx: EvalContext, zv: ZoneView) -> tuple[int, str] | None:
        if self.requires_direct and ctx.direct_t > zv.t:
            return None
        start = midnight(zv.tz, self.window.first_day(zv)) * US
        other = [(t, ch) for t, ch in state if start <= t <= zv.t]
        if not other:
            return None
        if self.window.mode == "rolling":
            last = local_ordinal(zv.tz, other[-1][0] // US)
            until = midnight(zv.tz, last + self.window.days) * US
        else:
            until = midnight(zv.tz, self.window.first_day(zv) + self.window.days) * US
        return until, (
            f"{other[-1][1]} already used in {self.window.describe()}; "
            f"{ctx.contact.channel} allowed from {fmt(zv.tz, until)}"
        )


_UNREACHED = frozenset({"failed", "not_connected"})


class MinGapRule(TimeRule):
    """Strategy: a minimum gap between any two outbound contacts to the debtor."""

    kind = "min_gap"

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        self.gap = int(spec["gap_us"])
        self.lookback_days = self.gap // DAY_US + 2

    def prepare(self, ctx: EvalContext) -> Any:
        # A message that provably never reached the debtor (failed, undelivered, bounced, a call that
        # did not connect) is no contact to space from: fallback to the next channel must not wait.
        # The legal caps still count such attempts; this is the operator's pacing rule only.
        return [t for t, e in ctx.entries if e.direction == "outbound" and e.outcome not in _UNREACHED]

    def check(self, state: Any, ctx: EvalContext, zv: ZoneView) -> tuple[int, str] | None:
        hi = bisect_right(state, zv.t)
        if hi and zv.t < state[hi - 1] + self.gap:
            until = state[hi - 1] + self.gap
            return until, f"last outbound contact at {fmt(zv.tz, state[hi - 1])}; next at {fmt(zv.tz, until)}"
        return None


class PromiseRule(TimeRule):
    """Account state: a promise to pay pauses collection until its date."""

    kind = "promise"

    def applies(self, contact: ProposedContact) -> bool:
        return contact.kind == "collection"

    def prepare(self, ctx: EvalContext) -> Any:
        a = ctx.account
        return a.promise_until if a.status == "promised" and a.promise_until is not None else None

    def check(self, state: Any, ctx: EvalContext, zv: ZoneView) -> tuple[int, str] | None:
        if isinstance(state, datetime):
            until = epoch_us(state)
        else:
            until = midnight(zv.tz, state.toordinal()) * US
        if zv.t < until:
            return until, f"promise to pay until {fmt(zv.tz, until)}"
        return None
