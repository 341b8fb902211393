"""A debtor's audit record: every request, rule decision, contact attempt with its exact content,
delivery, response and opt-out, in time order — what a regulator's record request asks for.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.audit.models import DispatchContentRow
from services.orchestrator.runtime.models import (
    ContactRequestRow,
    DispatchRow,
    OutcomeRow,
    ResponseRow,
    StatusHistoryRow,
    SuppressionRow,
)

EntryKind = Literal["request", "decision", "contact_attempt", "delivery", "response", "opt_out", "opt_out_lifted"]


class AuditEntry(BaseModel):
    at: datetime
    entry: EntryKind
    request_id: str | None = None
    dispatch_id: str | None = None
    channel: str | None = None
    #: The address contacted (attempts), replied from (responses) or suppressed (opt-outs).
    address: str | None = None
    status: str | None = None
    reason: str | None = None
    #: The policy rules behind a decision (``quiet_hours``, ``cap.weekly``...).
    rules: list[str] = Field(default_factory=list)
    not_before: datetime | None = None
    template: str | None = None
    #: What the contact said, rendered from the pinned version with the dispatch's data.
    content: dict[str, Any] | None = None
    #: A response's text or keypresses.
    response: str | None = None


class AuditRecord(BaseModel):
    debtor_id: str
    generated_at: datetime
    entries: list[AuditEntry]


async def audit_record(session: AsyncSession, debtor_id: str, now: datetime) -> AuditRecord | None:
    async def rows(model: Any) -> list[Any]:
        return list((await session.execute(select(model).where(model.debtor_id == debtor_id))).scalars())

    requests = await rows(ContactRequestRow)
    # Through the requests' index, not a scan: a history row's debtor is its request's debtor.
    history = list((await session.execute(select(StatusHistoryRow).where(
        StatusHistoryRow.request_id.in_(select(ContactRequestRow.id).where(ContactRequestRow.debtor_id == debtor_id)),
        StatusHistoryRow.debtor_id == debtor_id).order_by(StatusHistoryRow.id))).scalars())
    dispatches = await rows(DispatchRow)
    contents = {c.dispatch_id: c for c in await rows(DispatchContentRow)}
    outcomes = await rows(OutcomeRow)
    responses = await rows(ResponseRow)
    suppressions = await rows(SuppressionRow)
    if not (requests or history or dispatches or responses or suppressions):
        return None
    entries: list[AuditEntry] = []
    for r in requests:
        entries.append(AuditEntry(at=r.created_at, entry="request", request_id=r.id, status=r.intake_status,
                                  reason=r.intake_reason, template=r.template))
    for h in history:
        entries.append(AuditEntry(at=h.at, entry="decision", request_id=h.request_id, dispatch_id=h.dispatch_id,
                                  channel=h.channel, status=h.status, reason=h.reason, rules=list(h.rules or []),
                                  not_before=h.not_before))
    for d in dispatches:
        content = contents.get(d.id)
        entries.append(AuditEntry(
            at=d.at, entry="contact_attempt", request_id=d.request_id, dispatch_id=d.id, channel=d.channel,
            address=d.address, status=d.status, template=f"{d.template_key}@{d.template_version}",
            content=content.content if content else None,
            reason=content.render_error if content else "content not recorded yet",
        ))
    for o in outcomes:
        entries.append(AuditEntry(at=o.occurred_at, entry="delivery", request_id=o.request_id,
                                  dispatch_id=o.dispatch_id, channel=o.channel, status=o.status,
                                  reason=o.error_code))
    for rr in responses:
        entries.append(AuditEntry(at=rr.occurred_at, entry="response", dispatch_id=rr.dispatch_id, channel=rr.channel,
                                  address=rr.address, status=rr.kind, response=rr.text or rr.digits))
    for s in suppressions:
        entries.append(AuditEntry(at=s.at, entry="opt_out", channel=s.channel, address=s.address, status=s.reason,
                                  reason=s.source))
        if s.lifted_at is not None:
            entries.append(AuditEntry(at=s.lifted_at, entry="opt_out_lifted", channel=s.channel, address=s.address,
                                      status=s.reason))
    order = {kind: i for i, kind in enumerate(EntryKind.__args__)}  # type: ignore[attr-defined]
    entries.sort(key=lambda e: (e.at, order[e.entry]))
    return AuditRecord(debtor_id=debtor_id, generated_at=now, entries=entries)


CSV_COLUMNS = ("at", "entry", "request_id", "dispatch_id", "channel", "address", "status", "reason", "rules",
               "not_before", "template", "content", "response")


def as_csv(record: AuditRecord) -> str:
    """One row per entry; rules joined with ``;``, content as its JSON (the exact rendered fields)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for e in record.entries:
        writer.writerow([
            e.at.isoformat(), e.entry, e.request_id or "", e.dispatch_id or "", e.channel or "", e.address or "",
            e.status or "", e.reason or "", ";".join(e.rules), e.not_before.isoformat() if e.not_before else "",
            e.template or "", json.dumps(e.content, ensure_ascii=False, sort_keys=True) if e.content else "",
            e.response or "",
        ])
    return out.getvalue()
