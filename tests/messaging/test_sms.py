"""SMS end to end: the real broker, the service over HTTP, the sandbox standing in for Twilio."""

from __future__ import annotations

from typing import Any

import services.sms.app as sms_app
import services.sms.settings as sms_settings
from services.sandbox.testing import SandboxHandle, running_sandbox
from shared.config import KafkaSettings
from shared.tracing import parse_traceparent
from tests.channel_harness import (
    Publisher,
    dispatch_event,
    free_port,
    running_service,
    sandbox_messages,
    service_settings,
    template_cached,
    template_event,
    unique_number,
)
from tests.helpers import TopicReader, wait_for


class SMS:
    Settings = sms_settings.Settings
    create_app = staticmethod(sms_app.create_app)


DELIVERY = "cadencia.contact.delivery_updated.v1"
RESPONSE = "cadencia.contact.response_received.v1"


def statuses(reader: TopicReader, dispatch_id: str) -> list[str]:
    return [e.data.status for e in reader.of_type(DELIVERY) if e.data.dispatch_id == dispatch_id]


def deliveries(reader: TopicReader, dispatch_id: str) -> list[Any]:
    return [e for e in reader.of_type(DELIVERY) if e.data.dispatch_id == dispatch_id]


async def test_dispatch_is_sent_once_rendered_with_status_callback_and_delivered(
    kafka_settings: KafkaSettings, database_url: str, sandbox: SandboxHandle, outcomes: TopicReader,
    publisher: Publisher, group: str,
) -> None:
    settings = service_settings(SMS, kafka_settings, database_url, sandbox, free_port(), group=group)
    await publisher.template(template_event("reminder", "sms"))
    to = unique_number("0001")
    event = dispatch_event("sms", to, "reminder")
    async with running_service(SMS, settings) as service:
        await template_cached(service, "reminder")
        await publisher.dispatch(event)
        await wait_for(lambda: "delivered" in statuses(outcomes, event.data.dispatch_id), what="delivered")
        sent = await sandbox_messages(sandbox, to)
        assert len(sent) == 1
        form = sent[0]["form"]
        assert form["Body"] == "Hola María, tu saldo es $1,234.50. Paga en https://pay.example/a1"
        assert form["From"] == "+15005550006"
        callback, _, trace = form["StatusCallback"].partition("&traceparent=")
        assert callback == f"{service.url}/webhooks/twilio/status?dispatch={event.data.dispatch_id}"
        assert parse_traceparent(trace) is not None  # the delivery callback continues the dispatch's trace
        # A "sent" callback committed before the send's own result supersedes its "accepted" (status only
        # moves forward), so "accepted" may not be published.
        seen = statuses(outcomes, event.data.dispatch_id)
        assert seen[-1] == "delivered" and set(seen) in ({"accepted", "sent", "delivered"}, {"sent", "delivered"})
        delivered = deliveries(outcomes, event.data.dispatch_id)[-1]
        assert delivered.subject == event.data.debtor_id
        assert delivered.data.provider == "twilio" and delivered.data.provider_id == sent[0]["sid"]


