"""Deciding a contact over a batch's loaded state: dispatch on the first channel the policy allows,
else defer to the earliest lawful instant, else reject. No query here but the template store's
(cached per transaction); every write is staged on the :class:`~.state.Batch`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from services.orchestrator.agents import queues as agent_queues
from services.orchestrator.policy.models import normalise_address
from services.orchestrator.recordings import service as recordings
from services.orchestrator.runtime import debtor_limits, policy_port, templates_port, validation
from services.orchestrator.runtime.models import AccountRow, ContactRequestRow, DebtorRow, SuppressionRow
from services.orchestrator.runtime.records import DispatchRecord
from services.orchestrator.runtime.state import Batch
from services.orchestrator.runtime.statuses import (
    ACCOUNT_RULE,
    LEGAL_NOTICES,
    NOT_BEFORE_RULE,
    PROMISE_ANSWERS,
    SOURCE,
)
from services.orchestrator.runtime.strategy import SegmentPlan
from services.orchestrator.selfservice import linking
from shared.events.contracts import (
    ContactDispatched,
    ContactDispatchedEvent,
    ContactRequested,
    StatusChanged,
    StatusChangedEvent,
    TemplateRef,
)

# --- status events --------------------------------------------------------------------------------


def publish_status(
    b: Batch,
    request: ContactRequestRow,
    status: str,
    now: datetime,
    *,
    reason: str | None = None,
    not_before: datetime | None = None,
    channel: str | None = None,
    dispatch_id: str | None = None,
    rules: Sequence[str] = (),
    final: bool = True,
) -> None:
    """Record a status change of ``request`` and stage its ``contact.status`` event."""
    rt = b.rt
    rt.hooks.status(b.session, request, status, now, channel=channel, reason=reason, rules=rules,
                    dispatch_id=dispatch_id)
    if rt.status_counter is not None:
        rt.status_counter.labels(status=status).inc()
    if final:
        request.status, request.reason, request.updated_at = status, reason, now
        b.touch(request)
    b.history.append({
        "request_id": request.id, "debtor_id": request.debtor_id, "status": status, "reason": reason,
        "channel": channel, "dispatch_id": dispatch_id, "not_before": not_before, "rules": list(rules), "at": now,
    })
    b.stage(rt.ctx.topics.contact_status, StatusChangedEvent(
        source=SOURCE,
        subject=request.debtor_id,
        correlationid=request.id,
        time=now,
        data=StatusChanged(
            request_id=request.id, debtor_id=request.debtor_id, status=status,
            reason=reason[:2000] if reason else None, not_before=not_before, channel=channel,
            dispatch_id=dispatch_id, rules=list(rules),
        ),
    ))


# --- the debtor, as the policy and the templates see it -------------------------------------------


def channel_order(request: ContactRequested, plan: SegmentPlan) -> list[str]:
    """The channels to try in order: the named one, or the strategy's order led by the preference."""
    if request.channel != "auto":
        return [request.channel]
    order: list[str] = list(plan.channels)
    preferred = request.debtor.preferred_channel
    if preferred is not None:
        order = [preferred] + [c for c in order if c != preferred]
    authorised = request.debtor.authorized_channels
    if authorised is not None:
        order = [c for c in order if c in authorised]
    return order


def address_of(debtor: DebtorRow, channel: str) -> str | None:
    address: str | None = getattr(debtor, validation.ADDRESS_FIELD[channel])
    return address


def debtor_context(debtor: DebtorRow) -> policy_port.DebtorContext:
    return policy_port.DebtorContext(
        id=debtor.id, jurisdiction=debtor.jurisdiction or "default",
        time_zones=(debtor.time_zone,) if debtor.time_zone else None, phone=debtor.phone,
        authorized_channels=frozenset(debtor.authorized_channels) if debtor.authorized_channels is not None else None,
        inconvenient=debtor_limits.inconvenient_of(debtor),
    )


