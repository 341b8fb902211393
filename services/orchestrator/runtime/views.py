"""HTTP: contact request intake (editor) and the ops views of a debtor and a request (viewer)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select

from services.orchestrator.runtime.handlers import apply_request
from services.orchestrator.runtime.models import (
    AccountRow,
    ContactRequestRow,
    DebtorRow,
    DeferredContactRow,
    DispatchRow,
    OutcomeRow,
    ResponseRow,
    StatusHistoryRow,
    SuppressionRow,
)
from services.orchestrator.runtime.service import Runtime
from shared.events.contracts import ContactRequested, ContactRequestedEvent
from shared.http import Problem, require_role

router = APIRouter(tags=["runtime"])
_request = TypeAdapter(ContactRequestedEvent | ContactRequested)
MAX_BATCH = 500


def get_runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def _as_event(item: Any, index: int | None) -> ContactRequestedEvent:
    """A CloudEvent envelope (its ``id`` is the idempotency key) or a bare request (a new id)."""
    try:
        parsed = _request.validate_python(item)
    except ValidationError as exc:
        prefix = ("requests", index) if index is not None else ()
        raise RequestValidationError(
            [{**err, "loc": (*prefix, *err.get("loc", ()))} for err in exc.errors(include_url=False)]
        ) from exc
    if isinstance(parsed, ContactRequestedEvent):
        return parsed
    return ContactRequestedEvent(source="cadencia/orchestrator/http", subject=parsed.debtor.id, data=parsed)


@router.post("/v1/contact-requests", status_code=202, dependencies=[Depends(require_role("editor"))])
async def submit_contact_requests(
    body: dict[str, Any] = Body(..., examples=[{"requests": ["<ContactRequested or its CloudEvent>"]}]),
    rt: Runtime = Depends(get_runtime),
) -> JSONResponse:
    """One request or ``{"requests": [...]}``; each decided like one read from ``contact.requests``.

    Answers ``202`` with each request's id and intake result; a repeated id answers the original result.
    """
    if "requests" in body and set(body) == {"requests"}:
        items = body["requests"]
        if not isinstance(items, list) or not items:
            raise Problem(422, "Invalid request", "requests must be a non-empty list", "/problems/validation")
        if len(items) > MAX_BATCH:
            raise Problem(413, "Batch too large", f"at most {MAX_BATCH} requests per call")
        events = [_as_event(item, i) for i, item in enumerate(items)]
    else:
        events = [_as_event(body, None)]
    results = [await apply_request(rt, event) for event in events]
    return JSONResponse(
        {"request_ids": [r.request_id for r in results], "results": [r.as_json() for r in results]},
        status_code=202,
    )


def _row(obj: Any, *fields: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in fields:
        value = getattr(obj, name)
        out[name] = value.isoformat() if hasattr(value, "isoformat") else (
            str(value) if value is not None and not isinstance(value, int | float | str | bool | list | dict)
            else value
        )
    return out


_DISPATCH = ("id", "request_id", "account_id", "channel", "address", "kind", "attempt", "template_key",
             "template_version", "status", "error_code", "at", "updated_at")


@router.get("/v1/debtors/{debtor_id}", dependencies=[Depends(require_role("viewer"))])
async def get_debtor(debtor_id: str, rt: Runtime = Depends(get_runtime),
                     limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
    """A debtor's state, recent ledger, suppressions and pending deferrals."""
    limit = max(1, min(limit, 1000))
    async with rt.ctx.db.sessions() as session:
        debtor = await session.get(DebtorRow, debtor_id)
        if debtor is None:
            raise Problem(404, "Not found", f"no debtor {debtor_id!r}")

        async def rows(stmt: Any) -> list[Any]:
            return list((await session.execute(stmt)).scalars())

        accounts = await rows(select(AccountRow).where(AccountRow.debtor_id == debtor_id))
        dispatches = await rows(select(DispatchRow).where(DispatchRow.debtor_id == debtor_id)
                                .order_by(DispatchRow.at.desc()).limit(limit))
        outcomes = await rows(select(OutcomeRow).where(OutcomeRow.debtor_id == debtor_id)
                              .order_by(OutcomeRow.at.desc()).limit(limit))
        responses = await rows(select(ResponseRow).where(ResponseRow.debtor_id == debtor_id)
                               .order_by(ResponseRow.at.desc()).limit(limit))
        suppressions = await rows(select(SuppressionRow).where(SuppressionRow.debtor_id == debtor_id)
                                  .order_by(SuppressionRow.at.desc()))
        deferred = await rows(select(DeferredContactRow).where(DeferredContactRow.debtor_id == debtor_id,
                                                               DeferredContactRow.state == "pending"))
    return {
        "debtor": _row(debtor, "id", "name", "locale", "jurisdiction", "time_zone", "authorized_channels",
                       "preferred_channel", "consents", "updated_at"),
        "accounts": [_row(a, "id", "product", "balance", "currency", "days_past_due", "status", "promise_until",
                          "status_changed_at") for a in accounts],
        "ledger": [_row(d, *_DISPATCH) for d in dispatches],
        "outcomes": [_row(o, "dispatch_id", "request_id", "channel", "status", "error_code", "occurred_at", "at")
                     for o in outcomes],
        "responses": [_row(r, "dispatch_id", "channel", "kind", "digits", "occurred_at", "at") for r in responses],
        "suppressions": [_row(s, "channel", "address", "reason", "source", "at", "lifted_at") for s in suppressions],
        "deferred": [_row(d, "request_id", "account_id", "not_before", "reason", "rules", "created_at")
                     for d in deferred],
    }


@router.get("/v1/contact-requests/{request_id}", dependencies=[Depends(require_role("viewer"))])
async def get_contact_request(request_id: str, rt: Runtime = Depends(get_runtime)) -> dict[str, Any]:
    """A request's current status, its status history and its attempts."""
    async with rt.ctx.db.sessions() as session:
        row = await session.get(ContactRequestRow, request_id)
        if row is None:
            raise Problem(404, "Not found", f"no contact request {request_id!r}")
        history = list((await session.execute(
            select(StatusHistoryRow).where(StatusHistoryRow.request_id == request_id).order_by(StatusHistoryRow.id)
        )).scalars())
        attempts = list((await session.execute(
            select(DispatchRow).where(DispatchRow.request_id == request_id).order_by(DispatchRow.attempt)
        )).scalars())
    return {
        **_row(row, "id", "debtor_id", "account_id", "kind", "template", "segment", "channels", "tried_channels",
               "attempts", "status", "reason", "intake_status", "intake_reason", "expires_at", "created_at",
               "updated_at"),
        "history": [_row(h, "status", "reason", "channel", "dispatch_id", "not_before", "rules", "at")
                    for h in history],
        "dispatches": [_row(d, *_DISPATCH) for d in attempts],
    }
