"""What each input does to a batch's state: one function per event type, and the flows they share
(promise, resume, release, fallback, suppressions). Everything here runs on a loaded
:class:`~.state.Batch` inside its unit of work; nothing commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from services.orchestrator.agents import service as agent_outcomes
from services.orchestrator.policy.models import normalise_address
from services.orchestrator.runtime import debtor_limits, templates_port, validation
from services.orchestrator.runtime.decisions import (
    address_of,
    channel_order,
    decide,
    publish_status,
    set_status,
)
from services.orchestrator.runtime.models import (
    AccountRow,
    ContactRequestRow,
    DebtorRow,
    DeferredContactRow,
    DispatchRow,
)
from services.orchestrator.runtime.records import RequestRecord, SuppressionRecord
from services.orchestrator.runtime.state import Batch
from services.orchestrator.runtime.statuses import (
    ACCOUNT_RULE,
    DELIVERED,
    FAILED,
    INTAKE,
    PAUSE_RULES,
    SOURCE,
    STATUS_RANK,
    SUPPRESSING_REASONS,
    UNANSWERED,
)
from services.orchestrator.runtime.strategy import SegmentPlan
from services.orchestrator.runtime.unit import IntakeResult
from shared.db import first_time
from shared.events.contracts import (
    CommunicationCeasedEvent,
    ContactRequested,
    ContactRequestedEvent,
    Debtor,
    DebtorUpdatedEvent,
    DeliveryUpdatedEvent,
    DisputeOpenedEvent,
    DisputeResolvedEvent,
    PaymentReceivedEvent,
    PromiseBrokenEvent,
    PromiseMadeEvent,
    ResponseReceivedEvent,
)
from shared.logging import get_logger
from shared.providers import delivery_reason

log = get_logger(__name__)

AccountEvent = (
    PaymentReceivedEvent | PromiseMadeEvent | PromiseBrokenEvent | DisputeOpenedEvent | DisputeResolvedEvent
    | CommunicationCeasedEvent | DebtorUpdatedEvent
)


# --- intake ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checked:
    """A request as intake takes it: canonical, with the reasons to reject it (none when valid)."""

    request: ContactRequested
    reasons: list[str]
    plan: SegmentPlan


async def check(b: Batch, event: ContactRequestedEvent) -> Checked:
    rt, session = b.rt, b.session
    request = validation.canonical(event.data)
    reasons = validation.problems(request, rt.jurisdictions, rt.ctx.settings.max_variables_bytes)
    plan = rt.strategy.plan(request.account)
    if not await templates_port.key_exists(session, request.template) and not (
        plan.template_suffix and await templates_port.key_exists(session, request.template + plan.template_suffix)
    ):
        reasons.append(f"unknown template {request.template!r}")
    return Checked(request, reasons, plan)


async def intake(b: Batch, event: ContactRequestedEvent, now: datetime, *, fresh: bool | None = None) -> IntakeResult:
    """Apply one contact request (from Kafka or HTTP): validate, attach to the ledger, decide.

    A repeated request id changes nothing and answers with the original result. ``fresh`` says
    whether the inbox already took the id (a batch marks all its events in one statement).
    """
    if fresh is None:
        fresh = await first_time(b.session, INTAKE, event.id)
    if not fresh:
        existing = await b.request(event.id)
        if existing is None:  # pragma: no cover - the inbox mark and the row commit together
            return IntakeResult(event.id, "accepted", duplicate=True)
        return IntakeResult(existing.id, existing.intake_status, existing.intake_reason, duplicate=True)
    checked = b.checked.pop(event.id, None) or await check(b, event)
    request, plan = checked.request, checked.plan
    row = RequestRecord(
        id=event.id, debtor_id=request.debtor.id, account_id=request.account.id, kind=request.kind,
        template=request.template, payload=request.model_dump(mode="json"), channels=[], tried_channels=[],
        attempts=0, segment=None, intake_status="accepted", intake_reason=None, status="accepted", reason=None,
        expires_at=validation.aware(request.expires_at), created_at=now, updated_at=now,
    )
    if checked.reasons:
        row.intake_status, row.intake_reason = "rejected", "; ".join(checked.reasons)
        b.add(row)
        publish_status(b, row, "rejected", now, reason=row.intake_reason, rules=["intake.validation"])
        log.info("contact request rejected", request_id=event.id, reason=row.intake_reason)
        return IntakeResult(event.id, "rejected", row.intake_reason)

    debtor = await b.debtor(request.debtor.id)
    _update_debtor(debtor, request, now)
    b.touch(debtor)
    account = b.account(request.debtor.id, request.account.id)
    _update_account(account, request)
    b.touch(account)
    row.segment = plan.segment
    row.channels = channel_order(request, plan)
    b.add(row)
    await decide(b, row, now, request=request)
    row.intake_status, row.intake_reason = row.status, row.reason
    return IntakeResult(row.id, row.status, row.reason)


def _update_debtor(row: DebtorRow, request: ContactRequested, now: datetime) -> None:
    d = request.debtor
    row.name, row.locale, row.jurisdiction = d.name, d.locale, d.jurisdiction.upper()
    row.time_zone, row.phone, row.email, row.whatsapp = d.time_zone, d.phone, d.email, d.whatsapp
    row.authorized_channels = list(d.authorized_channels) if d.authorized_channels is not None else None
    row.preferred_channel = d.preferred_channel
    row.updated_at = now


def _update_account(row: AccountRow, request: ContactRequested) -> None:
    a = request.account
    row.product, row.balance, row.currency = a.product, a.balance, a.currency
    row.days_past_due, row.due_date, row.risk_score, row.payment_url = (
        a.days_past_due, a.due_date, a.risk_score, a.payment_url
    )


# --- deferrals and the account's state ------------------------------------------------------------


async def release(b: Batch, deferred: DeferredContactRow, now: datetime) -> str:
    """Release one deferral (its debtor loaded): re-evaluate it now."""
    deferred.state, deferred.released_at = "released", now
    b.touch(deferred)
    row = await b.request(deferred.request_id)
    if row is None:  # pragma: no cover - written together
        return "missing"
    return await decide(b, row, now)


async def _pending(b: Batch, debtor_id: str, account_id: str) -> list[DeferredContactRow]:
    pending = b.pending(debtor_id, account_id)
    await b.load_requests(d.request_id for d in pending)
    return pending


async def cancel_deferrals(b: Batch, debtor_id: str, account_id: str, now: datetime, reason: str) -> None:
    """Payment stops collection: every deferred contact of the account is rejected with ``reason``."""
    for deferred in await _pending(b, debtor_id, account_id):
        deferred.state, deferred.released_at = "cancelled", now
        b.touch(deferred)
        row = await b.request(deferred.request_id)
        if row is not None:
            publish_status(b, row, "rejected", now, reason=reason, rules=[ACCOUNT_RULE])


async def promise(b: Batch, account: AccountRow, until: datetime | date, now: datetime) -> None:
    """A promise to pay pauses collection of the account; pending deferrals are re-decided under it."""
    set_status(account, "promised", now, promise_until=until)
    b.touch(account)
    b.rt.hooks.account(b.session, account, "promised", now)
    for deferred in await _pending(b, account.debtor_id, account.id):
        await release(b, deferred, now)


async def resume(b: Batch, debtor_id: str, account_id: str, now: datetime) -> None:
    """A broken promise or a resolved dispute resumes collection: re-decide what was paused for it."""
    for deferred in await _pending(b, debtor_id, account_id):
        if PAUSE_RULES.intersection(deferred.rules):
            await release(b, deferred, now)


# --- account events: one function per type --------------------------------------------------------

AccountHandler = Callable[[Batch, Any, DebtorRow, AccountRow, datetime], Awaitable[None]]


async def _payment(b: Batch, event: PaymentReceivedEvent, debtor: DebtorRow, account: AccountRow,
                   now: datetime) -> None:
    if event.data.settles_account:
        set_status(account, "paid", now)
        b.rt.hooks.account(b.session, account, "paid", now)
        await cancel_deferrals(b, debtor.id, account.id, now, "paid")


async def _promise_made(b: Batch, event: PromiseMadeEvent, debtor: DebtorRow, account: AccountRow,
                        now: datetime) -> None:
    await promise(b, account, event.data.due_date, now)


async def _promise_broken(b: Batch, event: PromiseBrokenEvent, debtor: DebtorRow, account: AccountRow,
                          now: datetime) -> None:
    if account.status == "promised":
        set_status(account, "active", now)
        await resume(b, debtor.id, account.id, now)


async def _dispute_opened(b: Batch, event: DisputeOpenedEvent, debtor: DebtorRow, account: AccountRow,
                          now: datetime) -> None:
    set_status(account, "disputed", now)


async def _dispute_resolved(b: Batch, event: DisputeResolvedEvent, debtor: DebtorRow, account: AccountRow,
                            now: datetime) -> None:
    if account.status == "disputed":
        set_status(account, "active", now)
        await resume(b, debtor.id, account.id, now)


async def _ceased(b: Batch, event: CommunicationCeasedEvent, debtor: DebtorRow, account: AccountRow,
                  now: datetime) -> None:
    if event.data.scope == "all":
        set_status(account, "ceased", now)
    else:
        b.add(SuppressionRecord(id=None, debtor_id=debtor.id, channel=event.data.scope, address=None, reason="ceased",
                             source=event.data.source, at=now, lifted_at=None))


async def _debtor_updated(b: Batch, event: DebtorUpdatedEvent, debtor: DebtorRow, account: AccountRow,
                          now: datetime) -> None:
    u = validation.canonical_update(event.data, debtor.jurisdiction)
    for name in ("name", "locale", "time_zone", "phone", "email", "whatsapp", "preferred_channel", "consents"):
        value = getattr(u, name)
        if value is not None:
            setattr(debtor, name, value)
    if u.authorized_channels is not None:
        debtor.authorized_channels = list(u.authorized_channels)
    debtor_limits.apply_attorney(account, u, now)
    debtor.updated_at = now
    b.touch(debtor)


ACCOUNT_HANDLERS: dict[type[Any], AccountHandler] = {
    PaymentReceivedEvent: _payment,
    PromiseMadeEvent: _promise_made,
    PromiseBrokenEvent: _promise_broken,
    DisputeOpenedEvent: _dispute_opened,
    DisputeResolvedEvent: _dispute_resolved,
    CommunicationCeasedEvent: _ceased,
    DebtorUpdatedEvent: _debtor_updated,
}


async def apply_account_event(b: Batch, event: AccountEvent, now: datetime) -> None:
    data = event.data
    debtor = await b.debtor(data.debtor_id)
    account = b.account(data.debtor_id, data.account_id)
    await ACCOUNT_HANDLERS[type(event)](b, event, debtor, account, now)
    b.touch(account)


# --- outcomes -------------------------------------------------------------------------------------


async def suppress(b: Batch, debtor_id: str, channel: str, address: str | None, reason: str, source: str,
                   now: datetime) -> None:
    await b.debtor(debtor_id)  # its suppressions loaded
    normalised = normalise_address(channel, address)
    if b.find_suppression(debtor_id, channel, normalised, reason) is None:
        b.add(SuppressionRecord(id=None, debtor_id=debtor_id, channel=channel, address=normalised, reason=reason,
                             source=source, at=now, lifted_at=None))


async def apply_delivery(b: Batch, event: DeliveryUpdatedEvent, now: datetime) -> None:
    update_ = event.data
    await b.debtor(update_.debtor_id)
    b.outcomes.append({
        "event_id": event.id, "dispatch_id": update_.dispatch_id, "request_id": update_.request_id,
        "debtor_id": update_.debtor_id, "channel": update_.channel, "status": update_.status,
        "provider": update_.provider, "error_code": update_.error_code,
        "occurred_at": validation.aware(update_.occurred_at), "at": now,
    })
    dispatch_row = await b.dispatch(update_.dispatch_id)
    if dispatch_row is None:
        log.warning("outcome for an unknown dispatch", dispatch_id=update_.dispatch_id)
        return
    await agent_outcomes.record(b.session, event.id, update_)
    # Updates written before ``reason`` existed carry only the provider's code: the provider package reads it.
    failure = update_.reason or delivery_reason(update_.provider, update_.error_code)
    if failure in SUPPRESSING_REASONS:
        await suppress(b, dispatch_row.debtor_id, dispatch_row.channel, dispatch_row.address,
                       SUPPRESSING_REASONS[failure], "provider", now)
    elif update_.status == "bounced":
        await suppress(b, dispatch_row.debtor_id, dispatch_row.channel, dispatch_row.address, "bounce", "provider",
                       now)
    if STATUS_RANK.get(update_.status, 0) <= STATUS_RANK.get(dispatch_row.status, 0):
        return  # late or duplicate: the dispatch's status only moves forward
    previous = dispatch_row.status
    dispatch_row.status, dispatch_row.error_code, dispatch_row.updated_at = update_.status, update_.error_code, now
    b.touch(dispatch_row)
    row = await b.request(dispatch_row.request_id)
    if row is None:
        return
    attempts = await b.attempts_of(row.id)
    is_current = bool(attempts) and attempts[-1].id == dispatch_row.id
    if update_.status in DELIVERED and previous not in DELIVERED:
        publish_status(b, row, "delivered", now, channel=dispatch_row.channel, dispatch_id=dispatch_row.id,
                       final=is_current)
    elif update_.status == "unknown":
        # Terminal, and never re-sent automatically: a duplicate collection message can break the law.
        reason = "unknown: " + (update_.error_message or "the channel could not tell whether it was sent")
        publish_status(b, row, "unknown", now, reason=reason[:2000], channel=dispatch_row.channel,
                       dispatch_id=dispatch_row.id, final=is_current)
    elif update_.status in FAILED or update_.status in UNANSWERED:
        reason = f"{update_.status}" + (f" ({update_.error_code})" if update_.error_code else "")
        publish_status(b, row, "failed", now, reason=reason, channel=dispatch_row.channel,
                       dispatch_id=dispatch_row.id, final=is_current)
        if is_current:
            await fall_back(b, row, dispatch_row, now)
    elif update_.status == "expired" and is_current:
        # Not sent: no provider request left before send_before. Decide again for the next window.
        await decide(b, row, now, at=dispatch_row.send_before)


async def fall_back(b: Batch, row: ContactRequestRow, failed: DispatchRow, now: datetime) -> None:
    """Move a failed contact to its next permitted channel: a new attempt of the same request.

    A call that ends ``no_answer`` (or ``busy``) is retried on voice until that has happened the
    configured number of times; the channel is then given up like a failed one.
    """
    if failed.status in UNANSWERED:
        plan = b.rt.strategy.plan(ContactRequested.model_validate(row.payload).account)
        unanswered = [d for d in await b.attempts_of(row.id) if d.channel == "voice" and d.status in UNANSWERED]
        if len(unanswered) < plan.no_answer_fallback_after:
            await decide(b, row, now)
            return
    row.tried_channels = [*row.tried_channels, failed.channel]
    b.touch(row)
    await decide(b, row, now)


async def apply_response(b: Batch, event: ResponseReceivedEvent, now: datetime) -> None:
    rt, response = b.rt, event.data
    debtor = await b.debtor(response.debtor_id)
    b.add_reply({
        "event_id": event.id, "debtor_id": response.debtor_id, "dispatch_id": response.dispatch_id,
        "channel": response.channel, "kind": response.kind, "text": response.text, "digits": response.digits,
        "address": response.address, "occurred_at": validation.aware(response.occurred_at), "at": now,
    })
    dispatch_row = await b.dispatch(response.dispatch_id) if response.dispatch_id else None
    if dispatch_row is None:
        dispatch_row = await b.latest_on(debtor.id, response.channel)
    address = response.address or (dispatch_row.address if dispatch_row else address_of(debtor, response.channel))
    row = await b.request(dispatch_row.request_id) if dispatch_row else None
    kind, reason = response.kind, str(response.kind)
    if kind == "reply" and debtor_limits.record_reply(debtor, response.text, now):
        reason = "inconvenient times stated"
        b.touch(debtor)
    if kind in ("opt_out", "unsubscribe"):
        await suppress(b, debtor.id, response.channel, address, "opt_out", "debtor", now)
    elif kind == "opt_in":
        await b.lift_opt_outs(response.channel, address, now)
    elif kind == "promise_to_pay" or (kind == "keypress" and (response.digits or "").strip() == "1"):
        reason = "promise_to_pay"
        accounts = [dispatch_row.account_id] if dispatch_row else [
            a.id for a in b.accounts_of(debtor.id) if a.status == "active"
        ]
        for account_id in accounts:
            account = b.account(debtor.id, account_id)
            if account.status in ("active", "promised"):
                await promise(b, account, now + rt.strategy.promise_horizon, now)
        from services.orchestrator.selfservice.replies import answer_with_link  # (it builds on this module)

        await answer_with_link(rt, b.session, event.id, row, debtor, response.channel, now)
    if row is not None:
        publish_status(b, row, "responded", now, reason=reason, channel=response.channel,
                       dispatch_id=dispatch_row.id if dispatch_row else None, final=False)
    if kind in ("opt_out", "unsubscribe") and row is not None and address:
        await confirm_opt_out(b, event.id, row, response.channel, now)


async def confirm_opt_out(b: Batch, event_id: str, origin: ContactRequestRow, channel: str, now: datetime) -> None:
    """The one confirmation the law allows after an opt-out, as an internal request (if templated)."""
    rt = b.rt
    key = rt.strategy.config.opt_out_confirmation_template
    if not key or not await templates_port.key_exists(b.session, key):
        return
    original = ContactRequested.model_validate(origin.payload)
    debtor = await b.debtor(origin.debtor_id)
    # Never a new call to confirm "stop calling me": only where the debtor's pack allows a message.
    targets = rt.policy.opt_out_confirmation_channels(debtor.jurisdiction or "default", channel)
    if not targets:
        return
    channel = targets[0]
    current = Debtor(
        id=debtor.id, name=debtor.name, locale=debtor.locale, jurisdiction=debtor.jurisdiction or "default",
        time_zone=debtor.time_zone, phone=debtor.phone, email=debtor.email, whatsapp=debtor.whatsapp,
        authorized_channels=debtor.authorized_channels, preferred_channel=debtor.preferred_channel,
    )
    request = original.model_copy(update={
        "debtor": current,
        "channel": channel, "template": key, "variables": {}, "kind": "opt_out_confirmation",
        "not_before": None, "expires_at": now + timedelta(days=1), "campaign_id": None,
    })
    internal = ContactRequestedEvent(
        id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"opt-out-confirmation:{event_id}")), source=SOURCE,
        subject=origin.debtor_id, correlationid=origin.id, time=now, data=request,
    )
    await intake(b, internal, now)


async def apply_recording(b: Batch, event: Any, now: datetime) -> None:
    from services.orchestrator.recordings.service import record

    await b.debtor(event.data.debtor_id)
    record(b.session, event.data, now)
