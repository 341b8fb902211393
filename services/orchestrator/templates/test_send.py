"""Test send: a version, rendered on sample data, sent to an editor's own address through the real
channel path (dispatch topic, channel service, provider) — never to a debtor's address.

The dispatch is marked as a test: its ids start ``test-send-``, its debtor is the pseudo-debtor
``test-send`` and its CloudEvent source is ``cadencia/orchestrator/test-send``. It is not in any
debtor's ledger, so no cap counts it (a message to an editor is not a communication with a
debtor). Each send is logged and recorded; a key may send ``test_sends_per_hour`` of them.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import func, or_, select
from starlette.concurrency import run_in_threadpool

from services.orchestrator.context import CtxDep
from services.orchestrator.runtime.models import DebtorRow, DispatchRow
from services.orchestrator.runtime.validation import is_e164, is_email
from services.orchestrator.templates import template_store
from services.orchestrator.templates.models import TemplateTestSend
from shared.db import add_to_outbox
from shared.events.contracts import ContactDispatched, ContactDispatchedEvent
from shared.http import PROBLEM_RESPONSES, EditorKeyDep, Problem, UtcDateTime, VersionNumber
from shared.logging import get_logger
from shared.templates import TemplateError, render_dispatch, sample_context

log = get_logger(__name__)
router = APIRouter(prefix="/v1/templates", tags=["templates"], responses=PROBLEM_RESPONSES)
PSEUDO_DEBTOR = "test-send"
SOURCE = "cadencia/orchestrator/test-send"


class TestSendIn(BaseModel):
    #: E.164 number (SMS, WhatsApp, voice) or e-mail address: the editor's own, never a debtor's.
    to: str = Field(min_length=3, max_length=320)
    #: Overrides of the sample data the version is rendered with.
    sample: dict[str, Any] | None = None


class TestSendResult(BaseModel):
    id: str
    dispatch_id: str
    key: str
    version: int
    channel: str
    to: str
    requested_by: str
    at: UtcDateTime
    #: What the channel will send (rendered here the same way).
    rendered: dict[str, Any]
    remaining_this_hour: int


def _address_ok(channel: str, to: str) -> bool:
    return is_email(to) if channel == "email" else is_e164(to)


@router.post("/{key}/versions/{version}/test-send", status_code=202, response_model=TestSendResult,
             operation_id="test_send_template_version")
async def test_send(
    key: str, version: VersionNumber, body: TestSendIn, ctx: CtxDep, who: EditorKeyDep
) -> TestSendResult:
    """Send this version, rendered on sample data, to your own address through the channel service."""
    now: datetime = ctx.clock()
    limit = ctx.settings.test_sends_per_hour
    async with ctx.db.transaction() as session:
        row = await template_store.get_version(session, key, version)
        if row is None:
            raise Problem(404, "Template version not found", f"no version {version} of {key!r}",
                          "/problems/not-found")
        to = body.to.strip().lower() if row.channel == "email" else body.to.strip()
        if not _address_ok(row.channel, to):
            raise Problem(422, "Invalid address", f"a {row.channel} test send needs "
                          f"{'an e-mail address' if row.channel == 'email' else 'an E.164 number'}",
                          "/problems/validation")
        debtor = await session.scalar(select(DebtorRow.id).where(or_(
            DebtorRow.phone == to, DebtorRow.whatsapp == to, func.lower(DebtorRow.email) == to)).limit(1))
        contacted = await session.scalar(select(DispatchRow.id).where(DispatchRow.address == to).limit(1))
        if debtor is not None or contacted is not None:
            raise Problem(403, "A debtor's address", "test sends go to your own address, never a debtor's",
                          "/problems/test-send-debtor-address")
        sent = int(await session.scalar(select(func.count()).select_from(TemplateTestSend).where(
            TemplateTestSend.requested_by == who.name, TemplateTestSend.at >= now - timedelta(hours=1))) or 0)
        if sent >= limit:
            raise Problem(429, "Too many test sends", f"{limit} per hour per key", "/problems/rate-limited")

        sample = {**sample_context(row.locale, row.variables_schema), **(body.sample or {})}
        variables = json.loads(json.dumps(sample, default=str))  # the dispatch carries JSON, as a real one
        published = row.as_published()
        try:
            rendered = await run_in_threadpool(render_dispatch, published, variables)
        except TemplateError as exc:
            raise Problem(422, "Template cannot render", exc.message, "/problems/template-invalid") from None
        send_id = uuid.uuid4().hex
        dispatch = ContactDispatched(
            dispatch_id=f"test-send-{send_id}", request_id=f"test-send-{send_id}", debtor_id=PSEUDO_DEBTOR,
            account_id=PSEUDO_DEBTOR, channel=row.channel, to=to,
            locale=row.locale, template=row.ref(), variables=variables, deadline=now + timedelta(minutes=10),
        )
        add_to_outbox(session, ctx.topics.dispatch(row.channel),
                      ContactDispatchedEvent(source=SOURCE, subject=PSEUDO_DEBTOR, data=dispatch))
        session.add(TemplateTestSend(id=send_id, key=key, version=version, channel=row.channel, to=to,
                                     requested_by=who.name, at=now))
    log.info("template test send", key=key, version=version, channel=row.channel, to=to, requested_by=who.name,
             dispatch_id=dispatch.dispatch_id)
    return TestSendResult(
        id=send_id, dispatch_id=dispatch.dispatch_id, key=key, version=version, channel=row.channel, to=to,
        requested_by=who.name, at=now, remaining_this_hour=limit - sent - 1,
        rendered=rendered.model_dump(mode="json", exclude_none=True,
                                     exclude={"key", "version", "channel", "locale", "variant"}),
    )
