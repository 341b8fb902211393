"""SendGrid v3: ``POST /v3/mail/send`` with SendGrid's validation and errors, and the signed event webhook."""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.sandbox.faults import Decision
from services.sandbox.scenarios import Scenario
from services.sandbox.signing import SENDGRID_SIGNATURE_HEADER, SENDGRID_TIMESTAMP_HEADER
from services.sandbox.state import PROVIDER_ERRORS, Sandbox, json_response

router = APIRouter(tags=["sendgrid"], responses=PROVIDER_ERRORS)

MAX_BYTES = 30 * 1024 * 1024
MAX_PERSONALIZATIONS = 1000
MAX_SEND_AT_AHEAD = 72 * 3600
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"


def sg_error(message: str, field: str | None = None, help_anchor: str | None = None) -> dict[str, Any]:
    return {"message": message, "field": field, "help": f"{_HELP}#{help_anchor}" if help_anchor else None}


def sg_errors(status: int, errors: list[dict[str, Any]], headers: dict[str, str] | None = None) -> Response:
    return json_response({"errors": errors}, status, headers)


def fault_response(decision: Decision) -> Response:
    if decision.status == 429:
        headers = {
            "Retry-After": str(decision.retry_after_s),
            "X-RateLimit-Limit": "600",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(decision.retry_after_s),
        }
        return sg_errors(429, [sg_error("too many requests")], headers)
    return sg_errors(decision.status or 500, [sg_error("internal error")])


def _email_errors(entry: Any, field: str) -> list[dict[str, Any]]:
    if not isinstance(entry, dict) or not isinstance(entry.get("email"), str):
        return [sg_error("The email parameter is required.", field + ".email", "message.personalizations")]
    if not EMAIL.match(entry["email"]):
        return [sg_error("Does not contain a valid address.", field + ".email", "message.personalizations")]
    return []


def validate_mail(body: Any, now: float) -> list[dict[str, Any]]:
    """SendGrid's checks on a v3 mail/send body; all errors are reported together, as SendGrid does."""
    if not isinstance(body, dict):
        return [sg_error("Bad Request")]
    errors: list[dict[str, Any]] = []
    template = body.get("template_id")
    personalizations = body.get("personalizations")
    every_has_subject = False
    if not isinstance(personalizations, list) or not personalizations:
        errors.append(
            sg_error(
                "The personalizations field is required and must have at least one personalization.",
                "personalizations",
                "-Personalizations-Errors",
            )
        )
    elif len(personalizations) > MAX_PERSONALIZATIONS:
        errors.append(
            sg_error(
                "The personalizations field is limited to 1000 personalizations per request.",
                "personalizations",
                "-Personalizations-Errors",
            )
        )
    else:
        every_has_subject = True
        for i, p in enumerate(personalizations):
            base = f"personalizations.{i}"
            if not isinstance(p, dict):
                errors.append(sg_error("Each personalization must be an object.", base))
                continue
            to = p.get("to")
            if not isinstance(to, list) or not to:
                errors.append(
                    sg_error(
                        "The to array is required for all personalization objects, and must have at least one "
                        "email object with a valid email address.",
                        base + ".to",
                        "message.personalizations.to",
                    )
                )
            else:
                for j, entry in enumerate(to):
                    errors += _email_errors(entry, f"{base}.to.{j}")
            for kind in ("cc", "bcc"):
                for j, entry in enumerate(p.get(kind) or []):
                    errors += _email_errors(entry, f"{base}.{kind}.{j}")
            every_has_subject = every_has_subject and bool(p.get("subject"))
            errors += _custom_args_errors(p.get("custom_args"), base + ".custom_args")
    sender = body.get("from")
    if not isinstance(sender, dict) or not sender.get("email"):
        errors.append(
            sg_error(
                "The from object must be provided for every email send. It is an object that requires the email "
                'parameter, but may also contain a name parameter.  e.g. {"email" : "example@example.com"}  or '
                '{"email" : "example@example.com", "name" : "Example Recipient"}.',
                "from.email",
                "message.from",
            )
        )
    elif not EMAIL.match(str(sender["email"])):
        errors.append(sg_error("The from email does not contain a valid address.", "from.email", "message.from"))
    if not body.get("subject") and not template and not every_has_subject:
        errors.append(
            sg_error(
                "The subject is required. You can get around this requirement if you use a template with a "
                "subject defined or if every personalization has a subject defined.",
                "subject",
                "message.subject",
            )
        )
    content = body.get("content")
    if not template:
        if not isinstance(content, list) or not content:
            errors.append(
                sg_error(
                    "Unless a valid template_id is provided, the content parameter is required. There must be at "
                    "least one defined content block. We typically suggest both text/plain and text/html blocks "
                    "are included, but only one block is required.",
                    "content",
                    "message.content",
                )
            )
    if isinstance(content, list):
        for i, block in enumerate(content):
            if not isinstance(block, dict) or not isinstance(block.get("value"), str) or not block["value"]:
                errors.append(
                    sg_error(
                        "The content value must be a string at least one character in length.",
                        f"content.{i}.value",
                        "message.content.value",
                    )
                )
            elif not block.get("type"):
                errors.append(sg_error("The content type is required.", f"content.{i}.type", "message.content"))
    errors += _custom_args_errors(body.get("custom_args"), "custom_args")
    asm = body.get("asm")
    if asm is not None and (not isinstance(asm, dict) or not isinstance(asm.get("group_id"), int)):
        errors.append(sg_error("The asm.group_id must be an integer.", "asm.group_id", "message.asm.group_id"))
    send_at = body.get("send_at")
    if send_at is not None:
        if not isinstance(send_at, int) or send_at < 0:
            errors.append(sg_error("The send_at parameter must be a unix timestamp.", "send_at", "message.send_at"))
        elif send_at > now + MAX_SEND_AT_AHEAD:
            errors.append(
                sg_error(
                    "The send_at parameter is too far in the future. It can be at most 72 hours from now.",
                    "send_at",
                    "message.send_at",
                )
            )
    headers = body.get("headers")
    if headers is not None and (not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values())):
        errors.append(sg_error("Invalid type. Expected: string, given: object.", "headers", "message.headers"))
    return errors


