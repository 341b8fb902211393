"""``<Enqueue>`` and ``<Dial><Queue>``: named call queues, the hold (``waitUrl``), ``<Leave>``, dequeuing.

``<Enqueue waitUrl action>name</Enqueue>`` puts the call at the back of the named queue (created on
demand; past ``MAX_QUEUE_SIZE`` members the result is ``queue-full``). While the call waits, the
``waitUrl`` document (POST unless ``waitUrlMethod=GET``) is fetched with ``QueueSid``, ``QueuePosition``
(1 is the front), ``QueueTime``, ``AvgQueueTime``, ``CurrentQueueSize`` and ``MaxQueueSize`` and run:
``<Say>``, ``<Play>``, ``<Pause>`` (hold audio, in the transcript with ``hold: true``), ``<Redirect>`` (the
next wait document), ``<Leave>`` and ``<Hangup>``; when it ends it is fetched again, as on Twilio.
Without ``waitUrl`` the caller hears hold music (``<Play>`` steps of ``HOLD_MUSIC_S``). ``QueueTime`` is
provider time, the seconds of hold audio played, compressed by the speed factor like every other
provider delay, so a test's hold lasts as many wait documents whatever the machine's load.

The call leaves the queue by ``<Leave>`` (``QueueResult=leave``: the ``action`` is requested at once), by
hanging up (the scenario's ``hangup_after_s``, or ``<Hangup>`` in the wait document: ``hangup``, the
action is still requested and the call ends), or by another call's ``<Dial><Queue url>name</Queue></Dial>``
taking it from the front (``bridged``): the dequeued caller first runs the noun's ``url`` TwiML (``<Say>``,
``<Play>``, ``<Pause>``), the two then talk for the dequeuing call's scenario ``talk_s``, and the caller's
``action`` is requested when they disconnect. ``action`` gets ``QueueResult``, ``QueueSid`` and
``QueueTime`` (both only when the call was enqueued) and its TwiML continues the call; without
``action`` the next verb runs.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from services.sandbox.twilio_api import new_sid

if TYPE_CHECKING:
    from services.sandbox.state import Sandbox
    from services.sandbox.voice import CallRecord

MAX_QUEUE_SIZE = 1000
HOLD_MUSIC = "https://api.twilio.com/cowbell.mp3"
HOLD_MUSIC_S = 5.0
#: Wait documents in a row that play nothing: Twilio would refetch them forever; the sandbox gives up.
MAX_SILENT_DOCUMENTS = 25
DEFAULT_TALK_S = 30.0
Follow = tuple[str, str, dict[str, Any]]


@dataclass(eq=False)
class Member:
    """A call waiting in a queue, and what a dequeuing call tells it."""

    record: CallRecord
    #: Provider seconds of hold audio played so far (``QueueTime``).
    waited: float = 0.0
    dequeued_by: str | None = None
    #: The dequeuing ``<Queue>`` noun's ``(url, method)``: TwiML the caller hears before the bridge.
    announce: tuple[str, str] | None = None
    talk: float = 0.0
    dequeued: asyncio.Event = field(default_factory=asyncio.Event)
    #: The caller ran the announcement and is ready to talk.
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    #: The caller left the queue for good (hung up, left, or the call ended).
    gone: asyncio.Event = field(default_factory=asyncio.Event)
    #: The bridged conversation is over (``talk`` seconds).
    ended: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(eq=False)
class CallQueue:
    name: str
    sid: str
    members: list[Member] = field(default_factory=list)
    max_size: int = MAX_QUEUE_SIZE
    #: Queue times of the calls that left (``AvgQueueTime``).
    waits: list[float] = field(default_factory=list)
    arrivals: asyncio.Condition = field(default_factory=asyncio.Condition)

    def params(self, member: Member) -> dict[str, str]:
        average = sum(self.waits) / len(self.waits) if self.waits else 0.0
        return {
            "QueueSid": self.sid,
            "QueuePosition": str(self.members.index(member) + 1 if member in self.members else 0),
            "QueueTime": str(round(member.waited)),
            "AvgQueueTime": str(round(average)),
            "CurrentQueueSize": str(len(self.members)),
            "MaxQueueSize": str(self.max_size),
        }

    def view(self) -> dict[str, Any]:
        return {
            "name": self.name, "sid": self.sid, "size": len(self.members), "max_size": self.max_size,
            "members": [{"call_sid": m.record.resource["sid"], "to": m.record.resource["to"],
                         "queue_time": round(m.waited)} for m in self.members],
            "average_wait": round(sum(self.waits) / len(self.waits)) if self.waits else 0,
        }


def _queue(sb: Sandbox, name: str) -> CallQueue:
    queue = sb.queues.get(name)
    if queue is None:
        queue = sb.queues[name] = CallQueue(name, new_sid("QU"))
    return queue


async def enqueue(sb: Sandbox, record: CallRecord, verb: ET.Element, url: str) -> tuple[Follow | None, bool]:
    """Run one ``<Enqueue>``: the ``action`` request to make next (``None``: the next verb), and whether the
    call ended (``<Hangup>`` in the wait document). A caller who hangs up raises ``CallerHungUp`` after the
    action was requested."""
    from services.sandbox.twiml_interpreter import CallerHungUp, request_twiml
    from services.sandbox.voice import call_params

    name = " ".join((verb.text or "").split())
    queue = _queue(sb, name)
    step: dict[str, Any] = {"verb": "Enqueue", "queue": name, "queue_sid": queue.sid, "result": None,
                            "queue_time": 0, "seconds": 0}
    record.transcript.append(step)
    params = call_params(sb, record)
    hung_up: CallerHungUp | None = None
    if len(queue.members) >= queue.max_size:
        result = "queue-full"
    else:
        member = Member(record)
        queue.members.append(member)
        async with queue.arrivals:
            queue.arrivals.notify_all()
        try:
            result = await _wait(sb, queue, member, verb, url)
        except CallerHungUp as exc:
            result, hung_up = "hangup", exc
        finally:
            if member in queue.members:
                queue.members.remove(member)
            member.gone.set()
        queue.waits.append(member.waited)
        step["queue_time"] = round(member.waited)
        params.update(QueueSid=queue.sid, QueueTime=str(round(member.waited)))
    step["result"] = result
    params["QueueResult"] = result
    action = verb.get("action")
    method = verb.get("method", "POST")
    if result in ("hangup", "error"):
        if action:  # requested, though nothing it answers is played any more: its answer is not read
            await request_twiml(sb, record, urljoin(url, action), method, params)
        if hung_up is not None:
            raise hung_up
        return None, True
    if not action:
        return None, False
    return (urljoin(url, action), method, params), False


async def _wait(sb: Sandbox, queue: CallQueue, member: Member, verb: ET.Element, url: str) -> str:
    from services.sandbox.twiml_interpreter import fetch_twiml
    from services.sandbox.voice import call_params

    record = member.record
    wait_url = verb.get("waitUrl")
    document_url = urljoin(url, wait_url) if wait_url else None
    method = verb.get("waitUrlMethod", "POST")
    silent = 0
    while True:
        if member.dequeued.is_set():
            return await _bridged(sb, queue, member)
        if document_url is None:
            music = ET.Element("Play")
            music.text = HOLD_MUSIC
            await _hold_step(sb, member, music)
            continue
        params = {**call_params(sb, record), **queue.params(member)}
        document = await fetch_twiml(sb, record, document_url, method, params)
        if document is None:
            return "error"
        before = member.waited
        kind, target = await _run_wait_document(sb, member, document, document_url)
        if kind == "dequeued":
            return await _bridged(sb, queue, member)
        if kind in ("leave", "hangup"):
            return kind
        if target is not None:
            document_url, method = target, "POST"
        silent = silent + 1 if member.waited == before else 0
        if silent >= MAX_SILENT_DOCUMENTS:
            record.transcript.append({"verb": "error", "code": 11200, "url": document_url, "seconds": 0,
                                      "detail": "the wait document plays nothing"})
            return "error"


async def _run_wait_document(
    sb: Sandbox, member: Member, document: ET.Element, url: str
) -> tuple[str, str | None]:
    record = member.record
    for verb in document:
        if member.dequeued.is_set():
            return "dequeued", None
        tag = verb.tag
        if tag in ("Say", "Play", "Pause"):
            if await _hold_step(sb, member, verb):
                return "dequeued", None
        elif tag == "Leave":
            record.transcript.append({"verb": "Leave", "seconds": 0})
            return "leave", None
        elif tag == "Hangup":
            record.transcript.append({"verb": "Hangup", "seconds": 0})
            return "hangup", None
        elif tag == "Redirect":
            target = urljoin(url, (verb.text or "").strip() or url)
            record.transcript.append({"verb": "Redirect", "url": target, "seconds": 0})
            return "redirect", target
        else:
            record.transcript.append({"verb": tag, "unsupported": True, "seconds": 0})
    return "dequeued" if member.dequeued.is_set() else "done", None


async def _hold_step(sb: Sandbox, member: Member, verb: ET.Element) -> bool:
    """Play one piece of hold audio; True when a dequeuing call cut it short."""
    from services.sandbox.twiml_interpreter import hang_up_if_due, timed_step

    step = timed_step(member.record, verb, hold=True)
    if step is None:
        return False
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        await asyncio.wait_for(member.dequeued.wait(), sb.scheduler.real_seconds(step["seconds"]))
    except TimeoutError:
        member.waited += step["seconds"]
        hang_up_if_due(member.record)
        return False
    played = min(step["seconds"], (loop.time() - started) * sb.scheduler.speed)
    step["seconds"], step["interrupted"] = played, True
    member.waited += played
    return True


async def _bridged(sb: Sandbox, queue: CallQueue, member: Member) -> str:
    """Dequeued: the caller hears the noun's ``url`` TwiML, then talks until the conversation ends."""
    from services.sandbox.twiml_interpreter import fetch_twiml, say
    from services.sandbox.voice import call_params

    record = member.record
    if member.announce is not None:
        announce_url, method = member.announce
        params = {**call_params(sb, record), "QueueSid": queue.sid, "QueueTime": str(round(member.waited)),
                  "DequeingCallSid": member.dequeued_by or ""}
        document = await fetch_twiml(sb, record, announce_url, method, params)
        for verb in document if document is not None else ():
            if verb.tag in ("Say", "Play", "Pause"):
                await say(sb, record, verb)
    member.connected.set()
    await member.ended.wait()
    record.transcript.append({"verb": "Bridged", "with": member.dequeued_by, "seconds": member.talk})
    return "bridged"


