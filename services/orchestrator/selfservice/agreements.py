"""Signing an agreement: one transaction stores it with its PDF, publishes ``promise_made`` (one per
instalment), pauses collection until the last due date and asks for one confirmation message.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.runtime import operations as runtime
from services.orchestrator.runtime import templates_port
from services.orchestrator.runtime.models import AccountRow, ContactRequestRow, DebtorRow, DispatchRow
from services.orchestrator.selfservice import linking, links, pdf
from services.orchestrator.selfservice.models import AgreementRow, SelfServiceLinkRow
from services.orchestrator.selfservice.pages import Words, language
from services.orchestrator.selfservice.terms import Instalment, Terms
from shared.db import add_to_outbox
from shared.events.contracts import (
    ContactRequested,
    ContactRequestedEvent,
    Debtor,
    PromiseMade,
    PromiseMadeEvent,
)
from shared.logging import get_logger
from shared.templates import format_day, format_money

log = get_logger(__name__)

SOURCE = "cadencia/orchestrator/self-service"
#: Accounts in these states take no new arrangement on the page.
CLOSED = frozenset({"paid", "disputed", "ceased"})


class AgreementRefused(Exception):
    """The account cannot take an agreement now (paid, disputed, ceased); ``reason`` is the word key."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Holder:
    """Who the link belongs to, as the page shows it."""

    debtor: DebtorRow
    account: AccountRow
    creditor: str
    request: ContactRequested | None

    @property
    def locale(self) -> str:
        return self.debtor.locale or "es-MX"

    def today(self, now: datetime) -> date:
        try:
            zone = ZoneInfo(self.debtor.time_zone or "UTC")
        except (ZoneInfoNotFoundError, ValueError):
            zone = ZoneInfo("UTC")
        return now.astimezone(zone).date()


async def resolve(rt: runtime.Runtime, session: AsyncSession, token: str, now: datetime) -> Holder:
    """The holder of a valid token; ``links.LinkError`` for a tampered, unknown or expired one."""
    claims = links.decode(token)
    row = await session.get(SelfServiceLinkRow, claims.ref)
    if row is None:
        raise links.LinkError("invalid", "no account has this link")
    links.verify(linking.secret_of(rt.ctx.settings), token, row.debtor_id, row.account_id, now)
    debtor = await session.get(DebtorRow, row.debtor_id)
    account = await session.get(AccountRow, row.account_id)
    if debtor is None or account is None:
        raise links.LinkError("invalid", "the account is unknown")
    request = await latest_request(session, account.id)
    creditor = dict(rt.strategy.config.creditor)
    if request is not None and isinstance(request.variables.get("creditor"), dict):
        creditor.update(request.variables["creditor"])
    return Holder(debtor, account, str(creditor.get("name") or ""), request)


async def latest_request(session: AsyncSession, account_id: str) -> ContactRequested | None:
    stmt = (select(ContactRequestRow).where(ContactRequestRow.account_id == account_id,
                                            ContactRequestRow.kind == "collection")
            .order_by(ContactRequestRow.created_at.desc()).limit(1))
    row = (await session.execute(stmt)).scalar_one_or_none()
    return ContactRequested.model_validate(row.payload) if row is not None else None


def fold_name(name: str) -> str:
    bare = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))
    return " ".join(bare.casefold().split())


def name_matches(typed: str, on_file: str) -> bool:
    """The typed signature is the name on file, ignoring case, accents and spacing."""
    typed_folded = fold_name(typed)
    return bool(typed_folded) and (not on_file.strip() or typed_folded == fold_name(on_file))


def seal(secret: bytes, agreement_id: str, digest: str, signed_at: datetime, ip: str, name: str) -> str:
    message = "\x00".join([agreement_id, digest, signed_at.isoformat(), ip, name]).encode()
    return hmac.new(secret, b"agreement\x00" + message, hashlib.sha256).hexdigest()


def document(terms: Terms, agreement_id: str, signed_name: str, signed_at: datetime, ip: str, seal_hex: str,
             time_zone: str | None) -> bytes:
    """The signed agreement as a PDF, in the debtor's language."""
    w = Words(language(terms.locale))

    def money(amount: Decimal) -> str:
        return format_money(amount, terms.currency, terms.locale)

    heading = w("pdf_promise") if terms.choice == "promise" else w("pdf_plan", count=len(terms.instalments))
    try:
        local = signed_at.astimezone(ZoneInfo(time_zone)) if time_zone else signed_at
    except (ZoneInfoNotFoundError, ValueError):
        local = signed_at
    lines = [
        f"{w('pdf_agreement')}: {agreement_id}",
        f"{w('pdf_creditor')}: {terms.creditor}",
        f"{w('pdf_debtor')}: {terms.debtor_name} ({terms.debtor_id})",
        f"{w('account')}: {terms.account_id}",
        f"{w('balance')}: {money(terms.balance)}",
        "",
        f"{w('pdf_terms')}: {heading}",
    ]
    lines += [f"  {index}. {format_day(i.due_date, 'long', terms.locale)}: {money(i.amount)}"
              for index, i in enumerate(terms.instalments, start=1)]
    lines += [
        f"  {w('total')}: {money(terms.total)}",
        "",
        w("agree"),
        "",
        f"{w('pdf_signed_by')}: {signed_name}",
        f"{w('pdf_signed_at')}: {local.isoformat(timespec='seconds')} ({signed_at.isoformat(timespec='seconds')})",
        f"{w('pdf_ip')}: {ip}",
        f"{w('pdf_hash')}: {terms.digest()}",
        f"{w('pdf_seal')}: {seal_hex}",
    ]
    return pdf.render(f"{w('pdf_title')} - {terms.creditor}", lines)


