"""Twilio Calls: TwiML fetch and interpretation, IVR digits, AMD, call statuses, the spoken transcript."""

from __future__ import annotations

import asyncio

from twilio.http.async_http_client import AsyncTwilioHttpClient

from services.sandbox.testing import SandboxHandle
from tests.sandbox.conftest import Receiver, twilio_valid
from tests.sandbox.test_twilio_messages import FROM, number

MENU = """<?xml version="1.0" encoding="UTF-8"?>
<Response>
  <Gather numDigits="1" action="/voice/menu" timeout="5">
    <Say language="es-MX">Para prometer un pago marque 1. Para hablar con un agente marque 2.</Say>
  </Gather>
  <Say language="es-MX">No recibimos respuesta.</Say>
  <Hangup/>
</Response>"""
PROMISE = """<Response><Say language="es-MX">Gracias, registramos su promesa de pago.</Say><Hangup/></Response>"""
VOICEMAIL = """<Response><Pause length="1"/><Say language="es-MX">Mensaje de Cadencia para Ana.</Say></Response>"""


async def wait_status(sandbox: SandboxHandle, sid: str, status: str) -> dict:
    async def probe() -> dict | None:
        call = await sandbox.call(sid)
        return call if call["status"] == status else None

    return await sandbox.eventually(probe)


async def test_ivr_digits_follow_gather_action(sandbox: SandboxHandle, receiver: Receiver) -> None:
    receiver.reply("/voice/start", MENU)
    receiver.reply("/voice/menu", PROMISE)
    to = number()
    await sandbox.set_scenario(to, answer="human", digits=["1"])
    client = sandbox.twilio_client()
    call = await asyncio.to_thread(
        client.calls.create,
        to=to,
        from_=FROM,
        url=receiver.url + "/voice/start",
        status_callback=receiver.url + "/voice/status",
        status_callback_event=["initiated", "ringing", "answered", "completed"],
    )
    assert call.sid.startswith("CA") and len(call.sid) == 34 and call.status == "queued"
    done = await wait_status(sandbox, call.sid, "completed")
    assert done["spoken"] == (
        "Para prometer un pago marque 1. Para hablar con un agente marque 2. Gracias, registramos su promesa de pago."
    )
    token = sandbox.settings.twilio.auth_token.get_secret_value()
    (start,) = receiver.at("/voice/start")
    (menu,) = receiver.at("/voice/menu")
    assert twilio_valid(token, start) and twilio_valid(token, menu)
    assert start.param("CallSid") == call.sid and start.param("CallStatus") == "in-progress"
    assert menu.param("Digits") == "1"
    statuses = await receiver.wait("/voice/status", 4)
    assert [s.param("CallStatus") for s in statuses] == ["initiated", "ringing", "in-progress", "completed"]
    assert all(twilio_valid(token, s) for s in statuses)
    assert int(statuses[-1].param("CallDuration")) >= 1
    fetched = await asyncio.to_thread(client.calls(call.sid).fetch)
    assert fetched.status == "completed" and fetched.duration is not None


async def test_no_input_falls_through_and_redirect(sandbox: SandboxHandle, receiver: Receiver) -> None:
    receiver.reply("/voice/a", "<Response><Redirect>/voice/b</Redirect></Response>")
    receiver.reply("/voice/b", MENU)
    client = sandbox.twilio_client()
    call = await asyncio.to_thread(client.calls.create, to=number(), from_=FROM, url=receiver.url + "/voice/a")
    done = await wait_status(sandbox, call.sid, "completed")
    assert done["spoken"].endswith("No recibimos respuesta.")
    assert [step["verb"] for step in done["transcript"]] == ["Redirect", "Say", "Gather", "Say", "Hangup"]
    assert receiver.at("/voice/menu") == []


async def test_machine_detection_voicemail_transcript(sandbox: SandboxHandle, receiver: Receiver) -> None:
    receiver.reply("/voice/vm", VOICEMAIL)
    client = sandbox.twilio_client()
    call = await asyncio.to_thread(
        client.calls.create,
        to=number("2000"),
        from_=FROM,
        url=receiver.url + "/voice/vm",
        machine_detection="DetectMessageEnd",
        status_callback=receiver.url + "/voice/st",
    )
    done = await wait_status(sandbox, call.sid, "completed")
    assert done["answered_by"] == "machine_end_beep"
    assert done["spoken"] == "Mensaje de Cadencia para Ana."
    (fetch,) = receiver.at("/voice/vm")
    assert fetch.param("AnsweredBy") == "machine_end_beep"
    (completed,) = await receiver.wait("/voice/st")
    assert completed.param("CallStatus") == "completed" and completed.param("AnsweredBy") == "machine_end_beep"


async def test_async_amd_and_async_client(sandbox: SandboxHandle, receiver: Receiver) -> None:
    receiver.reply("/voice/h", "<Response><Say>Hola</Say></Response>")
    to = number()
    await sandbox.set_scenario(to, answer="human")
    async with AsyncTwilioHttpClient() as http:
        client = sandbox.twilio_client(http_client=http)
        call = await client.calls.create_async(
            to=to,
            from_=FROM,
            url=receiver.url + "/voice/h",
            machine_detection="Enable",
            async_amd="true",
            async_amd_status_callback=receiver.url + "/voice/amd",
        )
        (amd,) = await receiver.wait("/voice/amd")
        assert amd.param("AnsweredBy") == "human" and amd.param("CallSid") == call.sid
        assert twilio_valid(sandbox.settings.twilio.auth_token.get_secret_value(), amd)
        assert receiver.at("/voice/h")[0].param("AnsweredBy") is None
        fetched = await client.calls(call.sid).fetch_async()
        assert fetched.sid == call.sid


async def test_busy_no_answer_failed(sandbox: SandboxHandle, receiver: Receiver) -> None:
    client = sandbox.twilio_client()
    for last4, status in (("2001", "no-answer"), ("2002", "busy"), ("2003", "failed")):
        call = await asyncio.to_thread(
            client.calls.create,
            to=number(last4),
            from_=FROM,
            twiml="<Response><Say>nunca</Say></Response>",
            status_callback=receiver.url + f"/st/{status}",
        )
        (final,) = await receiver.wait(f"/st/{status}")
        assert final.param("CallStatus") == status
        assert (await sandbox.call(call.sid))["spoken"] == ""
