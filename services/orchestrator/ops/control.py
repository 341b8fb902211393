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
from services.orchestrator.runtime import service
from services.orchestrator.runtime.models import ContactRequestRow, DeferredContactRow
from services.orchestrator.runtime.service import Runtime

PAUSE_RULE = "ops.pause"
#: ``not_before`` of a held contact: never due until a resume moves it to now.
HELD_UNTIL = datetime(9999, 1, 1, tzinfo=UTC)
SCOPES = ("all", "campaign", "channel")
ALL_KEY = "*"


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


async def hold(rt: Runtime, session: AsyncSession, request: ContactRequestRow, channel: str,
               now: datetime) -> bool:
    """Defer ``request`` instead of dispatching it on ``channel`` when a pause covers it."""
    # Read per decision (a tiny table): a pause made on any instance holds the very next dispatch.
    pauses = (await session.execute(select(PauseRow))).scalars().all()
    if not pauses:
        return False
    pause = matching(pauses, (request.payload or {}).get("campaign_id"), channel)
    if pause is None:
        return False
    # Not service.defer: a held contact must not expire for being held; expiry is judged at resume.
    await session.execute(
        update(DeferredContactRow)
        .where(DeferredContactRow.request_id == request.id, DeferredContactRow.state == "pending")
        .values(state="cancelled", released_at=now)
    )
    reason = describe(pause)
    session.add(DeferredContactRow(
        request_id=request.id, debtor_id=request.debtor_id, account_id=request.account_id, not_before=HELD_UNTIL,
        state="pending", reason=reason, rules=[PAUSE_RULE], created_at=now,
    ))
    service.publish_status(rt, session, request, "deferred", now, reason=reason, channel=channel,
                           rules=[PAUSE_RULE])
    return True


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
