"""Provider clients behind a small interface per channel, and webhook signature checks.

* :mod:`shared.providers.base` — what a channel service needs from any provider: the outcome
  classes of one API request (accepted, rejected, retryable, ambiguous).
* :mod:`shared.providers.twilio` — Twilio's Messages API over httpx + aiohttp, and
  ``X-Twilio-Signature`` verification. A SendGrid module follows the same shape.
"""

from shared.providers.base import Accepted, Ambiguous, ProviderError, Rejected, Retryable

__all__ = ["Accepted", "Ambiguous", "ProviderError", "Rejected", "Retryable"]