async def test_undelivered_invalid_opted_out_and_late_dispatches_produce_their_outcomes(
    kafka_settings: KafkaSettings, tmp_path: Any, sandbox: SandboxHandle, outcomes: TopicReader,
    publisher: Publisher, group: str,
) -> None:
    settings = service_settings(SMS, kafka_settings, f"sqlite+aiosqlite:///{tmp_path / 'sms.db'}", sandbox,
                                free_port(), group=group)
    await publisher.template(template_event("reminder", "sms"))
    undelivered = dispatch_event("sms", unique_number("3003"), "reminder")
    invalid = dispatch_event("sms", unique_number("1211"), "reminder")
    opted_out = dispatch_event("sms", unique_number("1610"), "reminder")
    late = dispatch_event("sms", unique_number("0002"), "reminder", deadline_s=-1)
    async with running_service(SMS, settings) as service:
        await template_cached(service, "reminder")
        for event in (undelivered, invalid, opted_out, late):
            await publisher.dispatch(event)

        def final(event: Any) -> Any:
            done = ("failed", "undelivered")
            found = [e for e in deliveries(outcomes, event.data.dispatch_id) if e.data.status in done]
            return found[0] if found else None

        await wait_for(lambda: all(final(e) for e in (undelivered, invalid, opted_out, late)), what="final outcomes")
        assert (final(undelivered).data.status, final(undelivered).data.error_code) == ("undelivered", "30003")
        assert (final(invalid).data.status, final(invalid).data.error_code) == ("failed", "21211")
        assert (final(opted_out).data.status, final(opted_out).data.error_code) == ("failed", "21610")
        # the channel names the provider's codes in words the orchestrator decides on
        reasons = [final(e).data.reason for e in (undelivered, invalid, opted_out)]
        assert reasons == [None, "invalid_address", "opted_out"]
        assert (final(late).data.status, final(late).data.error_code) == ("failed", "deadline")
        opt_outs = await outcomes.wait_count(RESPONSE, 1)
        assert [(r.data.kind, r.data.debtor_id, r.data.dispatch_id, r.data.address) for r in opt_outs] == [
            ("opt_out", opted_out.data.debtor_id, opted_out.data.dispatch_id, opted_out.data.to)
        ]
        assert len(await sandbox_messages(sandbox, late.data.to)) == 0
        for event in (undelivered, invalid, opted_out):
            assert len(await sandbox_messages(sandbox, event.data.to)) == 1
        # invalid and opted-out were refused synchronously: never accepted
        assert statuses(outcomes, invalid.data.dispatch_id) == ["failed"]
        assert statuses(outcomes, opted_out.data.dispatch_id) == ["failed"]
        assert service.app.state.dispatch.results == {"sent": 1, "rejected": 2}


async def test_replies_stop_baja_and_1_and_forged_webhooks_are_refused(
    kafka_settings: KafkaSettings, database_url: str, sandbox: SandboxHandle, outcomes: TopicReader,
    publisher: Publisher, group: str,
) -> None:
    from sqlalchemy import func, select

    from shared.channels.models import ProviderReceipt
    from shared.db import OutboxRecord
    from tests.channel_harness import signed_post

    settings = service_settings(SMS, kafka_settings, database_url, sandbox, free_port(), group=group)
    await publisher.template(template_event("reminder", "sms"))
    stop = dispatch_event("sms", unique_number("7001"), "reminder")
    baja = dispatch_event("sms", unique_number("7002"), "reminder")
    pay = dispatch_event("sms", unique_number("7003"), "reminder")
    token = settings.twilio.auth_token.get_secret_value()
    async with running_service(SMS, settings) as service:
        inbound_url = f"{service.url}/webhooks/twilio/inbound"
        await sandbox.set_inbound_urls(sms=inbound_url)
        await template_cached(service, "reminder")
        for event in (stop, baja, pay):
            await publisher.dispatch(event)
        responses = await outcomes.wait_count(RESPONSE, 3)
        by_dispatch = {r.data.dispatch_id: r.data for r in responses}
        assert (by_dispatch[stop.data.dispatch_id].kind, by_dispatch[stop.data.dispatch_id].text) == ("opt_out", "STOP")
        assert (by_dispatch[baja.data.dispatch_id].kind, by_dispatch[baja.data.dispatch_id].text) == ("opt_out", "BAJA")
        assert (by_dispatch[pay.data.dispatch_id].kind, by_dispatch[pay.data.dispatch_id].text) == (
            "promise_to_pay", "1")
        for event in (stop, baja, pay):
            assert by_dispatch[event.data.dispatch_id].debtor_id == event.data.debtor_id
            assert by_dispatch[event.data.dispatch_id].address == event.data.to

        async def answered() -> bool:
            inbound = await sandbox.callbacks(kind="inbound-message")
            return len(inbound) == 3 and {c["status"] for c in inbound} == {200}

        await wait_for(answered, what="the sandbox's inbound webhooks answered 200")

        # HELP/AYUDA is answered with TwiML in the debtor's locale; accents and case do not matter.
        help_params = {"MessageSid": "SM" + "a" * 32, "From": stop.data.to, "To": "+15005550006", "Body": " áyúdá "}
        answer = await signed_post(inbound_url, token, help_params)
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/xml")
        assert "<Message>Para dudas sobre tu cuenta" in answer.text

        # Forged and unsigned webhooks are refused and change nothing.
        async with service.app.state.db.sessions() as session:
            receipts_before = await session.scalar(select(func.count()).select_from(ProviderReceipt))
        events_before = len(outcomes.events)
        forged_status = {"MessageSid": "SM" + "b" * 32, "MessageStatus": "delivered", "To": pay.data.to}
        status_url = f"{service.url}/webhooks/twilio/status?dispatch={pay.data.dispatch_id}"
        forged = await signed_post(status_url, "not-the-token", forged_status)
        unsigned = await signed_post(inbound_url, token, {**help_params, "MessageSid": "SM" + "c" * 32}, signature="")
        tampered_sig = await signed_post(inbound_url, token, help_params)  # signed, then the body changes:
        tampered = await signed_post(
            inbound_url, token, {**help_params, "Body": "BAJA", "MessageSid": "SM" + "d" * 32},
            signature=tampered_sig.request.headers.get("X-Twilio-Signature"),
        )
        for refused in (forged, unsigned, tampered):
            assert refused.status_code == 403
            assert refused.headers["content-type"].startswith("application/problem+json")
        assert service.webhooks.counts["forged"] == 3
        async with service.app.state.db.sessions() as session:
            assert await session.scalar(select(func.count()).select_from(ProviderReceipt)) == receipts_before
            assert await session.scalar(select(func.count()).select_from(OutboxRecord)) == 0
        # the signed help message is the only new response
        responses = await outcomes.wait_count(RESPONSE, 4)
        assert sorted(r.data.kind for r in responses) == ["help", "opt_out", "opt_out", "promise_to_pay"]
        assert len(outcomes.events) >= events_before


