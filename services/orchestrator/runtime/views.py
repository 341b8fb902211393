"""HTTP: contact request intake (editor) and the ops views of a debtor and a request (viewer)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from services.orchestrator.policy.schemas import InconvenientTimeIn
from services.orchestrator.runtime import debtor_limits
from services.orchestrator.runtime.handlers import apply_requests
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
from services.orchestrator.runtime.operations import Runtime, lock_debtor
from services.orchestrator.runtime.schemas import (
    AccountView,
    ContactRequestBatch,
    ContactRequestIntake,
    ContactRequestView,
    DebtorSummary,
    DebtorView,
    DeferralView,
    DispatchView,
    IntakeResponse,
    IntakeResult,
    OutcomeView,
    PreferencesView,
    ResponseView,
    StatusHistoryView,
    SuppressionView,
)
from shared.events.contracts import ContactRequestedEvent
from shared.http import PROBLEM_RESPONSES, Problem, require_role

router = APIRouter(tags=["runtime"], responses=PROBLEM_RESPONSES)
MAX_BATCH = 500


def get_runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def _as_event(item: Any) -> ContactRequestedEvent:
    """A CloudEvent envelope keeps its ``id`` (the idempotency key); a bare request gets a new one."""
    if isinstance(item, ContactRequestedEvent):
        return item
    return ContactRequestedEvent(source="cadencia/orchestrator/http", subject=item.debtor.id, data=item)


@router.post("/v1/contact-requests", status_code=202, response_model=IntakeResponse,
             dependencies=[Depends(require_role("editor"))], operation_id="submit_contact_requests")
async def submit_contact_requests(body: ContactRequestIntake, rt: Runtime = Depends(get_runtime)) -> IntakeResponse:
    """One request (bare or as a CloudEvent) or ``{"requests": [...]}``; each decided like one read
    from ``contact.requests``.

    Answers ``202`` with each request's id and intake result; a repeated id answers the original result.
    """
    items = body.requests if isinstance(body, ContactRequestBatch) else [body]
    if len(items) > MAX_BATCH:
        raise Problem(413, "Batch too large", f"at most {MAX_BATCH} requests per call")
    events = [_as_event(item) for item in items]
    results = await apply_requests(rt, events)  # one unit of work for the call
    return IntakeResponse(request_ids=[r.request_id for r in results],
                          results=[IntakeResult(**r.as_json()) for r in results])


@router.get("/v1/debtors/{debtor_id}", response_model=DebtorView, dependencies=[Depends(require_role("viewer"))],
            operation_id="get_debtor")
async def get_debtor(debtor_id: str, rt: Runtime = Depends(get_runtime),
                     limit: int = Query(100, ge=1, le=1000)) -> Any:
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
    return DebtorView(
        debtor=DebtorSummary.model_validate(debtor),
        accounts=[AccountView.model_validate(a) for a in accounts],
        ledger=[DispatchView.model_validate(d) for d in dispatches],
        outcomes=[OutcomeView.model_validate(o) for o in outcomes],
        responses=[ResponseView.model_validate(r) for r in responses],
        suppressions=[SuppressionView.model_validate(s) for s in suppressions],
        deferred=[DeferralView.model_validate(d) for d in deferred],
    )


@router.get("/v1/contact-requests/{request_id}", response_model=ContactRequestView,
            dependencies=[Depends(require_role("viewer"))], operation_id="get_contact_request")
async def get_contact_request(request_id: str, rt: Runtime = Depends(get_runtime)) -> Any:
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
    view = ContactRequestView.model_validate(row)
    return view.model_copy(update={
        "history": [StatusHistoryView.model_validate(h) for h in history],
        "dispatches": [DispatchView.model_validate(d) for d in attempts],
    })


class PreferencesIn(BaseModel):
    """What ops record for a debtor: the times the debtor said are inconvenient (12 CFR 1006.6(b)(1))."""

    model_config = ConfigDict(extra="forbid")

    inconvenient_times: list[InconvenientTimeIn] = Field(default_factory=list, max_length=50)


@router.put("/v1/debtors/{debtor_id}/preferences", response_model=PreferencesView,
            dependencies=[Depends(require_role("editor"))], operation_id="put_debtor_preferences")
async def put_preferences(debtor_id: str, body: PreferencesIn, rt: Runtime = Depends(get_runtime)) -> PreferencesView:
    """Replace the inconvenient times ops recorded (those the debtor stated in replies are kept); every
    later decision honours them (rule ``debtor.inconvenient_times``)."""
    now = rt.ctx.clock()
    async with rt.unit_of_work() as session:
        if await session.get(DebtorRow, debtor_id) is None:
            raise Problem(404, "Not found", f"no debtor {debtor_id!r}")
        debtor = await lock_debtor(rt, session, debtor_id)
        items = [x.model_dump(exclude={"source"}) for x in body.inconvenient_times]
        debtor_limits.replace_from(debtor, "ops", items, now)
        debtor.updated_at = now
        stored = list(debtor.inconvenient_times or [])
    return PreferencesView.model_validate({"debtor_id": debtor_id, "inconvenient_times": stored})
