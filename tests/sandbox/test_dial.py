"""``<Dial>`` in the sandbox: an agent answering after a whisper, a busy agent, one ringing out."""

from __future__ import annotations

import asyncio

from services.sandbox.testing import SandboxHandle
from tests.sandbox.conftest import Receiver, twilio_valid
from tests.sandbox.test_twilio_messages import FROM, number
from tests.sandbox.test_voice import wait_status

BRIDGE = """<Response>
  <Say language="es-MX">Le comunicamos con un asesor.</Say>
  <Dial timeout="10" action="/voice/dialed">
    <Number url="/voice/whisper" statusCallback="/voice/leg"
            statusCallbackEvent="initiated ringing answered completed">{agent}</Number>
  </Dial>
  <Say language="es-MX">No se dice: la acción de Dial toma el control.</Say>
</Response>"""
WHISPER = """<Response><Say language="es-MX">Cuenta acc-1, Ana Pérez, 45 días de mora.</Say></Response>"""
AFTER = """<Response><Say language="es-MX">Gracias por su llamada.</Say><Hangup/></Response>"""
OFFER = """<Response><Say language="es-MX">No hay asesores disponibles; le llamaremos.</Say><Hangup/></Response>"""


async def place(sandbox: SandboxHandle, receiver: Receiver, agent: str, after: str) -> dict:
    receiver.reply("/voice/start", BRIDGE.format(agent=agent))
    receiver.reply("/voice/whisper", WHISPER)
    receiver.reply("/voice/dialed", after)
    client = sandbox.twilio_client()
    call = await asyncio.to_thread(client.calls.create, to=number(), from_=FROM, url=receiver.url + "/voice/start")
    return await wait_status(sandbox, call.sid, "completed")


async def test_an_answering_agent_hears_the_whisper_and_is_bridged(sandbox: SandboxHandle, receiver: Receiver) -> None:
    agent = number()
    await sandbox.set_scenario(agent, answer="human", talk_s=12)
    done = await place(sandbox, receiver, agent, AFTER)
    dial = next(step for step in done["transcript"] if step["verb"] == "Dial")
    whispered = "Cuenta acc-1, Ana Pérez, 45 días de mora."
    assert (dial["to"], dial["status"], dial["whisper"]) == (agent, "completed", whispered)
    # the caller never hears the whisper
    assert done["spoken"] == "Le comunicamos con un asesor. Gracias por su llamada."
    token = sandbox.settings.twilio.auth_token.get_secret_value()
    [dialed] = await receiver.wait("/voice/dialed")
    assert twilio_valid(token, dialed) and dialed.param("CallSid") == done["sid"]
    assert (dialed.param("DialCallStatus"), dialed.param("DialCallDuration"), dialed.param("DialBridged")) == (
        "completed", "12", "true")
    leg = await sandbox.call(dialed.param("DialCallSid"))
    assert leg["parent_call_sid"] == done["sid"] and leg["to"] == agent and leg["status"] == "completed"
    legs = await receiver.wait("/voice/leg", 4)
    assert [s.param("CallStatus") for s in legs] == ["initiated", "ringing", "in-progress", "completed"]
    assert all(twilio_valid(token, s) for s in legs) and legs[-1].param("CallDuration") == "12"
    [whisper] = receiver.at("/voice/whisper")
    assert whisper.param("CallSid") == leg["sid"]


async def test_a_busy_agent_and_one_ringing_out_are_reported_to_the_action(
    sandbox: SandboxHandle, receiver: Receiver
) -> None:
    for answer, expected in (("busy", "busy"), ("no-answer", "no-answer")):
        receiver.received.clear()
        agent = number()
        await sandbox.set_scenario(agent, answer=answer)
        done = await place(sandbox, receiver, agent, OFFER)
        assert done["spoken"].endswith("No hay asesores disponibles; le llamaremos.")
        [dialed] = await receiver.wait("/voice/dialed")
        assert (dialed.param("DialCallStatus"), dialed.param("DialBridged")) == (expected, "false")
        assert receiver.at("/voice/whisper") == []


async def test_an_agent_scripted_busy_then_free_refuses_the_first_dial_and_answers_the_next(
    sandbox: SandboxHandle, receiver: Receiver
) -> None:
    agent = number()
    await sandbox.set_scenario(agent, answers=["busy", "no-answer"], answer="human", talk_s=9)
    outcomes = []
    for _ in range(3):
        receiver.received.clear()
        await place(sandbox, receiver, agent, AFTER)
        [dialed] = await receiver.wait("/voice/dialed")
        outcomes.append((dialed.param("DialCallStatus"), dialed.param("DialCallDuration")))
    assert outcomes == [("busy", "0"), ("no-answer", "0"), ("completed", "9")]
