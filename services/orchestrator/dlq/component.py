"""Consume ``cadencia.dlq`` into a table; ``GET /v1/dlq`` lists, ``POST /v1/dlq/{id}/replay`` re-publishes.

A replay writes the original bytes, with the original key, back to the source topic through the
outbox, in the same transaction that counts the replay: consumers dedupe by event id, so a replay
of an event that was in fact applied changes nothing.
"""

from __future__ import annotations

import base64
from contextlib import AsyncExitStack
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query
from pydantic import BaseModel
from sqlalchemy import func, select

from services.orchestrator.context import CtxDep, OrchestratorContext
from services.orchestrator.dlq.models import DeadLetter
from shared.bus import ConsumerRunner, RecordMeta
from shared.db import OutboxRecord, first_time
from shared.events import AnyEvent
from shared.events.contracts import DeadLetteredEvent
from shared.http import Problem, require_role

router = APIRouter(prefix="/v1/dlq", tags=["ops"])


class DeadLetterView(BaseModel):
    id: int
    event_id: str
    service: str
    source_topic: str
    partition: int
    offset: int
    key: str | None
    error: str
    failed_at: datetime
    replay_count: int
    replayed_at: datetime | None


class DeadLetterDetail(DeadLetterView):
    value_b64: str


class DeadLetterPage(BaseModel):
    total: int
    items: list[DeadLetterView]


def _view(row: DeadLetter) -> dict[str, Any]:
    return {c: getattr(row, c) for c in DeadLetterView.model_fields}


@router.get("", response_model=DeadLetterPage, dependencies=[Depends(require_role("viewer"))])
async def list_dead_letters(
    ctx: CtxDep,
    service: str | None = None,
    source_topic: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
    before_id: int | None = None,
) -> DeadLetterPage:
    query = select(DeadLetter).order_by(DeadLetter.id.desc()).limit(limit)
    count = select(func.count()).select_from(DeadLetter)
    for column, value in ((DeadLetter.service, service), (DeadLetter.source_topic, source_topic)):
        if value:
            query, count = query.where(column == value), count.where(column == value)
    if before_id:
        query = query.where(DeadLetter.id < before_id)
    async with ctx.db.read_sessions() as session:
        rows = (await session.execute(query)).scalars().all()
        total = int(await session.scalar(count) or 0)
    return DeadLetterPage(total=total, items=[DeadLetterView(**_view(r)) for r in rows])


@router.get("/{letter_id}", response_model=DeadLetterDetail, dependencies=[Depends(require_role("admin"))])
async def get_dead_letter(letter_id: int, ctx: CtxDep) -> DeadLetterDetail:
    """The original bytes may hold personal data, so only admins read them."""
    async with ctx.db.sessions() as session:
        row = await session.get(DeadLetter, letter_id)
    if row is None:
        raise Problem(404, "Not found", f"no dead letter {letter_id}")
    return DeadLetterDetail(**_view(row), value_b64=base64.b64encode(row.value).decode())


@router.post("/{letter_id}/replay", response_model=DeadLetterView, status_code=202,
             dependencies=[Depends(require_role("admin"))])
async def replay_dead_letter(letter_id: int, ctx: CtxDep) -> DeadLetterView:
    async with ctx.db.transaction() as session:
        row = await session.get(DeadLetter, letter_id, with_for_update=True)
        if row is None:
            raise Problem(404, "Not found", f"no dead letter {letter_id}")
        session.add(OutboxRecord(topic=row.source_topic, key=row.key, value=row.value,
                                 event_id=f"replay:{row.event_id}:{row.replay_count + 1}",
                                 event_type="replay", created_at=ctx.clock()))
        row.replay_count += 1
        row.replayed_at = ctx.clock()
        view = DeadLetterView(**_view(row))
    return view


class DeadLetterComponent:
    def install(self, app: FastAPI) -> None:
        app.include_router(router)

    async def start(self, app: FastAPI, ctx: OrchestratorContext, stack: AsyncExitStack) -> None:
        consumer = f"{ctx.settings.consumer_group}-dlq"

        async def handle(event: AnyEvent, meta: RecordMeta) -> None:
            assert isinstance(event, DeadLetteredEvent)
            data = event.data
            async with ctx.db.transaction() as session:
                if not await first_time(session, consumer, event.id):
                    return
                session.add(DeadLetter(
                    event_id=event.id, service=data.service, source_topic=data.source_topic,
                    partition=data.partition, offset=data.offset, key=data.key,
                    value=base64.b64decode(data.value_b64), error=data.error, failed_at=data.failed_at,
                    replay_count=0,
                ))

        runner = ConsumerRunner(
            name="dlq", service="orchestrator", topics=[ctx.topics.dlq], group_id=consumer, kafka=ctx.settings.kafka,
            handler=handle, producer=ctx.producer, accept_types={"cadencia.dlq.dead_lettered.v1"},
        )
        await runner.start()
        stack.push_async_callback(runner.stop)
        app.state.ready_checks.append(runner.ping)


component = DeadLetterComponent()
