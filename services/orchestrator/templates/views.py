"""``/v1/templates``: list, versions, drafts, preview, publish/rollback, approvals, diff.

Editors change, viewers read; every change records the name of the key that made it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from services.orchestrator.context import CtxDep
from services.orchestrator.templates import changes, template_store
from services.orchestrator.templates.cost import sms_cost
from services.orchestrator.templates.schemas import (
    ApprovalView,
    ChangeView,
    DiffResult,
    DraftIn,
    PreviewIn,
    PreviewResult,
    PublishIn,
    PublishResult,
    SavedVersion,
    TemplateDetail,
    TemplateList,
    TemplateSummary,
    VersionView,
)
from shared.http import INT32_MAX, PROBLEM_RESPONSES, EditorKeyDep, Problem, VersionNumber, require_role
from shared.templates import Finding, ValidationReport

router = APIRouter(prefix="/v1/templates", tags=["templates"], responses=PROBLEM_RESPONSES)
viewer = [Depends(require_role("viewer"))]


def draft_of(body: DraftIn) -> template_store.Draft:
    return template_store.Draft(body.channel, body.locale, body.variant, body.content, body.variables_schema)


def findings_json(findings: list[Finding]) -> list[dict[str, Any]]:
    return [f.model_dump() for f in findings]


def _result(key: str, draft: template_store.Draft, report: ValidationReport, sample: dict[str, Any] | None,
            prices: dict[str, str]) -> dict[str, Any]:
    sms = report.rendered.sms if report.rendered else None
    return {
        "findings": report.findings,
        "errors": len(report.errors),
        "publishable": report.publishable,
        "rendered": report.rendered,
        "sms": sms,
        "sms_cost": sms_cost(key, draft, sms, sample, prices),
    }


async def _validate(key: str, body: DraftIn, prices: dict[str, str],
                    sample: dict[str, Any] | None = None) -> tuple[ValidationReport, dict[str, Any]]:
    # In a worker thread: a hostile template can take up to the render time limit (twice with the rewrite).
    def run() -> tuple[ValidationReport, dict[str, Any]]:
        report = template_store.validate_draft(key, draft_of(body), sample)
        return report, _result(key, draft_of(body), report, sample, prices)

    return await run_in_threadpool(run)


def _version(row: Any, live: bool) -> VersionView:
    return VersionView.model_validate(row).model_copy(update={"live": live})


@router.get("", dependencies=viewer, response_model=TemplateList, operation_id="list_templates")
async def list_templates(ctx: CtxDep) -> TemplateList:
    async with ctx.db.transaction() as session:
        return TemplateList(items=[TemplateSummary(**i) for i in await template_store.list_templates(session)])


@router.get("/{key}", dependencies=viewer, response_model=TemplateDetail, operation_id="get_template")
async def get_template(key: str, ctx: CtxDep) -> TemplateDetail:
    """Every version (``live`` marks the published ones), who saved it, and the change history."""
    async with ctx.db.transaction() as session:
        rows = await template_store.list_versions(session, key)
        live = await template_store.live_versions(session, key)
        combos = [TemplateSummary(**i) for i in await template_store.list_templates(session) if i["key"] == key]
        history = await changes.history(session, key)
        approvals = await changes.approvals(session, key)
    if not rows:
        raise Problem(404, "Template not found", f"no template {key!r}", "/problems/not-found")
    return TemplateDetail(
        key=key, templates=combos, versions=[_version(r, r.version in live) for r in rows],
        history=[ChangeView.model_validate(c) for c in history],
        approvals=[ApprovalView.model_validate(a) for a in approvals],
    )


@router.get("/{key}/versions/{version}", dependencies=viewer, response_model=VersionView,
            operation_id="get_template_version")
async def get_version(key: str, version: VersionNumber, ctx: CtxDep) -> VersionView:
    async with ctx.db.transaction() as session:
        row = await template_store.get_version(session, key, version)
        live = await template_store.live_versions(session, key)
    if row is None:
        raise Problem(404, "Template version not found", f"no version {version} of {key!r}", "/problems/not-found")
    return _version(row, row.version in live)


@router.post("/{key}/versions", status_code=201, response_model=SavedVersion, operation_id="save_template_version")
async def create_version(key: str, body: DraftIn, ctx: CtxDep, who: EditorKeyDep) -> SavedVersion:
    report, result = await _validate(key, body, ctx.settings.sms_prices)
    if template_store.blocks_save(report):
        raise Problem(422, "Template has errors", "fix the syntax errors to save a draft",
                      "/problems/template-invalid", findings=findings_json(report.findings))
    for attempt in range(3):
        try:
            async with ctx.db.transaction() as session:
                row = await template_store.create_version(session, key, draft_of(body), ctx.clock())
                row.created_by = who.name
                changes.record(session, row, "save", who.name, ctx.clock())
            break
        except IntegrityError:  # another editor took the number; take the next one
            if attempt == 2:
                raise
    return SavedVersion(key=key, version=row.version, created_by=who.name, **result)


@router.post("/{key}/preview", dependencies=viewer, response_model=PreviewResult, operation_id="preview_template")
async def preview(key: str, body: PreviewIn, ctx: CtxDep) -> PreviewResult:
    """Render on sample data with every finding, the SMS segments, cost and a GSM-7 rewrite; nothing is saved."""
    sample = None
    if body.sample:
        from shared.templates import sample_context

        sample = {**sample_context(body.locale, body.variables_schema), **body.sample}
    _, result = await _validate(key, body, ctx.settings.sms_prices, sample)
    return PreviewResult(key=key, **result)


def _lint_refused(refused: template_store.PublishRefused) -> Problem:
    return Problem(422, "Template cannot be published", f"{len(refused.findings)} error(s) must be fixed",
                   "/problems/template-lint", findings=findings_json(refused.findings))


@router.post("/{key}/versions/{version}/publish", response_model=PublishResult, operation_id="publish_template")
async def publish(key: str, version: VersionNumber, ctx: CtxDep, who: EditorKeyDep,
                  body: PublishIn | None = None) -> PublishResult:
    """Publish (or roll back to) a version; a four-eyes key's publish waits for a second editor."""
    now: datetime = ctx.clock()
    weight = body.weight if body else None
    async with ctx.db.transaction() as session:
        row = await template_store.get_version(session, key, version)
        if row is None:
            raise Problem(404, "Template version not found", f"no version {version} of {key!r}",
                          "/problems/not-found")
        common = {"key": key, "version": version, "channel": row.channel, "locale": row.locale,
                  "variant": row.variant, "published_by": who.name}
        try:
            if who.four_eyes:
                approval = await changes.request_approval(session, row, weight, who.name, now)
                return PublishResult(status="pending_approval", weight=weight,
                                     approval=ApprovalView.model_validate(approval), **common)
            pointer = await changes.publish_as(session, ctx.topics.templates, row, now, weight, who.name)
        except template_store.PublishRefused as refused:
            raise _lint_refused(refused) from None
        return PublishResult(status="published", weight=pointer.weight, published_at=now, **common)


