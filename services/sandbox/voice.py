"""Twilio Calls: the API, the call lifecycle and answering-machine detection; the TwiML interpreter that
records what was said is :mod:`services.sandbox.twiml_interpreter`.

Supported verbs: ``<Say>``, ``<Play>``, ``<Pause>``, ``<Gather>`` (digits from the recipient's scenario,
POSTed to ``action``; no input falls through to the next verb as on Twilio), ``<Hangup>``, ``<Reject>``,
``<Redirect>``, ``<Dial>`` (``services.sandbox.dial``) and ``<Enqueue>`` (``services.sandbox.queues``).
Documents are fetched with a signed POST (GET when ``Method=GET``). A call created with ``Record=true``
is recorded from the answer: when it completes, a signed ``RecordingStatusCallback`` (``completed``, with
``RecordingSid``, ``RecordingUrl``, ``RecordingDuration``) is posted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.sandbox.scenarios import Scenario
from services.sandbox.state import PROVIDER_ERRORS, Sandbox, json_response, rfc2822
from services.sandbox.twilio_api import (
    API_VERSION,
    E164,
    first,
    gate,
    new_sid,
    not_found,
    parse_form,
    twilio_error,
)

router = APIRouter(tags=["twilio"], responses=PROVIDER_ERRORS)

MAX_DOCUMENTS = 25
_WORDS_PER_SECOND = 2.5


@dataclass(slots=True)
class CallRecord:
    resource: dict[str, Any]
    form: dict[str, Any]
    scenario: Scenario
    events: frozenset[str]
    transcript: list[dict[str, Any]] = field(default_factory=list)
    documents: list[str] = field(default_factory=list)
    digits_used: int = 0
    sequence: int = 0
    answered_at: float | None = None
    recordings: list[dict[str, Any]] = field(default_factory=list)

    def view(self) -> dict[str, Any]:
        said = [step["text"] for step in self.transcript if step["verb"] == "Say"]
        return {
            **self.resource,
            "transcript": self.transcript,
            "spoken": " ".join(said),
            "documents": self.documents,
            "recordings": self.recordings,
        }


def call_resource(sb: Sandbox, sid: str, now: float, form: dict[str, Any]) -> dict[str, Any]:
    uri = f"/{API_VERSION}/Accounts/{sb.account_sid}/Calls/{sid}.json"
    date = rfc2822(now)
    base = uri[:-5]
    return {
        "account_sid": sb.account_sid,
        "annotation": None,
        "answered_by": None,
        "api_version": API_VERSION,
        "caller_name": None,
        "date_created": date,
        "date_updated": date,
        "direction": "outbound-api",
        "duration": None,
        "end_time": None,
        "forwarded_from": None,
        "from": first(form, "From"),
        "from_formatted": first(form, "From"),
        "group_sid": None,
        "parent_call_sid": None,
        "phone_number_sid": None,
        "price": None,
        "price_unit": "USD",
        "queue_time": "0",
        "sid": sid,
        "start_time": None,
        "status": "queued",
        "subresource_uris": {
            "notifications": base + "/Notifications.json",
            "recordings": base + "/Recordings.json",
            "payments": base + "/Payments.json",
            "events": base + "/Events.json",
            "siprec": base + "/Siprec.json",
            "streams": base + "/Streams.json",
            "transcriptions": base + "/Transcriptions.json",
            "user_defined_message_subscriptions": base + "/UserDefinedMessageSubscriptions.json",
            "user_defined_messages": base + "/UserDefinedMessages.json",
        },
        "to": first(form, "To"),
        "to_formatted": first(form, "To"),
        "trunk_sid": None,
        "uri": uri,
        "stir_verstat": None,
    }


@router.post("/2010-04-01/Accounts/{account_sid}/Calls.json", status_code=201)
async def create_call(account_sid: str, request: Request) -> Response:
    sb: Sandbox = request.app.state.sandbox
    received = sb.clock.now()
    form = parse_form(await request.body())
    to = first(form, "To")
    gated = await gate(sb, request, account_sid, creates=True)
    if isinstance(gated, Response):
        sb.record(request, "twilio", received, gated.status_code, form=form, to=[to], fault="injected")
        return gated
    error: tuple[int, str] | None = None
    scenario = sb.scenarios.for_call(to) if to else Scenario()
    if not to:
        error = 21201, "No 'To' number is specified"
    elif not E164.match(to) or scenario.outcome == "invalid":
        error = 21211, f"The 'To' number {to} is not a valid phone number."
    elif not first(form, "From"):
        error = 21213, "No 'From' number is specified"
    elif not (first(form, "Url") or first(form, "Twiml") or first(form, "ApplicationSid")):
        error = 21205, "Url parameter is required."
    if error is not None:
        sb.record(request, "twilio", received, 400, form=form, to=[to])
        return twilio_error(400, *error)
    sid = new_sid("CA")
    scenario = sb.scenarios.next_call(to)
    raw_events = form.get("StatusCallbackEvent") or []
    events = raw_events if isinstance(raw_events, list) else raw_events.split()
    record = CallRecord(
        call_resource(sb, sid, received, form), form, scenario, frozenset(events) or frozenset({"completed"})
    )
    sb.calls.put(sid, record)
    sb.scheduler.spawn(run_call(sb, record))
    payload = orjson.dumps(record.resource)
    fault = None
    if gated.hold_s:
        fault = "timeout"
        await sb.hold(gated.hold_s)
    sb.record(request, "twilio", received, 201, form=form, to=[to], sid=sid, fault=fault)
    return Response(payload, status_code=201, media_type="application/json")


@router.get("/2010-04-01/Accounts/{account_sid}/Calls/{sid}.json")
async def fetch_call(account_sid: str, sid: str, request: Request) -> Response:
    sb: Sandbox = request.app.state.sandbox
    received = sb.clock.now()
    gated = await gate(sb, request, account_sid, creates=False)
    record = sb.calls.get(sid)
    if not isinstance(gated, Response) and record is None:
        gated = not_found(request.url.path)
    sb.record(request, "twilio", received, gated.status_code if isinstance(gated, Response) else 200, sid=sid)
    if isinstance(gated, Response):
        return gated
    assert record is not None
    return json_response(record.resource)


# -- lifecycle --------------------------------------------------------------------------------------------


def call_params(sb: Sandbox, record: CallRecord) -> dict[str, Any]:
    r = record.resource
    params = {
        "AccountSid": sb.account_sid,
        "ApiVersion": API_VERSION,
        "CallSid": r["sid"],
        "CallStatus": r["status"],
        "Called": r["to"],
        "Caller": r["from"],
        "Direction": "outbound-api",
        "From": r["from"],
        "To": r["to"],
    }
    return params


async def status_event(sb: Sandbox, record: CallRecord, event: str, **extra: str) -> None:
    url = first(record.form, "StatusCallback")
    if not url or event not in record.events:
        return
    params = call_params(sb, record)
    params.update(
        CallbackSource="call-progress-events",
        SequenceNumber=str(record.sequence),
        Timestamp=rfc2822(sb.clock.now()),
        **extra,
    )
    record.sequence += 1
    await sb.sender.post_twilio(
        "call-status", url, params, sb.auth_token, sid=record.resource["sid"], to=record.resource["to"]
    )


def set_status(sb: Sandbox, record: CallRecord, status: str) -> None:
    record.resource["status"] = status
    record.resource["date_updated"] = rfc2822(sb.clock.now())


def answered_by(record: CallRecord) -> str | None:
    detection = first(record.form, "MachineDetection")
    if not detection:
        return None
    if record.scenario.answered_by:
        return record.scenario.answered_by
    if record.scenario.answer == "machine":
        return "machine_end_beep" if detection == "DetectMessageEnd" else "machine_start"
    return "human"


async def run_call(sb: Sandbox, record: CallRecord) -> None:
    from services.sandbox.twiml_interpreter import CallerHungUp, run_twiml  # (the interpreter builds on this module)

    timing = sb.settings.timing
    r = record.resource
    set_status(sb, record, "initiated")
    await status_event(sb, record, "initiated")
    await sb.scheduler.sleep(timing.call_ringing_after)
    set_status(sb, record, "ringing")
    await status_event(sb, record, "ringing")
    await sb.scheduler.sleep(timing.call_answered_after - timing.call_ringing_after)
    answer = record.scenario.answer or "human"
    if answer in ("busy", "no-answer", "failed"):
        set_status(sb, record, answer)
        r["duration"] = "0"
        r["end_time"] = r["date_updated"]
        await status_event(sb, record, "completed", CallDuration="0", Duration="0")
        return
    now = sb.clock.now()
    record.answered_at = now
    r["start_time"] = rfc2822(now)
    set_status(sb, record, "in-progress")
    amd = answered_by(record)
    r["answered_by"] = amd
    await status_event(sb, record, "answered")
    extra: dict[str, str] = {}
    if amd is not None:
        if first(record.form, "AsyncAmd").lower() == "true":
            sb.scheduler.spawn(async_amd(sb, record, amd))
        else:
            extra["AnsweredBy"] = amd
    try:
        await run_twiml(sb, record, extra)
    except CallerHungUp:
        record.transcript.append({"verb": "CallerHangup", "seconds": 0})
    finally:
        seconds = max(1, round(sum(step.get("seconds", 0) for step in record.transcript)))
        set_status(sb, record, "completed")
        r["duration"] = str(seconds)
        r["end_time"] = r["date_updated"]
        done: dict[str, str] = {"CallDuration": str(seconds), "Duration": str(max(1, -(-seconds // 60)))}
        if amd is not None:
            done["AnsweredBy"] = amd
    await status_event(sb, record, "completed", **done)
    await recording_event(sb, record, seconds)


async def recording_event(sb: Sandbox, record: CallRecord, seconds: int) -> None:
    """The recording of an answered call with ``Record=true``: metadata to ``RecordingStatusCallback``."""
    if first(record.form, "Record").lower() != "true":
        return
    sid = new_sid("RE")
    recording = {
        "AccountSid": sb.account_sid,
        "CallSid": record.resource["sid"],
        "RecordingSid": sid,
        "RecordingUrl": f"https://api.twilio.com/{API_VERSION}/Accounts/{sb.account_sid}/Recordings/{sid}",
        "RecordingStatus": "completed",
        "RecordingDuration": str(seconds),
        "RecordingChannels": "1",
        "RecordingSource": "OutboundAPI",
        "RecordingStartTime": record.resource["start_time"] or rfc2822(sb.clock.now()),
    }
    record.recordings.append(recording)
    url = first(record.form, "RecordingStatusCallback")
    events = (first(record.form, "RecordingStatusCallbackEvent") or "completed").split()
    if url and "completed" in events:
        await sb.sender.post_twilio(
            "recording-status", url, recording, sb.auth_token, sid=record.resource["sid"], to=record.resource["to"]
        )


async def async_amd(sb: Sandbox, record: CallRecord, amd: str) -> None:
    url = first(record.form, "AsyncAmdStatusCallback")
    if not url:
        return
    await sb.scheduler.sleep(3.0)
    params = {
        "AccountSid": sb.account_sid,
        "CallSid": record.resource["sid"],
        "AnsweredBy": amd,
        "MachineDetectionDuration": "3000",
    }
    await sb.sender.post_twilio(
        "amd-status", url, params, sb.auth_token, sid=record.resource["sid"], to=record.resource["to"]
    )
