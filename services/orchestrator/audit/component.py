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
from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from services.orchestrator.audit.models import DispatchContentRow
from services.orchestrator.audit.records import AuditRecord, as_csv, audit_record
from services.orchestrator.context import CtxDep, OrchestratorContext
from services.orchestrator.runtime import templates_port
from shared.bus import ConsumerRunner, RecordMeta
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
    from shared.templates import TemplateError, render_dispatch

    ref = event.data.template
    version = templates_port.cached(ctx.db, ref.key, ref.version)
    if version is None:  # read once per version, on a reader: SQLite's one write connection stays free
        async with ctx.db.read_sessions() as session:
            version = await templates_port.pinned(session, ref.key, ref.version)
    if version is None:
        return None, f"template {ref.key} v{ref.version} not found"
    try:
        rendered = render_dispatch(version, event.data.variables)
    except TemplateError as exc:
        return None, exc.message
    fields = rendered.model_dump(mode="json", exclude_none=True,
                                 exclude={"key", "version", "channel", "locale", "variant", "sms"})
    return fields, None


class AuditIntake:
    """The consumer's handler: a fetch's dispatches rendered, then recorded in one statement.

    A dispatch's content is recorded once, keyed by the dispatch (``ON CONFLICT DO NOTHING``): a
    redelivered event, or another naming the same dispatch, changes nothing, with no inbox mark to
    write. Rendering happens before the transaction, so the write (SQLite's one writer) is held only
    for the insert.
    """

    def __init__(self, ctx: OrchestratorContext, consumer: str) -> None:
        self.ctx, self.consumer = ctx, consumer

    async def __call__(self, items: Sequence[tuple[AnyEvent, RecordMeta]]) -> None:
        rows: dict[str, dict[str, object]] = {}
        for event, _ in items:
            assert isinstance(event, ContactDispatchedEvent)
            data = event.data
            if data.dispatch_id in rows:
                continue
            content, error = await _content(self.ctx, event)
            rows[data.dispatch_id] = {
                "dispatch_id": data.dispatch_id, "request_id": data.request_id, "debtor_id": data.debtor_id,
                "channel": data.channel, "to": data.to, "template_key": data.template.key,
                "template_version": data.template.version, "locale": data.locale, "variant": data.template.variant,
                "content": content, "render_error": error, "dispatched_at": event.time,
            }
        table = DispatchContentRow.__table__
        assert isinstance(table, Table)
        insert = pg_insert if self.ctx.db.is_postgres else sqlite_insert
        async with self.ctx.db.transaction() as session:
            await session.execute(insert(table).on_conflict_do_nothing(index_elements=["dispatch_id"]),
                                  list(rows.values()))

    async def one(self, event: AnyEvent, meta: RecordMeta) -> None:
        await self([(event, meta)])


class AuditComponent:
    def install(self, app: FastAPI) -> None:
        app.include_router(router)

    async def start(self, app: FastAPI, ctx: OrchestratorContext, stack: AsyncExitStack) -> None:
        intake = AuditIntake(ctx, f"{ctx.settings.consumer_group}-audit")
        runner = ConsumerRunner(
            name="audit", service="orchestrator", topics=[ctx.topics.dispatch(c) for c in CHANNELS],
            group_id=intake.consumer, kafka=ctx.settings.kafka, handler=intake.one, batch_handler=intake,
            producer=ctx.producer, accept_types={"cadencia.contact.dispatched.v1"},
            # what it records is read on request, never on the decision path: a fetch may wait half a second
            idle=True,
        )
        await runner.start()
        stack.push_async_callback(runner.stop)
        app.state.audit_consumer = runner
        app.state.ready_checks.append(runner.ping)


component = AuditComponent()
