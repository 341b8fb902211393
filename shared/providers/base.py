"""The outcomes of one provider API request, classified once for every channel.

A provider request ends in exactly one of:

* :class:`Accepted` — the provider took the message and gave it an id;
* :class:`Rejected` — a permanent error (invalid address, opted out, bad content): never retry;
* :class:`Retryable` — the provider proved it did not process the request (HTTP 429, 503 before
  acceptance, connection refused, connect timeout): retry with backoff, honouring ``retry_after``;
* :class:`Ambiguous` — the request may have been processed (read timeout, dropped connection,
  500/502/504): the message must be reported ``unknown`` and **never** resent.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Accepted:
    """The provider accepted the message: its id and the status it reported (``queued``, ``accepted``)."""

    provider_id: str
    status: str


class ProviderError(Exception):
    """Base of the failures of one provider request."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message, self.status, self.code = message, status, code


class Rejected(ProviderError):
    """A permanent refusal: ``code`` is the provider's error code (Twilio ``21211``, ``21610``...)."""


class Retryable(ProviderError):
    """Proven not processed; ``retry_after`` is the provider's ``Retry-After`` in seconds, if any."""

    def __init__(
        self, message: str, *, status: int | None = None, code: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status=status, code=code)
        self.retry_after = retry_after


class Ambiguous(ProviderError):
    """The request may have reached the provider: report ``unknown``, do not resend."""
