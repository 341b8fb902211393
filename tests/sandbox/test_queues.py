"""``<Enqueue>`` and ``<Dial><Queue>`` in the sandbox: a caller on hold until it leaves, an agent's call taking
the front caller, hang-ups while waiting, and an agent busy on one dial and free on the next."""

from __future__ import annotations

import asyncio

from services.sandbox.testing import SandboxHandle
from tests.sandbox.conftest import Receiver, twilio_valid
from tests.sandbox.test_dial import AFTER
from tests.sandbox.test_twilio_messages import FROM, number
from tests.sandbox.test_voice import wait_status

HOLD = """<Response>
  <Say language="es-MX">Un momento.</Say>
  <Enqueue waitUrl="/voice/wait{who}" action="/voice/queued{who}">{queue}</Enqueue>
  <Say language="es-MX">No se dice: la acción de Enqueue toma el control.</Say>
</Response>"""
WAIT = """<Response><Say language="es-MX">Por favor espere.</Say><Pause length="2"/></Response>"""
LEAVE = """<Response><Leave/></Response>"""
AGENT = """<Response>
  <Dial timeout="{timeout}" action="/voice/agent-done">
    <Queue url="/voice/connecting">{queue}</Queue>
  </Dial>
</Response>"""
CONNECTING = """<Response><Say language="es-MX">Le comunicamos con un asesor.</Say></Response>"""


async def call(sandbox: SandboxHandle, receiver: Receiver, path: str, to: str | None = None) -> str:
    client = sandbox.twilio_client()
    placed = await asyncio.to_thread(client.calls.create, to=to or number(), from_=FROM, url=receiver.url + path)
    return str(placed.sid)


async def waiting(sandbox: SandboxHandle, queue: str, count: int) -> list[dict]:
    async def probe() -> list[dict] | None:
        found = [q for q in await sandbox.queues() if q["name"] == queue]
        return found[0]["members"] if found and len(found[0]["members"]) == count else None

    return await sandbox.eventually(probe)


async def test_a_caller_on_hold_hears_the_wait_document_again_and_again_until_it_leaves(
    sandbox: SandboxHandle, receiver: Receiver
) -> None:
    receiver.reply("/voice/start", HOLD.format(who="", queue="support"))
    receiver.reply("/voice/wait", WAIT)
    receiver.reply("/voice/queued", AFTER)
    sid = await call(sandbox, receiver, "/voice/start")
    waits = await receiver.wait("/voice/wait", 3)
    [member] = await waiting(sandbox, "support", 1)
    assert member["call_sid"] == sid
    token = sandbox.settings.twilio.auth_token.get_secret_value()
    assert all(twilio_valid(token, w) and w.param("CallSid") == sid for w in waits)
    # "Por favor espere." (1.2 s) and a 2 s pause per document: provider time, whatever the machine's load
    assert [w.param("QueueTime") for w in waits[:3]] == ["0", "3", "6"]
    assert {(w.param("QueuePosition"), w.param("CurrentQueueSize"), w.param("MaxQueueSize")) for w in waits} == {
        ("1", "1", "1000")}
    assert waits[0].param("QueueSid").startswith("QU")

    receiver.reply("/voice/wait", LEAVE)
    done = await wait_status(sandbox, sid, "completed")
    [queued] = await receiver.wait("/voice/queued")
    assert twilio_valid(token, queued) and queued.param("QueueResult") == "leave"
    assert queued.param("QueueSid") == waits[0].param("QueueSid") and int(queued.param("QueueTime") or 0) >= 6
    enqueue = next(step for step in done["transcript"] if step["verb"] == "Enqueue")
    assert (enqueue["queue"], enqueue["result"]) == ("support", "leave")
    assert all(step.get("hold") for step in done["transcript"] if step["verb"] == "Pause")
    assert done["spoken"].startswith("Un momento. Por favor espere.") and done["spoken"].endswith(
        "Gracias por su llamada.")
    assert "No se dice" not in done["spoken"]
    assert [q["size"] for q in await sandbox.queues() if q["name"] == "support"] == [0]

    # An agent dialling the empty queue rings out its timeout; a queue that never existed is an error.
    receiver.reply("/voice/agent", AGENT.format(timeout=5, queue="support"))
    await wait_status(sandbox, await call(sandbox, receiver, "/voice/agent"), "completed")
    receiver.reply("/voice/agent", AGENT.format(timeout=5, queue="nobody-here"))
    await wait_status(sandbox, await call(sandbox, receiver, "/voice/agent"), "completed")
    results = [(r.param("DialCallStatus"), r.param("DialBridged")) for r in await receiver.wait("/voice/agent-done", 2)]
    assert results == [("no-answer", "false"), ("failed", "false")]


