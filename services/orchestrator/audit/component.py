"""The audit component: records what every dispatch said, and exports a debtor's audit record.

The content is rendered from the dispatch's pinned template version with the dispatch's own
variables by ``render_dispatch``, the function the channel services send with, so it is the
text the debtor received. It is recorded by a consumer of the dispatch topics (its own group),
so the decision path is not touched.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Literal

from fastapi import APIRouter, Depends, FastAPI, Query
from fastapi.responses import Response

from services.orchestrator.audit.models import DispatchContentRow
from services.orchestrator.audit.records import AuditRecord, as_csv, audit_record
from services.orchestrator.context import CtxDep, OrchestratorContext
from shared.bus import ConsumerRunner, RecordMeta
from shared.db import first_time
from shared.events import AnyEvent
from shared.events.contracts import ContactDispatchedEvent
from shared.http import PROBLEM_RESPONSES, Problem, require_role

router = APIRouter(tags=["audit"], responses=PROBLEM_RESPONSES)
CHANNELS = ("sms", "email", "voice", "whatsapp")


@router.get(
    "/v1/debtors/{debtor_id}/audit", response_model=AuditRecord, operation_id="export_debtor_audit",
    dependencies=[Depends(require_role("admin"))],
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
async def export_audit(
    debtor_id: str, ctx: CtxDep, format: Literal["json", "csv"] = Query("json")  # noqa: A002 - the API's word
) -> AuditRecord | Response:
    """Every request, rule decision, contact attempt (with its exact content), delivery, response and
    opt-out of a debtor, oldest first, as JSON or CSV (admin: it holds addresses and message text)."""
    async with ctx.db.sessions() as session:
        record = await audit_record(session, debtor_id, ctx.clock())
    if record is None:
        raise Problem(404, "Not found", f"no records for debtor {debtor_id!r}", "/problems/not-found")
    if format == "csv":
        return Response(as_csv(record), media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="audit-{debtor_id}.csv"'})
    return record


async def _content(
    ctx: OrchestratorContext, event: ContactDispatchedEvent
) -> tuple[dict[str, object] | None, str | None]:
    from services.orchestrator.templates import template_store
    from shared.templates import TemplateError, render_dispatch

    ref = event.data.template
    async with ctx.db.sessions() as session:
        version = await template_store.get_version(session, ref.key, ref.version)
    if version is None:
        return None, f"template {ref.key} v{ref.version} not found"
    try:
        rendered = render_dispatch(version.as_published(), event.data.variables)
    except TemplateError as exc:
        return None, exc.message
    fields = rendered.model_dump(mode="json", exclude_none=True,
                                 exclude={"key", "version", "channel", "locale", "variant", "sms"})
    return fields, None


class AuditComponent:
    def install(self, app: FastAPI) -> None:
        app.include_router(router)

    async def start(self, app: FastAPI, ctx: OrchestratorContext, stack: AsyncExitStack) -> None:
        consumer = f"{ctx.settings.consumer_group}-audit"

        async def handle(event: AnyEvent, meta: RecordMeta) -> None:
            assert isinstance(event, ContactDispatchedEvent)
            content, error = await _content(ctx, event)
            data = event.data
            async with ctx.db.transaction() as session:
                if not await first_time(session, consumer, event.id):
                    return
                if await session.get(DispatchContentRow, data.dispatch_id) is not None:
                    return
                session.add(DispatchContentRow(
                    dispatch_id=data.dispatch_id, request_id=data.request_id, debtor_id=data.debtor_id,
                    channel=data.channel, to=data.to, template_key=data.template.key,
                    template_version=data.template.version, locale=data.locale, variant=data.template.variant,
                    content=content, render_error=error, dispatched_at=event.time,
                ))

        runner = ConsumerRunner(
            name="audit", service="orchestrator", topics=[ctx.topics.dispatch(c) for c in CHANNELS],
            group_id=consumer, kafka=ctx.settings.kafka, handler=handle, producer=ctx.producer,
            accept_types={"cadencia.contact.dispatched.v1"},
        )
        await runner.start()
        stack.push_async_callback(runner.stop)
        app.state.ready_checks.append(runner.ping)


component = AuditComponent()
