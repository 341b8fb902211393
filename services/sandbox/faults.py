"""Fault injection: latency, 5xx, 429 bursts with ``Retry-After``, timeouts after accepting, held callbacks.

Faults are scoped: ``provider=None`` applies to both providers, ``"twilio"``/``"sendgrid"`` to one. The
provider-specific scope wins over the global one for every knob it sets.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

Provider = Literal["twilio", "sendgrid"]


class Latency(BaseModel):
    kind: Literal["fixed", "uniform"] = "fixed"
    ms: float = Field(default=0.0, ge=0)
    min_ms: float = Field(default=0.0, ge=0)
    max_ms: float = Field(default=0.0, ge=0)

    def sample_s(self, rng: random.Random) -> float:
        if self.kind == "uniform":
            return rng.uniform(self.min_ms, max(self.min_ms, self.max_ms)) / 1000
        return self.ms / 1000


class Faults(BaseModel):
    provider: Provider | None = None
    latency: Latency | None = None
    #: Share of API requests answered with ``error_status`` (before anything is created).
    error_rate: float = Field(default=0.0, ge=0, le=1)
    error_status: int = Field(default=500, ge=500, le=599)
    #: The next N API requests get 429 with ``Retry-After: retry_after_s``.
    rate_limit_next: int = Field(default=0, ge=0)
    retry_after_s: int = Field(default=1, ge=0)
    #: The next N creating requests (POST) are accepted — the message/call/mail exists and proceeds —
    #: and then the response is held ``timeout_ms`` (beyond the caller's timeout).
    timeout_next: int = Field(default=0, ge=0)
    timeout_ms: float = Field(default=30_000, ge=0)
    #: Status and event callbacks (message, call, recording and AMD status; SendGrid events) wait while this
    #: is set and go out, in the order they fell due, once it is cleared: a provider whose webhooks lag
    #: behind its API. Messages, calls and mails go on meanwhile (``GET …/Messages/{sid}.json`` answers the
    #: latest status). Inbound messages and TwiML fetches, which a caller or a call waits on, are not held.
    hold_callbacks: bool = False


@dataclass(slots=True)
class Decision:
    delay_s: float = 0.0
    status: int | None = None
    retry_after_s: int = 0
    hold_s: float = 0.0


_NONE = Decision()


class FaultInjector:
    """Mutable fault state; ``decide`` is called once per provider API request."""

    def __init__(self, initial: Faults | None = None, seed: int | None = None) -> None:
        self._rng = random.Random(seed)
        self._scopes: dict[str | None, Faults] = {}
        self._initial = initial
        #: Set while the provider's callbacks may go out (``hold_callbacks`` in none of its scopes).
        self._released: dict[Provider, asyncio.Event] = {"twilio": asyncio.Event(), "sendgrid": asyncio.Event()}
        self.reset()

    def reset(self) -> None:
        self._scopes = {}
        if self._initial is not None and self._initial != Faults(provider=self._initial.provider):
            self.set(self._initial)
        self._gate()

    def set(self, faults: Faults) -> None:
        self._scopes[faults.provider] = faults.model_copy(deep=True)
        self._gate()

    def holds_callbacks(self, provider: Provider) -> bool:
        """Asked for every callback: read from the gate, which ``set`` and ``reset`` keep."""
        return not self._released[provider].is_set()

    async def callbacks_released(self, provider: Provider) -> None:
        """Returns at once unless the provider's callbacks are held; then when they are released."""
        await self._released[provider].wait()

    def _gate(self) -> None:
        for provider, released in self._released.items():
            scopes = (self._scopes.get(provider), self._scopes.get(None))
            if any(f.hold_callbacks for f in scopes if f is not None):
                released.clear()
            else:
                released.set()

    def snapshot(self) -> list[Faults]:
        return list(self._scopes.values())

    @property
    def active(self) -> bool:
        return bool(self._scopes)

    def decide(self, provider: Provider, creates: bool) -> Decision:
        if not self._scopes:
            return _NONE
        scopes = [f for f in (self._scopes.get(provider), self._scopes.get(None)) if f is not None]
        decision = Decision()
        for faults in scopes:
            if faults.latency is not None:
                decision.delay_s = faults.latency.sample_s(self._rng)
                break
        for faults in scopes:
            if faults.rate_limit_next > 0:
                faults.rate_limit_next -= 1
                decision.status, decision.retry_after_s = 429, faults.retry_after_s
                return decision
        for faults in scopes:
            if faults.error_rate and self._rng.random() < faults.error_rate:
                decision.status = faults.error_status
                return decision
        if creates:
            for faults in scopes:
                if faults.timeout_next > 0:
                    faults.timeout_next -= 1
                    decision.hold_s = faults.timeout_ms / 1000
                    break
        return decision
