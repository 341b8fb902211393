"""``<Dial>``: bridging a call to an agent (``<Number>``, ``<Sip>`` or a bare number), with a whisper;
``<Dial><Queue>`` takes a waiting caller from a queue instead (``services.sandbox.queues``).

The dialled party is a new child call (``parent_call_sid`` = the caller) whose behaviour is the
dialled address's scenario: ``human`` answers after the usual ringing time (if that is within the
``timeout``), ``busy``/``failed`` refuse at once, ``no-answer`` (and a machine) ring out the timeout.
An answering agent first runs the ``url`` TwiML of its noun (the whisper: the agent hears it, the
caller does not; a ``<Hangup>`` there refuses the bridge), then talks for the scenario's ``talk_s``.
The child's ``statusCallback``/``statusCallbackEvent`` get its progress; the ``action`` URL of the
``<Dial>`` gets ``DialCallStatus``, ``DialCallSid``, ``DialCallDuration`` and ``DialBridged`` and its TwiML
continues the call (without ``action`` the next verb runs, as on Twilio).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import urljoin

from services.sandbox.state import Sandbox, rfc2822
from services.sandbox.twilio_api import new_sid

DEFAULT_TALK_S = 30.0
NOUNS = ("Number", "Sip", "Client", "Queue")


def _leg_form(record_form: dict[str, Any], target: str, noun: ET.Element | None) -> dict[str, Any]:
    form: dict[str, Any] = {"To": target, "From": record_form.get("From", "")}
    if noun is not None:
        if noun.get("statusCallback"):
            form["StatusCallback"] = noun.get("statusCallback")
        events = (noun.get("statusCallbackEvent") or "").split()
        if events:
            form["StatusCallbackEvent"] = events
    return form


async def dial(sb: Sandbox, record: Any, verb: ET.Element, url: str) -> tuple[str, str, dict[str, Any]] | None:
    """Run one ``<Dial>``; the ``action`` request to make next, or ``None`` to go on with the next verb."""
    from services.sandbox.twiml_interpreter import execute, fetch_twiml
    from services.sandbox.voice import CallRecord, call_params, call_resource, status_event

    timing = sb.settings.timing
    timeout = float(verb.get("timeout", "30") or 30)
    nouns = [child for child in verb if child.tag in NOUNS]
    noun = nouns[0] if nouns else None
    if noun is not None and noun.tag == "Queue":
        return await _dial_queue(sb, record, verb, noun, url)
    target = " ".join(((noun.text if noun is not None else verb.text) or "").split())
    scenario = sb.scenarios.next_call(target)
    leg_sid = new_sid("CA")
    absolute = {k: urljoin(url, v) if isinstance(v, str) and k == "StatusCallback" else v
                for k, v in _leg_form(record.form, target, noun).items()}
    leg = CallRecord(call_resource(sb, leg_sid, sb.clock.now(), absolute), absolute, scenario,
                     frozenset(absolute.get("StatusCallbackEvent") or ["completed"]))
    leg.resource.update(parent_call_sid=record.resource["sid"], direction="outbound-dial")
    sb.calls.put(leg_sid, leg)

    def set_leg(status: str) -> None:
        leg.resource["status"] = status
        leg.resource["date_updated"] = rfc2822(sb.clock.now())

    set_leg("initiated")
    await status_event(sb, leg, "initiated")
    set_leg("ringing")
    await status_event(sb, leg, "ringing")
    answer = scenario.answer or "human"
    ring = timing.call_answered_after
    talk = 0.0
    result: str
    if answer in ("busy", "failed"):
        result = answer
    elif answer != "human" or ring > timeout:
        await sb.scheduler.sleep(timeout)
        result = "no-answer"
    else:
        await sb.scheduler.sleep(ring)
        set_leg("in-progress")
        leg.answered_at = sb.clock.now()
        leg.resource["start_time"] = rfc2822(leg.answered_at)
        await status_event(sb, leg, "answered")
        whisper = noun.get("url") if noun is not None else None
        bridged = True
        if whisper:
            document = await fetch_twiml(sb, leg, urljoin(url, whisper), noun.get("method", "POST") if noun is not None
                                         else "POST", call_params(sb, leg))
            if document is not None:
                await execute(sb, leg, document, urljoin(url, whisper))
            bridged = not any(step["verb"] in ("Hangup", "Reject") for step in leg.transcript)
        if bridged:
            talk = scenario.talk_s if scenario.talk_s is not None else DEFAULT_TALK_S
            await sb.scheduler.sleep(talk)
            result = "completed"
        else:
            result = "no-answer"
    seconds = round(talk)
    final = "completed" if result in ("completed", "no-answer") and leg.answered_at is not None else result
    set_leg(final)
    leg.resource["duration"] = str(seconds)
    leg.resource["end_time"] = leg.resource["date_updated"]
    await status_event(sb, leg, "completed", CallDuration=str(seconds))
    whispered = " ".join(step["text"] for step in leg.transcript if step["verb"] == "Say")
    record.transcript.append({"verb": "Dial", "to": target, "noun": noun.tag if noun is not None else "Number",
                              "status": result, "call_sid": leg_sid, "whisper": whispered, "seconds": talk})
    action = verb.get("action")
    if not action:
        return None
    params = {**call_params(sb, record), "DialCallStatus": result, "DialCallSid": leg_sid,
              "DialCallDuration": str(seconds), "DialBridged": "true" if result == "completed" else "false"}
    return urljoin(url, action), verb.get("method", "POST"), params


async def _dial_queue(sb: Sandbox, record: Any, verb: ET.Element, noun: ET.Element,
                      url: str) -> tuple[str, str, dict[str, Any]] | None:
    """``<Dial><Queue>``: this call takes the front caller of the queue (``services.sandbox.queues``)."""
    from services.sandbox.queues import dequeue
    from services.sandbox.voice import call_params

    name = " ".join((noun.text or "").split())
    result, member_sid, talk, queue_sid = await dequeue(sb, record, verb, noun, url)
    record.transcript.append({"verb": "Dial", "to": name, "noun": "Queue", "status": result, "call_sid": member_sid,
                              "whisper": "", "seconds": talk})
    action = verb.get("action")
    if not action:
        return None
    params = {**call_params(sb, record), "DialCallStatus": result, "DialCallSid": member_sid or "",
              "DialCallDuration": str(round(talk)), "DialBridged": "true" if result == "completed" else "false"}
    if queue_sid is not None:
        params["QueueSid"] = queue_sid
    return urljoin(url, action), verb.get("method", "POST"), params
