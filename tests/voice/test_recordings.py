"""Recorded calls end to end: the notice said first, signed recording metadata published, never the audio."""

from __future__ import annotations

from structlog.testing import capture_logs

from services.sandbox.testing import SandboxHandle
from shared.config import KafkaSettings
from tests.channel_harness import Publisher, running_service, signed_post, template_cached, unique_number
from tests.helpers import TopicReader, wait_for
from tests.voice.test_voice import Voice, final_status, placed_calls, settings_for, voice_dispatch, voice_template

RECORDED = "cadencia.contact.call_recorded.v1"
NOTICE = "Esta llamada está siendo grabada. Si no está de acuerdo con la grabación, puede colgar ahora."


async def test_a_recorded_call_opens_with_the_notice_and_its_metadata_arrives_signed(
    kafka_settings: KafkaSettings, database_url: str, sandbox: SandboxHandle, outcomes: TopicReader,
    publisher: Publisher, group: str,
) -> None:
    settings = settings_for(kafka_settings, database_url, sandbox, group)
    await publisher.template(voice_template("reminder"))
    recorded = voice_dispatch(unique_number("0001"), "reminder")
    recorded = recorded.model_copy(update={"data": recorded.data.model_copy(
        update={"record_call": True, "recording_notice": NOTICE})})
    plain = voice_dispatch(unique_number("0001"), "reminder")
    with capture_logs() as logs:
        async with running_service(Voice, settings) as service:
            await template_cached(service, "reminder")
            await publisher.dispatch(recorded)
            await publisher.dispatch(plain)
            await wait_for(lambda: final_status(outcomes, recorded.data.dispatch_id) == "conversation"
                           and final_status(outcomes, plain.data.dispatch_id) == "conversation", timeout=30)
            [event] = await outcomes.wait_count(RECORDED, 1)

            [placed] = await placed_calls(sandbox, recorded.data.to)
            form = placed["form"]
            dispatch_id = recorded.data.dispatch_id
            assert form["Record"] == "true" and form["RecordingStatusCallbackEvent"] == "completed"
            assert form["RecordingStatusCallback"] == (
                f"{service.url}/webhooks/twilio/recording-status?dispatch={dispatch_id}")
            call = await sandbox.call(placed["sid"])
            assert call["spoken"].startswith(NOTICE + " Hola María, le llama Banco Ejemplo.")
            [recording] = call["recordings"]

            data = event.data
            assert (data.dispatch_id, data.request_id, data.debtor_id) == (
                dispatch_id, recorded.data.request_id, recorded.data.debtor_id)
            assert (data.recording_sid, data.call_sid, data.url) == (
                recording["RecordingSid"], placed["sid"], recording["RecordingUrl"])
            assert data.duration_s == int(recording["RecordingDuration"]) > 0

            # An unrecorded call has neither the notice nor a recording.
            [plain_placed] = await placed_calls(sandbox, plain.data.to)
            assert "Record" not in plain_placed["form"]
            assert not (await sandbox.call(plain_placed["sid"]))["spoken"].startswith(NOTICE)

            # A forged callback is refused; a repeated genuine one publishes nothing new.
            url = form["RecordingStatusCallback"]
            token = sandbox.settings.twilio.auth_token.get_secret_value()
            forged = await signed_post(url, "not-the-token", recording)
            assert forged.status_code == 403
            again = await signed_post(url, token, recording)
            assert again.status_code == 204
            later = voice_dispatch(unique_number("0001"), "reminder")
            await publisher.dispatch(later)  # a marker: once its outcome is here, the repeat had its chance
            await wait_for(lambda: final_status(outcomes, later.data.dispatch_id) == "conversation", timeout=30)
            assert len(outcomes.of_type(RECORDED)) == 1
    # the media URL is data for ops, never fetched and never written to the logs
    assert not [entry for entry in logs if recording["RecordingUrl"] in repr(entry)]
    assert [e for e in logs if e.get("event") == "call recording published"]
