"""HTTP: the debtor's page behind a signed link (no API key: the link is the credential) and ops' downloads.

``GET /s/{token}`` shows the balance and the choices; ``POST /s/{token}/review`` checks a choice
and shows the exact terms; ``POST /s/{token}/confirm`` signs them. The page is the debtor acting,
not a contact, so it answers at any hour.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel
from sqlalchemy import select

from services.orchestrator.runtime.operations import Runtime
from services.orchestrator.selfservice import agreements, links, terms
from services.orchestrator.selfservice.agreements import AgreementRefused, Holder
from services.orchestrator.selfservice.models import AgreementRow
from services.orchestrator.selfservice.pages import HEADERS, Words, language, render
from shared.http import Problem, require_role
from shared.templates import format_day, format_money

router = APIRouter(tags=["self-service"])
ops = APIRouter(tags=["self-service"], dependencies=[Depends(require_role("viewer"))])
MAX_FORM_BYTES = 8_000


def _rt(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def _html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=HEADERS)


async def _form(request: Request) -> dict[str, str]:
    raw = await request.body()
    if len(raw) > MAX_FORM_BYTES:
        raise Problem(413, "Form too large")
    parsed = parse_qs(raw.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {k: v[-1].strip() for k, v in parsed.items()}


def _refusal(error: links.LinkError) -> HTMLResponse:
    # The holder is unknown (or not to be trusted): say it in both languages.
    es, en = Words("es"), Words("en")
    status = 410 if error.reason == "expired" else 403
    message = f"{es(error.reason)} / {en(error.reason)}"
    return _html(render("error.html", w=es, title="Cadencia", message=message, reason=error.reason), status)


async def _holder(request: Request, token: str) -> Holder | HTMLResponse:
    rt = _rt(request)
    try:
        async with rt.ctx.db.sessions() as session:
            return await agreements.resolve(rt, session, token, rt.ctx.clock())
    except links.LinkError as exc:
        return _refusal(exc)


class View:
    """What every page of one holder shows, in the debtor's language."""

    def __init__(self, rt: Runtime, holder: Holder, token: str, now: datetime) -> None:
        self.rt, self.holder, self.token = rt, holder, token
        self.w = Words(language(holder.locale))
        account = holder.account
        self.currency = account.currency or "USD"
        self.balance = Decimal(account.balance or 0).quantize(terms.quantum(self.currency))
        self.limits = terms.limits(rt.strategy.config.self_service, self.balance, self.currency, holder.today(now))

    def money(self, amount: Decimal) -> str:
        return format_money(amount, self.currency, self.holder.locale)

    def day(self, value: Any) -> str:
        return format_day(value, "long", self.holder.locale)

    def common(self) -> dict[str, Any]:
        return {"w": self.w, "creditor": self.holder.creditor, "account_label": self.holder.account.id,
                "title": self.w("title", creditor=self.holder.creditor), "balance": self.money(self.balance),
                "payment_url": self.holder.account.payment_url}

    def notice(self) -> str | None:
        status = self.holder.account.status
        if status == "paid":
            return self.w("paid")
        if status in agreements.CLOSED or self.balance <= 0:
            return self.w("unavailable", creditor=self.holder.creditor)
        return None

    def page(self, form: dict[str, str], errors: dict[str, str], status: int = 200) -> HTMLResponse:
        lim = self.limits
        plans = [(n, self.plan_label(n)) for n in lim.plan_counts]
        return _html(render(
            "page.html", **self.common(), errors=errors, form=form, lim=lim, plans=plans, notice=self.notice(),
            action=f"/s/{self.token}/review", first_label=self.day(lim.first_date), last_label=self.day(lim.last_date),
            min_label=self.money(lim.min_amount),
        ), status)

    def plan_label(self, count: int) -> str:
        amounts = terms.split(self.balance, self.currency, count)
        if amounts[0] == amounts[-1]:
            return self.w("plan_option", count=count, amount=self.money(amounts[0]))
        return self.w("plan_option_uneven", count=count, first=self.money(amounts[0]), amount=self.money(amounts[-1]))

    def chosen(self, form: dict[str, str]) -> terms.Terms:
        choice: terms.Choice
        if form.get("choice") == "promise":
            choice = "promise"
            instalments = terms.promise_instalments(self.limits, form.get("amount", ""), form.get("date", ""))
        elif form.get("choice") == "plan":
            choice = "plan"
            instalments = terms.plan_instalments(self.limits, form.get("count", ""), form.get("first_date", ""))
        else:
            raise terms.TermsError("choice", "choice_invalid")
        h = self.holder
        return terms.Terms(choice=choice, creditor=h.creditor, debtor_id=h.debtor.id, debtor_name=h.debtor.name,
                           account_id=h.account.id, currency=self.currency, balance=self.balance, locale=h.locale,
                           instalments=instalments)

    def message(self, error: terms.TermsError) -> str:
        params = {k: self.day(v) if k in ("first", "last") else self.money(v) for k, v in error.params.items()}
        return self.w(error.code, **params)

    def review(self, form: dict[str, str], chosen: terms.Terms, errors: dict[str, str], status: int = 200
               ) -> HTMLResponse:
        keep = ("choice", "amount", "date", "count", "first_date")
        hidden = {k: form[k] for k in keep if k in form}
        hidden["submission_id"] = form.get("submission_id") or uuid.uuid4().hex
        heading = (self.w("pdf_promise") if chosen.choice == "promise"
                   else self.w("pdf_plan", count=len(chosen.instalments)))
        return _html(render(
            "review.html", **self.common(), errors=errors, heading=heading, hidden=hidden,
            rows=[(self.day(i.due_date), self.money(i.amount)) for i in chosen.instalments],
            total=self.money(chosen.total), action=f"/s/{self.token}/confirm", back=f"/s/{self.token}",
            signed_name=form.get("signed_name", ""),
        ), status)