async def sign(
    rt: runtime.Runtime, session: AsyncSession, holder: Holder, terms: Terms, *, signed_name: str, ip: str,
    user_agent: str, submission_id: str, now: datetime,
) -> AgreementRow:
    """Store the agreement and apply it, in the caller's transaction; a repeated submission returns the first."""
    existing = (await session.execute(
        select(AgreementRow).where(AgreementRow.submission_id == submission_id)
    )).scalar_one_or_none()
    if existing is not None:
        return existing
    debtor = await runtime.lock_debtor(rt, session, holder.debtor.id)
    account = await runtime.get_account(session, debtor.id, holder.account.id)
    if account.status in CLOSED:
        raise AgreementRefused("paid" if account.status == "paid" else "unavailable")
    agreement_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"cadencia-agreement:{submission_id}"))
    digest = terms.digest()
    seal_hex = seal(linking.secret_of(rt.ctx.settings), agreement_id, digest, now, ip, signed_name)
    row = AgreementRow(
        id=agreement_id, submission_id=submission_id, debtor_id=debtor.id, account_id=account.id,
        choice=terms.choice, terms=_terms_json(terms), terms_sha256=digest, signed_name=signed_name[:300],
        ip=ip[:64], user_agent=user_agent[:500], seal=seal_hex, signed_at=now,
        pdf=document(terms, agreement_id, signed_name, now, ip, seal_hex, debtor.time_zone),
    )
    session.add(row)
    count = len(terms.instalments)
    for index, instalment in enumerate(terms.instalments, start=1):
        add_to_outbox(session, rt.ctx.topics.account_events, PromiseMadeEvent(
            id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"cadencia-agreement:{agreement_id}:{index}")),
            source=SOURCE, subject=debtor.id, correlationid=agreement_id, time=now,
            data=PromiseMade(debtor_id=debtor.id, account_id=account.id, amount=instalment.amount,
                             due_date=instalment.due_date, agreement_id=agreement_id, instalment=index,
                             instalments=count),
        ))
    # Paused here, in the same transaction, until the last instalment's date; the published events
    # tell the backends (and come back to this consumer, which applies them in order to the same end).
    await runtime.promise(rt, session, account, terms.final_date, now)
    await request_confirmation(rt, session, debtor, account, holder.request, agreement_id, terms.instalments[0], now)
    log.info("self-service agreement signed", agreement_id=agreement_id, debtor_id=debtor.id, choice=terms.choice,
             instalments=count)
    return row


def _terms_json(terms: Terms) -> dict[str, Any]:
    import json

    parsed: dict[str, Any] = json.loads(terms.canonical())
    return parsed


async def last_channel(session: AsyncSession, debtor_id: str, account_id: str) -> str | None:
    """The channel the debtor last heard from about the account: where the link most likely came from."""
    stmt = (select(DispatchRow.channel).where(DispatchRow.debtor_id == debtor_id, DispatchRow.account_id == account_id,
                                              DispatchRow.kind == "collection")
            .order_by(DispatchRow.at.desc()).limit(1))
    return (await session.execute(stmt)).scalar_one_or_none()


def current_debtor(debtor: DebtorRow) -> Debtor:
    return Debtor(
        id=debtor.id, name=debtor.name, locale=debtor.locale, jurisdiction=debtor.jurisdiction or "default",
        time_zone=debtor.time_zone, phone=debtor.phone, email=debtor.email, whatsapp=debtor.whatsapp,
        authorized_channels=debtor.authorized_channels, preferred_channel=debtor.preferred_channel,
    )


async def internal_request(
    rt: runtime.Runtime, session: AsyncSession, *, event_id: str, origin: ContactRequested, debtor: DebtorRow,
    channel: str, template: str, kind: str, variables: dict[str, Any], now: datetime,
) -> None:
    """A contact Cadencia owes the debtor (a confirmation, the link), decided by the policy like any other."""
    request = origin.model_copy(update={
        "debtor": current_debtor(debtor), "channel": channel, "template": template, "variables": variables,
        "kind": kind, "not_before": None, "expires_at": now + timedelta(days=2), "campaign_id": None,
    })
    event = ContactRequestedEvent(id=event_id, source=SOURCE, subject=debtor.id, time=now, data=request)
    await runtime.intake(rt, session, event, now)


async def request_confirmation(
    rt: runtime.Runtime, session: AsyncSession, debtor: DebtorRow, account: AccountRow,
    origin: ContactRequested | None, agreement_id: str, first: Instalment, now: datetime,
) -> None:
    key = rt.strategy.config.self_service.confirmation_template
    if not key or origin is None or not await templates_port.key_exists(session, key):
        log.info("no confirmation sent for the agreement", agreement_id=agreement_id, template=key)
        return
    channel = await last_channel(session, debtor.id, account.id) or "auto"
    variables = {"promise_amount": str(first.amount), "promise_date": first.due_date.isoformat(),
                 "agreement_id": agreement_id}
    await internal_request(
        rt, session, event_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"cadencia-agreement-confirmation:{agreement_id}")),
        origin=origin, debtor=debtor, channel=channel, template=key, kind="promise_confirmation",
        variables=variables, now=now,
    )


def amounts_of(terms: dict[str, Any]) -> list[tuple[date, Decimal]]:
    return [(date.fromisoformat(i["due_date"]), Decimal(i["amount"])) for i in terms["instalments"]]
