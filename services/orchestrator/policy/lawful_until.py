"""How long an allowed contact stays lawful: the instant behind ``Allow.send_before``
(docs/internals.md: lawful window).

Of the rules that hold at an allowed instant ``t``, only two kinds can stop holding as time passes
with nothing else happening: an hours window closes (its end in each candidate zone, following a
window that runs on past midnight; a barred Sunday or holiday simply means the window does not
continue), and the request expires. Count-based rules (caps, the post-conversation block, one
channel per week, the strategy's gaps) only loosen with time; they can bind again only when a new
entry enters the ledger, so ledger entries later than ``t`` (possible in a simulation) are checked
too. The earliest of these is the end of the lawful window.
"""

from __future__ import annotations

from collections.abc import Sequence
from zoneinfo import ZoneInfo

from services.orchestrator.policy.models import epoch_us
from services.orchestrator.policy.rules import (
    DAY_US,
    NEVER,
    US,
    EvalContext,
    HoursRule,
    TimeRule,
    ZoneView,
    fmt,
)
from services.orchestrator.policy.zones import local_ts, midnight

EXPIRES_RULE = "request.expires_at"
_MAX_DAYS = 400


def _containing(windows: Sequence[tuple[int, int]], sod: int) -> int | None:
    for start, stop in windows:
        if start <= sod < stop:
            return stop
    return None


def window_close(rule: HoursRule, ctx: EvalContext, zv: ZoneView) -> int:
    """The end of ``rule``'s window open at ``zv.t``, joining windows that continue one another."""
    day, weekday = zv.day, zv.weekday
    end = _containing(rule.open_windows(ctx, day, weekday), zv.sod)
    if end is None:
        return zv.t
    for _ in range(_MAX_DAYS * 4):
        if end >= DAY_US:
            day, weekday = day + 1, (weekday + 1) % 7
            following = _containing(rule.open_windows(ctx, day, weekday), 0)
            if following is None:
                return midnight(zv.tz, day) * US
            end = following
            continue
        following = _containing(rule.open_windows(ctx, day, weekday), end)
        if following is None:
            return local_ts(zv.tz, day, end // US) * US
        end = following
    return NEVER


def lawful_until(
    active: Sequence[tuple[TimeRule, object]], ctx: EvalContext, tzs: Sequence[ZoneInfo], t: int
) -> tuple[int, str, str]:
    """``(end, rule_id, why)``: the first instant after ``t`` at which a rule holding at ``t`` stops
    holding; ``NEVER`` when none ever does."""
    end, rule_id, why = NEVER, "", ""
    for tz in tzs:
        zv = ZoneView(tz, t)
        for rule, _state in active:
            if isinstance(rule, HoursRule):
                close = window_close(rule, ctx, zv)
                if close < end:
                    end, rule_id, why = close, rule.id, f"the permitted hours end {fmt(tz, close)}"
    expires = ctx.contact.expires_at
    if expires is not None and epoch_us(expires) < end:
        end, rule_id, why = epoch_us(expires), EXPIRES_RULE, f"the request expires {expires.isoformat()}"
    for e_t, _entry in ctx.entries:
        if e_t <= t:
            continue
        if e_t >= end:
            break
        for tz in tzs:
            zv = ZoneView(tz, e_t)
            for rule, state in active:
                if rule.check(state, ctx, zv) is not None:
                    return e_t, rule.id, f"a contact recorded {fmt(tz, e_t)} makes it bind"
    return end, rule_id, why