@router.get("/s/{token}", response_class=HTMLResponse, include_in_schema=False)
async def show(token: str, request: Request) -> Response:
    holder = await _holder(request, token)
    if isinstance(holder, Response):
        return holder
    rt = _rt(request)
    return View(rt, holder, token, rt.ctx.clock()).page({}, {})


@router.post("/s/{token}/review", response_class=HTMLResponse, include_in_schema=False)
async def review(token: str, request: Request) -> Response:
    holder = await _holder(request, token)
    if isinstance(holder, Response):
        return holder
    rt = _rt(request)
    view, form = View(rt, holder, token, rt.ctx.clock()), await _form(request)
    if view.notice():
        return view.page(form, {}, 409)
    try:
        chosen = view.chosen(form)
    except terms.TermsError as exc:
        return view.page(form, {exc.field: view.message(exc)}, 422)
    return view.review(form, chosen, {})


@router.post("/s/{token}/confirm", response_class=HTMLResponse, include_in_schema=False)
async def confirm(token: str, request: Request) -> Response:
    holder = await _holder(request, token)
    if isinstance(holder, Response):
        return holder
    rt = _rt(request)
    now = rt.ctx.clock()
    view, form = View(rt, holder, token, now), await _form(request)
    try:
        chosen = view.chosen(form)
    except terms.TermsError as exc:
        return view.page(form, {exc.field: view.message(exc)}, 422)
    errors: dict[str, str] = {}
    signed_name = form.get("signed_name", "")
    if not agreements.name_matches(signed_name, holder.debtor.name):
        errors["signed_name"] = view.w("name_mismatch")
    if form.get("agree") != "yes":
        errors["agree"] = view.w("agree_missing")
    submission_id = form.get("submission_id", "")
    if not 8 <= len(submission_id) <= 64:
        errors["submission_id"] = view.w("choice_invalid")
    if errors:
        return view.review(form, chosen, errors, 422)
    ip = request.client.host if request.client else "unknown"
    try:
        async with rt.unit_of_work() as session:
            row = await agreements.sign(rt, session, holder, chosen, signed_name=signed_name, ip=ip,
                                        user_agent=request.headers.get("user-agent", ""),
                                        submission_id=submission_id, now=now)
            agreement_id = row.id
    except AgreementRefused:
        return view.page(form, {}, 409)
    return RedirectResponse(f"/s/{token}/agreements/{agreement_id}", status_code=303, headers=HEADERS)