def account_state(account: AccountRow, kind: str = "collection") -> policy_port.AccountState:
    if kind in PROMISE_ANSWERS and account.status == "promised":
        # The answer to the debtor's own promise is not paused by that promise (hours and caps still bind).
        return policy_port.AccountState(id=account.id, status="active")
    # A promise "for the 14th" lets the debtor pay all of the 14th: pause until the 15th starts locally.
    # A promise for the calendar's last day (a valid ``promise_made``) has no next day: it pauses to its start.
    until = _day_after(account.promise_date) if account.promise_date else account.promise_until
    return policy_port.AccountState(id=account.id, status=account.status, promise_until=until,  # type: ignore[arg-type]
                                    represented=account.attorney is not None)


def _day_after(day: date) -> date:
    return day + timedelta(days=1) if day < date.max else day


def set_status(account: AccountRow, status: str, now: datetime, promise_until: datetime | date | None = None) -> None:
    account.status = status
    account.promise_until = promise_until if isinstance(promise_until, datetime) else None
    account.promise_date = promise_until if isinstance(promise_until, date) and not isinstance(
        promise_until, datetime) else None
    account.status_changed_at = now


def _blocked(channel: str, address: str | None, suppressions: Sequence[SuppressionRow]) -> SuppressionRow | None:
    on_channel = [s for s in suppressions if s.channel == channel]
    if not on_channel:
        return None  # (most decisions: no address to parse)
    wanted = normalise_address(channel, address)
    for s in on_channel:
        if s.address is None or s.address == wanted:
            return s
    return None


def render_variables(b: Batch, request: ContactRequested, debtor: DebtorRow, account: AccountRow) -> dict[str, Any]:
    """What templates render with: debtor, account and creditor data, then the request's own variables."""
    rt, a = b.rt, request.account
    creditor = dict(rt.strategy.config.creditor)
    link = linking.url_for(rt.ctx.settings, rt.strategy.config.self_service, debtor.id, a.id, rt.ctx.clock())
    own = dict(request.variables)
    if isinstance(own.get("creditor"), dict):
        creditor.update(own.pop("creditor"))
    first_name = (debtor.name or "").split(" ")[0]
    return {
        "debtor": {"id": debtor.id, "name": debtor.name, "first_name": first_name, "locale": debtor.locale},
        "account": {
            "id": a.id, "product": a.product, "balance": str(a.balance), "currency": a.currency,
            "days_past_due": a.days_past_due, "due_date": a.due_date.isoformat() if a.due_date else None,
            "payment_url": a.payment_url, "status": account.status, "self_service_url": link,
        },
        "creditor": creditor,
        **own,
    }


# --- decide ---------------------------------------------------------------------------------------


def _candidates(row: ContactRequestRow, debtor: DebtorRow, suppressions: Sequence[SuppressionRow]
                ) -> tuple[list[tuple[str, str]], list[str]]:
    """The request's channels still worth asking the policy about, and why the others were skipped."""
    candidates: list[tuple[str, str]] = []
    skipped: list[str] = []
    for channel in row.channels:
        if channel in row.tried_channels:
            continue
        address = address_of(debtor, channel)
        if address is None:
            skipped.append(f"{channel}: no address")
            continue
        if debtor.authorized_channels is not None and channel not in debtor.authorized_channels:
            skipped.append(f"{channel}: not authorised by the debtor")
            continue
        blocked = _blocked(channel, address, suppressions)
        if blocked is not None and (row.kind not in LEGAL_NOTICES or blocked.address is None):
            skipped.append(f"{channel}: suppressed ({blocked.reason})")
            continue
        candidates.append((channel, address))
    return candidates, skipped


