"""What the agent-queue tests share: queue dispatches to the voice service, and the calls the sandbox made."""

from __future__ import annotations

from typing import Any

import httpx

from services.sandbox.testing import SandboxHandle
from services.voice.settings import PacingSettings
from shared.config import KafkaSettings
from shared.events.contracts import AgentQueue, ContactDispatchedEvent
from tests.helpers import TopicReader, wait_for
from tests.voice.test_voice import placed_calls, settings_for, voice_dispatch

DELIVERY = "cadencia.contact.delivery_updated.v1"
RESPONSE = "cadencia.contact.response_received.v1"
ADMIN = {"Authorization": "Bearer dev-admin-key"}


def voice_settings(kafka: KafkaSettings, database_url: str, sandbox: SandboxHandle, group: str,
                   **pacing: Any) -> Any:
    settings = settings_for(kafka, database_url, sandbox, group)
    return settings.model_copy(update={"pacing": PacingSettings(**pacing)})


def queue_call(to: str, queue: AgentQueue, template: str = "reminder") -> ContactDispatchedEvent:
    event = voice_dispatch(to, template)
    return event.model_copy(update={"data": event.data.model_copy(update={"agent_queue": queue})})


def outcome(reader: TopicReader, dispatch_id: str, status: str) -> list[Any]:
    return [e for e in reader.of_type(DELIVERY) if e.data.dispatch_id == dispatch_id and e.data.status == status]


def responses(reader: TopicReader, dispatch_id: str) -> list[Any]:
    return [e for e in reader.of_type(RESPONSE) if e.data.dispatch_id == dispatch_id]


async def ended_call(sandbox: SandboxHandle, event: ContactDispatchedEvent, timeout: float = 60) -> dict[str, Any]:
    """The sandbox's record of the dispatch's call, once it completed."""

    async def completed() -> dict[str, Any] | None:
        placed = await placed_calls(sandbox, event.data.to)
        if not placed:
            return None
        call: dict[str, Any] = await sandbox.call(placed[0]["sid"])
        return call if call["status"] == "completed" else None

    found: dict[str, Any] = await wait_for(completed, timeout=timeout, what=f"the call to {event.data.to} ended")
    return found


def verbs(call: dict[str, Any]) -> list[str]:
    return [step["verb"] for step in call["transcript"]]


async def fetched(sandbox: SandboxHandle, call: dict[str, Any], path: str) -> list[dict[str, Any]]:
    """The TwiML requests the call made to ``path`` (``/voice/queued/``...), with their parameters."""
    return [c for c in await sandbox.callbacks(kind="twiml-fetch", sid=call["sid"]) if path in c["url"]]


async def queue_view(service_url: str, queue: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=service_url, headers=ADMIN) as http:
        answer = await http.get(f"/v1/agents/{queue}")
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body


async def settled(service_url: str, queue: str, ended: int) -> dict[str, Any]:
    """The queue's view once ``ended`` calls ended and none is in flight."""

    async def probe() -> dict[str, Any] | None:
        view = await queue_view(service_url, queue)
        done = sum(view["counts"].values())
        return view if view["in_flight"] == 0 and done >= ended else None

    found: dict[str, Any] = await wait_for(probe, timeout=60, what=f"{ended} calls of {queue} ended")
    return found