async def _agreement(request: Request, token: str, agreement_id: str) -> tuple[Holder, AgreementRow] | Response:
    holder = await _holder(request, token)
    if isinstance(holder, Response):
        return holder
    async with _rt(request).ctx.db.sessions() as session:
        row = await session.get(AgreementRow, agreement_id)
    if row is None or row.account_id != holder.account.id or row.debtor_id != holder.debtor.id:
        return _refusal(links.LinkError("invalid", "not this link's agreement"))
    return holder, row


def _pdf(row: AgreementRow) -> Response:
    return Response(row.pdf, media_type="application/pdf", headers={
        **HEADERS, "Content-Disposition": f'attachment; filename="agreement-{row.id}.pdf"',
        "X-Terms-SHA256": row.terms_sha256,
    })


# (before the page's route, which would take "….pdf" as an agreement id)
@router.get("/s/{token}/agreements/{agreement_id}.pdf", include_in_schema=False)
async def debtor_pdf(token: str, agreement_id: str, request: Request) -> Response:
    found = await _agreement(request, token, agreement_id)
    return found if isinstance(found, Response) else _pdf(found[1])


@router.get("/s/{token}/agreements/{agreement_id}", response_class=HTMLResponse, include_in_schema=False)
async def done(token: str, agreement_id: str, request: Request) -> Response:
    found = await _agreement(request, token, agreement_id)
    if isinstance(found, Response):
        return found
    holder, row = found
    rt = _rt(request)
    view = View(rt, holder, token, rt.ctx.clock())
    rows = [(view.day(d), view.money(a)) for d, a in agreements.amounts_of(row.terms)]
    return _html(render("done.html", **view.common(), name=row.signed_name, rows=rows,
                        pdf_url=f"/s/{token}/agreements/{row.id}.pdf", filename=f"agreement-{row.id}.pdf"))


class AgreementView(BaseModel):
    """A signed self-service agreement: the terms, who signed and when, and where its PDF is."""

    id: str
    debtor_id: str
    account_id: str
    choice: str
    terms: dict[str, Any]
    terms_sha256: str
    signed_name: str
    ip: str | None = None
    seal: str
    signed_at: str
    pdf: str


class AgreementList(BaseModel):
    items: list[AgreementView]


def _summary(row: AgreementRow) -> dict[str, Any]:
    return {"id": row.id, "debtor_id": row.debtor_id, "account_id": row.account_id, "choice": row.choice,
            "terms": row.terms, "terms_sha256": row.terms_sha256, "signed_name": row.signed_name, "ip": row.ip,
            "seal": row.seal, "signed_at": row.signed_at.isoformat(), "pdf": f"/v1/agreements/{row.id}/pdf"}


@ops.get("/v1/agreements", response_model=AgreementList)
async def list_agreements(request: Request, debtor_id: str, limit: int = Query(50, ge=1, le=500)) -> AgreementList:
    """A debtor's signed agreements, newest first (viewer)."""
    async with _rt(request).ctx.db.sessions() as session:
        rows = (await session.execute(
            select(AgreementRow).where(AgreementRow.debtor_id == debtor_id)
            .order_by(AgreementRow.signed_at.desc()).limit(limit)
        )).scalars().all()
    return AgreementList.model_validate({"items": [_summary(r) for r in rows]})


@ops.get("/v1/agreements/{agreement_id}/pdf", response_class=Response,
         responses={200: {"content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
                        "description": "the signed agreement"}})
async def ops_pdf(agreement_id: str, request: Request) -> Response:
    async with _rt(request).ctx.db.sessions() as session:
        row = await session.get(AgreementRow, agreement_id)
    if row is None:
        raise Problem(404, "Agreement not found", f"no agreement {agreement_id}")
    return _pdf(row)
