"""One whole system for an end-to-end test: orchestrator, SMS service and sandbox on one clock.

The clock is real time started at the instant a test names, so the policy, the dispatch pipeline and
the provider's own request records live in the same minute. Only the provider is simulated.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

import services.sms.app
import services.sms.settings
from services.orchestrator.app import create_app
from services.orchestrator.settings import Settings
from services.sandbox.testing import SandboxHandle, running_sandbox
from shared.config import DatabaseSettings, KafkaSettings
from shared.events import Topics
from shared.events.contracts import (
    ContactDispatchedEvent,
    ContactRequestedEvent,
    DeliveryUpdatedEvent,
    StatusChangedEvent,
)
from tests.channel_harness import Running, free_port, running_service, service_settings
from tests.helpers import TopicReader

EDITOR = {"Authorization": "Bearer dev-admin-key"}
MARGIN_S = 10


class SharedClock:
    """Real time from a chosen instant; ``now()`` is the sandbox's clock protocol, a call the services'."""

    def __init__(self, start: datetime) -> None:
        self.set(start)

    def set(self, start: datetime) -> None:
        self._start, self._t0 = start.astimezone(UTC), time.monotonic()

    def __call__(self) -> datetime:
        return self._start + timedelta(seconds=time.monotonic() - self._t0)

    def now(self) -> float:
        return self().timestamp()


@dataclass
class System:
    clock: SharedClock
    sandbox: SandboxHandle
    http: httpx.AsyncClient
    orchestrator: Any
    dispatches: TopicReader
    outcomes: TopicReader
    statuses: TopicReader
    #: The channel services by channel (``sms``, and those named in ``also``).
    channels: dict[str, Running] = field(default_factory=dict)

    async def submit(self, *requests: ContactRequestedEvent) -> None:
        body = {"requests": [r.model_dump(mode="json") for r in requests]}
        response = await self.http.post("/v1/contact-requests", headers=EDITOR, json=body)
        assert response.status_code == 202, response.text

    def dispatched(self, request_id: str) -> list[ContactDispatchedEvent]:
        return [e for e in self.dispatches.events
                if isinstance(e, ContactDispatchedEvent) and e.data.request_id == request_id]

    def statuses_of(self, request_id: str) -> list[StatusChangedEvent]:
        return [e for e in self.statuses.events
                if isinstance(e, StatusChangedEvent) and e.data.request_id == request_id]

    def outcomes_of(self, dispatch_id: str) -> list[str]:
        return [e.data.status for e in self.outcomes.events
                if isinstance(e, DeliveryUpdatedEvent) and e.data.dispatch_id == dispatch_id]


@asynccontextmanager
async def system(
    kafka: KafkaSettings, tmp_path: Path, start: datetime, *, also: tuple[str, ...] = (), **sms: Any
) -> AsyncIterator[System]:
    """The orchestrator (on ``SharedClock(start)``, margin ``MARGIN_S``), the SMS service on the same
    clock, the sandbox, and the services named in ``also`` (``voice``, ``email``, on real time)."""
    clock = SharedClock(start)
    topics = Topics(kafka.topic_prefix)
    settings = Settings(
        kafka=kafka, database=DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path}/orchestrator.db"),
        consumer_group=f"{kafka.topic_prefix}orchestrator", scheduler_interval=0.1, send_margin_s=MARGIN_S,
    )
    orchestrator = create_app(settings, clock=clock)
    async with running_sandbox(clock=clock) as sandbox, orchestrator.router.lifespan_context(orchestrator), \
            AsyncExitStack() as stack:
        port = free_port()
        sms_settings = service_settings(
            services.sms.settings, kafka, f"sqlite+aiosqlite:///{tmp_path}/sms.db", sandbox, port,
            group=f"{kafka.topic_prefix}sms", **sms,
        )
        await sandbox.set_inbound_urls(sms=f"http://127.0.0.1:{port}/webhooks/twilio/inbound")
        sms_service = running_service(services.sms.app, sms_settings, clock=clock)
        channels = {"sms": await stack.enter_async_context(sms_service)}
        if "voice" in also:
            from tests.voice.test_voice import Voice, settings_for

            voice = settings_for(kafka, f"sqlite+aiosqlite:///{tmp_path}/voice.db", sandbox,
                                 f"{kafka.topic_prefix}voice")
            channels["voice"] = await stack.enter_async_context(running_service(Voice, voice))
        if "email" in also:
            from tests.email.harness import Email, email_settings_for

            email = email_settings_for(kafka, f"sqlite+aiosqlite:///{tmp_path}/email.db", sandbox, free_port(),
                                       group=f"{kafka.topic_prefix}email")
            await sandbox.set_sendgrid_webhook(f"{email.public_url}/webhooks/sendgrid/events")
            channels["email"] = await stack.enter_async_context(running_service(Email, email))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=orchestrator),
                                     base_url="http://orchestrator") as http, \
                TopicReader(kafka, *(topics.dispatch(c) for c in ("sms", "voice", "email"))) as dispatches, \
                TopicReader(kafka, topics.contact_outcomes) as outcomes, \
                TopicReader(kafka, topics.contact_status) as statuses:
            yield System(clock, sandbox, http, orchestrator, dispatches, outcomes, statuses, channels)


async def requests_to(sandbox: SandboxHandle, to: str) -> list[dict[str, Any]]:
    """The Twilio Messages requests the sandbox recorded for ``to``."""
    return [r for r in await sandbox.requests(provider="twilio", to=to) if r["path"].endswith("/Messages.json")]
