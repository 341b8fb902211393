"""Provider clients behind a small interface per channel, one package per provider.

* :mod:`shared.providers.base` — what a channel service needs from any provider: the outcome
  classes of one API request (accepted, rejected, retryable, ambiguous).
* :mod:`shared.providers.http` — the aiohttp session, timeouts and failure classification every
  client shares (:class:`~shared.providers.http.ProviderHttpClient`), and ``Retry-After``.
* :mod:`shared.providers.twilio` / :mod:`shared.providers.sendgrid` — each provider's client
  (``client``), webhook signature checks (``signature``) and error mapping (``errors``).
* :func:`delivery_reason` — a provider's error code as the neutral ``DeliveryUpdated.reason``.
"""

from shared.providers.base import Accepted, Ambiguous, ProviderError, Rejected, Retryable
from shared.providers.reasons import delivery_reason

__all__ = ["Accepted", "Ambiguous", "ProviderError", "Rejected", "Retryable", "delivery_reason"]
