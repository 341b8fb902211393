"""Email end to end: the real broker, the service over HTTP, the sandbox standing in for SendGrid."""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson
from sqlalchemy import func, select

from services.sandbox.testing import SandboxHandle
from shared.channels.models import ProviderReceipt
from shared.config import KafkaSettings
from shared.db import OutboxRecord
from shared.providers.sendgrid import SIGNATURE_HEADER, TIMESTAMP_HEADER
from shared.tracing import parse_traceparent
from tests.channel_harness import Publisher, dispatch_event, free_port, running_service, template_cached
from tests.email.harness import (
    RESPONSE,
    Email,
    address,
    deliveries,
    email_settings_for,
    email_template,
    mail_requests,
    responses,
    statuses,
)
from tests.helpers import TopicReader, wait_for


async def test_dispatch_is_one_mail_with_both_parts_and_unsubscribe_headers_then_delivered_never_resent(
    kafka_settings: KafkaSettings, database_url: str, sandbox: SandboxHandle, outcomes: TopicReader,
    publisher: Publisher, group: str,
) -> None:
    port = free_port()
    settings = email_settings_for(kafka_settings, database_url, sandbox, port, group=group)
    await sandbox.set_sendgrid_webhook(f"{settings.public_url}/webhooks/sendgrid/events")
    await publisher.template(email_template("reminder"))
    to = address("maria")
    event = dispatch_event("email", to, "reminder")
    d = event.data
    async with running_service(Email, settings) as service:
        await template_cached(service, "reminder")
        await publisher.dispatch(event)
        await publisher.dispatch(event)  # the same event again, as after a crash before the offset commit
        await wait_for(lambda: "delivered" in statuses(outcomes, d.dispatch_id), what="delivered")
        await wait_for(lambda: service.app.state.runner.handled >= 2, what="both copies handled")
        assert service.app.state.dispatch.requests == 1
    sent = await mail_requests(sandbox, to)
    assert len(sent) == 1 and sent[0]["status"] == 202
    mail = sent[0]["json"]
    assert mail["personalizations"] == [{"to": [{"email": to}]}]
    assert mail["from"] == {"email": "cobranza@acme.example", "name": "ACME Cobranza"}
    assert mail["reply_to"] == {"email": "ayuda@acme.example"}
    assert mail["subject"] == "María, tu saldo pendiente"
    assert mail["content"] == [
        {"type": "text/plain", "value": "Hola María, tu saldo es $1,234.50. Paga en https://pay.example/a1"},
        {"type": "text/html", "value": "<p>Hola María, tu saldo es <b>$1,234.50</b>.</p>"},
    ]
    custom_args = dict(mail["custom_args"])
    sent_in = parse_traceparent(custom_args.pop("traceparent"))  # echoed on each webhook event
    assert sent_in is not None
    assert custom_args == {"dispatch_id": d.dispatch_id, "request_id": d.request_id, "debtor_id": d.debtor_id}
    one_click, mailto = mail["headers"]["List-Unsubscribe"].split(", ")
    assert one_click.startswith(f"<{settings.public_url}/unsubscribe/") and one_click.endswith(">")
    assert mailto.startswith("<mailto:baja@acme.example?subject=unsubscribe%20")
    assert mail["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert set(statuses(outcomes, d.dispatch_id)) == {"accepted", "delivered"}
    delivered = next(e for e in deliveries(outcomes, d.dispatch_id) if e.data.status == "delivered")
    assert delivered.subject == d.debtor_id and delivered.data.channel == "email"
    assert delivered.data.provider == "sendgrid" and delivered.data.provider_id == sent[0]["sid"]
    reported = parse_traceparent(delivered.traceparent)  # the webhook continued the send's trace
    assert reported is not None and reported.trace_id == sent_in.trace_id

    # A restarted service (a new group re-reads the topic) re-emits the recorded outcome; nothing is sent.
    restarted = email_settings_for(kafka_settings, database_url, sandbox, port, group=group + "-again")
    async with running_service(Email, restarted) as service:
        await wait_for(lambda: service.app.state.runner.handled >= 2, what="redeliveries handled")
        assert service.app.state.dispatch.requests == 0
    assert len(await mail_requests(sandbox, to)) == 1
    assert len({e.id for e in deliveries(outcomes, d.dispatch_id)}) == 2


async def test_events_bounce_open_click_spam_and_refused_or_failed_sends(
    kafka_settings: KafkaSettings, tmp_path: Any, sandbox: SandboxHandle, outcomes: TopicReader,
    publisher: Publisher, group: str,
) -> None:
    settings = email_settings_for(kafka_settings, f"sqlite+aiosqlite:///{tmp_path / 'email.db'}", sandbox,
                                  free_port(), group=group)
    events_url = f"{settings.public_url}/webhooks/sendgrid/events"
    await sandbox.set_sendgrid_webhook(events_url)
    await publisher.template(email_template("reminder"))
    await publisher.template(email_template("no_body", text=None, html=None))
    kinds = ("bounce", "blocked", "dropped", "open", "click", "spam", "unsubscribe")
    dispatches = {kind: dispatch_event("email", address(kind), "reminder") for kind in kinds}
    invalid = dispatch_event("email", "nobody@invalid", "reminder")  # SendGrid: 400, not a valid address
    unusable = dispatch_event("email", address("maria"), "no_body")
    async with running_service(Email, settings) as service:
        await template_cached(service, "reminder")
        await template_cached(service, "no_body")
        for event in (*dispatches.values(), invalid, unusable):
            await publisher.dispatch(event)

        def last(kind: str) -> str | None:
            found = statuses(outcomes, dispatches[kind].data.dispatch_id)
            return found[-1] if found else None

        await wait_for(
            lambda: (last("bounce"), last("blocked"), last("dropped"), last("open"), last("click"), last("spam"))
            == ("bounced", "bounced", "bounced", "opened", "clicked", "failed")
            and responses(outcomes, dispatches["unsubscribe"].data.dispatch_id)
            and statuses(outcomes, invalid.data.dispatch_id) and statuses(outcomes, unusable.data.dispatch_id),
            what="every outcome",
        )
        by_kind = {k: deliveries(outcomes, e.data.dispatch_id) for k, e in dispatches.items()}
        bounce = by_kind["bounce"][-1].data
        assert (bounce.error_code, bounce.error_message) == (
            "bounce", "550 5.1.1 The email account that you tried to reach does not exist.")
        assert by_kind["blocked"][-1].data.error_code == "blocked"
        assert by_kind["dropped"][-1].data.error_code == "dropped"
        assert [e.data.status for e in by_kind["open"]] == ["accepted", "delivered", "opened"]
        assert [e.data.status for e in by_kind["click"]] == ["accepted", "delivered", "opened", "clicked"]
        spam = dispatches["spam"].data
        assert [e.data.status for e in by_kind["spam"]] == ["accepted", "delivered", "failed"]
        assert by_kind["spam"][-1].data.error_code == "spamreport"
        assert [(r.data.kind, r.data.address, r.data.channel) for r in responses(outcomes, spam.dispatch_id)] == [
            ("opt_out", spam.to, "email")
        ]
        unsub = dispatches["unsubscribe"].data
        assert [(r.data.kind, r.data.address) for r in responses(outcomes, unsub.dispatch_id)] == [
            ("unsubscribe", unsub.to)
        ]
        refused = deliveries(outcomes, invalid.data.dispatch_id)
        assert [(e.data.status, e.data.error_code) for e in refused] == [("failed", "400")]
        assert "valid address" in (refused[0].data.error_message or "")
        assert [(e.data.status, e.data.error_code) for e in deliveries(outcomes, unusable.data.dispatch_id)] == [
            ("failed", "template_error")
        ]
        assert len(await mail_requests(sandbox, unusable.data.to)) == 0
        assert service.app.state.dispatch.results == {"sent": len(kinds), "rejected": 1}

        # Forged, unsigned and stale (replayed) event webhooks are refused and change nothing.
        async with service.app.state.db.sessions() as session:
            receipts = await session.scalar(select(func.count()).select_from(ProviderReceipt))
            outbox = await session.scalar(select(func.count()).select_from(OutboxRecord))
        forged_events = [{"event": "delivered", "email": invalid.data.to, "sg_event_id": "forged-1",
                          "dispatch_id": invalid.data.dispatch_id, "timestamp": int(time.time())}]
        body = orjson.dumps(forged_events)
        signer = sandbox.app.state.sandbox.signer
        now = str(int(time.time()))
        stale = str(int(time.time()) - 3600)
        attempts = {
            "unsigned": {},
            "bad signature": {SIGNATURE_HEADER: signer.sign(now, b"[]"), TIMESTAMP_HEADER: now},
            "garbage": {SIGNATURE_HEADER: "bm90IGEgc2lnbmF0dXJl", TIMESTAMP_HEADER: now},
            "stale": {SIGNATURE_HEADER: signer.sign(stale, body), TIMESTAMP_HEADER: stale},
        }
        async with httpx.AsyncClient(timeout=10) as client:
            for what, headers in attempts.items():
                answer = await client.post(events_url, content=body, headers=headers)
                assert answer.status_code == 403, what
                assert answer.headers["content-type"].startswith("application/problem+json")
            # the same body correctly signed now is accepted (proves the refusals were the signatures)
            good = await client.post(events_url, content=body,
                                     headers={SIGNATURE_HEADER: signer.sign(now, body), TIMESTAMP_HEADER: now})
            assert good.status_code == 204
        # the stale request was signed by SendGrid's key: a replay; the others are forgeries
        assert service.webhooks.counts["forged"] == len(attempts) - 1
        assert service.webhooks.counts["replayed"] == 1
        async with service.app.state.db.sessions() as session:
            assert await session.scalar(select(func.count()).select_from(ProviderReceipt)) == receipts + 1
            assert await session.scalar(select(func.count()).select_from(OutboxRecord)) == outbox
        # a failed dispatch stays failed: the (genuine) late delivered event does not move it
        assert service.webhooks.counts["event_stale"] >= 1
    assert statuses(outcomes, invalid.data.dispatch_id) == ["failed"]


async def test_one_click_unsubscribe_post_unsubscribes_get_only_asks_and_bad_tokens_are_404(
    kafka_settings: KafkaSettings, tmp_path: Any, sandbox: SandboxHandle, outcomes: TopicReader,
    publisher: Publisher, group: str,
) -> None:
    settings = email_settings_for(kafka_settings, f"sqlite+aiosqlite:///{tmp_path / 'email.db'}", sandbox,
                                  free_port(), group=group)
    await sandbox.set_sendgrid_webhook(f"{settings.public_url}/webhooks/sendgrid/events")
    await publisher.template(email_template("reminder"))
    event = dispatch_event("email", address("maria"), "reminder")
    d = event.data
    async with running_service(Email, settings) as service:
        await template_cached(service, "reminder")
        await publisher.dispatch(event)
        await wait_for(lambda: "delivered" in statuses(outcomes, d.dispatch_id), what="delivered")
        mail = (await mail_requests(sandbox, d.to))[0]["json"]
        link = mail["headers"]["List-Unsubscribe"].split(", ")[0].strip("<>")
        token = link.rsplit("/", 1)[1]
        async with httpx.AsyncClient(timeout=10) as client:
            page = await client.get(link)
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            assert f'action="/unsubscribe/{token}"' in page.text and 'method="post"' in page.text
            assert "Darme de baja" in page.text and "Unsubscribe" in page.text
            assert service.webhooks.counts.get("unsubscribe", 0) == 0
            # RFC 8058: the mail client POSTs List-Unsubscribe=One-Click, without any credentials.
            one_click = await client.post(link, data={"List-Unsubscribe": "One-Click"})
            assert one_click.status_code == 200
            again = await client.post(link, data={"List-Unsubscribe": "One-Click"})
            assert again.status_code == 200
            other = service.webhooks.tokens.sign("no-such-dispatch")
            tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
            for bad in (tampered, "garbage", "Zm9v.YmFy", other):
                for method in ("GET", "POST"):
                    answer = await client.request(method, f"{settings.public_url}/unsubscribe/{bad}")
                    assert answer.status_code == 404, (method, bad)
                    assert answer.headers["content-type"].startswith("application/problem+json")
        unsubscribed = await outcomes.wait_count(RESPONSE, 1)
        await wait_for(lambda: service.app.state.relay.published >= 3, what="outbox relayed")
    assert [(r.data.kind, r.data.channel, r.data.address, r.data.debtor_id, r.data.dispatch_id)
            for r in unsubscribed] == [("unsubscribe", "email", d.to, d.debtor_id, d.dispatch_id)]
    assert service.webhooks.counts["unsubscribe"] == 1
    assert len(outcomes.of_type(RESPONSE)) == 1


async def test_timeout_after_acceptance_is_unknown_never_resent_and_reconciled_by_events(
    kafka_settings: KafkaSettings, tmp_path: Any, outcomes: TopicReader, publisher: Publisher, group: str,
) -> None:
    from services.sandbox.testing import running_sandbox

    await publisher.template(email_template("reminder"))
    event = dispatch_event("email", address("maria"), "reminder")
    d = event.data
    async with running_sandbox(speed_factor=1.0) as sandbox:
        settings = email_settings_for(kafka_settings, f"sqlite+aiosqlite:///{tmp_path / 'email.db'}", sandbox,
                                      free_port(), group=group, request_timeout_s=0.3)
        await sandbox.set_sendgrid_webhook(f"{settings.public_url}/webhooks/sendgrid/events")
        # The request times out (0.3 s) while the mail goes on; its events wait until the release below.
        await sandbox.set_faults(provider="sendgrid", timeout_next=1, timeout_ms=1500, hold_callbacks=True)
        async with running_service(Email, settings) as service:
            await template_cached(service, "reminder")
            await publisher.dispatch(event)
            await wait_for(lambda: "unknown" in statuses(outcomes, d.dispatch_id), what="unknown")
            await publisher.dispatch(event)  # redelivered: still not sent again
            await wait_for(lambda: service.app.state.runner.handled >= 2, what="redelivery handled")
            await sandbox.set_faults(provider="sendgrid")  # the events go out
            await wait_for(lambda: "delivered" in statuses(outcomes, d.dispatch_id), timeout=20, what="delivered")
            assert service.app.state.dispatch.results == {"unknown": 1}
            assert service.app.state.dispatch.requests == 1
        sent = await wait_for(lambda: mail_requests(sandbox, d.to), what="the held request recorded")
    assert len(sent) == 1 and sent[0]["fault"] == "timeout"
    assert statuses(outcomes, d.dispatch_id)[0] == "unknown"
    delivered = next(e for e in deliveries(outcomes, d.dispatch_id) if e.data.status == "delivered")
    assert delivered.data.provider_id == sent[0]["sid"]


async def test_429s_are_retried_honouring_retry_after_and_sent_once(
    kafka_settings: KafkaSettings, tmp_path: Any, sandbox: SandboxHandle, outcomes: TopicReader,
    publisher: Publisher, group: str,
) -> None:
    settings = email_settings_for(kafka_settings, f"sqlite+aiosqlite:///{tmp_path / 'email.db'}", sandbox,
                                  free_port(), group=group)
    await sandbox.set_sendgrid_webhook(f"{settings.public_url}/webhooks/sendgrid/events")
    await publisher.template(email_template("reminder"))
    event = dispatch_event("email", address("maria"), "reminder")
    await sandbox.set_faults(provider="sendgrid", rate_limit_next=2, retry_after_s=1)
    async with running_service(Email, settings) as service:
        await template_cached(service, "reminder")
        await publisher.dispatch(event)
        await wait_for(lambda: "delivered" in statuses(outcomes, event.data.dispatch_id), what="delivered")
        assert service.app.state.dispatch.results == {"sent": 1}
        assert service.app.state.dispatch.requests == 3
    requests = await mail_requests(sandbox, event.data.to)
    assert [r["status"] for r in requests] == [429, 429, 202]
    assert requests[2]["received_ts"] >= requests[0]["received_ts"] + 0.99
