"""Ops HTTP: campaign control (pauses), suppressions and request search."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, update

from services.orchestrator.ops import control
from services.orchestrator.ops.models import PauseRow, RequestTagRow
from services.orchestrator.policy.models import normalise_address
from services.orchestrator.runtime import operations, validation
from services.orchestrator.runtime.models import ContactRequestRow, SuppressionRow
from services.orchestrator.runtime.operations import Runtime
from shared.events.contracts import CHANNELS
from shared.http import AdminDep, BeforeId, EditorDep, Problem, RowId, UtcInstant, ViewerDep

router = APIRouter(tags=["ops"])
ChannelName = Literal["sms", "email", "whatsapp", "voice"]
#: An id or name in a query filter (ids are at most 200 characters wherever they are stored).
ShortText = Annotated[str | None, Query(max_length=200)]


def get_runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# --- campaign control -----------------------------------------------------------------------------


class NewPause(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scope: Literal["all", "campaign", "channel"]
    #: The campaign id or channel; omitted (or ``*``) for ``all``.
    key: str | None = Field(None, min_length=1, max_length=200)
    reason: str | None = Field(None, max_length=500)


class PauseView(BaseModel):
    scope: str
    key: str
    reason: str | None = None
    by: str
    at: str | None = None


class PauseList(BaseModel):
    pauses: list[PauseView]
    #: Contacts deferred by a pause, waiting for a resume.
    held: int


class ResumeResult(BaseModel):
    scope: str
    key: str
    #: Held contacts made due now (the scheduler decides each again).
    released: int


class SuppressionRecord(BaseModel):
    id: int
    debtor_id: str
    channel: str
    address: str | None = None
    reason: str
    source: str
    at: str | None = None
    lifted_at: str | None = None


class SuppressionPage(BaseModel):
    suppressions: list[SuppressionRecord]
    next_before_id: int | None = None


class RequestSummary(BaseModel):
    id: str
    debtor_id: str
    account_id: str
    campaign_id: str | None = None
    kind: str
    template: str
    segment: str | None = None
    status: str
    reason: str | None = None
    attempts: int
    created_at: str | None = None
    updated_at: str | None = None
    #: The request's timeline: ``GET /v1/contact-requests/{id}``.
    timeline: str


class RequestSearchPage(BaseModel):
    requests: list[RequestSummary]
    #: Cursor of the next page (``before=``), or None.
    next: str | None = None


def _pause_json(p: PauseRow) -> dict[str, Any]:
    return {"scope": p.scope, "key": p.key, "reason": p.reason, "by": p.by, "at": _iso(p.at)}


def _scope_key(scope: str, key: str | None) -> str:
    if scope == "all":
        return control.ALL_KEY
    if not key:
        raise Problem(422, "Invalid request", f"a {scope} pause needs a key", "/problems/validation")
    if scope == "channel" and key not in CHANNELS:
        raise Problem(422, "Invalid request", f"unknown channel {key!r}", "/problems/validation")
    return key


@router.get("/v1/pauses", response_model=PauseList, operation_id="list_pauses")
async def list_pauses(rt: RuntimeDep, _: ViewerDep) -> dict[str, Any]:
    """Active pauses and how many contacts they hold."""
    async with rt.ctx.db.sessions() as session:
        pauses = await control.active_pauses(session)
        held = await control.held_count(session)
    return {"pauses": [_pause_json(p) for p in pauses], "held": held}


@router.post("/v1/pauses", response_model=PauseView, status_code=201, operation_id="add_pause",
             responses={200: {"model": PauseView, "description": "The same pause was already in force"}})
async def add_pause(body: NewPause, rt: RuntimeDep, role: EditorDep) -> JSONResponse:
    """PauseView a campaign, a channel or everything: contacts due to leave are deferred until resumed."""
    key = _scope_key(body.scope, body.key)
    async with rt.unit_of_work() as session:
        row, new = await control.pause(session, body.scope, key, body.reason, role, rt.ctx.clock())
        answer = _pause_json(row)
    return JSONResponse(answer, status_code=201 if new else 200)


@router.delete("/v1/pauses/{scope}/{key}", response_model=ResumeResult, operation_id="resume_pause")
async def resume(scope: Literal["all", "campaign", "channel"], key: str, rt: RuntimeDep,
                 _: EditorDep) -> dict[str, Any]:
    """Resume: held contacts become due now and are decided again by the scheduler."""
    key = _scope_key(scope, key)
    async with rt.unit_of_work() as session:
        released = await control.resume(session, scope, key, rt.ctx.clock())
    if released is None:
        raise Problem(404, "Not found", f"no {scope} pause {key!r}")
    return {"scope": scope, "key": key, "released": released}


# --- suppressions ---------------------------------------------------------------------------------


class NewSuppression(BaseModel):
    model_config = ConfigDict(extra="forbid")
    debtor_id: str = Field(min_length=1, max_length=200)
    channel: ChannelName
    #: The address to suppress; omitted for the debtor's whole channel.
    address: str | None = Field(None, min_length=1, max_length=320)
    reason: str = Field(min_length=1, max_length=50)


_SUPPRESSION_FIELDS = ("id", "debtor_id", "channel", "address", "reason", "source", "at", "lifted_at")


def _suppression_json(s: SuppressionRow) -> dict[str, Any]:
    return {f: _iso(v) if isinstance(v := getattr(s, f), datetime) else v for f in _SUPPRESSION_FIELDS}


def _suppression_query(debtor_id: str | None, channel: str | None, reason: str | None, active: bool) -> Any:
    stmt = select(SuppressionRow)
    if debtor_id:
        stmt = stmt.where(SuppressionRow.debtor_id == debtor_id)
    if channel:
        stmt = stmt.where(SuppressionRow.channel == channel)
    if reason:
        stmt = stmt.where(SuppressionRow.reason == reason)
    if active:
        stmt = stmt.where(SuppressionRow.lifted_at.is_(None))
    return stmt


@router.get("/v1/suppressions", response_model=SuppressionPage, operation_id="list_suppressions")
async def list_suppressions(
    rt: RuntimeDep, _: ViewerDep, debtor_id: ShortText = None, channel: ChannelName | None = None,
    reason: ShortText = None, active: bool = True, limit: int = Query(100, ge=1, le=1000),
    before_id: BeforeId = None,
) -> dict[str, Any]:
    """SuppressionPage, newest first; page with ``before_id`` = the last answer's ``next_before_id``."""
    stmt = _suppression_query(debtor_id, channel, reason, active)
    if before_id is not None:
        stmt = stmt.where(SuppressionRow.id < before_id)
    async with rt.ctx.db.sessions() as session:
        rows = list((await session.execute(stmt.order_by(SuppressionRow.id.desc()).limit(limit + 1))).scalars())
    more, rows = len(rows) > limit, rows[:limit]
    return {"suppressions": [_suppression_json(s) for s in rows], "next_before_id": rows[-1].id if more else None}