async def test_redelivered_dispatch_is_not_sent_again_even_after_a_restart(
    kafka_settings: KafkaSettings, database_url: str, sandbox: SandboxHandle, outcomes: TopicReader,
    publisher: Publisher, group: str,
) -> None:
    await publisher.template(template_event("reminder", "sms"))
    to = unique_number("0003")
    event = dispatch_event("sms", to, "reminder")
    port = free_port()
    settings = service_settings(SMS, kafka_settings, database_url, sandbox, port, group=group)
    async with running_service(SMS, settings) as service:
        await template_cached(service, "reminder")
        await publisher.dispatch(event)
        await publisher.dispatch(event)  # the same event again, as after a crash before the offset commit
        await wait_for(lambda: "delivered" in statuses(outcomes, event.data.dispatch_id), what="delivered")
        await wait_for(lambda: service.app.state.runner.handled >= 2, what="both copies handled")
    # A new consumer group re-reads the topic from the start: every dispatch is redelivered to a restarted app.
    restarted = service_settings(SMS, kafka_settings, database_url, sandbox, port, group=group + "-again")
    async with running_service(SMS, restarted) as service:
        await wait_for(lambda: service.app.state.runner.handled >= 2, what="redeliveries handled")
        await wait_for(lambda: service.app.state.relay.published >= 2, what="outcomes re-emitted")
        assert service.app.state.dispatch.requests == 0
    assert len(await sandbox_messages(sandbox, to)) == 1
    # Re-emitted outcomes carry the same ids: consumers' inboxes drop them.
    ids = {e.id for e in deliveries(outcomes, event.data.dispatch_id)}
    published = set(statuses(outcomes, event.data.dispatch_id))
    assert len(ids) == len(published)
    assert published in ({"accepted", "sent", "delivered"}, {"sent", "delivered"})  # "accepted" may be superseded