def _custom_args_errors(custom_args: Any, field: str) -> list[dict[str, Any]]:
    if custom_args is None:
        return []
    if not isinstance(custom_args, dict) or not all(isinstance(v, str) for v in custom_args.values()):
        return [sg_error("Invalid type. Expected: string, given: integer.", field, "message.custom_args")]
    return []


def message_id() -> str:
    return base64.urlsafe_b64encode(os.urandom(16)).decode()[:22]


@dataclass(slots=True)
class Recipient:
    email: str
    sg_message_id: str
    args: dict[str, Any]
    scenario: Scenario


@router.post("/v3/mail/send", status_code=202)
async def mail_send(request: Request) -> Response:
    sb: Sandbox = request.app.state.sandbox
    received = sb.clock.now()
    if not sb.sendgrid_authorized(request):
        sb.record(request, "sendgrid", received, 401)
        return sg_errors(401, [sg_error("The provided authorization grant is invalid, expired, or revoked")])
    raw = await request.body()
    if len(raw) > MAX_BYTES:
        sb.record(request, "sendgrid", received, 413)
        return sg_errors(413, [sg_error("The JSON payload you have included in your request is too large.")])
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        sb.record(request, "sendgrid", received, 400)
        return sg_errors(400, [sg_error("Bad Request")])
    recipients_to = [
        e["email"].lower()
        for p in (body.get("personalizations") or [] if isinstance(body, dict) else [])
        if isinstance(p, dict)
        for e in (p.get("to") or [])
        if isinstance(e, dict) and isinstance(e.get("email"), str)
    ]
    decision = sb.faults.decide("sendgrid", creates=True)
    if decision.delay_s:
        await sb.scheduler.sleep_real(decision.delay_s)
    if decision.status is not None:
        sb.record(request, "sendgrid", received, decision.status, json_body=body, to=recipients_to, fault="injected")
        return fault_response(decision)
    errors = validate_mail(body, received)
    if errors:
        sb.record(request, "sendgrid", received, 400, json_body=body, to=recipients_to)
        return sg_errors(400, errors)
    refusing = next((s for s in map(sb.scenarios.for_email, recipients_to) if s.error_status is not None), None)
    if refusing is not None and refusing.error_status is not None:
        sb.record(request, "sendgrid", received, refusing.error_status, json_body=body, to=recipients_to,
                  fault="scenario")
        return fault_response(Decision(status=refusing.error_status, retry_after_s=refusing.retry_after_s))
    xmid = message_id()
    recipients = plan_recipients(sb, body, xmid)
    sb.mails.put(xmid, {"x_message_id": xmid, "body": body, "recipients": [r.email for r in recipients]})
    delay = max(0.0, float(body.get("send_at") or 0) - received)
    sb.scheduler.spawn(run_mail(sb, xmid, recipients, delay))
    fault = None
    if decision.hold_s:
        fault = "timeout"
        await sb.hold(decision.hold_s)
    sb.record(request, "sendgrid", received, 202, json_body=body, to=recipients_to, sid=xmid, fault=fault)
    return Response(status_code=202, headers={"X-Message-Id": xmid})