async def decide(b: Batch, row: ContactRequestRow, now: datetime, *, at: datetime | None = None,
                 request: ContactRequested | None = None) -> str:
    """Decide ``row`` now: dispatch on the first channel the policy allows, else defer or reject.

    Called at intake, at release of a deferral and on fallback, with the debtor loaded (locked).
    ``at`` (a dispatch's expired ``send_before``) asks the policy about that instant instead of
    ``now``, so the contact moves to the next lawful window rather than back into the one that ended.
    ``request`` is the row's payload as a model, when the caller has it (intake).
    """
    rt = b.rt
    when = max(now, at) if at is not None else now
    if request is None:
        request = ContactRequested.model_validate(row.payload)
    debtor = await b.debtor(row.debtor_id)
    account = b.account(row.debtor_id, row.account_id)
    if account.status == "paid" and row.kind not in LEGAL_NOTICES:
        publish_status(b, row, "rejected", now, reason="paid", rules=[ACCOUNT_RULE])
        return "rejected"
    if row.expires_at is not None and now >= row.expires_at:
        publish_status(b, row, "expired", now, reason="expires_at passed", rules=["request.expires_at"])
        return "expired"
    not_before = validation.aware(request.not_before)
    if row.attempts == 0 and not_before is not None and now < not_before:
        return defer(b, row, not_before, now, "not_before requested", [NOT_BEFORE_RULE])

    plan = rt.strategy.plan(request.account)
    suppressions = await b.suppressions_of(debtor)
    candidates, skipped = _candidates(row, debtor, suppressions)
    if not candidates:
        if row.tried_channels:
            reason = f"no channel left after {', '.join(row.tried_channels)} failed"
            publish_status(b, row, "failed", now, reason=reason, rules=["strategy.fallback"])
            return "failed"
        reason = "no permitted channel" + (f": {'; '.join(skipped)}" if skipped else "")
        publish_status(b, row, "rejected", now, reason=reason, rules=["strategy.channels"])
        return "rejected"

    ledger = await b.ledger(debtor, now)
    context, state = debtor_context(debtor), account_state(account, row.kind)
    # The strategy's gaps and caps pace collection pushes; an answer the debtor asked for is not one
    # (the packs' legal limits still bind it).
    limits = (policy_port.limits_of(None, {}, {}) if row.kind in PROMISE_ANSWERS
              else policy_port.limits_of(plan.min_gap, plan.daily_caps, plan.weekly_caps))
    policy_suppressions = [
        policy_port.Suppression(channel=s.channel, address=s.address, at=s.at)  # type: ignore[arg-type]
        for s in suppressions if s.address is not None
    ]
    consents = debtor.consents or {}
    defers: list[tuple[datetime, str, list[str]]] = []
    denials: list[str] = []
    denial_rules: list[str] = []
    for channel, address in candidates:
        contact = policy_port.ProposedContact(
            channel=channel, at=when, account_id=row.account_id,  # type: ignore[arg-type]
            kind=policy_port.policy_kind(row.kind), consented=bool(consents.get(channel)),  # type: ignore[arg-type]
            address=address, expires_at=row.expires_at,
        )
        decision = policy_port.evaluate(
            rt.policy, debtor=context, account=state, ledger=ledger, suppressions=policy_suppressions,
            contact=contact, limits=limits, now=when,
        )
        ids = policy_port.rule_ids(decision.rules)
        if isinstance(decision, policy_port.Allow) and when > now:
            defers.append((when, f"{channel}: lawful again from {when.isoformat()}", ids))
        elif isinstance(decision, policy_port.Allow):
            template = await pick_template(b, request, plan, channel)
            if template is None:
                denials.append(f"{channel}: no published template {request.template!r}")
                continue
            variables = render_variables(b, request, debtor, account)
            problem = await templates_port.render_problem(b.session, template, variables)
            if problem is not None:
                denials.append(f"{channel}: {problem}")
                denial_rules.append("template.render")
                continue
            hold = await rt.hooks.held(b.session, row, channel, now)
            if hold is not None:  # paused by ops: deferred, not lost (and not expired for being held)
                b.add_deferral(row, hold.until, hold.reason, list(hold.rules), now)
                publish_status(b, row, "deferred", now, reason=hold.reason, channel=channel, rules=hold.rules)
                return "deferred"
            dispatch(b, row, request, debtor, channel, address, template, variables, now, ids,
                     send_before=decision.send_before)
            return "dispatched"
        if isinstance(decision, policy_port.Defer):
            defers.append((decision.not_before, f"{channel}: {policy_port.explain(decision.rules)}", ids))
        else:
            denials.append(f"{channel}: {policy_port.explain(decision.rules)}")
            denial_rules.extend(ids)
    if defers:
        until, reason, ids = min(defers, key=lambda d: d[0])
        return defer(b, row, until, now, reason, ids)
    publish_status(b, row, "rejected", now, reason="; ".join(skipped + denials), rules=denial_rules)
    return "rejected"


