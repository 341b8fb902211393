"""The sandbox's TwiML interpreter: fetches a call's documents (signed) and plays their verbs, recording what
was said. ``<Dial>`` is :mod:`services.sandbox.dial`, ``<Enqueue>`` :mod:`services.sandbox.queues`; the
call's lifecycle is :mod:`services.sandbox.voice`."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import urlencode, urljoin

from services.sandbox.callbacks import CallbackResponse
from services.sandbox.state import Sandbox
from services.sandbox.twilio_api import first
from services.sandbox.voice import _WORDS_PER_SECOND, MAX_DOCUMENTS, CallRecord, call_params


async def request_twiml(
    sb: Sandbox, record: CallRecord, url: str, method: str, params: dict[str, Any]
) -> CallbackResponse | None:
    """A signed request for a TwiML document (GET with the params in the query, else POST)."""
    record.documents.append(url)
    sid, to = record.resource["sid"], record.resource["to"]
    if method.upper() == "GET":
        full = url + ("&" if "?" in url else "?") + urlencode(params)
        return await sb.sender.post_twilio("twiml-fetch", full, {}, sb.auth_token, sid=sid, to=to)
    return await sb.sender.post_twilio("twiml-fetch", url, params, sb.auth_token, sid=sid, to=to)


async def fetch_twiml(
    sb: Sandbox, record: CallRecord, url: str, method: str, params: dict[str, Any]
) -> ET.Element | None:
    response = await request_twiml(sb, record, url, method, params)
    if response is None or response.status_code >= 400:
        record.transcript.append({"verb": "error", "code": 11200, "url": url, "seconds": 0})
        return None
    return parse_twiml(record, response.content)


def parse_twiml(record: CallRecord, text: str | bytes) -> ET.Element | None:
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        record.transcript.append({"verb": "error", "code": 12100, "seconds": 0})
        return None
    if root.tag != "Response":
        record.transcript.append({"verb": "error", "code": 12100, "seconds": 0})
        return None
    return root


async def run_twiml(sb: Sandbox, record: CallRecord, extra: dict[str, str]) -> None:
    form = record.form
    url = first(form, "Url")
    if first(form, "Twiml"):
        document = parse_twiml(record, first(form, "Twiml"))
    else:
        params = {**call_params(sb, record), **extra}
        document = await fetch_twiml(sb, record, url, first(form, "Method") or "POST", params)
    for _ in range(MAX_DOCUMENTS):
        if document is None:
            return
        follow = await execute(sb, record, document, url)
        if follow is None:
            return
        url, method, params = follow
        document = await fetch_twiml(sb, record, url, method, params)


class CallerHungUp(Exception):
    """The scenario's person hung up (``hangup_after_s``): the call ends where it is."""


def hang_up_if_due(record: CallRecord) -> None:
    limit = record.scenario.hangup_after_s
    if limit is not None and sum(step.get("seconds", 0) for step in record.transcript) >= limit:
        raise CallerHungUp()


def timed_step(record: CallRecord, verb: ET.Element, **extra: Any) -> dict[str, Any] | None:
    """Record a ``<Say>``, ``<Play>`` or ``<Pause>`` (cut short where the caller hangs up); ``None`` otherwise."""
    hang_up_if_due(record)
    tag = verb.tag
    if tag == "Say":
        text = " ".join("".join(verb.itertext()).split())
        seconds = max(1.0, len(text.split()) / _WORDS_PER_SECOND)
        loops = int(verb.get("loop", "1") or 1)
        step: dict[str, Any] = {
            "verb": "Say",
            "text": text,
            "language": verb.get("language"),
            "voice": verb.get("voice"),
            "loop": loops,
            "seconds": seconds * max(1, loops),
        }
    elif tag == "Play":
        step = {"verb": "Play", "url": (verb.text or "").strip(), "seconds": 5.0}
    elif tag == "Pause":
        step = {"verb": "Pause", "seconds": float(verb.get("length", "1") or 1)}
    else:
        return None
    step.update(extra)
    limit = record.scenario.hangup_after_s
    if limit is not None:
        spoken = sum(s.get("seconds", 0) for s in record.transcript)
        if spoken + step["seconds"] > limit:
            step["seconds"], step["interrupted"] = max(0.0, limit - spoken), True
    record.transcript.append(step)
    return step


async def say(sb: Sandbox, record: CallRecord, verb: ET.Element) -> None:
    step = timed_step(record, verb)
    if step is None:
        return
    await sb.scheduler.sleep(step["seconds"])
    hang_up_if_due(record)


async def execute(
    sb: Sandbox, record: CallRecord, document: ET.Element, url: str
) -> tuple[str, str, dict[str, Any]] | None:
    """Run one TwiML document; return the next document to fetch, or ``None`` when the call ends."""
    for verb in document:
        tag = verb.tag
        if tag in ("Say", "Play", "Pause"):
            await say(sb, record, verb)
        elif tag == "Gather":
            for child in verb:
                await say(sb, record, child)
            digits = None
            if record.digits_used < len(record.scenario.digits):
                digits = record.scenario.digits[record.digits_used]
                record.digits_used += 1
            timeout = float(verb.get("timeout", "5") or 5)
            record.transcript.append({"verb": "Gather", "digits": digits, "seconds": 2.0 if digits else timeout})
            await sb.scheduler.sleep(record.transcript[-1]["seconds"])
            empty_action = verb.get("actionOnEmptyResult", "false").lower() == "true"
            if digits is None and not empty_action:
                continue
            action = urljoin(url, verb.get("action") or url)
            params = {**call_params(sb, record), "Digits": digits or ""}
            finish = verb.get("finishOnKey", "#")
            if digits and finish:
                params["FinishedOnKey"] = ""
            return action, verb.get("method", "POST"), params
        elif tag == "Dial":
            from services.sandbox.dial import dial

            follow = await dial(sb, record, verb, url)
            if follow is not None:
                return follow
        elif tag == "Enqueue":
            from services.sandbox.queues import enqueue

            follow, ended = await enqueue(sb, record, verb, url)
            if ended:
                return None
            if follow is not None:
                return follow
        elif tag == "Redirect":
            target = urljoin(url, (verb.text or "").strip() or url)
            record.transcript.append({"verb": "Redirect", "url": target, "seconds": 0})
            return target, verb.get("method", "POST"), call_params(sb, record)
        elif tag in ("Hangup", "Reject"):
            record.transcript.append({"verb": tag, "seconds": 0})
            return None
        else:
            record.transcript.append({"verb": tag, "unsupported": True, "seconds": 0})
    return None
