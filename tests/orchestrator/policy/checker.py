"""An independent, deliberately naive checker of the pack rules, for the property tests.

It reads the same rule parameters (the pack data) but none of the engine's code: every entry is
converted to local dates with ``astimezone``, windows are recomputed from scratch, nothing is
cached or bisected. ``violations`` answers: which rules does a contact at instant ``t`` break?
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import holidays

from services.orchestrator.policy import (
    AccountState,
    DebtorContext,
    LedgerEntry,
    Policy,
    ProposedContact,
    StrategyLimits,
    Suppression,
)

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HOLIDAY_CACHE: dict[tuple[str, int], set[date]] = {}


def _holidays(country: str, year: int) -> set[date]:
    key = (country, year)
    if key not in HOLIDAY_CACHE:
        try:
            HOLIDAY_CACHE[key] = set(holidays.country_holidays(country, years=year))
        except NotImplementedError:
            HOLIDAY_CACHE[key] = set()
    return HOLIDAY_CACHE[key]


def _days(key: str) -> list[int]:
    if key in ("mon-sun", "daily", "all"):
        return list(range(7))
    if "-" in key:
        a, b = key.split("-")
        return list(range(DAYS.index(a), DAYS.index(b) + 1))
    return [DAYS.index(key)]


def _in_window(spec: dict[str, Any], local: datetime, country: str | None) -> bool:
    if spec.get("closed_on_holidays") and country and local.date() in _holidays(country, local.year):
        return False
    now = local.time()
    for key, spans in spec["windows"].items():
        if local.weekday() not in _days(key):
            continue
        for span in spans:
            a, b = span.split("-")
            start = time(int(a[:2]), int(a[3:]))
            if b == "24:00":
                if now >= start:
                    return True
            elif start <= now < time(int(b[:2]), int(b[3:])):
                return True
    return False


def _same_window(window: Any, d: date, e: date) -> bool:
    if window in ("day", "calendar_day"):
        return d == e
    if window in ("iso_week", "week"):
        return d.isocalendar()[:2] == e.isocalendar()[:2]
    return d - timedelta(days=window["rolling_days"]) < e <= d


def _channels(spec: dict[str, Any]) -> set[str]:
    return set(spec.get("channels", ["voice", "sms", "email", "whatsapp"]))


def violations(
    policy: Policy,
    debtor: DebtorContext,
    zones: Sequence[str],
    account: AccountState,
    ledger: Sequence[LedgerEntry],
    contact: ProposedContact,
    t: datetime,
    suppressions: Sequence[Suppression] = (),
    limits: StrategyLimits | None = None,
) -> set[str]:
    broken: set[str] = set()
    c = contact
    chain = policy.chain(debtor.jurisdiction)
    country = policy.specs[chain[-1]].get("country") or debtor.jurisdiction.split("-")[0]
    past = [e for e in ledger if e.at <= t]
    direct = any(e.direction == "inbound" or e.outcome in ("conversation", "replied") for e in past)
    collection = c.kind == "collection"

    # time cannot fix these
    if account.status == "paid":
        broken.add("deny")
    if account.status == "disputed" and c.kind != "dispute_ack":
        broken.add("deny")
    if account.status == "ceased" and c.kind != "cease_notice":
        broken.add("deny")
    digits = "".join(ch for ch in (debtor.phone or "") if ch.isdigit())
    phone = f"+{digits}" if digits else ""  # suppressions hold canonical E.164 numbers
    for s in suppressions:
        if s.channel == c.channel and s.address == phone:
            confirmed = any(e.kind == "opt_out_confirmation" and e.channel == s.channel
                            and e.direction == "outbound" for e in ledger)
            if c.kind != "opt_out_confirmation" or confirmed:
                broken.add("deny")
    specs = policy.rule_specs(debtor.jurisdiction)
    for spec in specs:
        if spec["type"] == "authorized_channels" and debtor.authorized_channels is not None \
                and c.channel not in debtor.authorized_channels:
            broken.add("deny")

    for name in zones:
        tz = ZoneInfo(name)
        local = t.astimezone(tz)
        today = local.date()

        def day_of(e: LedgerEntry, tz: ZoneInfo = tz) -> date:
            return e.at.astimezone(tz).date()

        if account.status == "promised" and collection and account.promise_until is not None:
            until = account.promise_until
            if not isinstance(until, datetime):
                until = datetime.combine(until, time(0), tzinfo=tz)
            if t < until:
                broken.add("promise")
        for spec in specs:
            kind = spec["type"]
            applies_to = _channels(spec)
            if kind == "hours":
                if c.channel in applies_to and not _in_window(spec, local, country):
                    broken.add(spec["id"])
                continue
            if not collection or c.channel not in applies_to:
                continue
            if spec.get("exclude_consented") and c.consented:
                continue
            per_debt = spec.get("per", "debt" if kind != "single_channel" else "debtor") == "debt"
            mine = [e for e in past if not per_debt or e.account_id == c.account_id]
            if kind == "cap":
                if spec.get("requires_direct_contact") and not direct:
                    continue
                count_channels = set(spec.get("count_channels", applies_to))
                counted = [
                    e for e in mine
                    if (e.direction == "inbound" and spec.get("include_inbound"))
                    or (e.direction == "outbound" and e.channel in count_channels
                        and e.outcome not in spec.get("exclude_outcomes", [])
                        and not (spec.get("exclude_consented") and e.consented))
                ]
                if "max" in spec:
                    n = sum(1 for e in counted if _same_window(spec["window"], today, day_of(e)))
                    if n >= spec["max"]:
                        broken.add(spec["id"])
                gap = spec.get("min_day_gap")
                if gap and counted:
                    last = max(day_of(e) for e in counted)
                    if (today - last).days < gap:
                        broken.add(spec["id"])
            elif kind == "after_conversation":
                for e in mine:
                    if e.outcome == "conversation" and e.channel in spec.get("trigger_channels", ["voice"]):
                        if (today - day_of(e)).days < spec["days"]:
                            broken.add(spec["id"])
            elif kind == "single_channel":
                if not direct:
                    continue
                for e in mine:
                    if e.direction == "outbound" and e.channel != c.channel \
                            and e.outcome not in spec.get("exclude_outcomes", []) \
                            and _same_window(spec["window"], today, day_of(e)):
                        broken.add(spec["id"])
        if limits is not None and collection:
            outbound = [e for e in past if e.direction == "outbound"]
            reached = [e for e in outbound if e.outcome not in ("failed", "not_connected")]
            if limits.min_gap and any(t < e.at + limits.min_gap for e in reached):
                broken.add("strategy.min_gap")
            for channel, cap in limits.daily_caps:
                if c.channel == channel and sum(
                    1 for e in outbound if e.channel == channel and day_of(e) == today
                ) >= cap:
                    broken.add("strategy.daily")
    return broken
