"""Inbound messages, scripted replies (time compressed), STOP opt-out, and the WhatsApp 24-hour window."""

from __future__ import annotations

import asyncio

import pytest
from twilio.base.exceptions import TwilioRestException

from services.sandbox.testing import SandboxHandle
from tests.sandbox.conftest import Receiver, twilio_valid
from tests.sandbox.test_twilio_messages import FROM, number

WA_FROM = "whatsapp:" + FROM


async def test_inbound_sms_webhook_is_signed(sandbox: SandboxHandle, receiver: Receiver) -> None:
    user = number()
    result = await sandbox.inbound(user, FROM, "Hola, ¿cuánto debo?")
    assert result["status"] == 204
    (hook,) = await receiver.wait("/sms/inbound")
    assert twilio_valid(sandbox.settings.twilio.auth_token.get_secret_value(), hook)
    assert hook.param("From") == user and hook.param("To") == FROM and hook.param("Body") == "Hola, ¿cuánto debo?"
    assert hook.param("MessageSid") == hook.param("SmsMessageSid") == result["message_sid"]
    assert hook.param("AccountSid") == sandbox.settings.twilio.account_sid
    assert (hook.param("NumMedia"), hook.param("NumSegments"), hook.param("ApiVersion")) == ("0", "1", "2010-04-01")
    assert hook.param("SmsStatus") == "received" and hook.param("FromCountry") == "MX"


async def test_scripted_reply_after_ten_minutes_arrives_in_milliseconds(
    sandbox: SandboxHandle, receiver: Receiver
) -> None:
    user = number()
    await sandbox.set_scenario(user, outcome="delivered", reply="STOP", reply_after=600)
    client = sandbox.twilio_client()
    await asyncio.to_thread(client.messages.create, to=user, from_=FROM, body="Recordatorio")
    (reply,) = await receiver.wait("/sms/inbound")
    assert reply.param("Body") == "STOP" and reply.param("From") == user and reply.param("To") == FROM
    assert reply.param("OptOutType") == "STOP"
    # Twilio's default opt-out keywords block further sends to that number.
    with pytest.raises(TwilioRestException) as err:
        await asyncio.to_thread(client.messages.create, to=user, from_=FROM, body="otra vez")
    assert err.value.code == 21610
    await sandbox.inbound(user, FROM, "START")
    again = await asyncio.to_thread(client.messages.create, to=user, from_=FROM, body="hola")
    assert again.status == "queued"


@pytest.mark.parametrize(("last4", "text"), [("7002", "BAJA"), ("7003", "1")])
async def test_default_reply_rules(sandbox: SandboxHandle, receiver: Receiver, last4: str, text: str) -> None:
    client = sandbox.twilio_client()
    await asyncio.to_thread(client.messages.create, to=number(last4), from_=FROM, body="hola")
    (reply,) = await receiver.wait("/sms/inbound")
    assert reply.param("Body") == text


async def test_whatsapp_window(sandbox: SandboxHandle, receiver: Receiver) -> None:
    client = sandbox.twilio_client()
    user = "whatsapp:" + number()

    # Outside the window Twilio accepts the free-form message, then fails it with 63016.
    outside = await asyncio.to_thread(
        client.messages.create, to=user, from_=WA_FROM, body="Hola", status_callback=receiver.url + "/wa1"
    )
    assert outside.status == "queued"
    (failed,) = await receiver.wait("/wa1")
    assert (failed.param("MessageStatus"), failed.param("ErrorCode")) == ("failed", "63016")
    fetched = await asyncio.to_thread(client.messages(outside.sid).fetch)
    assert fetched.status == "failed" and fetched.error_code == 63016

    # A template (ContentSid) may open the conversation.
    template = await asyncio.to_thread(
        client.messages.create,
        to=user,
        from_=WA_FROM,
        content_sid="HX" + "b" * 32,
        status_callback=receiver.url + "/wa2",
    )
    assert template.status == "queued"
    assert [c.param("MessageStatus") for c in await receiver.wait("/wa2", 2)] == ["sent", "delivered"]

    # The user writes: the window opens and free-form messages go through.
    await sandbox.inbound(user, WA_FROM, "Quiero pagar")
    (hook,) = await receiver.wait("/whatsapp/inbound")
    assert hook.param("WaId") == user.removeprefix("whatsapp:+") and hook.param("From") == user
    inside = await asyncio.to_thread(
        client.messages.create, to=user, from_=WA_FROM, body="Claro", status_callback=receiver.url + "/wa3"
    )
    callbacks = await receiver.wait("/wa3", 2)
    assert [c.param("MessageStatus") for c in callbacks] == ["sent", "delivered"]
    assert callbacks[0].param("MessageSid") == inside.sid


async def test_whatsapp_read_and_channel_mismatch(sandbox: SandboxHandle, receiver: Receiver) -> None:
    client = sandbox.twilio_client()
    user = "whatsapp:" + number("4000")
    await asyncio.to_thread(
        client.messages.create, to=user, from_=WA_FROM, content_sid="HX" + "c" * 32, status_callback=receiver.url + "/r"
    )
    assert [c.param("MessageStatus") for c in await receiver.wait("/r", 3)] == ["sent", "delivered", "read"]
    with pytest.raises(TwilioRestException) as err:
        await asyncio.to_thread(client.messages.create, to=user, from_=FROM, body="hola")
    assert err.value.code == 21910
