"""A "1" / PAGAR / "quiero pagar" reply is answered with the self-service link.

The answer is a contact like any other: the policy decides it, so at night it waits for the first
lawful minute of the morning. A keypress on a call is answered by SMS (a link cannot be spoken).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.runtime import operations as runtime
from services.orchestrator.runtime import templates_port
from services.orchestrator.runtime.models import ContactRequestRow, DebtorRow
from services.orchestrator.selfservice.agreements import internal_request
from shared.events.contracts import ContactRequested


async def answer_with_link(rt: runtime.Runtime, session: AsyncSession, event_id: str, origin: ContactRequestRow | None,
                           debtor: DebtorRow, channel: str, now: datetime) -> None:
    config = rt.strategy.config.self_service
    key = config.reply_template
    if not config.enabled or not key or origin is None or origin.kind != "collection":
        return
    if not await templates_port.key_exists(session, key):
        return
    reply_channel = "sms" if channel == "voice" else channel
    await internal_request(
        rt, session, event_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"cadencia-self-service-reply:{event_id}")),
        origin=ContactRequested.model_validate(origin.payload), debtor=debtor, channel=reply_channel, template=key,
        kind="self_service_link", variables={}, now=now,
    )
