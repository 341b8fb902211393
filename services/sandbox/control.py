"""The sandbox's own API under ``/sandbox``: scenarios, faults, recorded traffic, inbound messages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from services.sandbox.faults import Faults
from services.sandbox.scenarios import Scenario, normalize
from services.sandbox.settings import InboundUrls
from services.sandbox.state import Sandbox, json_response
from services.sandbox.twilio_api import deliver_inbound
from shared.http import Problem

router = APIRouter(prefix="/sandbox", tags=["sandbox"])


def get_sandbox(request: Request) -> Sandbox:
    sandbox: Sandbox = request.app.state.sandbox
    return sandbox


SandboxDep = Annotated[Sandbox, Depends(get_sandbox)]


class Inbound(BaseModel):
    from_: str = Field(alias="from")
    to: str
    body: str = ""
    url: str | None = None
    num_media: int = Field(default=0, ge=0)


class WebhookUrl(BaseModel):
    url: str


def _since(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
        # an instant without an offset is UTC, whatever this machine's zone (and so never out of range)
        return (at if at.tzinfo is not None else at.replace(tzinfo=UTC)).timestamp()
    except (ValueError, OverflowError) as exc:
        raise Problem(400, "Invalid since", "since is an ISO 8601 instant or epoch seconds") from exc


def _matches(entry: dict[str, Any], to: str | None) -> bool:
    if to is None:
        return True
    wanted = normalize(to)
    return wanted in entry["to"] or any(a.removeprefix("whatsapp:") == wanted for a in entry["to"])


@router.get("/requests")
async def list_requests(
    sb: SandboxDep,
    provider: Literal["twilio", "sendgrid"] | None = None,
    to: str | None = None,
    since: str | None = None,
    path: str | None = None,
    method: str | None = None,
) -> Response:
    after = _since(since)
    found = [
        e
        for e in sb.requests
        if (provider is None or e["provider"] == provider)
        and (after is None or e["received_ts"] >= after)
        and (path is None or path in e["path"])
        and (method is None or e["method"] == method.upper())
        and _matches(e, to)
    ]
    return json_response(found)


@router.delete("/requests", status_code=204)
async def clear_requests(sb: SandboxDep) -> Response:
    sb.requests.clear()
    return Response(status_code=204)


@router.get("/callbacks")
async def list_callbacks(
    sb: SandboxDep,
    kind: str | None = None,
    provider: Literal["twilio", "sendgrid"] | None = None,
    sid: str | None = None,
    to: str | None = None,
    since: str | None = None,
) -> Response:
    after = _since(since)
    found = [
        e
        for e in sb.sender.log
        if (kind is None or e["kind"] == kind)
        and (provider is None or e["provider"] == provider)
        and (sid is None or sid in e["sid"])
        and (to is None or e["to"] == to or e["to"] == normalize(to))
        and (after is None or e["sent_at"] >= after)
    ]
    return json_response(found)


@router.delete("/callbacks", status_code=204)
async def clear_callbacks(sb: SandboxDep) -> Response:
    sb.sender.log.clear()
    return Response(status_code=204)


@router.get("/scenarios")
async def list_scenarios(sb: SandboxDep) -> dict[str, Scenario]:
    return sb.scenarios.all()


@router.put("/scenarios/{address}")
async def put_scenario(address: str, scenario: Scenario, sb: SandboxDep) -> dict[str, Any]:
    sb.scenarios.set(address, scenario)
    return {"address": normalize(address), "scenario": scenario.model_dump()}


@router.delete("/scenarios/{address}", status_code=204)
async def delete_scenario(address: str, sb: SandboxDep) -> Response:
    sb.scenarios.remove(address)
    return Response(status_code=204)


@router.delete("/scenarios", status_code=204)
async def clear_scenarios(sb: SandboxDep) -> Response:
    sb.scenarios.clear()
    return Response(status_code=204)


@router.get("/faults")
async def get_faults(sb: SandboxDep) -> list[Faults]:
    return sb.faults.snapshot()


@router.put("/faults")
async def put_faults(faults: Faults, sb: SandboxDep) -> list[Faults]:
    sb.faults.set(faults)
    return sb.faults.snapshot()


@router.delete("/faults", status_code=204)
async def clear_faults(sb: SandboxDep) -> Response:
    sb.faults.reset()
    return Response(status_code=204)


@router.post("/twilio/inbound")
async def inbound(message: Inbound, sb: SandboxDep) -> dict[str, Any]:
    """A user texts one of our numbers; the sandbox POSTs the signed incoming-message webhook."""
    target = message.url or getattr(sb.inbound_urls, "whatsapp" if message.from_.startswith("whatsapp:") else "sms")
    if not target:
        raise Problem(409, "No inbound URL", "pass url or configure the channel's inbound URL")
    return await deliver_inbound(sb, message.from_, message.to, message.body, target, message.num_media)


@router.get("/twilio/webhooks")
async def get_inbound_urls(sb: SandboxDep) -> InboundUrls:
    return sb.inbound_urls


@router.put("/twilio/webhooks")
async def put_inbound_urls(urls: InboundUrls, sb: SandboxDep) -> InboundUrls:
    sb.inbound_urls = urls
    return urls


@router.get("/messages/{sid}")
async def get_message(sid: str, sb: SandboxDep) -> dict[str, Any]:
    record = sb.messages.get(sid)
    if record is None:
        raise Problem(404, "Unknown message", f"no message {sid}")
    return {**record.resource, "scenario": record.scenario.model_dump()}


@router.get("/calls")
async def list_calls(sb: SandboxDep, to: str | None = Query(default=None)) -> list[dict[str, Any]]:
    return [c.view() for c in sb.calls.values() if to is None or c.resource["to"] == to]


@router.get("/queues")
async def list_queues(sb: SandboxDep) -> list[dict[str, Any]]:
    """The ``<Enqueue>`` queues: who waits (front first) and for how long, in provider seconds."""
    return [queue.view() for queue in sb.queues.values()]


@router.get("/calls/{sid}")
async def get_call(sid: str, sb: SandboxDep) -> dict[str, Any]:
    record = sb.calls.get(sid)
    if record is None:
        raise Problem(404, "Unknown call", f"no call {sid}")
    view: dict[str, Any] = record.view()
    return view


@router.get("/sendgrid/public-key")
async def public_key(sb: SandboxDep) -> dict[str, str]:
    return {"public_key": sb.signer.public_key_b64}


@router.get("/sendgrid/webhook")
async def get_webhook(sb: SandboxDep) -> dict[str, str]:
    return {"url": sb.sendgrid_webhook_url}


@router.put("/sendgrid/webhook")
async def put_webhook(body: WebhookUrl, sb: SandboxDep) -> dict[str, str]:
    sb.sendgrid_webhook_url = body.url
    return {"url": body.url}


@router.get("/sendgrid/mails/{x_message_id}")
async def get_mail(x_message_id: str, sb: SandboxDep) -> dict[str, Any]:
    mail: dict[str, Any] | None = sb.mails.get(x_message_id)
    if mail is None:
        raise Problem(404, "Unknown mail", f"no mail {x_message_id}")
    return mail


@router.get("/status")
async def status(sb: SandboxDep) -> dict[str, Any]:
    """Counters for benches and tests: pending lifecycle work, callbacks in flight."""
    return {
        "requests": len(sb.requests),
        "callbacks": len(sb.sender.log),
        "callbacks_in_flight": sb.sender.in_flight,
        "callbacks_held": sb.sender.held,
        "held": sb.holding,
        "pending": sb.scheduler.pending,
        "speed_factor": sb.scheduler.speed,
    }


@router.post("/reset", status_code=204)
async def reset(sb: SandboxDep) -> Response:
    """Forget recorded traffic, scenarios, faults, WhatsApp windows and opt-outs."""
    sb.reset()
    return Response(status_code=204)
