"""The sandbox's in-memory state: resources, recorded requests, scenarios, faults, webhooks."""

from __future__ import annotations

import asyncio
import base64
import hmac
import time
from collections import OrderedDict, deque
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import orjson
from fastapi import Request
from fastapi.responses import Response

from services.sandbox.callbacks import CallbackSender
from services.sandbox.clock import Clock, Scheduler
from services.sandbox.faults import FaultInjector, Provider
from services.sandbox.scenarios import ScenarioBook
from services.sandbox.settings import Settings
from services.sandbox.signing import EventWebhookSigner

K = TypeVar("K")
V = TypeVar("V")

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


#: The provider APIs answer their errors in the provider's own JSON format, as the real APIs do (a body
#: the framework refuses before the route, e.g. over the size limit, is still a problem).
PROVIDER_ERRORS: dict[int | str, dict[str, Any]] = {"4XX": {
    "description": "The provider's own error body",
    "content": {"application/json": {"schema": {"type": "object"}},
                "application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}},
}}


def rfc2822(ts: float) -> str:
    """Twilio's date format: ``Thu, 24 Aug 2023 05:01:45 +0000``."""
    t = time.gmtime(ts)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
    )


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds")


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json", headers=headers)


def _sender(form: dict[str, Any] | None, json_body: Any) -> str | None:
    """Who sends: Twilio's ``From`` (or ``MessagingServiceSid``), SendGrid's ``from.email``."""
    if form:
        for key in ("From", "MessagingServiceSid"):
            value = form.get(key)
            value = value[0] if isinstance(value, list) and value else value
            if isinstance(value, str) and value:
                return value
    if isinstance(json_body, dict) and isinstance(json_body.get("from"), dict):
        email = json_body["from"].get("email")
        return email.lower() if isinstance(email, str) else None
    return None


class Bounded(OrderedDict[K, V], Generic[K, V]):
    """An insertion-ordered map that forgets its oldest entries past ``limit``."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def put(self, key: K, value: V) -> None:
        self[key] = value
        if len(self) > self.limit:
            self.popitem(last=False)


class Sandbox:
    """Everything the routes share; built in the app's lifespan and stored on ``app.state.sandbox``."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        scheduler: Scheduler,
        sender: CallbackSender,
        signer: EventWebhookSigner,
        faults: FaultInjector,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.scheduler = scheduler
        self.sender = sender
        self.signer = signer
        self.faults = faults
        self.scenarios = ScenarioBook()
        limit = settings.max_records
        self.requests: deque[dict[str, Any]] = deque(maxlen=limit)
        self.messages: Bounded[str, Any] = Bounded(limit)
        self.calls: Bounded[str, Any] = Bounded(limit)
        self.mails: Bounded[str, Any] = Bounded(limit)
        #: ``<Enqueue>`` call queues by name (``services.sandbox.queues.CallQueue``), created on demand.
        self.queues: dict[str, Any] = {}
        #: ``whatsapp:+…`` → when its customer-service window closes (clock seconds).
        self.whatsapp_windows: dict[str, float] = {}
        #: Numbers that texted STOP (Twilio's default opt-out keywords) → 21610 until START.
        self.opted_out: set[str] = set()
        self.inbound_urls = settings.inbound.model_copy()
        self.sendgrid_webhook_url = settings.sendgrid_webhook_url
        self.closing = asyncio.Event()
        self._request_ids = 0
        #: Responses held past the caller's timeout right now (recorded once the hold ends).
        self.holding = 0

        self.account_sid = settings.twilio.account_sid
        self.auth_token = settings.twilio.auth_token.get_secret_value().encode()
        basic = base64.b64encode(f"{self.account_sid}:{self.auth_token.decode()}".encode()).decode()
        self._twilio_auth = f"Basic {basic}".encode()
        self._sendgrid_auth = f"Bearer {settings.sendgrid.api_key.get_secret_value()}".encode()

    # -- auth -------------------------------------------------------------------------------------------

    def twilio_authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        return hmac.compare_digest(header.encode(), self._twilio_auth)

    def sendgrid_authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        return hmac.compare_digest(header.encode(), self._sendgrid_auth)

    # -- recording --------------------------------------------------------------------------------------

    def record(
        self,
        request: Request,
        provider: Provider,
        received_at: float,
        status: int,
        *,
        form: dict[str, Any] | None = None,
        json_body: Any = None,
        to: list[str] | None = None,
        sid: str | None = None,
        fault: str | None = None,
    ) -> dict[str, Any]:
        self._request_ids += 1
        entry = {
            "id": self._request_ids,
            "provider": provider,
            "method": request.method,
            "path": request.url.path,
            "received_at": iso(received_at),
            "received_ts": received_at,
            "status": status,
            "to": to or [],
            "sender": _sender(form, json_body),
            "sid": sid,
            "form": form,
            "json": json_body,
            "fault": fault,
        }
        self.requests.append(entry)
        return entry

    def window_open(self, whatsapp_address: str) -> bool:
        closes = self.whatsapp_windows.get(whatsapp_address)
        return closes is not None and closes > self.clock.now()

    def open_window(self, whatsapp_address: str) -> None:
        self.whatsapp_windows[whatsapp_address] = self.clock.now() + self.scheduler.real_seconds(
            self.settings.timing.whatsapp_window
        )

    async def hold(self, seconds: float) -> None:
        """Hold a response (timeout-after-accept) unless the sandbox is shutting down."""
        self.holding += 1
        try:
            await asyncio.wait_for(self.closing.wait(), seconds)
        except TimeoutError:
            pass
        finally:
            self.holding -= 1

    def reset(self) -> None:
        self.requests.clear()
        self.sender.log.clear()
        self.scenarios.clear()
        self.faults.reset()
        self.whatsapp_windows.clear()
        self.opted_out.clear()
        self.queues = {name: queue for name, queue in self.queues.items() if queue.members}