@router.post("/v1/suppressions", status_code=201, response_model=SuppressionRecord, operation_id="add_suppression")
async def add_suppression(body: NewSuppression, rt: RuntimeDep, _: EditorDep) -> dict[str, Any]:
    """Suppress a debtor's address (or whole channel) with a reason; effective for the next decision."""
    now = rt.ctx.clock()
    async with rt.unit_of_work() as session:
        await operations.lock_debtor(rt, session, body.debtor_id)  # serialised with the debtor's decisions
        address = normalise_address(body.channel, body.address) if body.address else None
        existing = (await session.execute(_suppression_query(body.debtor_id, body.channel, body.reason, True)
                                          .where(SuppressionRow.address.is_(None) if address is None
                                                 else SuppressionRow.address == address))).scalars().first()
        row = existing or SuppressionRow(debtor_id=body.debtor_id, channel=body.channel, address=address,
                                         reason=body.reason, source="ops", at=now)
        session.add(row)
        await session.flush()
        return _suppression_json(row)


@router.delete("/v1/suppressions/{suppression_id}", response_model=SuppressionRecord,
               operation_id="remove_suppression")
async def remove_suppression(suppression_id: RowId, rt: RuntimeDep, _: AdminDep) -> dict[str, Any]:
    """Lift a suppression (admin): it stays in the history with ``lifted_at``."""
    now = rt.ctx.clock()
    async with rt.unit_of_work() as session:
        row = await session.get(SuppressionRow, suppression_id)
        if row is None:
            raise Problem(404, "Not found", f"no suppression {suppression_id}")
        await operations.lock_debtor(rt, session, row.debtor_id)
        await session.execute(update(SuppressionRow).where(SuppressionRow.id == suppression_id,
                                                           SuppressionRow.lifted_at.is_(None)).values(lifted_at=now))
        await session.refresh(row)
        return _suppression_json(row)