async def dequeue(
    sb: Sandbox, record: CallRecord, verb: ET.Element, noun: ET.Element, url: str
) -> tuple[str, str | None, float, str | None]:
    """``<Dial><Queue>``: bridge the front caller of the queue; waits up to the ``<Dial>`` timeout for one.

    Returns ``(DialCallStatus, the dequeued call's sid, seconds talked, the queue's sid)``.
    """
    name = " ".join((noun.text or "").split())
    queue = sb.queues.get(name)
    if queue is None:
        return "failed", None, 0.0, None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + sb.scheduler.real_seconds(float(verb.get("timeout", "30") or 30))
    while True:
        member = next((m for m in queue.members if not m.dequeued.is_set()), None)
        if member is None:
            left = deadline - loop.time()
            if left <= 0:
                return "no-answer", None, 0.0, queue.sid
            async with queue.arrivals:
                try:
                    await asyncio.wait_for(queue.arrivals.wait(), left)
                except TimeoutError:
                    pass
            continue
        queue.members.remove(member)
        member.dequeued_by = record.resource["sid"]
        if noun.get("url"):
            member.announce = (urljoin(url, noun.get("url") or ""), noun.get("method", "POST"))
        member.dequeued.set()
        waiters = [asyncio.ensure_future(member.connected.wait()), asyncio.ensure_future(member.gone.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        if not member.connected.is_set():
            continue  # the caller hung up as it was taken: the next one
        talk = record.scenario.talk_s if record.scenario.talk_s is not None else DEFAULT_TALK_S
        await sb.scheduler.sleep(talk)
        member.talk = talk
        member.ended.set()
        return "completed", member.record.resource["sid"], talk, queue.sid
