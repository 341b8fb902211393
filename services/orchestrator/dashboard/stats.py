"""The dashboard's figures, read from the pre-aggregated counters (``ops_counters``).

One grouped read of at most 60 minute buckets and ``24 * days`` hour buckets, whatever the size of
the ledger; the few other figures are counts on small tables or on an index.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.dlq.models import DeadLetter
from services.orchestrator.ops import control
from services.orchestrator.ops.counters import SERIES, hour, minute
from services.orchestrator.ops.models import CounterRow
from services.orchestrator.runtime.models import DeferredContactRow, StatusHistoryRow
from shared.db import OutboxRecord

FUNNEL = ("requested", "dispatched", "delivered", "responded", "promised", "paid")
BREAKDOWNS = ("campaign", "jurisdiction", "segment", "variant")
MINUTES = 60


def _axis(start: datetime, step: timedelta, count: int) -> list[datetime]:
    return [start + step * i for i in range(count)]


def _nested() -> defaultdict[str, defaultdict[str, int]]:
    return defaultdict(lambda: defaultdict(int))


async def collect(session: AsyncSession, now: datetime, days: int = 2) -> dict[str, Any]:
    minutes = _axis(minute(now) - timedelta(minutes=MINUTES - 1), timedelta(minutes=1), MINUTES)
    hours = _axis(hour(now) - timedelta(hours=24 * days - 1), timedelta(hours=1), 24 * days)
    c = CounterRow
    stmt = (
        select(c.grain, c.bucket, c.metric, c.dim, c.key, func.sum(c.value))
        .where(or_(and_(c.grain == "m", c.bucket >= minutes[0], c.dim == "channel"),
                   and_(c.grain == "h", c.bucket >= hours[0])))
        .group_by(c.grain, c.bucket, c.metric, c.dim, c.key)
    )
    minute_index = {b: i for i, b in enumerate(minutes)}
    hour_index = {b: i for i, b in enumerate(hours)}
    series: dict[str, dict[str, dict[str, list[int]]]] = {"minute": {}, "hour": {}}
    totals: defaultdict[str, int] = defaultdict(int)
    by_channel = _nested()
    breakdowns: dict[str, defaultdict[str, defaultdict[str, int]]] = {dim: _nested() for dim in BREAKDOWNS}
    by_rule: dict[str, defaultdict[str, int]] = {m: defaultdict(int) for m in ("deferred", "rejected", "expired")}
    failures: defaultdict[str, int] = defaultdict(int)
    responses: defaultdict[str, int] = defaultdict(int)
    for grain, bucket, metric, dim, key, value in (await session.execute(stmt)).all():
        n = int(value or 0)
        if dim == "channel":
            axis, index = (minutes, minute_index) if grain == "m" else (hours, hour_index)
            i = index.get(bucket)
            if i is not None:
                line = series["minute" if grain == "m" else "hour"].setdefault(metric, {})
                line.setdefault(key, [0] * len(axis))[i] += n
            if grain == "h":
                totals[metric] += n
                by_channel[key][metric] += n
        elif grain != "h":
            continue
        elif dim in breakdowns:
            breakdowns[dim][key][metric] += n
        elif dim == "rule" and metric in by_rule:
            by_rule[metric][key] += n
        elif dim == "reason":
            failures[key] += n
        elif dim == "kind":
            responses[key] += n

    pending = DeferredContactRow.state == "pending"
    waiting = pending & (DeferredContactRow.not_before < control.HELD_UNTIL)
    deferred_pending = int(await session.scalar(select(func.count()).where(pending)) or 0)
    next_release = await session.scalar(select(func.min(DeferredContactRow.not_before)).where(waiting))
    dead_letters = int(await session.scalar(select(func.count()).select_from(DeadLetter)) or 0)
    outbox_backlog = int(await session.scalar(select(func.count()).select_from(OutboxRecord)) or 0)
    pauses = await control.active_pauses(session)
    held = await control.held_count(session)
    recent_rows = (
        await session.execute(select(StatusHistoryRow).order_by(StatusHistoryRow.id.desc()).limit(25))
    ).scalars().all()
    recent = [
        {
            "at": r.at.isoformat(), "request_id": r.request_id, "debtor_id": r.debtor_id, "status": r.status,
            "channel": r.channel, "reason": r.reason,
            "not_before": r.not_before.isoformat() if r.not_before and r.not_before < control.HELD_UNTIL else None,
        }
        for r in recent_rows
    ]
    return {
        "generated_at": now.isoformat(),
        "window": {"minutes": MINUTES, "days": days},
        "axes": {"minute": [b.isoformat() for b in minutes], "hour": [b.isoformat() for b in hours]},
        "series": series,
        "metrics": list(SERIES),
        #: Totals over the hour window: per metric, and per channel.
        "requests": {k: totals[k] for k in ("dispatched", "delivered", "failed", "responded", "deferred",
                                           "rejected", "expired") if totals.get(k)},
        "totals": dict(totals),
        "by_channel": {k: dict(v) for k, v in by_channel.items()},
        "funnel": [[stage, totals.get(stage, 0)] for stage in FUNNEL],
        "breakdowns": {dim: {k: dict(v) for k, v in rows.items()} for dim, rows in breakdowns.items()},
        "deferrals_by_rule": dict(by_rule["deferred"]),
        "rejections_by_rule": {**by_rule["rejected"], **{f"{k} (expired)": v for k, v in by_rule["expired"].items()}},
        "failures_by_reason": dict(failures),
        "responses": dict(responses),
        "deferred_pending": deferred_pending,
        "next_release": next_release.isoformat() if next_release else None,
        "dead_letters": dead_letters,
        "outbox_backlog": outbox_backlog,
        "pauses": [{"scope": p.scope, "key": p.key, "reason": p.reason, "by": p.by, "at": p.at.isoformat()}
                   for p in pauses],
        "held": held,
        "recent": recent,
    }


async def agents_overview(session: AsyncSession, now: datetime, limit: int = 100) -> dict[str, Any]:
    """Agent outcomes per campaign over 30 days (``services.orchestrator.agents``), the busiest first."""
    from services.orchestrator.agents.service import ABANDON_CAP, ABANDON_WINDOW, agent_figures, summary

    figures = await agent_figures(session, now)
    return {"window_days": ABANDON_WINDOW.days, "cap": ABANDON_CAP, "totals": summary(figures),
            "campaigns": figures[:limit]}