# A CSV download, not a JSON operation: kept out of the OpenAPI document the typed clients are built from.
@router.get("/v1/suppressions/export", response_class=StreamingResponse, include_in_schema=False)
async def export_suppressions(rt: RuntimeDep, _: EditorDep, channel: ChannelName | None = None,
                              reason: ShortText = None, active: bool = True) -> StreamingResponse:
    """Every matching suppression as CSV, streamed in pages (never the whole table in memory)."""
    async def rows() -> AsyncIterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(_SUPPRESSION_FIELDS)
        after = 0
        while True:
            stmt = _suppression_query(None, channel, reason, active).where(SuppressionRow.id > after)
            async with rt.ctx.db.sessions() as session:
                page = list((await session.execute(stmt.order_by(SuppressionRow.id).limit(1000))).scalars())
            for s in page:
                writer.writerow(["" if (v := _suppression_json(s)[f]) is None else v for f in _SUPPRESSION_FIELDS])
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            if len(page) < 1000:
                return
            after = page[-1].id

    return StreamingResponse(rows(), media_type="text/csv",
                             headers={"Content-Disposition": 'attachment; filename="suppressions.csv"'})


# --- request search -------------------------------------------------------------------------------


@router.get("/v1/contact-requests", response_model=RequestSearchPage, operation_id="search_contact_requests")
async def search_requests(
    rt: RuntimeDep, _: ViewerDep, debtor_id: ShortText = None, campaign_id: ShortText = None,
    status: ShortText = None, since: UtcInstant | None = None, until: UtcInstant | None = None,
    limit: int = Query(50, ge=1, le=500),
    before: str | None = Query(None, max_length=500, description="the last answer's cursor"),
) -> dict[str, Any]:
    """Requests newest first, by debtor, campaign, status and ``since <= created_at < until``.

    Each item links to its timeline (``GET /v1/contact-requests/{id}``).
    """
    stmt = select(ContactRequestRow)
    if campaign_id:
        stmt = stmt.join(RequestTagRow, RequestTagRow.request_id == ContactRequestRow.id).where(
            RequestTagRow.campaign_id == campaign_id)
    if debtor_id:
        stmt = stmt.where(ContactRequestRow.debtor_id == debtor_id)
    if status:
        stmt = stmt.where(ContactRequestRow.status == status)
    if since is not None:
        stmt = stmt.where(ContactRequestRow.created_at >= validation.aware(since))
    if until is not None:
        stmt = stmt.where(ContactRequestRow.created_at < validation.aware(until))
    if before:
        at, _sep, request_id = before.partition("|")
        try:
            cursor_at = validation.aware(datetime.fromisoformat(at))
        except (ValueError, OverflowError) as exc:
            raise Problem(422, "Invalid request", "invalid cursor", "/problems/validation") from exc
        stmt = stmt.where((ContactRequestRow.created_at < cursor_at) | (
            (ContactRequestRow.created_at == cursor_at) & (ContactRequestRow.id < request_id)))
    stmt = stmt.order_by(ContactRequestRow.created_at.desc(), ContactRequestRow.id.desc()).limit(limit + 1)
    async with rt.ctx.db.sessions() as session:
        rows = list((await session.execute(stmt)).scalars())
    more, rows = len(rows) > limit, rows[:limit]
    items = [{
        "id": r.id, "debtor_id": r.debtor_id, "account_id": r.account_id, "campaign_id": (r.payload or {}).get(
            "campaign_id"), "kind": r.kind, "template": r.template, "segment": r.segment, "status": r.status,
        "reason": r.reason, "attempts": r.attempts, "created_at": _iso(r.created_at),
        "updated_at": _iso(r.updated_at), "timeline": f"/v1/contact-requests/{r.id}",
    } for r in rows]
    cursor = f"{rows[-1].created_at.isoformat()}|{rows[-1].id}" if more else None
    return {"requests": items, "next": cursor}
