"""Outcome events of a channel service, with ids derived from what they report.

An outcome's id is a UUIDv5 of ``(dispatch, status)`` (or of the inbound message), so re-emitting
it — a redelivered dispatch, a repeated callback — is deduplicated by every consumer's inbox.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from shared.channels.models import SendLogView, advances
from shared.db import Outbox, add_to_outbox
from shared.events.contracts import (
    Channel,
    DeliveryStatus,
    DeliveryUpdated,
    DeliveryUpdatedEvent,
    ResponseKind,
    ResponseReceived,
    ResponseReceivedEvent,
)
from shared.providers.reasons import delivery_reason

_NAMESPACE = uuid.UUID("6f1c3c52-8d0e-4b0a-9a55-c0d1e2a3b4c5")


def outcome_id(*parts: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, "/".join(parts)))


def delivery_event(
    row: SendLogView,
    status: str,
    *,
    source: str,
    provider: str,
    occurred_at: datetime,
    error_code: str | None = None,
    error_message: str | None = None,
) -> DeliveryUpdatedEvent:
    channel: Channel = row.channel  # type: ignore[assignment]
    delivery_status: DeliveryStatus = status  # type: ignore[assignment]
    return DeliveryUpdatedEvent(
        id=outcome_id("delivery", row.dispatch_id, status),
        source=source,
        subject=row.debtor_id,
        correlationid=row.request_id,
        data=DeliveryUpdated(
            dispatch_id=row.dispatch_id,
            request_id=row.request_id,
            debtor_id=row.debtor_id,
            channel=channel,
            status=delivery_status,
            provider=provider,
            provider_id=row.provider_id,
            error_code=error_code,
            error_message=(error_message or None) and error_message[:2000],
            reason=delivery_reason(provider, error_code),
            occurred_at=occurred_at,
        ),
    )


def response_event(
    *,
    event_id: str,
    debtor_id: str,
    dispatch_id: str | None,
    channel: str,
    kind: str,
    text: str | None,
    address: str | None,
    source: str,
    occurred_at: datetime,
    correlation_id: str | None = None,
) -> ResponseReceivedEvent:
    response_channel: Channel = channel  # type: ignore[assignment]
    response_kind: ResponseKind = kind  # type: ignore[assignment]
    return ResponseReceivedEvent(
        id=event_id,
        source=source,
        subject=debtor_id,
        correlationid=correlation_id,
        data=ResponseReceived(
            debtor_id=debtor_id,
            dispatch_id=dispatch_id,
            channel=response_channel,
            kind=response_kind,
            text=text[:5000] if text else text,
            address=address,
            occurred_at=occurred_at,
        ),
    )


def advance(
    outbox: Outbox,
    topic: str,
    row: SendLogView,
    status: str,
    *,
    source: str,
    provider: str,
    now: datetime,
    error_code: str | None = None,
    error_message: str | None = None,
) -> bool:
    """Move ``row`` to ``status`` and stage its outcome on ``topic`` (in ``outbox``: the transaction's
    session, or a batch inserted at its end), if that moves it forward."""
    if not advances(row.status, status):
        return False
    row.status, row.updated_at = status, now
    if error_code is not None or error_message is not None:
        row.error_code, row.error_message = error_code, error_message
    event = delivery_event(
        row, status, source=source, provider=provider, occurred_at=now, error_code=error_code,
        error_message=error_message,
    )
    add_to_outbox(outbox, topic, event)
    return True


def stage_opt_out(outbox: Outbox, topic: str, row: SendLogView, *, source: str, now: datetime) -> None:
    """The provider says the recipient opted out (reason ``opted_out``): the orchestrator learns it as a reply."""
    event = response_event(
        event_id=outcome_id("opt_out", row.dispatch_id), debtor_id=row.debtor_id, dispatch_id=row.dispatch_id,
        channel=row.channel, kind="opt_out", text=None, address=row.address, source=source, occurred_at=now,
        correlation_id=row.request_id,
    )
    add_to_outbox(outbox, topic, event)
