"""The orchestrator runtime's unit-of-work functions: intake, decide, defer, dispatch, outcomes.

Every public function here runs inside the caller's transaction (``ctx.db.transaction()``) and
starts by locking the debtor, so one debtor's effects are applied one at a time across every
orchestrator instance; events to publish go to the outbox of that same transaction.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.agents import queues as agent_queues
from services.orchestrator.agents import service as agent_outcomes
from services.orchestrator.context import OrchestratorContext
from services.orchestrator.policy.models import normalise_address
from services.orchestrator.recordings import service as recordings
from services.orchestrator.runtime import debtor_limits, policy_port, templates_port, validation
from services.orchestrator.runtime.hooks import NO_HOOKS, RuntimeHooks
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
from services.orchestrator.runtime.strategy import SegmentPlan, Strategy
from services.orchestrator.selfservice import linking
from shared.db import add_to_outbox, first_time
from shared.events.contracts import (
    CHANNELS,
    CommunicationCeasedEvent,
    ContactDispatched,
    ContactDispatchedEvent,
    ContactRequested,
    ContactRequestedEvent,
    Debtor,
    DebtorUpdatedEvent,
    DeliveryUpdated,
    DisputeOpenedEvent,
    DisputeResolvedEvent,
    PaymentReceivedEvent,
    PromiseBrokenEvent,
    PromiseMadeEvent,
    ResponseReceived,
    StatusChanged,
    StatusChangedEvent,
    TemplateRef,
)
from shared.logging import get_logger

log = get_logger(__name__)

SOURCE = "cadencia/orchestrator"
INTAKE = "orchestrator.intake"
ACCOUNTS = "orchestrator.accounts"
OUTCOMES = "orchestrator.outcomes"

#: A dispatch's status only moves up this ranking: late or duplicate outcomes never move it back.
#: ``unknown`` (the channel cannot tell whether the provider processed the request, or the provider
#: never reported a final status) ends a request, but a later proof of failure or delivery still wins.
STATUS_RANK: dict[str, int] = {
    "dispatched": 0, "accepted": 1, "sent": 2, "unknown": 3,
    "failed": 4, "undelivered": 4, "bounced": 4, "no_answer": 4, "busy": 4,
    "delivered": 5, "voicemail": 5, "read": 6, "opened": 6, "conversation": 6, "clicked": 7,
    # never sent: the lawful window ended first (send_before); the contact is re-decided
    "expired": 4,
    # how an answered call bridged to agents ended (after its "conversation")
    "agent_connected": 7, "abandoned": 7,
}
FAILED = frozenset({"failed", "undelivered", "bounced"})
#: Calls that reached no one: retried on voice, then the contact falls back to the next channel.
UNANSWERED = frozenset({"no_answer", "busy"})
DELIVERED = frozenset({"delivered", "read", "opened", "clicked", "voicemail", "conversation", "agent_connected",
                       "abandoned"})
#: Kinds the law allows past an opt-out or a cease: the policy decides them, not the strategy.
LEGAL_NOTICES = frozenset({"opt_out_confirmation", "cease_notice", "dispute_ack"})
#: Kinds that answer a promise the debtor just made (its confirmation, the self-service link).
PROMISE_ANSWERS = frozenset({"promise_confirmation", "self_service_link"})
INVALID_NUMBER = "21211"
TWILIO_OPTED_OUT = "21610"
ACCOUNT_RULE = "account.state"
PROMISE_RULE = "core.promise_to_pay"
PAUSE_RULES = frozenset({ACCOUNT_RULE, PROMISE_RULE, "core.account_status"})
NOT_BEFORE_RULE = "request.not_before"


@dataclass
class Runtime:
    """What the handlers share: the context, the strategy and the loaded policy."""

    ctx: OrchestratorContext
    strategy: Strategy
    policy: Any
    jurisdictions: set[str] = field(default_factory=set)
    #: ``orchestrator_contact_status_total{status}`` on the app's registry (None outside an app).
    status_counter: Any = None
    #: Counters and campaign control (``services.orchestrator.ops``); no-ops by default.
    hooks: RuntimeHooks = NO_HOOKS
    _sqlite_writer: asyncio.Lock = field(default_factory=asyncio.Lock)

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[AsyncSession]:
        """``ctx.db.transaction()``; on SQLite one writer at a time in this process.

        SQLite serialises writers anyway (``BEGIN IMMEDIATE``); queueing them here instead of in
        SQLite's busy handler, which sleeps in growing steps, keeps concurrent partitions fast.
        """
        if self.postgres:
            async with self.ctx.db.transaction() as session:
                yield session
                await self.hooks.before_commit(session)
            return
        async with self._sqlite_writer, self.ctx.db.transaction() as session:
            yield session
            await self.hooks.before_commit(session)

    @property
    def postgres(self) -> bool:
        return self.ctx.db.is_postgres


@dataclass(frozen=True)
class IntakeResult:
    request_id: str
    status: str
    reason: str | None = None
    duplicate: bool = False

    def as_json(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "status": self.status, "reason": self.reason,
                "duplicate": self.duplicate}


# --- locking and state --------------------------------------------------------------------------


async def lock_debtor(rt: Runtime, session: AsyncSession, debtor_id: str) -> DebtorRow:
    """The per-debtor serialisation point: insert the row if missing, then hold its lock.

    On PostgreSQL ``FOR UPDATE`` makes two instances (or two partitions' workers) decide for one
    debtor one after the other, so caps counted from the ledger hold. SQLite write transactions
    already begin with ``BEGIN IMMEDIATE``, which serialises every writer.
    """
    insert = pg_insert if rt.postgres else sqlite_insert
    await session.execute(insert(DebtorRow).values(id=debtor_id).on_conflict_do_nothing(index_elements=["id"]))
    stmt = select(DebtorRow).where(DebtorRow.id == debtor_id).execution_options(populate_existing=True)
    if rt.postgres:
        stmt = stmt.with_for_update()
    debtor = (await session.execute(stmt)).scalar_one()
    return debtor


async def get_account(session: AsyncSession, debtor_id: str, account_id: str) -> AccountRow:
    account = await session.get(AccountRow, account_id)
    if account is None:
        account = AccountRow(id=account_id, debtor_id=debtor_id, product="", status="active")
        session.add(account)
        await session.flush()
    return account


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


def _set_status(account: AccountRow, status: str, now: datetime, promise_until: datetime | date | None = None) -> None:
    account.status = status
    account.promise_until = promise_until if isinstance(promise_until, datetime) else None
    account.promise_date = promise_until if isinstance(promise_until, date) and not isinstance(
        promise_until, datetime) else None
    account.status_changed_at = now


# --- status events --------------------------------------------------------------------------------


def publish_status(
    rt: Runtime,
    session: AsyncSession,
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
    rt.hooks.status(session, request, status, now, channel=channel, reason=reason, rules=rules,
                    dispatch_id=dispatch_id)
    if rt.status_counter is not None:
        rt.status_counter.labels(status=status).inc()
    if final:
        request.status, request.reason, request.updated_at = status, reason, now
    session.add(StatusHistoryRow(
        request_id=request.id, debtor_id=request.debtor_id, status=status, reason=reason, channel=channel,
        dispatch_id=dispatch_id, not_before=not_before, rules=list(rules), at=now,
    ))
    event = StatusChangedEvent(
        source=SOURCE,
        subject=request.debtor_id,
        correlationid=request.id,
        time=now,
        data=StatusChanged(
            request_id=request.id, debtor_id=request.debtor_id, status=status,
            reason=reason[:2000] if reason else None, not_before=not_before, channel=channel,
            dispatch_id=dispatch_id, rules=list(rules),
        ),
    )
    add_to_outbox(session, rt.ctx.topics.contact_status, event)


# --- intake ---------------------------------------------------------------------------------------


async def intake(rt: Runtime, session: AsyncSession, event: ContactRequestedEvent, now: datetime) -> IntakeResult:
    """Apply one contact request (from Kafka or HTTP): validate, attach to the ledger, decide.

    A repeated request id changes nothing and answers with the original result.
    """
    if not await first_time(session, INTAKE, event.id):
        existing = await session.get(ContactRequestRow, event.id)
        if existing is None:  # pragma: no cover - the inbox mark and the row commit together
            return IntakeResult(event.id, "accepted", duplicate=True)
        return IntakeResult(existing.id, existing.intake_status, existing.intake_reason, duplicate=True)
    request = validation.canonical(event.data)
    reasons = validation.problems(request, rt.jurisdictions, rt.ctx.settings.max_variables_bytes)
    plan = rt.strategy.plan(request.account)
    if not await templates_port.key_exists(session, request.template) and not (
        plan.template_suffix and await templates_port.key_exists(session, request.template + plan.template_suffix)
    ):
        reasons.append(f"unknown template {request.template!r}")
    row = ContactRequestRow(
        id=event.id, debtor_id=request.debtor.id, account_id=request.account.id, kind=request.kind,
        template=request.template, payload=request.model_dump(mode="json"), channels=[], tried_channels=[],
        attempts=0, intake_status="accepted", status="accepted",
        expires_at=validation.aware(request.expires_at), created_at=now, updated_at=now,
    )
    if reasons:
        row.intake_status, row.intake_reason = "rejected", "; ".join(reasons)
        session.add(row)
        publish_status(rt, session, row, "rejected", now, reason=row.intake_reason, rules=["intake.validation"])
        log.info("contact request rejected", request_id=event.id, reason=row.intake_reason)
        return IntakeResult(event.id, "rejected", row.intake_reason)

    debtor = await lock_debtor(rt, session, request.debtor.id)
    _update_debtor(debtor, request, now)
    account = await get_account(session, request.debtor.id, request.account.id)
    _update_account(account, request)
    row.segment = plan.segment
    row.channels = channel_order(request, plan)
    session.add(row)
    await session.flush()
    await decide(rt, session, row, now)
    row.intake_status, row.intake_reason = row.status, row.reason
    return IntakeResult(row.id, row.status, row.reason)


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
    return {"sms": debtor.phone, "voice": debtor.phone, "email": debtor.email, "whatsapp": debtor.whatsapp}[channel]


# --- decide ---------------------------------------------------------------------------------------


async def active_suppressions(
    session: AsyncSession, debtor_id: str, addresses: Sequence[str] = ()
) -> list[SuppressionRow]:
    """The debtor's suppressions and those of any address the debtor uses, whoever they were recorded
    for: a STOP from a number binds every debtor sharing that number."""
    who = SuppressionRow.debtor_id == debtor_id
    if addresses:
        who = or_(who, SuppressionRow.address.in_(list(addresses)))
    stmt = select(SuppressionRow).where(who, SuppressionRow.lifted_at.is_(None))
    return list((await session.execute(stmt)).scalars())


async def load_ledger(session: AsyncSession, debtor_id: str, since: datetime) -> list[policy_port.LedgerEntry]:
    """The debtor's recent contacts, both ways; reads only ``(debtor_id, at >= since)``."""
    dispatches = (await session.execute(
        # an expired dispatch never reached a provider: it is no contact and counts nowhere
        select(DispatchRow).where(DispatchRow.debtor_id == debtor_id, DispatchRow.at >= since,
                                  DispatchRow.status != "expired")
    )).scalars()
    entries = [
        policy_port.LedgerEntry(
            channel=d.channel, direction="outbound", at=d.at, account_id=d.account_id,  # type: ignore[arg-type]
            outcome=ledger_outcome(d.channel, d.status), consented=d.consented,  # type: ignore[arg-type]
            kind=policy_port.policy_kind(d.kind), address=d.address,  # type: ignore[arg-type]
        )
        for d in dispatches
    ]
    responses = (await session.execute(
        select(ResponseRow).where(ResponseRow.debtor_id == debtor_id, ResponseRow.at >= since)
    )).scalars()
    entries.extend(
        policy_port.LedgerEntry(channel=r.channel, direction="inbound", at=r.occurred_at,  # type: ignore[arg-type]
                                outcome="replied", address=r.address)
        for r in responses
    )
    entries.sort(key=lambda e: e.at)
    return entries


def ledger_outcome(channel: str, status: str) -> str:
    """A dispatch's delivery status in the policy's vocabulary (what counts toward caps)."""
    if channel == "voice":
        if status in ("agent_connected", "abandoned"):
            return "conversation"  # a person answered: the policy counts it as a conversation
        if status in ("conversation", "voicemail", "no_answer", "busy"):
            return status
        if status in FAILED:
            return "not_connected"
        return "sent"
    if status in FAILED:
        return "failed"
    if status in DELIVERED:
        return "delivered"
    return "sent"


def _zones(debtor: DebtorRow) -> tuple[str, ...] | None:
    return (debtor.time_zone,) if debtor.time_zone else None


def debtor_context(debtor: DebtorRow) -> policy_port.DebtorContext:
    return policy_port.DebtorContext(
        id=debtor.id, jurisdiction=debtor.jurisdiction or "default", time_zones=_zones(debtor), phone=debtor.phone,
        authorized_channels=frozenset(debtor.authorized_channels) if debtor.authorized_channels is not None else None,
        inconvenient=debtor_limits.inconvenient_of(debtor),
    )


def account_state(account: AccountRow, kind: str = "collection") -> policy_port.AccountState:
    if kind in PROMISE_ANSWERS and account.status == "promised":
        # The answer to the debtor's own promise is not paused by that promise (hours and caps still bind).
        return policy_port.AccountState(id=account.id, status="active")
    # A promise "for the 14th" lets the debtor pay all of the 14th: pause until the 15th starts locally.
    until = account.promise_date + timedelta(days=1) if account.promise_date else account.promise_until
    return policy_port.AccountState(id=account.id, status=account.status, promise_until=until,  # type: ignore[arg-type]
                                    represented=account.attorney is not None)


def _blocked(channel: str, address: str | None, suppressions: Sequence[SuppressionRow]) -> SuppressionRow | None:
    wanted = normalise_address(channel, address)
    for s in suppressions:
        if s.channel == channel and (s.address is None or s.address == wanted):
            return s
    return None


async def decide(
    rt: Runtime, session: AsyncSession, row: ContactRequestRow, now: datetime, *, at: datetime | None = None
) -> str:
    """Decide ``row`` now: dispatch on the first channel the policy allows, else defer or reject.

    Called at intake, at release of a deferral and on fallback; the debtor is already locked.
    ``at`` (a dispatch's expired ``send_before``) asks the policy about that instant instead of
    ``now``, so the contact moves to the next lawful window rather than back into the one that ended.
    """
    when = max(now, at) if at is not None else now
    request = ContactRequested.model_validate(row.payload)
    debtor = await session.get(DebtorRow, row.debtor_id)
    account = await get_account(session, row.debtor_id, row.account_id)
    assert debtor is not None
    if account.status == "paid" and row.kind not in LEGAL_NOTICES:
        publish_status(rt, session, row, "rejected", now, reason="paid", rules=[ACCOUNT_RULE])
        return "rejected"
    if row.expires_at is not None and now >= row.expires_at:
        publish_status(rt, session, row, "expired", now, reason="expires_at passed", rules=["request.expires_at"])
        return "expired"
    not_before = validation.aware(request.not_before)
    if row.attempts == 0 and not_before is not None and now < not_before:
        return await defer(rt, session, row, not_before, now, "not_before requested", [NOT_BEFORE_RULE])

    plan = rt.strategy.plan(request.account)
    suppressions = await active_suppressions(
        session, row.debtor_id, [a for a in (debtor.phone, debtor.email, debtor.whatsapp) if a]
    )
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
    if not candidates:
        if row.tried_channels:
            reason = f"no channel left after {', '.join(row.tried_channels)} failed"
            publish_status(rt, session, row, "failed", now, reason=reason, rules=["strategy.fallback"])
            return "failed"
        reason = "no permitted channel" + (f": {'; '.join(skipped)}" if skipped else "")
        publish_status(rt, session, row, "rejected", now, reason=reason, rules=["strategy.channels"])
        return "rejected"

    lookback = timedelta(days=rt.policy.pack(debtor.jurisdiction or "default").lookback_days + 1)
    ledger = await load_ledger(session, row.debtor_id, now - max(rt.strategy.ledger_window, lookback))
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
            template = await pick_template(rt, session, request, plan, channel)
            if template is None:
                denials.append(f"{channel}: no published template {request.template!r}")
                continue
            problem = await templates_port.render_problem(
                session, template, render_variables(rt, request, debtor, account)
            )
            if problem is not None:
                denials.append(f"{channel}: {problem}")
                denial_rules.append("template.render")
                continue
            if await rt.hooks.held(session, row, channel, now):  # paused by ops: deferred, not lost
                return "deferred"
            await dispatch(rt, session, row, request, debtor, account, channel, address, template, now, ids,
                           send_before=decision.send_before)
            return "dispatched"
        if isinstance(decision, policy_port.Defer):
            defers.append((decision.not_before, f"{channel}: {policy_port.explain(decision.rules)}", ids))
        else:
            denials.append(f"{channel}: {policy_port.explain(decision.rules)}")
            denial_rules.extend(ids)
    if defers:
        until, reason, ids = min(defers, key=lambda d: d[0])
        return await defer(rt, session, row, until, now, reason, ids)
    publish_status(rt, session, row, "rejected", now, reason="; ".join(skipped + denials), rules=denial_rules)
    return "rejected"


async def pick_template(
    rt: Runtime, session: AsyncSession, request: ContactRequested, plan: SegmentPlan, channel: str
) -> TemplateRef | None:
    """The segment's variant of the requested key (``key + suffix``) when published for the channel, else the key."""
    keys = [request.template]
    if plan.template_suffix and request.kind == "collection":
        keys.insert(0, request.template + plan.template_suffix)
    for key in keys:
        ref = await templates_port.resolve(session, key, channel, request.debtor.locale, request.debtor.id,
                                           plan.variant)
        if ref is not None:
            return ref
    return None


async def defer(
    rt: Runtime, session: AsyncSession, row: ContactRequestRow, until: datetime, now: datetime, reason: str,
    rules: list[str],
) -> str:
    if row.expires_at is not None and until >= row.expires_at:
        publish_status(rt, session, row, "expired", now, reason=f"cannot be sent before expires_at: {reason}",
                       not_before=until, rules=rules)
        return "expired"
    await session.execute(
        update(DeferredContactRow)
        .where(DeferredContactRow.request_id == row.id, DeferredContactRow.state == "pending")
        .values(state="cancelled", released_at=now)
    )
    session.add(DeferredContactRow(
        request_id=row.id, debtor_id=row.debtor_id, account_id=row.account_id, not_before=until, state="pending",
        reason=reason, rules=rules, created_at=now,
    ))
    publish_status(rt, session, row, "deferred", now, reason=reason, not_before=until, rules=rules)
    return "deferred"


def render_variables(rt: Runtime, request: ContactRequested, debtor: DebtorRow, account: AccountRow) -> dict[str, Any]:
    """What templates render with: debtor, account and creditor data, then the request's own variables."""
    a = request.account
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


async def dispatch(
    rt: Runtime,
    session: AsyncSession,
    row: ContactRequestRow,
    request: ContactRequested,
    debtor: DebtorRow,
    account: AccountRow,
    channel: str,
    address: str,
    template: TemplateRef,
    now: datetime,
    rules: list[str],
    *,
    send_before: datetime | None = None,
) -> None:
    """Record the attempt in the ledger (caps count it at once) and stage the dispatch event."""
    row.attempts += 1
    dispatch_id = str(uuid.uuid4())
    deadline = now + rt.strategy.send_window
    if row.expires_at is not None:
        deadline = min(deadline, row.expires_at)
    consented = bool((debtor.consents or {}).get(channel))
    if rt.strategy.config.self_service.enabled:
        await linking.remember(session, rt.ctx.settings, rt.postgres, row.debtor_id, row.account_id, now)
    session.add(DispatchRow(
        id=dispatch_id, request_id=row.id, debtor_id=row.debtor_id, account_id=row.account_id, channel=channel,
        address=address, kind=row.kind, attempt=row.attempts, template_key=template.key,
        template_version=template.version, consented=consented, status="dispatched", at=now, updated_at=now,
        send_before=send_before,
    ))
    event = ContactDispatchedEvent(
        source=SOURCE, subject=row.debtor_id, correlationid=row.id, time=now,
        data=ContactDispatched(
            dispatch_id=dispatch_id, request_id=row.id, debtor_id=row.debtor_id, account_id=row.account_id,
            channel=channel, to=address, locale=debtor.locale, template=template,
            variables=render_variables(rt, request, debtor, account), attempt=row.attempts, deadline=deadline,
            kind=row.kind, send_before=send_before,
            **recordings.dispatch_fields(rt, request, debtor.jurisdiction, debtor.locale, channel),
            **agent_queues.dispatch_fields(rt.strategy, request, channel, now),
        ),
    )
    add_to_outbox(session, rt.ctx.topics.dispatch(channel), event)
    publish_status(rt, session, row, "dispatched", now, channel=channel, dispatch_id=dispatch_id, rules=rules)


# --- deferrals ------------------------------------------------------------------------------------


async def release(rt: Runtime, session: AsyncSession, deferred: DeferredContactRow, now: datetime) -> str:
    """Release one due deferral (the caller holds the debtor lock): re-evaluate it now."""
    deferred.state, deferred.released_at = "released", now
    row = await session.get(ContactRequestRow, deferred.request_id)
    if row is None:  # pragma: no cover - written together
        return "missing"
    return await decide(rt, session, row, now)


async def pending_deferrals(
    session: AsyncSession, debtor_id: str, account_id: str | None = None
) -> list[DeferredContactRow]:
    stmt = select(DeferredContactRow).where(
        DeferredContactRow.debtor_id == debtor_id, DeferredContactRow.state == "pending"
    )
    if account_id is not None:
        stmt = stmt.where(DeferredContactRow.account_id == account_id)
    return list((await session.execute(stmt.order_by(DeferredContactRow.id))).scalars())


# --- account events -------------------------------------------------------------------------------

AccountEvent = (
    PaymentReceivedEvent | PromiseMadeEvent | PromiseBrokenEvent | DisputeOpenedEvent | DisputeResolvedEvent
    | CommunicationCeasedEvent | DebtorUpdatedEvent
)


async def apply_account_event(rt: Runtime, session: AsyncSession, event: AccountEvent, now: datetime) -> None:
    if not await first_time(session, ACCOUNTS, event.id):
        return
    data = event.data
    debtor = await lock_debtor(rt, session, data.debtor_id)
    account = await get_account(session, data.debtor_id, data.account_id)
    if isinstance(event, PaymentReceivedEvent):
        if event.data.settles_account:
            _set_status(account, "paid", now)
            rt.hooks.account(session, account, "paid", now)
            await cancel_deferrals(rt, session, debtor.id, account.id, now, "paid")
    elif isinstance(event, PromiseMadeEvent):
        await promise(rt, session, account, event.data.due_date, now)
    elif isinstance(event, PromiseBrokenEvent):
        if account.status == "promised":
            _set_status(account, "active", now)
            await resume(rt, session, debtor.id, account.id, now)
    elif isinstance(event, DisputeOpenedEvent):
        _set_status(account, "disputed", now)
    elif isinstance(event, DisputeResolvedEvent):
        if account.status == "disputed":
            _set_status(account, "active", now)
            await resume(rt, session, debtor.id, account.id, now)
    elif isinstance(event, CommunicationCeasedEvent):
        if event.data.scope == "all":
            _set_status(account, "ceased", now)
        else:
            session.add(SuppressionRow(
                debtor_id=debtor.id, channel=event.data.scope, address=None, reason="ceased",
                source=event.data.source, at=now,
            ))
    elif isinstance(event, DebtorUpdatedEvent):
        u = validation.canonical_update(event.data, debtor.jurisdiction)
        for name in ("name", "locale", "time_zone", "phone", "email", "whatsapp", "preferred_channel", "consents"):
            value = getattr(u, name)
            if value is not None:
                setattr(debtor, name, value)
        if u.authorized_channels is not None:
            debtor.authorized_channels = list(u.authorized_channels)
        debtor_limits.apply_attorney(account, u, now)
        debtor.updated_at = now


async def cancel_deferrals(
    rt: Runtime, session: AsyncSession, debtor_id: str, account_id: str, now: datetime, reason: str
) -> None:
    """Payment stops collection: every deferred contact of the account is rejected with ``reason``."""
    for deferred in await pending_deferrals(session, debtor_id, account_id):
        deferred.state, deferred.released_at = "cancelled", now
        row = await session.get(ContactRequestRow, deferred.request_id)
        if row is not None:
            publish_status(rt, session, row, "rejected", now, reason=reason, rules=[ACCOUNT_RULE])


async def promise(
    rt: Runtime, session: AsyncSession, account: AccountRow, until: datetime | date, now: datetime
) -> None:
    """A promise to pay pauses collection of the account; pending deferrals are re-decided under it."""
    _set_status(account, "promised", now, promise_until=until)
    rt.hooks.account(session, account, "promised", now)
    for deferred in await pending_deferrals(session, account.debtor_id, account.id):
        await release(rt, session, deferred, now)


async def resume(rt: Runtime, session: AsyncSession, debtor_id: str, account_id: str, now: datetime) -> None:
    """A broken promise or a resolved dispute resumes collection: re-decide what was paused for it."""
    for deferred in await pending_deferrals(session, debtor_id, account_id):
        if PAUSE_RULES.intersection(deferred.rules):
            await release(rt, session, deferred, now)


# --- outcomes -------------------------------------------------------------------------------------


async def apply_delivery(rt: Runtime, session: AsyncSession, event_id: str, update_: DeliveryUpdated,
                         now: datetime) -> None:
    if not await first_time(session, OUTCOMES, event_id):
        return
    await lock_debtor(rt, session, update_.debtor_id)
    session.add(OutcomeRow(
        event_id=event_id, dispatch_id=update_.dispatch_id, request_id=update_.request_id,
        debtor_id=update_.debtor_id, channel=update_.channel, status=update_.status, provider=update_.provider,
        error_code=update_.error_code, occurred_at=validation.aware(update_.occurred_at), at=now,
    ))
    dispatch_row = await session.get(DispatchRow, update_.dispatch_id)
    if dispatch_row is None:
        log.warning("outcome for an unknown dispatch", dispatch_id=update_.dispatch_id)
        return
    await agent_outcomes.record(session, event_id, update_)
    if update_.error_code in (INVALID_NUMBER, TWILIO_OPTED_OUT):
        reason = "invalid_number" if update_.error_code == INVALID_NUMBER else "opt_out"
        await suppress(session, dispatch_row.debtor_id, dispatch_row.channel, dispatch_row.address, reason,
                       "provider", now)
    elif update_.status == "bounced":
        await suppress(session, dispatch_row.debtor_id, dispatch_row.channel, dispatch_row.address, "bounce",
                       "provider", now)
    if STATUS_RANK.get(update_.status, 0) <= STATUS_RANK.get(dispatch_row.status, 0):
        return  # late or duplicate: the dispatch's status only moves forward
    previous = dispatch_row.status
    dispatch_row.status, dispatch_row.error_code, dispatch_row.updated_at = update_.status, update_.error_code, now
    row = await session.get(ContactRequestRow, dispatch_row.request_id)
    if row is None:
        return
    current = await latest_dispatch(session, row.id)
    is_current = current is not None and current.id == dispatch_row.id
    if update_.status in DELIVERED and previous not in DELIVERED:
        publish_status(rt, session, row, "delivered", now, channel=dispatch_row.channel,
                       dispatch_id=dispatch_row.id, final=is_current)
    elif update_.status == "unknown":
        # Terminal, and never re-sent automatically: a duplicate collection message can break the law.
        reason = "unknown: " + (update_.error_message or "the channel could not tell whether it was sent")
        publish_status(rt, session, row, "unknown", now, reason=reason[:2000], channel=dispatch_row.channel,
                       dispatch_id=dispatch_row.id, final=is_current)
    elif update_.status in FAILED or update_.status in UNANSWERED:
        reason = f"{update_.status}" + (f" ({update_.error_code})" if update_.error_code else "")
        publish_status(rt, session, row, "failed", now, reason=reason, channel=dispatch_row.channel,
                       dispatch_id=dispatch_row.id, final=is_current)
        if is_current:
            await fall_back(rt, session, row, dispatch_row, now)
    elif update_.status == "expired" and is_current:
        # Not sent: no provider request left before send_before. Decide again for the next window.
        await decide(rt, session, row, now, at=dispatch_row.send_before)


async def latest_dispatch(session: AsyncSession, request_id: str) -> DispatchRow | None:
    stmt = (select(DispatchRow).where(DispatchRow.request_id == request_id)
            .order_by(DispatchRow.attempt.desc()).limit(1))
    return (await session.execute(stmt)).scalar_one_or_none()


async def fall_back(rt: Runtime, session: AsyncSession, row: ContactRequestRow, failed: DispatchRow,
                    now: datetime) -> None:
    """Move a failed contact to its next permitted channel: a new attempt of the same request.

    A call that ends ``no_answer`` (or ``busy``) is retried on voice until that has happened the
    configured number of times; the channel is then given up like a failed one.
    """
    if failed.status in UNANSWERED:
        plan = rt.strategy.plan(ContactRequested.model_validate(row.payload).account)
        unanswered = (await session.execute(
            select(DispatchRow.id).where(DispatchRow.request_id == row.id, DispatchRow.channel == "voice",
                                         DispatchRow.status.in_(UNANSWERED))
        )).all()
        if len(unanswered) < plan.no_answer_fallback_after:
            await decide(rt, session, row, now)
            return
    row.tried_channels = [*row.tried_channels, failed.channel]
    await decide(rt, session, row, now)


async def suppress(session: AsyncSession, debtor_id: str, channel: str, address: str | None, reason: str,
                   source: str, now: datetime) -> None:
    normalised = normalise_address(channel, address)
    existing = (await session.execute(select(SuppressionRow).where(
        SuppressionRow.debtor_id == debtor_id, SuppressionRow.channel == channel,
        SuppressionRow.address == normalised, SuppressionRow.reason == reason, SuppressionRow.lifted_at.is_(None),
    ))).scalar_one_or_none()
    if existing is None:
        session.add(SuppressionRow(debtor_id=debtor_id, channel=channel, address=normalised, reason=reason,
                                   source=source, at=now))
        await session.flush()


async def apply_response(rt: Runtime, session: AsyncSession, event_id: str, response: ResponseReceived,
                         now: datetime) -> None:
    if not await first_time(session, OUTCOMES, event_id):
        return
    debtor = await lock_debtor(rt, session, response.debtor_id)
    session.add(ResponseRow(
        event_id=event_id, debtor_id=response.debtor_id, dispatch_id=response.dispatch_id,
        channel=response.channel, kind=response.kind, text=response.text, digits=response.digits,
        address=response.address, occurred_at=validation.aware(response.occurred_at), at=now,
    ))
    dispatch_row = await session.get(DispatchRow, response.dispatch_id) if response.dispatch_id else None
    if dispatch_row is None:
        dispatch_row = (await session.execute(
            select(DispatchRow).where(DispatchRow.debtor_id == debtor.id, DispatchRow.channel == response.channel)
            .order_by(DispatchRow.at.desc()).limit(1)
        )).scalar_one_or_none()
    address = response.address or (dispatch_row.address if dispatch_row else address_of(debtor, response.channel))
    row = await session.get(ContactRequestRow, dispatch_row.request_id) if dispatch_row else None
    kind, reason = response.kind, response.kind
    if kind == "reply" and debtor_limits.record_reply(debtor, response.text, now):
        reason = "inconvenient times stated"
    if kind in ("opt_out", "unsubscribe"):
        await suppress(session, debtor.id, response.channel, address, "opt_out", "debtor", now)
    elif kind == "opt_in":
        # the number's owner opted back in: lift the opt-out whichever debtor it was recorded for
        await session.execute(update(SuppressionRow).where(
            SuppressionRow.channel == response.channel,
            SuppressionRow.address == normalise_address(response.channel, address),
            SuppressionRow.reason == "opt_out", SuppressionRow.lifted_at.is_(None),
        ).values(lifted_at=now))
    elif kind == "promise_to_pay" or (kind == "keypress" and (response.digits or "").strip() == "1"):
        reason = "promise_to_pay"
        accounts = [dispatch_row.account_id] if dispatch_row else [
            a.id for a in (await session.execute(
                select(AccountRow).where(AccountRow.debtor_id == debtor.id, AccountRow.status == "active")
            )).scalars()
        ]
        for account_id in accounts:
            account = await get_account(session, debtor.id, account_id)
            if account.status in ("active", "promised"):
                await promise(rt, session, account, now + rt.strategy.promise_horizon, now)
        from services.orchestrator.selfservice.replies import answer_with_link  # (it builds on this module)

        await answer_with_link(rt, session, event_id, row, debtor, response.channel, now)
    if row is not None:
        publish_status(rt, session, row, "responded", now, reason=reason, channel=response.channel,
                       dispatch_id=dispatch_row.id if dispatch_row else None, final=False)
    if kind in ("opt_out", "unsubscribe") and row is not None and address:
        await confirm_opt_out(rt, session, event_id, row, response.channel, now)


async def confirm_opt_out(rt: Runtime, session: AsyncSession, event_id: str, origin: ContactRequestRow,
                          channel: str, now: datetime) -> None:
    """The one confirmation the law allows after an opt-out, as an internal request (if templated)."""
    key = rt.strategy.config.opt_out_confirmation_template
    if not key or not await templates_port.key_exists(session, key):
        return
    original = ContactRequested.model_validate(origin.payload)
    debtor = await session.get(DebtorRow, origin.debtor_id)
    assert debtor is not None
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
    await intake(rt, session, internal, now)


__all__ = ["CHANNELS", "IntakeResult", "Runtime", "apply_account_event", "apply_delivery", "apply_response",
           "intake", "release"]