def plan_recipients(sb: Sandbox, body: dict[str, Any], xmid: str) -> list[Recipient]:
    top_args = body.get("custom_args") or {}
    categories = body.get("categories")
    asm = body.get("asm")
    recipients: list[Recipient] = []
    n = 0
    for p in body["personalizations"]:
        args: dict[str, Any] = {**top_args, **(p.get("custom_args") or {})}
        if categories:
            args["category"] = categories
        if asm:
            args["asm_group_id"] = asm["group_id"]
        for kind in ("to", "cc", "bcc"):
            for entry in p.get(kind) or []:
                email = entry["email"]
                sg_id = f"{xmid}.filterdrecv-sandbox-{n}-{os.urandom(4).hex().upper()}-{n}.0"
                recipients.append(Recipient(email, sg_id, args, sb.scenarios.for_email(email)))
                n += 1
    return recipients


def event(sb: Sandbox, xmid: str, r: Recipient, name: str, **fields: Any) -> dict[str, Any]:
    return {
        **r.args,
        "email": r.email,
        "timestamp": int(sb.clock.now()),
        "smtp-id": f"<{xmid}@ismtpd0001p1sandbox.sendgrid.net>",
        "event": name,
        "sg_event_id": message_id(),
        "sg_message_id": r.sg_message_id,
        **fields,
    }


_STEPS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "delivered": [("processed", {}), ("delivered", {"response": "250 OK", "tls": 1})],
    "bounce": [
        ("processed", {}),
        (
            "bounce",
            {
                "type": "bounce",
                "status": "5.1.1",
                "reason": "550 5.1.1 The email account that you tried to reach does not exist.",
                "bounce_classification": "Invalid Address",
            },
        ),
    ],
    "blocked": [
        ("processed", {}),
        (
            "bounce",
            {
                "type": "blocked",
                "status": "5.7.1",
                "reason": "550 5.7.1 Message rejected due to local policy",
                "bounce_classification": "Reputation",
            },
        ),
    ],
    "dropped": [("dropped", {"reason": "Bounced Address", "status": "5.0.0"})],
    "deferred": [
        ("processed", {}),
        ("deferred", {"response": "400 try again later", "attempt": "1"}),
        ("delivered", {"response": "250 OK", "tls": 1}),
    ],
}
_ENGAGEMENT: dict[str, list[str]] = {
    "open": ["open"],
    "click": ["open", "click"],
    "spamreport": ["spamreport"],
    "unsubscribe": ["unsubscribe"],
    "group_unsubscribe": ["open", "group_unsubscribe"],
}


async def post_events(sb: Sandbox, events: list[dict[str, Any]]) -> None:
    url = sb.sendgrid_webhook_url
    if not url or not events:
        return
    body = orjson.dumps(events)
    timestamp = str(int(sb.clock.now()))
    headers = {SENDGRID_SIGNATURE_HEADER: sb.signer.sign(timestamp, body), SENDGRID_TIMESTAMP_HEADER: timestamp}
    await sb.sender.post_sendgrid(url, body, headers, events)


async def run_mail(sb: Sandbox, xmid: str, recipients: list[Recipient], send_at_delay: float) -> None:
    """Events for one send, batched per step into one POST as SendGrid batches them."""
    timing = sb.settings.timing
    await sb.scheduler.sleep(send_at_delay + timing.email_processed_after)
    plans = []
    for r in recipients:
        outcome = r.scenario.outcome or "delivered"
        plans.append(_STEPS.get(outcome, _STEPS["delivered"]))
    depth = max(len(p) for p in plans)
    for step in range(depth):
        batch = [
            event(sb, xmid, r, plan[step][0], **plan[step][1])
            for r, plan in zip(recipients, plans, strict=True)
            if step < len(plan)
        ]
        await post_events(sb, batch)
        if step + 1 < depth:
            await sb.scheduler.sleep(timing.email_delivered_after - timing.email_processed_after)
    engaged = [(r, _ENGAGEMENT.get(r.scenario.outcome or "", [])) for r in recipients]
    for step in range(max((len(e) for _, e in engaged), default=0)):
        await sb.scheduler.sleep(timing.email_engagement_after)
        batch = []
        for r, names in engaged:
            if step < len(names):
                batch.append(event(sb, xmid, r, names[step], **_engagement_fields(names[step])))
        await post_events(sb, batch)


def _engagement_fields(name: str) -> dict[str, Any]:
    if name == "open":
        return {"useragent": "Mozilla/5.0 (sandbox)", "ip": "203.0.113.7", "sg_machine_open": False}
    if name == "click":
        return {
            "useragent": "Mozilla/5.0 (sandbox)",
            "ip": "203.0.113.7",
            "url": "https://example.com/",
            "url_offset": {"index": 0, "type": "html"},
        }
    return {}


@router.get("/v3/user/webhooks/event/settings/signed")
async def signed_webhook_settings(request: Request) -> Response:
    """SendGrid's own endpoint for the signed event webhook's verification key."""
    sb: Sandbox = request.app.state.sandbox
    if not sb.sendgrid_authorized(request):
        return sg_errors(401, [sg_error("The provided authorization grant is invalid, expired, or revoked")])
    return json_response({"enabled": True, "public_key": sb.signer.public_key_b64})