async def test_timeout_after_acceptance_is_unknown_never_resent_and_reconciled_by_callbacks(
    kafka_settings: KafkaSettings, tmp_path: Any, outcomes: TopicReader, publisher: Publisher, group: str,
) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'sms.db'}"
    await publisher.template(template_event("reminder", "sms"))
    to = unique_number("0004")
    event = dispatch_event("sms", to, "reminder")
    async with running_sandbox(speed_factor=1.0) as sandbox:
        settings = service_settings(SMS, kafka_settings, database_url, sandbox, free_port(), group=group,
                                    request_timeout_s=0.3)
        # The request times out (0.3 s) while the message goes on; its callbacks wait until the release below.
        await sandbox.set_faults(provider="twilio", timeout_next=1, timeout_ms=1000, hold_callbacks=True)
        async with running_service(SMS, settings) as service:
            await template_cached(service, "reminder")
            await publisher.dispatch(event)
            await wait_for(lambda: "unknown" in statuses(outcomes, event.data.dispatch_id), what="unknown")
            await publisher.dispatch(event)  # redelivered: still not sent again
            await wait_for(lambda: service.app.state.runner.handled >= 2, what="redelivery handled")
            # The message went out anyway: its signed callbacks name the dispatch and reconcile it.
            await sandbox.set_faults(provider="twilio")
            await wait_for(lambda: "delivered" in statuses(outcomes, event.data.dispatch_id), what="delivered")
            assert service.app.state.dispatch.results == {"unknown": 1}
            assert service.app.state.dispatch.requests == 1
        # The sandbox records a held request when it finally answers it.
        sent = await wait_for(lambda: sandbox_messages(sandbox, to), what="the held request recorded")
    assert len(sent) == 1 and sent[0]["fault"] == "timeout"
    assert statuses(outcomes, event.data.dispatch_id)[0] == "unknown"
    unknown = deliveries(outcomes, event.data.dispatch_id)[0]
    assert unknown.data.provider_id is None
    delivered = next(e for e in deliveries(outcomes, event.data.dispatch_id) if e.data.status == "delivered")
    assert delivered.data.provider_id == sent[0]["sid"]


async def test_429_burst_is_retried_sent_exactly_once_and_the_sender_rate_holds(
    kafka_settings: KafkaSettings, tmp_path: Any, sandbox: SandboxHandle, outcomes: TopicReader,
    publisher: Publisher, group: str,
) -> None:
    mps, burst, count, burst_429 = 10.0, 2, 20, 3
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'sms.db'}"
    await publisher.template(template_event("reminder", "sms"))
    events = [dispatch_event("sms", unique_number("0005"), "reminder") for _ in range(count)]
    settings = service_settings(SMS, kafka_settings, database_url, sandbox, free_port(), group=group, mps=mps,
                                burst=burst)
    await sandbox.set_faults(provider="twilio", rate_limit_next=burst_429, retry_after_s=1)
    async with running_service(SMS, settings) as service:
        await template_cached(service, "reminder")
        for event in events:
            await publisher.dispatch(event)
        await wait_for(
            lambda: all("delivered" in statuses(outcomes, e.data.dispatch_id) for e in events), timeout=30,
            what="every dispatch delivered",
        )
        handler = service.app.state.dispatch
        assert handler.results == {"sent": count}
        assert handler.requests == count + burst_429
    requests = [r for r in await sandbox.requests(provider="twilio") if r["path"].endswith("/Messages.json")]
    assert sorted(r["status"] for r in requests) == [201] * count + [429] * burst_429
    for event in events:
        assert [r["status"] for r in requests if r["to"] == [event.data.to]].count(201) == 1
    stamps = sorted(r["received_ts"] for r in requests)
    busiest = max(sum(1 for t in stamps if start <= t < start + 1.0) for start in stamps)
    assert busiest <= mps + burst, f"{busiest} requests in one second"
    # After the 429, nothing was sent until its Retry-After had passed.
    first_429 = min(r["received_ts"] for r in requests if r["status"] == 429)
    after = [r["received_ts"] for r in requests if r["status"] == 201]
    assert min(after) >= first_429 + 0.99
