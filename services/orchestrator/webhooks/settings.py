"""Outgoing webhook settings (``CADENCIA_ORCHESTRATOR_WEBHOOKS__<FIELD>``)."""

from __future__ import annotations

from pydantic import BaseModel


class WebhookSettings(BaseModel):
    #: How often due deliveries are looked for (seconds).
    interval: float = 1.0
    #: First retry delay; doubles with each failed attempt up to ``backoff_max``.
    backoff_base: float = 5.0
    backoff_max: float = 3600.0
    #: How long a delivery is retried, from the event (Standard Webhooks senders keep ~24 h).
    retry_window: float = 86_400.0
    timeout: float = 10.0
    batch_size: int = 100
    #: While an attempt is in flight, no other instance claims the delivery.
    lease: float = 60.0
