"""The audit component: records what every dispatch said, and exports a debtor's audit record.

The content is rendered from the dispatch's pinned template version with the dispatch's own
variables by ``render_dispatch``, the function the channel services send with, so it is the
text the debtor received. It is recorded by a consumer of the dispatch topics (its own group),
so the decision path is not touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import Literal

from fastapi import APIRouter, Depends, FastAPI, Query
from fastapi.responses import Response
from sqlalchemy import select

from services.orchestrator.audit.models import DispatchContentRow
from services.orchestrator.audit.records import AuditRecord, as_csv, audit_record
from services.orchestrator.context import CtxDep, OrchestratorContext
from shared.bus import ConsumerRunner, PermanentError, RecordMeta
from shared.db import first_times
from shared.events import AnyEvent
from shared.events.contracts import ContactDispatchedEvent, TemplatePublished
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


#: Template versions by ``(key, version)``: immutable once written, so read once per process, not once per
#: dispatch (a miss is not kept: the version may be written later). Bounded: cleared when full.
_VERSIONS: dict[tuple[str, int], TemplatePublished] = {}
_VERSIONS_MAX = 1024


async def _version(ctx: OrchestratorContext, key: str, number: int) -> TemplatePublished | None:
    from services.orchestrator.templates import template_store

    found = _VERSIONS.get((key, number))
    if found is None:
        async with ctx.db.sessions() as session:
            version = await template_store.get_version(session, key, number)
        if version is None:
            return None
        if len(_VERSIONS) >= _VERSIONS_MAX:
            _VERSIONS.clear()
        found = _VERSIONS[(key, number)] = version.as_published()
    return found


async def _content(
    ctx: OrchestratorContext, event: ContactDispatchedEvent
) -> tuple[dict[str, object] | None, str | None]:
    from shared.templates import TemplateError, render_dispatch

    ref = event.data.template
    version = await _version(ctx, ref.key, ref.version)
    if version is None:
        return None, f"template {ref.key} v{ref.version} not found"
    try:
        rendered = render_dispatch(version, event.data.variables)
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
            await handle_batch([(event, meta)])

        async def handle_batch(items: Sequence[tuple[AnyEvent, RecordMeta]]) -> None:
            """A consumer batch in one transaction (DESIGN §12): one inbox statement, one read of the
            rows already recorded, one flush; each record handled alone is a batch of one."""
            events = [event for event, _ in items]
            if not all(isinstance(e, ContactDispatchedEvent) for e in events):
                raise PermanentError("not a contact dispatch")
            contents = [await _content(ctx, e) for e in events]  # type: ignore[arg-type]
            async with ctx.db.transaction() as session:
                fresh = await first_times(session, [(consumer, e.id) for e in events])
                ids = [e.data.dispatch_id for e in events]  # type: ignore[union-attr]
                known = set((await session.execute(
                    select(DispatchContentRow.dispatch_id).where(DispatchContentRow.dispatch_id.in_(ids)))).scalars())
                for event, (content, error) in zip(events, contents, strict=True):
                    assert isinstance(event, ContactDispatchedEvent)
                    data = event.data
                    if (consumer, event.id) not in fresh or data.dispatch_id in known:
                        continue
                    fresh.discard((consumer, event.id))
                    known.add(data.dispatch_id)
                    session.add(DispatchContentRow(
                        dispatch_id=data.dispatch_id, request_id=data.request_id, debtor_id=data.debtor_id,
                        channel=data.channel, to=data.to, template_key=data.template.key,
                        template_version=data.template.version, locale=data.locale, variant=data.template.variant,
                        content=content, render_error=error, dispatched_at=event.time,
                    ))

        runner = ConsumerRunner(
            name="audit", service="orchestrator", topics=[ctx.topics.dispatch(c) for c in CHANNELS],
            group_id=consumer, kafka=ctx.settings.kafka, handler=handle, producer=ctx.producer,
            accept_types={"cadencia.contact.dispatched.v1"}, batch_handler=handle_batch,
        )
        await runner.start()
        stack.push_async_callback(runner.stop)
        app.state.ready_checks.append(runner.ping)


component = AuditComponent()