async def pick_template(b: Batch, request: ContactRequested, plan: SegmentPlan, channel: str) -> TemplateRef | None:
    """The segment's variant of the requested key (``key + suffix``) when published for the channel, else the key."""
    keys = [request.template]
    if plan.template_suffix and request.kind == "collection":
        keys.insert(0, request.template + plan.template_suffix)
    for key in keys:
        ref = await templates_port.resolve(b.session, key, channel, request.debtor.locale, request.debtor.id,
                                           plan.variant)
        if ref is not None:
            return ref
    return None


def defer(b: Batch, row: ContactRequestRow, until: datetime, now: datetime, reason: str, rules: list[str]) -> str:
    if row.expires_at is not None and until >= row.expires_at:
        publish_status(b, row, "expired", now, reason=f"cannot be sent before expires_at: {reason}",
                       not_before=until, rules=rules)
        return "expired"
    b.add_deferral(row, until, reason, rules, now)
    publish_status(b, row, "deferred", now, reason=reason, not_before=until, rules=rules)
    return "deferred"


def dispatch(
    b: Batch,
    row: ContactRequestRow,
    request: ContactRequested,
    debtor: DebtorRow,
    channel: str,
    address: str,
    template: TemplateRef,
    variables: dict[str, Any],
    now: datetime,
    rules: list[str],
    *,
    send_before: datetime | None = None,
) -> None:
    """Record the attempt in the ledger (caps count it at once) and stage the dispatch event."""
    rt = b.rt
    row.attempts += 1
    b.touch(row)
    dispatch_id = str(uuid.uuid4())
    deadline = now + rt.strategy.send_window
    if row.expires_at is not None:
        deadline = min(deadline, row.expires_at)
    consented = bool((debtor.consents or {}).get(channel))
    if rt.strategy.config.self_service.enabled:
        b.links.append(linking.link_row(rt.ctx.settings, row.debtor_id, row.account_id, now))
    b.add(DispatchRecord(
        id=dispatch_id, request_id=row.id, debtor_id=row.debtor_id, account_id=row.account_id, channel=channel,
        address=address, kind=row.kind, attempt=row.attempts, template_key=template.key,
        template_version=template.version, consented=consented, status="dispatched", error_code=None, at=now,
        updated_at=now, send_before=send_before,
    ))
    b.stage(rt.ctx.topics.dispatch(channel), ContactDispatchedEvent(
        source=SOURCE, subject=row.debtor_id, correlationid=row.id, time=now,
        data=ContactDispatched(
            dispatch_id=dispatch_id, request_id=row.id, debtor_id=row.debtor_id, account_id=row.account_id,
            channel=channel, to=address, locale=debtor.locale, template=template,
            variables=variables, attempt=row.attempts, deadline=deadline,
            kind=row.kind, send_before=send_before,
            **recordings.dispatch_fields(rt, request, debtor.jurisdiction, debtor.locale, channel),
            **agent_queues.dispatch_fields(rt.strategy, request, channel, now),
        ),
    ))
    publish_status(b, row, "dispatched", now, channel=channel, dispatch_id=dispatch_id, rules=rules)
