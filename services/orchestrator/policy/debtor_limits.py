"""The debtor's own limits as rules: inconvenient times (12 CFR 1006.6(b)(1)) and attorney
representation (12 CFR 1006.6(b)(2)).

Inconvenient times become an ``hours`` rule whose windows are the rest of each day, one per set of
channels they bind, so they defer like a closed window, end ``send_before`` like one, and cite the
regulation and who stated them.
"""

from __future__ import annotations

from functools import lru_cache

from services.orchestrator.policy.models import CHANNELS, KINDS, WEEKDAY_NAMES, InconvenientTime
from services.orchestrator.policy.rules import DAY_US, US, DenyRule, EvalContext, HoursRule, TimeRule

INCONVENIENT_RULE = "debtor.inconvenient_times"
INCONVENIENT_SOURCE = "12 CFR 1006.6(b)(1)(i): a time the debtor said is inconvenient"
ATTORNEY_RULE = "debtor.attorney"
ATTORNEY_SOURCE = "15 U.S.C. 1692c(a)(2); 12 CFR 1006.6(b)(2): the debtor is represented by an attorney"


def _seconds(text: str) -> int:
    hh, _, mm = text.strip().partition(":")
    return int(hh) * 3600 + int(mm or 0) * 60


def _hhmm(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


def _open_windows(limits: tuple[InconvenientTime, ...]) -> dict[str, list[str]]:
    """Per weekday, what is left of the day once every inconvenient span is taken out."""
    windows: dict[str, list[str]] = {}
    for day in WEEKDAY_NAMES:
        closed: list[tuple[int, int]] = []
        for limit in limits:
            if limit.days and day not in limit.days:
                continue
            start = _seconds(limit.start) if limit.start else 0
            end = _seconds(limit.end) if limit.end else DAY_US // US
            if start < end:
                closed.append((start, end))
        spans: list[str] = []
        at = 0
        for start, end in sorted(closed):
            if start > at:
                spans.append(f"{_hhmm(at)}-{_hhmm(start)}")
            at = max(at, end)
        if at < DAY_US // US:
            spans.append(f"{_hhmm(at)}-24:00")
        windows[day] = spans
    return windows


@lru_cache(maxsize=4096)
def inconvenient_rules(limits: tuple[InconvenientTime, ...]) -> tuple[TimeRule, ...]:
    """One hours rule per channel the stated limits bind (cached: many debtors say the same things)."""
    rules: list[TimeRule] = []
    for channel in CHANNELS:
        binding = tuple(x for x in limits if not x.channels or channel in x.channels)
        if not binding:
            continue
        sources = sorted({x.source for x in binding})
        rules.append(HoursRule({
            "id": INCONVENIENT_RULE, "type": "hours", "channels": [channel], "kinds": list(KINDS),
            "source": f"{INCONVENIENT_SOURCE} (stated via {', '.join(sources)})",
            "title": "outside the times the debtor said are inconvenient",
            "windows": _open_windows(binding),
        }))
    return tuple(rules)


class AttorneyRule(DenyRule):
    """A represented debtor gets no direct collection contact; notices remain the attorney's business."""

    kind = "attorney"

    def default_kinds(self) -> tuple[str, ...]:
        return ("collection",)

    def deny(self, ctx: EvalContext) -> str | None:
        if ctx.account.represented:
            return (f"the debtor is represented by an attorney for account {ctx.account.id}: "
                    "contact the attorney, not the debtor")
        return None


ATTORNEY = AttorneyRule({"id": ATTORNEY_RULE, "source": ATTORNEY_SOURCE,
                         "title": "no direct contact with a debtor represented by an attorney"})
