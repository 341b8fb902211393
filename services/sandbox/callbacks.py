"""Outgoing webhooks: one shared aiohttp session, bounded concurrency, retries, a log.

aiohttp directly rather than httpx: callbacks are the sandbox's hottest path (two or three per
message) and bench/http_clients.py measured aiohttp ~1.5× faster than httpx over its aiohttp transport.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp

from services.sandbox.clock import Scheduler
from services.sandbox.faults import FaultInjector
from services.sandbox.signing import TWILIO_SIGNATURE_HEADER, twilio_signature
from shared.logging import get_logger

log = get_logger(__name__)

FORM = "application/x-www-form-urlencoded; charset=utf-8"
_TWILIO_UA = "TwilioProxy/1.1"
_SENDGRID_UA = "SendGrid Event API"


@dataclass(frozen=True)
class CallbackResponse:
    """What the receiver answered (TwiML for voice fetches, a status for everything else)."""

    status_code: int
    content: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


#: What ``hold_callbacks`` holds: reports on something that already happened. An inbound message and a
#: TwiML fetch are not held: the control API's caller, or the call itself, waits on their answer.
HELD_KINDS = frozenset({"message-status", "call-status", "recording-status", "amd-status", "event"})


class CallbackSender:
    """Delivers callbacks; a failing receiver is retried (connection error or 5xx), never raises."""

    def __init__(
        self,
        client: aiohttp.ClientSession,
        scheduler: Scheduler,
        *,
        concurrency: int,
        retries: int,
        max_records: int,
        faults: FaultInjector,
    ) -> None:
        self.client = client
        self.faults = faults
        self.scheduler = scheduler
        self.retries = retries
        self._slots = asyncio.Semaphore(concurrency)
        self._ids = itertools.count(1)
        self.log: deque[dict[str, Any]] = deque(maxlen=max_records)
        self.in_flight = 0
        #: Callbacks waiting for the ``hold_callbacks`` fault to be cleared.
        self.held = 0

    async def post_twilio(
        self, kind: str, url: str, params: dict[str, Any], auth_token: bytes, *, sid: str = "", to: str = ""
    ) -> CallbackResponse | None:
        """POST form params signed with ``X-Twilio-Signature``; returns the receiver's final response."""
        headers = {
            "Content-Type": FORM,
            "User-Agent": _TWILIO_UA,
            "I-Twilio-Idempotency-Token": f"{sid}-{next(self._ids)}",
            TWILIO_SIGNATURE_HEADER: twilio_signature(auth_token, url, params),
        }
        body = urlencode(params, doseq=True).encode()
        entry = {"provider": "twilio", "kind": kind, "url": url, "sid": sid, "to": to, "params": params}
        return await self._send(entry, url, body, headers)

    async def post_sendgrid(
        self, url: str, body: bytes, headers: dict[str, str], events: list[dict[str, Any]]
    ) -> CallbackResponse | None:
        entry = {
            "provider": "sendgrid",
            "kind": "event",
            "url": url,
            "sid": events[0].get("sg_message_id", "") if events else "",
            "to": events[0].get("email", "") if events else "",
            "events": events,
        }
        headers = {"Content-Type": "application/json", "User-Agent": _SENDGRID_UA, **headers}
        return await self._send(entry, url, body, headers)

    async def _send(
        self, entry: dict[str, Any], url: str, body: bytes, headers: dict[str, str]
    ) -> CallbackResponse | None:
        if entry["kind"] in HELD_KINDS and self.faults.holds_callbacks(entry["provider"]):
            # The lifecycle goes on (the resource's status moves); only the report waits, in its turn.
            self.held += 1
            if self.scheduler.spawn(self._send_when_released(entry, url, body, headers)) is None:
                self.held -= 1
            return None
        return await self._post(entry, url, body, headers)

    async def _send_when_released(self, entry: dict[str, Any], url: str, body: bytes, headers: dict[str, str]) -> None:
        try:
            await self.faults.callbacks_released(entry["provider"])
        finally:
            self.held -= 1
        await self._post(entry, url, body, headers)

    async def _post(
        self, entry: dict[str, Any], url: str, body: bytes, headers: dict[str, str]
    ) -> CallbackResponse | None:
        entry["id"] = next(self._ids)
        entry["sent_at"] = self.scheduler.clock.now()
        entry["status"] = None
        entry["error"] = None
        entry["attempts"] = 0
        self.log.append(entry)
        self.in_flight += 1
        try:
            for attempt in range(self.retries + 1):
                entry["attempts"] = attempt + 1
                try:
                    async with self._slots, self.client.post(url, data=body, headers=headers) as raw:
                        response = CallbackResponse(raw.status, await raw.read(), dict(raw.headers))
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    entry["error"] = f"{type(exc).__name__}: {exc}"
                    response = None
                else:
                    assert response is not None
                    entry["status"] = response.status_code
                    entry["error"] = None
                    if response.status_code < 500:
                        return response
                if attempt < self.retries:
                    await self.scheduler.sleep(0.5 * 2**attempt)
            log.warning("callback_failed", kind=entry["kind"], status=entry["status"], attempts=entry["attempts"])
            return response
        except Exception:  # a receiver must never crash the sandbox
            log.exception("callback_crashed", kind=entry["kind"])
            return None
        finally:
            entry["completed_at"] = self.scheduler.clock.now()
            self.in_flight -= 1