@router.post("/{key}/approvals/{approval_id}/approve", response_model=PublishResult,
             operation_id="approve_template_publish")
async def approve(key: str, approval_id: str, ctx: CtxDep, who: EditorKeyDep) -> PublishResult:
    """A second editor (any key but the requester's) approves a four-eyes publish, which publishes it."""
    now: datetime = ctx.clock()
    async with ctx.db.transaction() as session:
        approval = await changes.pending_approval(session, key, approval_id)
        changes.check_second_editor(approval, who.name)
        row = await template_store.get_version(session, key, approval.version)
        assert row is not None  # versions are never deleted
        try:
            pointer = await changes.publish_as(session, ctx.topics.templates, row, now, approval.weight,
                                               approval.requested_by, approved_by=who.name)
        except template_store.PublishRefused as refused:
            raise _lint_refused(refused) from None
        approval.state, approval.decided_by, approval.decided_at = "approved", who.name, now
        await session.flush()
        return PublishResult(status="published", key=key, version=row.version, channel=row.channel,
                             locale=row.locale, variant=row.variant, weight=pointer.weight, published_at=now,
                             published_by=approval.requested_by, approved_by=who.name,
                             approval=ApprovalView.model_validate(approval))


@router.post("/{key}/approvals/{approval_id}/reject", response_model=ApprovalView,
             operation_id="reject_template_publish")
async def reject(key: str, approval_id: str, ctx: CtxDep, who: EditorKeyDep) -> ApprovalView:
    now: datetime = ctx.clock()
    async with ctx.db.transaction() as session:
        approval = await changes.pending_approval(session, key, approval_id)
        changes.check_second_editor(approval, who.name)
        row = await template_store.get_version(session, key, approval.version)
        assert row is not None
        approval.state, approval.decided_by, approval.decided_at = "rejected", who.name, now
        changes.record(session, row, "rejected", who.name, now)
        await session.flush()
        return ApprovalView.model_validate(approval)


@router.get("/{key}/diff", dependencies=viewer, response_model=DiffResult, operation_id="diff_template_versions")
async def diff(
    key: str, ctx: CtxDep, from_: int = Query(alias="from", ge=1, le=INT32_MAX), to: int = Query(ge=1, le=INT32_MAX)
) -> DiffResult:
    async with ctx.db.transaction() as session:
        a = await template_store.get_version(session, key, from_)
        b = await template_store.get_version(session, key, to)
    if a is None or b is None:
        raise Problem(404, "Template version not found", f"{key!r} has no version {from_ if a is None else to}",
                      "/problems/not-found")
    fields = template_store.diff_versions(a, b)
    return DiffResult.model_validate({"key": key, "from": from_, "to": to, "fields": fields})


