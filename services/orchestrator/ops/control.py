"""Campaign control: pause and resume a campaign, a channel or everything (the kill switch).

A pause never loses work. A contact the policy would send now on a paused campaign or channel is
deferred instead (rule ``ops.pause``) with ``not_before`` at :data:`HELD_UNTIL`, so the scheduler
leaves it alone. Resuming moves every held deferral's ``not_before`` to now: the scheduler releases
them and decides each again against the law and the pauses still in force (a contact still paused
by another scope is held again).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.ops.models import PauseRow
from services.orchestrator.runtime.hooks import Hold
from services.orchestrator.runtime.models import ContactRequestRow, DeferredContactRow

PAUSE_RULE = "ops.pause"
#: ``not_before`` of a held contact: never due until a resume moves it to now.
HELD_UNTIL = datetime(9999, 1, 1, tzinfo=UTC)
SCOPES = ("all", "campaign", "channel")
ALL_KEY = "*"
_PAUSES = "cadencia.ops.pauses"


async def active_pauses(session: AsyncSession) -> list[PauseRow]:
    return list((await session.execute(select(PauseRow).order_by(PauseRow.at))).scalars())


def matching(pauses: Sequence[PauseRow], campaign: str | None, channel: str) -> PauseRow | None:
    for pause in pauses:
        if pause.scope == "all" or (pause.scope == "channel" and pause.key == channel) or (
            pause.scope == "campaign" and campaign is not None and pause.key == campaign
        ):
            return pause
    return None


def describe(pause: PauseRow) -> str:
    what = "everything" if pause.scope == "all" else f"{pause.scope} {pause.key}"
    return f"paused by ops: {what}" + (f" ({pause.reason})" if pause.reason else "")


_ALL_PAUSES = select(PauseRow)  # built once: every batch reads it (docs/benchmarks.md, tenth round)


async def hold(session: AsyncSession, request: ContactRequestRow, channel: str) -> Hold | None:
    """The hold on ``request``'s dispatch on ``channel`` when a pause covers it (the runtime defers it
    until :data:`HELD_UNTIL`; a held contact does not expire for being held: expiry is judged at resume)."""
    # Read once per transaction (a tiny table): a pause made on any instance holds the very next batch.
    pauses = session.info.get(_PAUSES)
    if pauses is None:
        pauses = session.info[_PAUSES] = list((await session.execute(_ALL_PAUSES)).scalars())
    if not pauses:
        return None
    pause = matching(pauses, (request.payload or {}).get("campaign_id"), channel)
    if pause is None:
        return None
    return Hold(reason=describe(pause), rules=(PAUSE_RULE,), until=HELD_UNTIL)


async def pause(session: AsyncSession, scope: str, key: str, reason: str | None, by: str,
                now: datetime) -> tuple[PauseRow, bool]:
    """Add a pause (idempotent); returns it and whether it is new."""
    existing = await session.get(PauseRow, (scope, key))
    if existing is not None:
        return existing, False
    row = PauseRow(scope=scope, key=key, reason=reason, by=by, at=now)
    session.add(row)
    await session.flush()
    return row, True


async def resume(session: AsyncSession, scope: str, key: str, now: datetime) -> int | None:
    """Lift a pause and make every held contact due now; None if there was no such pause."""
    removed = await session.execute(delete(PauseRow).where(PauseRow.scope == scope, PauseRow.key == key))
    if not removed.rowcount:  # type: ignore[attr-defined]
        return None
    released = await session.execute(
        update(DeferredContactRow)
        .where(DeferredContactRow.state == "pending", DeferredContactRow.not_before == HELD_UNTIL)
        .values(not_before=now)
    )
    return int(released.rowcount)  # type: ignore[attr-defined]


async def held_count(session: AsyncSession) -> int:
    stmt = select(func.count()).where(DeferredContactRow.state == "pending",
                                      DeferredContactRow.not_before == HELD_UNTIL)
    return int(await session.scalar(stmt) or 0)
