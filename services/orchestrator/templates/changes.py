"""Who changed a template: the change log, and four-eyes publishing (a second editor approves).

Every save, publish and rollback is recorded with the name of the API key that made it. A key
configured ``+four-eyes`` does not publish: it asks, and another editor's key approves (which
publishes) or rejects. The requester can never approve its own request.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.templates import template_store
from services.orchestrator.templates.models import (
    PublishedTemplate,
    TemplateApproval,
    TemplateChange,
    TemplateVersion,
)
from shared.http import Problem


def record(session: AsyncSession, row: TemplateVersion, action: str, actor: str, now: datetime, *,
           approved_by: str | None = None, weight: float | None = None) -> None:
    session.add(TemplateChange(key=row.key, version=row.version, channel=row.channel, locale=row.locale,
                               variant=row.variant, action=action, actor=actor, approved_by=approved_by,
                               weight=weight, at=now))


async def publish_as(session: AsyncSession, topic: str, row: TemplateVersion, now: datetime, weight: float | None,
                     actor: str, approved_by: str | None = None) -> PublishedTemplate:
    """Publish and record it: ``rollback`` when an older version replaces the live one."""
    current = await session.get(PublishedTemplate, (row.key, row.channel, row.locale, row.variant))
    action = "rollback" if current is not None and row.version < current.version else "publish"
    pointer = await template_store.publish(session, topic, row, now, weight)
    record(session, row, action, actor, now, approved_by=approved_by, weight=pointer.weight)
    return pointer


async def request_approval(session: AsyncSession, row: TemplateVersion, weight: float | None, actor: str,
                           now: datetime) -> TemplateApproval:
    """A four-eyes key asks to publish; the lint must already pass, so the approver sees a publishable version."""
    report = template_store.validate_draft(row.key, template_store.draft_of(row))
    if report.errors:
        raise template_store.PublishRefused(report.errors)
    approval = TemplateApproval(id=uuid.uuid4().hex, key=row.key, version=row.version, weight=weight,
                                state="pending", requested_by=actor, requested_at=now)
    session.add(approval)
    record(session, row, "publish_requested", actor, now, weight=weight)
    await session.flush()
    return approval


async def pending_approval(session: AsyncSession, key: str, approval_id: str) -> TemplateApproval:
    approval = await session.get(TemplateApproval, approval_id, with_for_update=True)
    if approval is None or approval.key != key:
        raise Problem(404, "Approval not found", f"no approval {approval_id!r} for {key!r}", "/problems/not-found")
    if approval.state != "pending":
        raise Problem(409, "Approval already decided", f"it was {approval.state} by {approval.decided_by}",
                      "/problems/approval-decided")
    return approval


def check_second_editor(approval: TemplateApproval, approver: str) -> None:
    if approver == approval.requested_by:
        raise Problem(403, "A second editor must approve", f"{approver} requested this publish",
                      "/problems/four-eyes")


async def history(session: AsyncSession, key: str) -> list[TemplateChange]:
    return list((await session.execute(
        select(TemplateChange).where(TemplateChange.key == key).order_by(TemplateChange.id)
    )).scalars())


async def approvals(session: AsyncSession, key: str) -> list[TemplateApproval]:
    return list((await session.execute(
        select(TemplateApproval).where(TemplateApproval.key == key).order_by(TemplateApproval.requested_at)
    )).scalars())
