"""Fault injection (429 bursts, 5xx, latency, timeout after accept, held callbacks) and the request/callback records."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import httpx
import pytest
from twilio.base.exceptions import TwilioRestException

from services.sandbox.testing import SandboxHandle, running_sandbox
from tests.sandbox.conftest import Receiver
from tests.sandbox.test_sendgrid import mail, unique
from tests.sandbox.test_twilio_messages import FROM, number


async def test_429_burst_with_retry_after(sandbox: SandboxHandle) -> None:
    await sandbox.set_faults(provider="twilio", rate_limit_next=2, retry_after_s=3)
    client = sandbox.twilio_client()
    for _ in range(2):
        with pytest.raises(TwilioRestException) as err:
            await asyncio.to_thread(client.messages.create, to=number(), from_=FROM, body="hola")
        assert err.value.status == 429 and err.value.code == 20429
    assert client.http_client._test_only_last_response.headers["Retry-After"] == "3"
    message = await asyncio.to_thread(client.messages.create, to=number(), from_=FROM, body="hola")
    assert message.status == "queued"
    statuses = [r["status"] for r in await sandbox.requests(provider="twilio")]
    assert statuses == [429, 429, 201]


async def test_timeout_after_accept_creates_the_message_exactly_once(
    sandbox: SandboxHandle, receiver: Receiver
) -> None:
    await sandbox.set_faults(provider="twilio", timeout_next=1, timeout_ms=1_000)
    to = number()
    auth = (sandbox.settings.twilio.account_sid, sandbox.settings.twilio.auth_token.get_secret_value())
    path = f"/2010-04-01/Accounts/{auth[0]}/Messages.json"
    form = {"To": to, "From": FROM, "Body": "hola", "StatusCallback": receiver.url + "/s"}
    async with httpx.AsyncClient(base_url=sandbox.url, auth=auth) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post(path, data=form, timeout=0.3)
        # The caller cannot know; the provider already has it and carries on delivering it.
        callbacks = await receiver.wait("/s", 2)
        assert [c.param("MessageStatus") for c in callbacks] == ["sent", "delivered"]
        sids = {c.param("MessageSid") for c in callbacks}
        assert len(sids) == 1
        # The fault was a one-off: the next request answers promptly.
        second = await http.post(path, data={**form, "To": number()}, timeout=2)
        assert second.status_code == 201

    async def accepted() -> list:
        found = await sandbox.requests(provider="twilio", to=to)
        return found if found and found[0]["status"] == 201 else []

    (request,) = await sandbox.eventually(accepted)
    assert request["fault"] == "timeout" and request["sid"] in sids


async def test_error_rate_scoped_to_one_provider(sandbox: SandboxHandle) -> None:
    await sandbox.set_faults(provider="sendgrid", error_rate=1.0, error_status=503)
    client = sandbox.twilio_client()
    message = await asyncio.to_thread(client.messages.create, to=number(), from_=FROM, body="hola")
    assert message.status == "queued"
    async with httpx.AsyncClient(base_url=sandbox.url) as http:
        key = sandbox.settings.sendgrid.api_key.get_secret_value()
        response = await http.post("/v3/mail/send", json={}, headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 503 and "errors" in response.json()
        await sandbox.clear_faults()
        assert (await http.get("/sandbox/faults")).json() == []


async def test_latency_fault() -> None:
    async with running_sandbox(faults={"latency": {"kind": "fixed", "ms": 150}}) as sandbox:
        client = sandbox.twilio_client()
        started = time.monotonic()
        await asyncio.to_thread(client.messages.create, to=number(), from_=FROM, body="hola")
        assert time.monotonic() - started >= 0.15
        # DELETE /sandbox/faults restores the configured faults; a PUT overrides them.
        await sandbox.clear_faults()
        assert (await sandbox.http.get("/sandbox/faults")).json()[0]["latency"]["ms"] == 150
        await sandbox.set_faults(latency={"kind": "fixed", "ms": 0})
        started = time.monotonic()
        await asyncio.to_thread(client.messages.create, to=number(), from_=FROM, body="hola")
        assert time.monotonic() - started < 0.15


async def test_request_and_callback_records_filter_and_reset(sandbox: SandboxHandle, receiver: Receiver) -> None:
    client = sandbox.twilio_client()
    first, second = number(), number()
    await asyncio.to_thread(
        client.messages.create, to=first, from_=FROM, body="uno", status_callback=receiver.url + "/a"
    )
    mark = time.time()
    await asyncio.to_thread(client.messages.create, to=second, from_=FROM, body="dos")
    assert [r["form"]["Body"] for r in await sandbox.requests(to=first)] == ["uno"]
    assert [r["form"]["Body"] for r in await sandbox.requests(provider="twilio", since=mark)] == ["dos"]
    assert await sandbox.requests(provider="sendgrid") == []
    # ``since`` as an instant: without an offset it is UTC (so the ends of the calendar are in range)
    iso = datetime.fromtimestamp(mark, UTC).replace(tzinfo=None).isoformat()
    for since, bodies in ((iso, ["dos"]), (iso + "Z", ["dos"]), ("0001-01-01T00:00:00", ["uno", "dos"]),
                          ("9999-12-31T23:59:59", [])):
        answer = await sandbox.http.get("/sandbox/requests", params={"provider": "twilio", "since": since})
        assert answer.status_code == 200 and [r["form"]["Body"] for r in answer.json()] == bodies, since
    assert (await sandbox.http.get("/sandbox/requests", params={"since": "yesterday"})).status_code == 400
    await receiver.wait("/a", 2)
    sent = await sandbox.callbacks(kind="message-status", to=first)
    assert [c["status"] for c in sent] == [204, 204]
    async with httpx.AsyncClient(base_url=sandbox.url) as http:
        assert (await http.delete("/sandbox/requests")).status_code == 204
    assert await sandbox.requests() == []


async def test_failing_receiver_is_retried_without_crashing(sandbox: SandboxHandle, receiver: Receiver) -> None:
    receiver.reply("/broken", "boom", status=500, content_type="text/plain")
    client = sandbox.twilio_client()
    await asyncio.to_thread(
        client.messages.create, to=number(), from_=FROM, body="hola", status_callback=receiver.url + "/broken"
    )
    # Each of the two status callbacks is attempted 1 + callback_retries times.
    attempts = 2 * (1 + sandbox.settings.callback_retries)
    await receiver.wait("/broken", attempts)

    async def finished() -> list:
        logged = await sandbox.callbacks(kind="message-status")
        return logged if len(logged) == 2 and all("completed_at" in c for c in logged) else []

    logged = await sandbox.eventually(finished)
    assert [c["status"] for c in logged] == [500, 500]
    assert all(c["attempts"] == 1 + sandbox.settings.callback_retries for c in logged)
    # Dead receiver (connection refused) likewise.
    await asyncio.to_thread(
        client.messages.create, to=number(), from_=FROM, body="hola", status_callback="http://127.0.0.1:9/x"
    )
    message = await asyncio.to_thread(client.messages.create, to=number(), from_=FROM, body="still up")
    assert message.status == "queued"


async def test_held_callbacks_wait_for_their_release_while_the_messages_go_on(
    sandbox: SandboxHandle, receiver: Receiver
) -> None:
    """A provider whose webhooks lag behind its API: the messages are delivered, their reports wait."""
    await sandbox.set_faults(provider="twilio", hold_callbacks=True)
    client = sandbox.twilio_client()
    sids = []
    for _ in range(2):
        message = await asyncio.to_thread(
            client.messages.create, to=number(), from_=FROM, body="hola", status_callback=receiver.url + "/s"
        )
        sids.append(message.sid)

    async def delivered() -> bool:
        return [(await sandbox.message(sid))["status"] for sid in sids] == ["delivered", "delivered"]

    await sandbox.eventually(delivered)
    status = (await sandbox.http.get("/sandbox/status")).json()
    assert status["callbacks_held"] == 4  # sent and delivered, twice
    assert receiver.at("/s") == [] and await sandbox.callbacks(kind="message-status") == []
    # Held are the reports of one provider: an inbound message and the other provider's events go out.
    inbound = await sandbox.inbound(number(), FROM, "hola")
    assert inbound["status"] == 204
    mail_client = sandbox.sendgrid_client()
    assert (await asyncio.to_thread(mail_client.send, mail(unique("ana")))).status_code == 202
    await receiver.wait("/sendgrid/events", 1)
    assert receiver.at("/s") == []

    await sandbox.set_faults(provider="twilio")  # the scope without the hold: released
    await receiver.wait("/s", 4)
    sent = await sandbox.callbacks(kind="message-status")
    # In the order they fell due: each message's "sent" before its "delivered".
    for sid in sids:
        assert [c["params"]["MessageStatus"] for c in sorted(sent, key=lambda c: c["id"]) if c["sid"] == sid] == [
            "sent", "delivered"]
    assert (await sandbox.http.get("/sandbox/status")).json()["callbacks_held"] == 0
