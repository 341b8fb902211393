"""Consume ``cadencia.dlq`` into a table; ``GET /v1/dlq`` lists, ``POST /v1/dlq/{id}/replay`` re-publishes.

A replay writes the original bytes, with the original key, back to the source topic through the
outbox, in the same transaction that counts the replay: consumers dedupe by event id, so a replay
of an event that was in fact applied changes nothing.

Dead letters on the topic are bounded (a prefix, the size and SHA-256 of a large record). The
orchestrator's own consumers keep the whole payload here before publishing the letter
(:func:`payload_keeper`), up to ``dead_letter_max_stored_bytes``; a letter kept only in part
cannot be replayed (409), and its original is still at its offset on the source topic.
"""

from __future__ import annotations

import base64
from contextlib import AsyncExitStack
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query
from pydantic import BaseModel
from sqlalchemy import func, select

from services.orchestrator.context import CtxDep, OrchestratorContext
from services.orchestrator.dlq.models import DeadLetter
from shared.app import fatal_hook
from shared.bus import ConsumerRunner, RecordMeta
from shared.bus.deadletter import PayloadKeeper
from shared.db import OutboxRecord, first_time
from shared.db.attempts import ConsumerAttempts
from shared.db.parked import parked_outbox_router
from shared.events import AnyEvent
from shared.events.contracts import DeadLetteredEvent
from shared.http import BeforeId, Problem, RowId, UtcDateTime, require_role

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
    failed_at: UtcDateTime
    replay_count: int
    replayed_at: UtcDateTime | None
    size: int | None
    sha256: str | None
    complete: bool


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
    before_id: BeforeId = None,
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
async def get_dead_letter(letter_id: RowId, ctx: CtxDep) -> DeadLetterDetail:
    """The original bytes may hold personal data, so only admins read them."""
    async with ctx.db.sessions() as session:
        row = await session.get(DeadLetter, letter_id)
    if row is None:
        raise Problem(404, "Not found", f"no dead letter {letter_id}")
    return DeadLetterDetail(**_view(row), value_b64=base64.b64encode(row.value).decode())


@router.post("/{letter_id}/replay", response_model=DeadLetterView, status_code=202,
             dependencies=[Depends(require_role("admin"))])
async def replay_dead_letter(letter_id: RowId, ctx: CtxDep) -> DeadLetterView:
    async with ctx.db.transaction() as session:
        row = await session.get(DeadLetter, letter_id, with_for_update=True)
        if row is None:
            raise Problem(404, "Not found", f"no dead letter {letter_id}")
        if not row.complete:
            raise Problem(409, "Payload not kept", f"dead letter {letter_id} kept only a prefix of its "
                          f"{row.size}-byte record (sha256 {row.sha256}); it cannot be replayed from here")
        session.add(OutboxRecord(topic=row.source_topic, key=row.key, value=row.value,
                                 event_id=f"replay:{row.event_id}:{row.replay_count + 1}",
                                 event_type="replay", created_at=ctx.clock()))
        row.replay_count += 1
        row.replayed_at = ctx.clock()
        view = DeadLetterView(**_view(row))
    return view


def _row(event: DeadLetteredEvent, value: bytes, complete: bool) -> DeadLetter:
    data = event.data
    return DeadLetter(
        event_id=event.id, service=data.service, source_topic=data.source_topic, partition=data.partition,
        offset=data.offset, key=data.key, value=value, error=data.error, failed_at=data.failed_at, replay_count=0,
        size=data.size if data.size is not None else len(value), sha256=data.sha256, complete=complete,
    )


def payload_keeper(ctx: OrchestratorContext) -> PayloadKeeper:
    """Keep a dead-lettered record of the orchestrator's own consumers whole, before its bounded
    letter is published; the DLQ consumer then finds the row and leaves it be."""
    limit = ctx.settings.dead_letter_max_stored_bytes

    async def keep(letter: DeadLetteredEvent, value: bytes) -> None:
        complete = len(value) <= limit
        stored = value if complete else base64.b64decode(letter.data.value_b64)
        async with ctx.db.transaction() as session:
            if await session.scalar(select(DeadLetter.id).where(DeadLetter.event_id == letter.id)) is None:
                session.add(_row(letter, stored, complete))

    return keep


class DeadLetterComponent:
    def install(self, app: FastAPI) -> None:
        # Before ``/v1/dlq/{letter_id}``, which would read "outbox" as an id.
        app.include_router(parked_outbox_router(lambda request: request.app.state.ctx.db))
        app.include_router(router)

    async def start(self, app: FastAPI, ctx: OrchestratorContext, stack: AsyncExitStack) -> None:
        consumer = f"{ctx.settings.consumer_group}-dlq"

        async def handle(event: AnyEvent, meta: RecordMeta) -> None:
            assert isinstance(event, DeadLetteredEvent)
            async with ctx.db.transaction() as session:
                if not await first_time(session, consumer, event.id):
                    return
                if await session.scalar(select(DeadLetter.id).where(DeadLetter.event_id == event.id)) is not None:
                    return  # kept whole by one of our own consumers before the letter was published
                session.add(_row(event, base64.b64decode(event.data.value_b64), not event.data.truncated))

        runner = ConsumerRunner(
            name="dlq", service="orchestrator", topics=[ctx.topics.dlq], group_id=consumer, kafka=ctx.settings.kafka,
            handler=handle, producer=ctx.producer, accept_types={"cadencia.dlq.dead_lettered.v1"},
            crash_log=ConsumerAttempts(ctx.db), on_fatal=fatal_hook(app), idle=True,
        )
        await runner.start()
        stack.push_async_callback(runner.stop)
        app.state.ready_checks.append(runner.ping)


component = DeadLetterComponent()
