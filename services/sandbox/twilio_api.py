"""Twilio REST API 2010-04-01: Messages (SMS/WhatsApp) and their lifecycle, inbound messages."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson
import phonenumbers
from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.sandbox.faults import Decision
from services.sandbox.scenarios import Scenario, bare_number
from services.sandbox.state import PROVIDER_ERRORS, Sandbox, json_response, rfc2822

router = APIRouter(tags=["twilio"], responses=PROVIDER_ERRORS)

API_VERSION = "2010-04-01"
E164 = re.compile(r"^(?:whatsapp:)?\+[1-9]\d{6,14}$")
CONTENT_SID = re.compile(r"^HX[0-9a-fA-F]{32}$")
#: Twilio's default opt-out / opt-in keywords (Advanced Opt-Out, English defaults), whole-message match.
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
START_WORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO"})
_GSM7 = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ ÆæßÉ!\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXT = frozenset("^{}\\[~]|€\f")
WINDOW_CLOSED = (
    "Failed to send freeform message because you are outside the allowed window. "
    "If you are using WhatsApp, please use a Message Template."
)
ERROR_MESSAGES = {
    30003: "Unreachable destination handset",
    30005: "Unknown destination handset",
    30006: "Landline or unreachable carrier",
    30007: "Message filtered",
    30008: "Unknown error",
    63016: WINDOW_CLOSED,
}


def new_sid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


def num_segments(body: str) -> int:
    if not body:
        return 1
    septets = 0
    for ch in body:
        if ch in _GSM7:
            septets += 1
        elif ch in _GSM7_EXT:
            septets += 2
        else:  # UCS-2
            units = len(body.encode("utf-16-le")) // 2
            return 1 if units <= 70 else -(-units // 67)
    return 1 if septets <= 160 else -(-septets // 153)


def parse_form(raw: bytes) -> dict[str, Any]:
    """Form body → dict; a repeated key (``StatusCallbackEvent``, ``MediaUrl``) becomes a list."""
    form: dict[str, Any] = {}
    for key, value in parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True):
        previous = form.get(key)
        if previous is None:
            form[key] = value
        elif isinstance(previous, list):
            previous.append(value)
        else:
            form[key] = [previous, value]
    return form


def first(form: dict[str, Any], key: str) -> str:
    value = form.get(key, "")
    return str(value[0] if isinstance(value, list) else value)


def twilio_error(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> Response:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return json_response(body, status, headers)


def unauthorized() -> Response:
    body = {
        "code": 20003,
        "detail": "Your AccountSid or AuthToken was incorrect.",
        "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }
    return json_response(body, 401, {"WWW-Authenticate": 'Basic realm="Twilio API"'})


def not_found(path: str) -> Response:
    return twilio_error(404, 20404, f"The requested resource {path} was not found")


def fault_response(decision: Decision) -> Response:
    if decision.status == 429:
        return twilio_error(429, 20429, "Too Many Requests", {"Retry-After": str(decision.retry_after_s)})
    status = decision.status or 500
    if status == 503:
        return twilio_error(503, 20503, "Service Unavailable")
    return twilio_error(status, 20500, "Internal Server Error")


async def gate(sb: Sandbox, request: Request, account_sid: str, creates: bool) -> Response | Decision:
    """Auth, account match and fault injection shared by every Twilio API route."""
    if not sb.twilio_authorized(request):
        return unauthorized()
    if account_sid != sb.account_sid:
        return not_found(request.url.path)
    decision = sb.faults.decide("twilio", creates)
    if decision.delay_s:
        await sb.scheduler.sleep_real(decision.delay_s)
    if decision.status is not None:
        return fault_response(decision)
    return decision


@dataclass(slots=True)
class MessageRecord:
    resource: dict[str, Any]
    channel: str
    status_callback: str
    scenario: Scenario
    sender: str
    extra: dict[str, Any] = field(default_factory=dict)


def message_resource(sb: Sandbox, sid: str, now: float, form: dict[str, Any], status: str) -> dict[str, Any]:
    uri = f"/{API_VERSION}/Accounts/{sb.account_sid}/Messages/{sid}.json"
    body = first(form, "Body")
    media = form.get("MediaUrl")
    date = rfc2822(now)
    return {
        "account_sid": sb.account_sid,
        "api_version": API_VERSION,
        "body": body,
        "date_created": date,
        "date_sent": None,
        "date_updated": date,
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": first(form, "From") or None,
        "messaging_service_sid": first(form, "MessagingServiceSid") or None,
        "num_media": str(len(media) if isinstance(media, list) else int(bool(media))),
        "num_segments": str(num_segments(body)),
        "price": None,
        "price_unit": "USD",
        "sid": sid,
        "status": status,
        "subresource_uris": {"media": uri[:-5] + "/Media.json"},
        "to": first(form, "To"),
        "uri": uri,
    }


def validate_message(sb: Sandbox, form: dict[str, Any]) -> tuple[int, str] | None:
    to = first(form, "To")
    if not to:
        return 21604, "A 'To' phone number is required."
    if not E164.match(to):
        return 21211, f"The 'To' number {to} is not a valid phone number."
    sender = first(form, "From")
    if not sender and not first(form, "MessagingServiceSid"):
        return 21603, "A 'From' phone number is required."
    if sender and sender.startswith("whatsapp:") != to.startswith("whatsapp:"):
        return 21910, "Invalid From and To pair. From and To should be of the same channel"
    body = first(form, "Body")
    content_sid = first(form, "ContentSid")
    if not body and not content_sid and not form.get("MediaUrl"):
        return 21602, "Message body is required."
    if len(body) > 1600:
        return 21617, "The concatenated message body exceeds the 1600 character limit."
    if content_sid and not CONTENT_SID.match(content_sid):
        return 21655, "The ContentSid is Invalid."
    variables = first(form, "ContentVariables")
    if variables:
        try:
            parsed = orjson.loads(variables)
        except orjson.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            return 21656, "The ContentVariables Parameter is invalid."
    return None


@router.post("/2010-04-01/Accounts/{account_sid}/Messages.json", status_code=201)
async def create_message(account_sid: str, request: Request) -> Response:
    sb: Sandbox = request.app.state.sandbox
    received = sb.clock.now()
    raw = await request.body()
    form = parse_form(raw)
    to = first(form, "To")
    gated = await gate(sb, request, account_sid, creates=True)
    if isinstance(gated, Response):
        sb.record(request, "twilio", received, gated.status_code, form=form, to=[to], fault="injected")
        return gated
    error = validate_message(sb, form)
    scenario = sb.scenarios.for_message(to) if error is None else None
    if scenario is not None and scenario.error_status is not None:
        sb.record(request, "twilio", received, scenario.error_status, form=form, to=[to], fault="scenario")
        return fault_response(Decision(status=scenario.error_status, retry_after_s=scenario.retry_after_s))
    if scenario is not None:
        if scenario.outcome == "invalid":
            error = 21211, f"The 'To' number {to} is not a valid phone number."
        elif scenario.outcome == "opted_out" or bare_number(to) in sb.opted_out:
            error = 21610, "Attempt to send to unsubscribed recipient"
    if error is not None or scenario is None:
        code, message = error or (21211, "invalid")
        sb.record(request, "twilio", received, 400, form=form, to=[to])
        return twilio_error(400, code, message)

    sid = new_sid("SM")
    via_service = not first(form, "From")
    resource = message_resource(sb, sid, received, form, "accepted" if via_service else "queued")
    channel = "whatsapp" if to.startswith("whatsapp:") else "sms"
    sender = first(form, "From") or (
        ("whatsapp:" if channel == "whatsapp" else "") + sb.settings.messaging_service_number
    )
    record = MessageRecord(resource, channel, first(form, "StatusCallback"), scenario, sender)
    if channel == "whatsapp" and not first(form, "ContentSid") and not sb.window_open(to):
        # Twilio accepts the request (201) and fails the message asynchronously with 63016.
        record.scenario = Scenario(outcome="failed", error_code=63016)
    sb.messages.put(sid, record)
    sb.scheduler.spawn(run_message(sb, record, via_service))
    payload = orjson.dumps(resource)
    fault = None
    if gated.hold_s:
        fault = "timeout"
        await sb.hold(gated.hold_s)
    sb.record(request, "twilio", received, 201, form=form, to=[to], sid=sid, fault=fault)
    return Response(payload, status_code=201, media_type="application/json")


@router.get("/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json")
async def fetch_message(account_sid: str, sid: str, request: Request) -> Response:
    sb: Sandbox = request.app.state.sandbox
    received = sb.clock.now()
    gated = await gate(sb, request, account_sid, creates=False)
    status = gated.status_code if isinstance(gated, Response) else 200
    record = sb.messages.get(sid)
    if not isinstance(gated, Response) and record is None:
        gated, status = not_found(request.url.path), 404
    sb.record(request, "twilio", received, status, sid=sid)
    if isinstance(gated, Response):
        return gated
    assert record is not None
    return json_response(record.resource)


def status_params(sb: Sandbox, record: MessageRecord) -> dict[str, Any]:
    r = record.resource
    params = {
        "SmsSid": r["sid"],
        "SmsStatus": r["status"],
        "MessageStatus": r["status"],
        "To": r["to"],
        "MessageSid": r["sid"],
        "AccountSid": sb.account_sid,
        "From": record.sender,
        "ApiVersion": API_VERSION,
    }
    if r["messaging_service_sid"]:
        params["MessagingServiceSid"] = r["messaging_service_sid"]
    if r["error_code"] is not None:
        params["ErrorCode"] = str(r["error_code"])
    if record.channel == "whatsapp":
        params["ChannelPrefix"] = "whatsapp"
        params["ChannelToAddress"] = bare_number(r["to"])
    return params


async def transition(sb: Sandbox, record: MessageRecord, status: str, error_code: int | None = None) -> None:
    r = record.resource
    now = sb.clock.now()
    r["status"] = status
    r["date_updated"] = rfc2822(now)
    if status == "sent":
        r["date_sent"] = r["date_updated"]
        r["price"] = "-0.00790" if record.channel == "sms" else "-0.00500"
    if error_code is not None:
        r["error_code"] = error_code
        r["error_message"] = ERROR_MESSAGES.get(error_code)
    if record.status_callback:
        await sb.sender.post_twilio(
            "message-status",
            record.status_callback,
            status_params(sb, record),
            sb.auth_token,
            sid=r["sid"],
            to=r["to"],
        )


async def run_message(sb: Sandbox, record: MessageRecord, via_service: bool) -> None:
    timing = sb.settings.timing
    scenario = record.scenario
    if via_service:
        await transition(sb, record, "queued")
    await sb.scheduler.sleep(timing.message_sent_after)
    if scenario.outcome == "failed":
        await transition(sb, record, "failed", scenario.error_code or 30008)
        return
    await transition(sb, record, "sent")
    await sb.scheduler.sleep(timing.message_delivered_after - timing.message_sent_after)
    if scenario.outcome == "undelivered":
        await transition(sb, record, "undelivered", scenario.error_code or 30003)
        return
    await transition(sb, record, "delivered")
    if record.channel == "whatsapp" and scenario.outcome in ("read", "open", "click"):
        await sb.scheduler.sleep(timing.message_read_after)
        await transition(sb, record, "read")
    if scenario.reply is not None:
        await sb.scheduler.sleep(scenario.reply_after if scenario.reply_after is not None else timing.reply_after)
        await deliver_inbound(sb, record.resource["to"], record.sender, scenario.reply, None)


# -- inbound ----------------------------------------------------------------------------------------------


def _country(number: str) -> str:
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(bare_number(number))) or ""
    except phonenumbers.NumberParseException:
        return ""


async def deliver_inbound(
    sb: Sandbox, from_: str, to: str, body: str, url: str | None, num_media: int = 0
) -> dict[str, Any]:
    """A user texts ``to``: Twilio POSTs the incoming-message webhook of that number."""
    channel = "whatsapp" if from_.startswith("whatsapp:") else "sms"
    target = url or getattr(sb.inbound_urls, channel)
    sid = new_sid("SM" if not num_media else "MM")
    now = sb.clock.now()
    params: dict[str, Any] = {
        "SmsMessageSid": sid,
        "NumMedia": str(num_media),
        "SmsSid": sid,
        "SmsStatus": "received",
        "Body": body,
        "To": to,
        "NumSegments": str(num_segments(body)),
        "MessageSid": sid,
        "AccountSid": sb.account_sid,
        "From": from_,
        "ApiVersion": API_VERSION,
    }
    if channel == "whatsapp":
        params.update(ProfileName="", WaId=bare_number(from_).lstrip("+"), MessageType="text")
        params["ReferralNumMedia"] = "0"
        sb.open_window(from_)
    else:
        params.update(FromCountry=_country(from_), ToCountry=_country(to), FromState="", ToState="")
        params.update(FromCity="", ToCity="", FromZip="", ToZip="")
    keyword = body.strip().upper()
    if keyword in STOP_WORDS:
        params["OptOutType"] = "STOP"
        sb.opted_out.add(bare_number(from_))
    elif keyword in START_WORDS:
        params["OptOutType"] = "START"
        sb.opted_out.discard(bare_number(from_))
    elif keyword in HELP_WORDS:
        params["OptOutType"] = "HELP"
    resource = {
        "account_sid": sb.account_sid,
        "api_version": API_VERSION,
        "body": body,
        "date_created": rfc2822(now),
        "date_sent": rfc2822(now),
        "date_updated": rfc2822(now),
        "direction": "inbound",
        "error_code": None,
        "error_message": None,
        "from": from_,
        "messaging_service_sid": None,
        "num_media": str(num_media),
        "num_segments": params["NumSegments"],
        "price": None,
        "price_unit": "USD",
        "sid": sid,
        "status": "received",
        "subresource_uris": {"media": f"/{API_VERSION}/Accounts/{sb.account_sid}/Messages/{sid}/Media.json"},
        "to": to,
        "uri": f"/{API_VERSION}/Accounts/{sb.account_sid}/Messages/{sid}.json",
    }
    sb.messages.put(sid, MessageRecord(resource, channel, "", Scenario(), from_))
    status: int | None = None
    if target:
        response = await sb.sender.post_twilio("inbound-message", target, params, sb.auth_token, sid=sid, to=to)
        status = response.status_code if response is not None else None
    return {"message_sid": sid, "url": target or None, "status": status, "params": params}
