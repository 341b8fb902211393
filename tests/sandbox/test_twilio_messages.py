"""Twilio Messages through the official ``twilio`` client: create, fetch, errors, status callbacks."""

from __future__ import annotations

import asyncio

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from services.sandbox.testing import SandboxHandle
from tests.helpers import fresh
from tests.sandbox.conftest import Receiver, twilio_valid

FROM = "+15005550006"


def number(last4: str = "0000") -> str:
    """A unique E.164 number ending in ``last4`` (the default rules key on the last four digits)."""
    return f"+52155{fresh(10**6):06d}{last4}"


async def test_official_client_creates_and_fetches_a_message(sandbox: SandboxHandle, receiver: Receiver) -> None:
    client = sandbox.twilio_client()
    to = number()
    message = await asyncio.to_thread(
        client.messages.create,
        to=to,
        from_=FROM,
        body="Hola, tu pago vence mañana",
        status_callback=receiver.url + "/status",
    )
    assert message.sid.startswith("SM") and len(message.sid) == 34
    assert message.status == "queued"
    assert message.to == to and message.from_ == FROM
    assert message.direction == "outbound-api"
    assert message.num_segments == "1"
    assert message.account_sid == sandbox.settings.twilio.account_sid
    assert message.api_version == "2010-04-01"
    assert message.uri == f"/2010-04-01/Accounts/{message.account_sid}/Messages/{message.sid}.json"
    assert message.date_created is not None and message.error_code is None

    callbacks = await receiver.wait("/status", 2)
    assert [c.param("MessageStatus") for c in callbacks] == ["sent", "delivered"]
    token = sandbox.settings.twilio.auth_token.get_secret_value()
    for callback in callbacks:
        assert twilio_valid(token, callback)
        assert callback.param("MessageSid") == callback.param("SmsSid") == message.sid
        assert callback.param("SmsStatus") == callback.param("MessageStatus")
        assert callback.param("To") == to and callback.param("From") == FROM
        assert callback.param("AccountSid") == message.account_sid
        assert callback.param("ApiVersion") == "2010-04-01"
        assert callback.param("ErrorCode") is None
    assert not twilio_valid("wrong-token", callbacks[0])

    fetched = await asyncio.to_thread(client.messages(message.sid).fetch)
    assert fetched.status == "delivered" and fetched.date_sent is not None

    recorded = await sandbox.requests(provider="twilio", to=to)
    assert [r["status"] for r in recorded] == [201]
    assert recorded[0]["form"]["Body"] == "Hola, tu pago vence mañana"
    assert "." in recorded[0]["received_at"]  # sub-second precision


async def test_async_client_messages_and_unknown_sid(sandbox: SandboxHandle) -> None:
    async with AsyncTwilioHttpClient() as http:
        client = sandbox.twilio_client(http_client=http)
        message = await client.messages.create_async(to=number(), from_=FROM, body="x" * 200)
        assert message.num_segments == "2"
        fetched = await client.messages(message.sid).fetch_async()
        assert fetched.sid == message.sid
        with pytest.raises(TwilioRestException) as err:
            await client.messages("SM" + "0" * 32).fetch_async()
        assert err.value.status == 404 and err.value.code == 20404


async def test_wrong_credentials_are_401_with_twilio_error(sandbox: SandboxHandle) -> None:
    client = Client(sandbox.settings.twilio.account_sid, "not-the-token")
    client.api.base_url = sandbox.url
    with pytest.raises(TwilioRestException) as err:
        await asyncio.to_thread(client.messages.create, to=number(), from_=FROM, body="hola")
    assert err.value.status == 401 and err.value.code == 20003


@pytest.mark.parametrize(
    ("to", "body", "code"),
    [
        (number("1211"), "hola", 21211),
        ("5512345678", "hola", 21211),
        (number("1610"), "hola", 21610),
        (number(), None, 21602),
    ],
    ids=["invalid-number", "not-e164", "opted-out", "no-body"],  # the numbers are random: stable ids for xdist
)
async def test_validation_errors_raise_twilio_codes(
    sandbox: SandboxHandle, to: str, body: str | None, code: int
) -> None:
    client = sandbox.twilio_client()
    kwargs = {"to": to, "from_": FROM}
    if body is not None:
        kwargs["body"] = body
    with pytest.raises(TwilioRestException) as err:
        await asyncio.to_thread(client.messages.create, **kwargs)
    assert err.value.status == 400 and err.value.code == code
    recorded = await sandbox.requests(provider="twilio")
    assert [r["status"] for r in recorded] == [400]


@pytest.mark.parametrize(
    ("last4", "status", "code"),
    [("3003", "undelivered", 30003), ("3007", "undelivered", 30007), ("3008", "failed", 30008)],
)
async def test_default_rules_fail_delivery_with_error_code(
    sandbox: SandboxHandle, receiver: Receiver, last4: str, status: str, code: int
) -> None:
    client = sandbox.twilio_client()
    msg = await asyncio.to_thread(
        client.messages.create, to=number(last4), from_=FROM, body="hola", status_callback=receiver.url + "/s"
    )
    final = (await receiver.wait("/s", 2 if status == "undelivered" else 1))[-1]
    assert final.param("MessageStatus") == status and final.param("ErrorCode") == str(code)
    fetched = await asyncio.to_thread(client.messages(msg.sid).fetch)
    assert fetched.status == status and fetched.error_code == code


async def test_scripted_scenario_overrides_default(sandbox: SandboxHandle, receiver: Receiver) -> None:
    to = number()
    await sandbox.set_scenario(to, outcome="undelivered", error_code=30006)
    client = sandbox.twilio_client()
    await asyncio.to_thread(client.messages.create, to=to, from_=FROM, body="hola", status_callback=receiver.url + "/s")
    final = (await receiver.wait("/s", 2))[-1]
    assert (final.param("MessageStatus"), final.param("ErrorCode")) == ("undelivered", "30006")

    await sandbox.set_scenario(to, outcome="opted_out")
    with pytest.raises(TwilioRestException) as err:
        await asyncio.to_thread(client.messages.create, to=to, from_=FROM, body="hola")
    assert err.value.code == 21610

    await sandbox.reset()
    ok = await asyncio.to_thread(client.messages.create, to=to, from_=FROM, body="hola")
    assert ok.status == "queued"


async def test_messaging_service_and_content_template(sandbox: SandboxHandle, receiver: Receiver) -> None:
    client = sandbox.twilio_client()
    service = "MG" + "1" * 32
    content = "HX" + "a" * 32
    msg = await asyncio.to_thread(
        client.messages.create,
        to=number(),
        messaging_service_sid=service,
        content_sid=content,
        content_variables='{"1": "Ana", "2": "1,250.00"}',
        status_callback=receiver.url + "/svc",
    )
    assert msg.status == "accepted" and msg.messaging_service_sid == service and msg.from_ is None
    statuses = [c.param("MessageStatus") for c in await receiver.wait("/svc", 3)]
    assert statuses == ["queued", "sent", "delivered"]
    recorded = (await sandbox.requests(provider="twilio"))[0]["form"]
    assert recorded["ContentSid"] == content and recorded["ContentVariables"].startswith("{")

    with pytest.raises(TwilioRestException) as err:
        await asyncio.to_thread(
            client.messages.create, to=number(), from_=FROM, content_sid=content, content_variables="not json"
        )
    assert err.value.code == 21656
