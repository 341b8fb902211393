"""Voice end to end: the real broker, the service over HTTP, the sandbox placing calls and fetching TwiML."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import services.voice.app as voice_app
import services.voice.settings as voice_settings
from services.sandbox.testing import SandboxHandle
from shared.channels.settings import SendingSettings
from shared.config import KafkaSettings
from shared.events.contracts import (
    ContactDispatched,
    ContactDispatchedEvent,
    TemplateContent,
    TemplatePublished,
    TemplatePublishedEvent,
    TemplateRef,
)
from shared.tracing import parse_traceparent
from tests.channel_harness import (
    Publisher,
    free_port,
    running_service,
    signed_post,
    template_cached,
    twilio_channel_settings,
    unique_number,
)
from tests.helpers import TopicReader, wait_for

DELIVERY = "cadencia.contact.delivery_updated.v1"
RESPONSE = "cadencia.contact.response_received.v1"
FINAL = {"conversation", "voicemail", "no_answer", "busy", "failed"}

VOICE_SCRIPT = (
    "Hola {{ debtor | first_name }}, le llama Banco Ejemplo. Su saldo pendiente es de "
    "{{ account.balance | money }}."
)
VOICEMAIL_SCRIPT = (
    "Hola, le llamamos de Banco Ejemplo con un mensaje para {{ debtor | first_name }}. Llámenos al 800 123 4567."
)
PROMPTS = {
    "1": "Para hacer un compromiso de pago, marque 1.",
    "2": "Para hablar con un asesor, marque 2.",
    "9": "Para no recibir más llamadas, marque 9.",
}


class Voice:
    Settings = voice_settings.Settings
    create_app = staticmethod(voice_app.create_app)


def settings_for(kafka: KafkaSettings, database_url: str, sandbox: SandboxHandle, group: str) -> Any:
    return twilio_channel_settings(
        voice_settings.Settings, kafka, database_url, sandbox, free_port(), group,
        SendingSettings(request_timeout_s=2.0, connect_timeout_s=1.0, retry_base_s=0.05, retry_cap_s=1.0),
        caller=voice_settings.CallerSettings(caller_id="+15005550006", cps=50.0),
    )


def voice_template(key: str, locale: str = "es-MX") -> TemplatePublishedEvent:
    return TemplatePublishedEvent(
        subject=key,
        data=TemplatePublished(
            key=key, version=1, channel="voice", locale=locale,
            content=TemplateContent(voice_script=VOICE_SCRIPT, voicemail_script=VOICEMAIL_SCRIPT, ivr_prompts=PROMPTS),
            published_at=datetime.now(UTC),
        ),
    )


def voice_dispatch(to: str, key: str, locale: str = "es-MX") -> ContactDispatchedEvent:
    debtor_id = f"debtor-{uuid.uuid4().hex[:8]}"
    return ContactDispatchedEvent(
        subject=debtor_id,
        source="cadencia/test",
        data=ContactDispatched(
            dispatch_id=str(uuid.uuid4()), request_id=str(uuid.uuid4()), debtor_id=debtor_id, account_id="acc-1",
            channel="voice", to=to, locale=locale, template=TemplateRef(key=key, version=1),
            variables={
                "debtor": {"id": debtor_id, "name": "MARÍA López"},
                "account": {"id": "acc-1", "balance": "1234.50", "currency": "MXN",
                            "payment_url": "https://pay.example/a1"},
            },
            deadline=datetime.now(UTC) + timedelta(seconds=120),
        ),
    )


def statuses(reader: TopicReader, dispatch_id: str) -> list[str]:
    return [e.data.status for e in reader.of_type(DELIVERY) if e.data.dispatch_id == dispatch_id]


def final_status(reader: TopicReader, dispatch_id: str) -> str | None:
    found = [s for s in statuses(reader, dispatch_id) if s in FINAL]
    return found[0] if found else None


async def placed_calls(sandbox: SandboxHandle, to: str) -> list[dict[str, Any]]:
    return [r for r in await sandbox.requests(provider="twilio", to=to) if r["path"].endswith("/Calls.json")]


async def test_calls_end_as_conversation_voicemail_no_answer_busy_and_keypresses_are_responses(
    kafka_settings: KafkaSettings, database_url: str, sandbox: SandboxHandle, outcomes: TopicReader,
    publisher: Publisher, group: str,
) -> None:
    settings = settings_for(kafka_settings, database_url, sandbox, group)
    await publisher.template(voice_template("reminder"))
    human = voice_dispatch(unique_number("0001"), "reminder")
    machine = voice_dispatch(unique_number("2000"), "reminder")
    no_answer = voice_dispatch(unique_number("2001"), "reminder")
    busy = voice_dispatch(unique_number("2002"), "reminder")
    promise = voice_dispatch(unique_number("2011"), "reminder")
    agent = voice_dispatch(unique_number("2012"), "reminder", locale="es-CO")
    stop = voice_dispatch(unique_number("2019"), "reminder")
    every = (human, machine, no_answer, busy, promise, agent, stop)
    async with running_service(Voice, settings) as service:
        await template_cached(service, "reminder")
        for event in every:
            await publisher.dispatch(event)
        await wait_for(lambda: all(final_status(outcomes, e.data.dispatch_id) for e in every), timeout=30,
                       what="every call ended")
        expected = ["conversation", "voicemail", "no_answer", "busy", "conversation", "conversation", "conversation"]
        assert [final_status(outcomes, e.data.dispatch_id) for e in every] == expected

        # The call request: one per dispatch, TwiML and status URLs naming the dispatch, AMD on.
        placed = await placed_calls(sandbox, human.data.to)
        assert len(placed) == 1
        form = placed[0]["form"]
        dispatch_id = human.data.dispatch_id
        twiml_url, _, twiml_trace = form["Url"].partition("?traceparent=")
        assert twiml_url == f"{service.url}/voice/twiml/{dispatch_id}" and parse_traceparent(twiml_trace)
        callback, _, trace = form["StatusCallback"].partition("&traceparent=")
        assert callback == f"{service.url}/webhooks/twilio/call-status?dispatch={dispatch_id}"
        assert parse_traceparent(trace) is not None  # call-status callbacks continue the dispatch's trace
        assert form["MachineDetection"] == "DetectMessageEnd" and form["From"] == "+15005550006"
        assert sorted(form["StatusCallbackEvent"]) == ["answered", "completed", "initiated", "ringing"]

        # A person hears the live script and the IVR menu, in Mexican Spanish.
        call = await sandbox.call(placed[0]["sid"])
        assert "Hola María, le llama Banco Ejemplo. Su saldo pendiente es de $1,234.50." in call["spoken"]
        assert "Para no recibir más llamadas, marque 9." in call["spoken"]
        assert {s["language"] for s in call["transcript"] if s["verb"] == "Say"} == {"es-MX"}
        delivered = [e for e in outcomes.of_type(DELIVERY) if e.data.dispatch_id == dispatch_id][-1]
        assert delivered.data.provider_id == placed[0]["sid"] and delivered.data.channel == "voice"

        # A machine hears only the voicemail: who to call back, no amount, no balance.
        machine_call = await sandbox.call((await placed_calls(sandbox, machine.data.to))[0]["sid"])
        said = machine_call["spoken"]
        assert said == "Hola, le llamamos de Banco Ejemplo con un mensaje para María. Llámenos al 800 123 4567."
        assert "1,234" not in said and "saldo" not in said.lower()
        assert not [s for s in machine_call["transcript"] if s["verb"] == "Gather"]

        # Keys: 1 → promise to pay, 2 → callback request, 9 → opt-out; each thanked and hung up.
        responses = await outcomes.wait_count(RESPONSE, 3)
        by_dispatch = {r.data.dispatch_id: (r.data.kind, r.data.digits, r.data.channel) for r in responses}
        assert by_dispatch == {
            promise.data.dispatch_id: ("promise_to_pay", "1", "voice"),
            agent.data.dispatch_id: ("callback_request", "2", "voice"),
            stop.data.dispatch_id: ("opt_out", "9", "voice"),
        }
        stop_call = await sandbox.call((await placed_calls(sandbox, stop.data.to))[0]["sid"])
        assert stop_call["transcript"][-2]["text"] == "Entendido. No volveremos a llamarle a este número."
        assert stop_call["transcript"][-1]["verb"] == "Hangup"
        assert {r.subject for r in responses} == {promise.data.debtor_id, agent.data.debtor_id, stop.data.debtor_id}

        # Status only moves forward: nothing after the final one.
        for event in every:
            got = statuses(outcomes, event.data.dispatch_id)
            assert got[-1] in FINAL and len([s for s in got if s in FINAL]) == 1
        # One trace per call, from the dispatch through the call-status, TwiML and Gather callbacks.
        for event in every:
            mine = [e for e in outcomes.events if getattr(e.data, "dispatch_id", None) == event.data.dispatch_id]
            contexts = [parse_traceparent(e.traceparent) for e in mine]
            assert mine and all(contexts), event.data.dispatch_id
            assert len({c.trace_id for c in contexts if c is not None}) == 1, event.data.dispatch_id


async def test_forged_webhooks_are_refused_and_a_redelivered_dispatch_dials_once(
    kafka_settings: KafkaSettings, tmp_path: Any, sandbox: SandboxHandle, outcomes: TopicReader,
    publisher: Publisher, group: str,
) -> None:
    settings = settings_for(kafka_settings, f"sqlite+aiosqlite:///{tmp_path / 'voice.db'}", sandbox, group)
    token = sandbox.settings.twilio.auth_token.get_secret_value()
    await publisher.template(voice_template("reminder-en", locale="en-US"))
    event = voice_dispatch("+1415555" + "0001", "reminder-en", locale="en-US")
    async with running_service(Voice, settings) as service:
        await template_cached(service, "reminder-en")
        await publisher.dispatch(event)
        dispatch_id = event.data.dispatch_id
        await wait_for(lambda: final_status(outcomes, dispatch_id) == "conversation", timeout=20, what="conversation")
        await publisher.dispatch(event)  # redelivered: its outcome is re-emitted, nothing is dialled
        await wait_for(lambda: statuses(outcomes, dispatch_id).count("conversation") == 2, what="outcome re-emitted")
        placed = await placed_calls(sandbox, event.data.to)
        call = await sandbox.call(placed[0]["sid"])
        assert {s["language"] for s in call["transcript"] if s["verb"] == "Say"} == {"en-US"}

        params = {"CallSid": placed[0]["sid"], "CallStatus": "completed", "AnsweredBy": "human", "Digits": "9"}
        for path in (f"/voice/twiml/{dispatch_id}", f"/voice/gather/{dispatch_id}",
                     f"/webhooks/twilio/call-status?dispatch={dispatch_id}"):
            forged = await signed_post(service.url + path, "not-the-token", params)
            assert forged.status_code == 403, path
            unsigned = await signed_post(service.url + path, token, params, signature="")
            assert unsigned.status_code == 403, path
        assert service.app.state.voice.counts["forged"] == 6
        # A correctly signed, repeated callback changes nothing.
        again = await signed_post(service.url + f"/webhooks/twilio/call-status?dispatch={dispatch_id}", token,
                                  {"CallSid": placed[0]["sid"], "CallStatus": "completed", "AnsweredBy": "human"})
        assert again.status_code == 204
        await wait_for(lambda: service.app.state.dispatch.results == {"sent": 1}, what="one send")
        assert len(await placed_calls(sandbox, event.data.to)) == 1
        assert not outcomes.of_type(RESPONSE)
        assert service.app.state.voice.counts.get("replayed") == 1


async def test_a_call_rings_no_longer_than_its_window_and_is_not_placed_with_less_left(
    kafka_settings: KafkaSettings, database_url: str, sandbox: SandboxHandle, outcomes: TopicReader,
    publisher: Publisher, group: str,
) -> None:
    settings = settings_for(kafka_settings, database_url, sandbox, group)
    ring = settings.caller.ring_timeout_s
    await publisher.template(voice_template("reminder"))
    roomy = voice_dispatch(unique_number("0001"), "reminder")
    roomy = roomy.model_copy(update={"data": roomy.data.model_copy(
        update={"send_before": datetime.now(UTC) + timedelta(seconds=ring + 60)})})
    # Less than the ring time left: a call placed now could still ring after send_before.
    short = voice_dispatch(unique_number("0001"), "reminder")
    short = short.model_copy(update={"data": short.data.model_copy(
        update={"send_before": datetime.now(UTC) + timedelta(seconds=ring - 5)})})
    async with running_service(Voice, settings) as service:
        await template_cached(service, "reminder")
        await publisher.dispatch(roomy)
        await publisher.dispatch(short)
        await wait_for(lambda: final_status(outcomes, roomy.data.dispatch_id)
                       and "expired" in statuses(outcomes, short.data.dispatch_id), timeout=30,
                       what="one call placed, one expired")
        (placed,) = await placed_calls(sandbox, roomy.data.to)
        assert placed["form"]["Timeout"] == str(ring)
        assert placed["received_ts"] + ring <= roomy.data.send_before.timestamp()  # type: ignore[union-attr]
        assert await placed_calls(sandbox, short.data.to) == []
        assert statuses(outcomes, short.data.dispatch_id) == ["expired"]