async def test_an_agent_call_takes_the_front_caller_and_the_caller_hangs_up_or_leaves_the_queue(
    sandbox: SandboxHandle, receiver: Receiver
) -> None:
    for who in ("-a", "-b"):
        receiver.reply(f"/voice/start{who}", HOLD.format(who=who, queue="agents"))
        receiver.reply(f"/voice/wait{who}", WAIT)
        receiver.reply(f"/voice/queued{who}", AFTER)
    receiver.reply("/voice/connecting", CONNECTING)
    first = await call(sandbox, receiver, "/voice/start-a")
    await waiting(sandbox, "agents", 1)
    second = await call(sandbox, receiver, "/voice/start-b")
    members = await waiting(sandbox, "agents", 2)
    assert [m["call_sid"] for m in members] == [first, second]  # first in, first out

    agent_number = number()
    await sandbox.set_scenario(agent_number, answer="human", talk_s=15)
    receiver.reply("/voice/agent", AGENT.format(timeout=30, queue="agents"))
    agent = await call(sandbox, receiver, "/voice/agent", to=agent_number)
    taken = await wait_status(sandbox, first, "completed")
    token = sandbox.settings.twilio.auth_token.get_secret_value()
    # the caller heard the noun's url TwiML, then talked 15 s with the agent
    [connecting] = receiver.at("/voice/connecting")
    assert twilio_valid(token, connecting) and connecting.param("CallSid") == first
    assert connecting.param("DequeingCallSid") == agent
    assert taken["spoken"].endswith("Le comunicamos con un asesor. Gracias por su llamada.")
    bridged = next(step for step in taken["transcript"] if step["verb"] == "Bridged")
    assert (bridged["with"], bridged["seconds"]) == (agent, 15)
    [queued] = await receiver.wait("/voice/queued-a")
    assert queued.param("QueueResult") == "bridged"
    agent_call = await wait_status(sandbox, agent, "completed")
    dial = next(step for step in agent_call["transcript"] if step["verb"] == "Dial")
    assert (dial["noun"], dial["status"], dial["call_sid"], dial["seconds"]) == ("Queue", "completed", first, 15)
    [done] = await receiver.wait("/voice/agent-done")
    assert (done.param("DialCallStatus"), done.param("DialCallSid"), done.param("DialCallDuration")) == (
        "completed", first, "15")
    assert done.param("QueueSid") == queued.param("QueueSid")

    # The second caller moved to the front; a <Hangup> in its wait document ends the call (action: hangup).
    await receiver.wait("/voice/wait-b", len(receiver.at("/voice/wait-b")) + 1)
    assert receiver.at("/voice/wait-b")[-1].param("QueuePosition") == "1"
    receiver.reply("/voice/wait-b", "<Response><Hangup/></Response>")
    left = await wait_status(sandbox, second, "completed")
    [gone] = await receiver.wait("/voice/queued-b")
    assert gone.param("QueueResult") == "hangup" and left["transcript"][-1]["verb"] == "Hangup"
    assert not left["spoken"].endswith("Gracias por su llamada.")

    # A caller who hangs up on the hold music (no waitUrl): 1 s of greeting, 5 s of music, 1 s more.
    receiver.reply("/voice/start-c", HOLD.format(who="-c", queue="music").replace(' waitUrl="/voice/wait-c"', ""))
    impatient = number()
    await sandbox.set_scenario(impatient, answer="human", hangup_after_s=7)
    hung_up = await wait_status(sandbox, await call(sandbox, receiver, "/voice/start-c", to=impatient), "completed")
    assert [s["verb"] for s in hung_up["transcript"]] == ["Say", "Enqueue", "Play", "Play", "CallerHangup"]
    assert hung_up["transcript"][-2]["interrupted"] and hung_up["duration"] == "7"
    [action] = await receiver.wait("/voice/queued-c")
    assert (action.param("QueueResult"), action.param("QueueTime")) == ("hangup", "6")
