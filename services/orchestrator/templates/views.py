"""``/v1/templates``: list, versions, drafts, preview, publish/rollback, diff. Editors change, viewers read."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from services.orchestrator.context import CtxDep
from services.orchestrator.templates import service
from services.orchestrator.templates.models import TemplateVersion
from shared.events.contracts import Channel, TemplateContent
from shared.http import INT32_MAX, Problem, VersionNumber, require_role
from shared.templates import Finding, ValidationReport

router = APIRouter(prefix="/v1/templates", tags=["templates"])
viewer = [Depends(require_role("viewer"))]
editor = [Depends(require_role("editor"))]


class DraftIn(BaseModel):
    channel: Channel
    locale: str = Field(max_length=20)
    variant: str = Field("A", max_length=40)
    content: TemplateContent
    variables_schema: dict[str, Any] = Field(default_factory=dict)

    def draft(self) -> service.Draft:
        return service.Draft(self.channel, self.locale, self.variant, self.content, self.variables_schema)


class PreviewIn(DraftIn):
    #: Overrides of the sample data (``debtor``, ``account``, ``creditor``, variables).
    sample: dict[str, Any] | None = None


class PublishIn(BaseModel):
    #: A/B weight of this variant (kept from the previous publish when omitted).
    weight: float | None = Field(None, ge=0)


def version_json(row: TemplateVersion, live: bool) -> dict[str, Any]:
    return {
        "key": row.key, "version": row.version, "channel": row.channel, "locale": row.locale,
        "variant": row.variant, "content": row.content, "variables_schema": row.variables_schema,
        "created_at": row.created_at, "published_at": row.published_at, "live": live,
    }


def findings_json(findings: list[Finding]) -> list[dict[str, Any]]:
    return [f.model_dump() for f in findings]


def _report_json(report: ValidationReport) -> dict[str, Any]:
    rendered = report.rendered.model_dump(mode="json", exclude_none=True) if report.rendered else None
    return {
        "findings": findings_json(report.findings),
        "errors": len(report.errors),
        "publishable": report.publishable,
        "rendered": rendered,
        "sms": rendered.get("sms") if rendered else None,
    }


async def _validate(key: str, body: DraftIn, sample: dict[str, Any] | None = None) -> ValidationReport:
    # In a worker thread: a hostile template can take up to the render time limit.
    return await run_in_threadpool(service.validate_draft, key, body.draft(), sample)


@router.get("", dependencies=viewer)
async def list_templates(ctx: CtxDep) -> dict[str, Any]:
    async with ctx.db.transaction() as session:
        return {"items": await service.list_templates(session)}


@router.get("/{key}", dependencies=viewer)
async def get_template(key: str, ctx: CtxDep) -> dict[str, Any]:
    async with ctx.db.transaction() as session:
        rows = await service.list_versions(session, key)
        live = await service.live_versions(session, key)
        combos = [i for i in await service.list_templates(session) if i["key"] == key]
    if not rows:
        raise Problem(404, "Template not found", f"no template {key!r}", "/problems/not-found")
    return {"key": key, "templates": combos, "versions": [version_json(r, r.version in live) for r in rows]}


@router.get("/{key}/versions/{version}", dependencies=viewer)
async def get_version(key: str, version: VersionNumber, ctx: CtxDep) -> dict[str, Any]:
    async with ctx.db.transaction() as session:
        row = await service.get_version(session, key, version)
        live = await service.live_versions(session, key)
    if row is None:
        raise Problem(404, "Template version not found", f"no version {version} of {key!r}", "/problems/not-found")
    return version_json(row, row.version in live)


@router.post("/{key}/versions", dependencies=editor, status_code=201)
async def create_version(key: str, body: DraftIn, ctx: CtxDep) -> dict[str, Any]:
    report = await _validate(key, body)
    if service.blocks_save(report):
        raise Problem(422, "Template has errors", "fix the syntax errors to save a draft",
                      "/problems/template-invalid", findings=findings_json(report.findings))
    for attempt in range(3):
        try:
            async with ctx.db.transaction() as session:
                row = await service.create_version(session, key, body.draft(), ctx.clock())
            break
        except IntegrityError:  # another editor took the number; take the next one
            if attempt == 2:
                raise
    return {"key": key, "version": row.version, **_report_json(report)}


@router.post("/{key}/preview", dependencies=viewer)
async def preview(key: str, body: PreviewIn, ctx: CtxDep) -> dict[str, Any]:
    sample = None
    if body.sample:
        from shared.templates import sample_context

        sample = {**sample_context(body.locale, body.variables_schema), **body.sample}
    return {"key": key, **_report_json(await _validate(key, body, sample))}


@router.post("/{key}/versions/{version}/publish", dependencies=editor)
async def publish(key: str, version: VersionNumber, ctx: CtxDep, body: PublishIn | None = None) -> dict[str, Any]:
    now: datetime = ctx.clock()
    async with ctx.db.transaction() as session:
        row = await service.get_version(session, key, version)
        if row is None:
            raise Problem(404, "Template version not found", f"no version {version} of {key!r}",
                          "/problems/not-found")
        try:
            pointer = await service.publish(session, ctx.topics.templates, row, now, body.weight if body else None)
        except service.PublishRefused as refused:
            raise Problem(422, "Template cannot be published", f"{len(refused.findings)} error(s) must be fixed",
                          "/problems/template-lint", findings=findings_json(refused.findings)) from None
        result = {"key": key, "version": version, "channel": row.channel, "locale": row.locale,
                  "variant": row.variant, "weight": pointer.weight, "published_at": now}
    return result


@router.get("/{key}/diff", dependencies=viewer)
async def diff(
    key: str, ctx: CtxDep, from_: int = Query(alias="from", ge=1, le=INT32_MAX), to: int = Query(ge=1, le=INT32_MAX)
) -> dict[str, Any]:
    async with ctx.db.transaction() as session:
        a = await service.get_version(session, key, from_)
        b = await service.get_version(session, key, to)
    if a is None or b is None:
        raise Problem(404, "Template version not found", f"{key!r} has no version {from_ if a is None else to}",
                      "/problems/not-found")
    return {"key": key, "from": from_, "to": to, "fields": service.diff_versions(a, b)}
