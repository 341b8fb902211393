"""Running the email service for a test, served over real HTTP so the sandbox can post its events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import services.email.app as email_app
import services.email.settings as email_settings
from services.email.settings import EmailSenderSettings, UnsubscribeSettings
from services.sandbox.testing import SandboxHandle
from shared.channels.settings import SendingSettings
from shared.config import DatabaseSettings, KafkaSettings, SendGridSettings
from shared.events.contracts import TemplateContent, TemplatePublished, TemplatePublishedEvent
from tests.helpers import TopicReader

DELIVERY = "cadencia.contact.delivery_updated.v1"
RESPONSE = "cadencia.contact.response_received.v1"
SUBJECT = "{{ debtor | first_name }}, tu saldo pendiente"
TEXT = "Hola {{ debtor | first_name }}, tu saldo es {{ account.balance | money }}. Paga en {{ account | payment_link }}"
HTML = "<p>Hola {{ debtor | first_name }}, tu saldo es <b>{{ account.balance | money }}</b>.</p>"


class Email:
    Settings = email_settings.Settings
    create_app = staticmethod(email_app.create_app)


def address(local: str) -> str:
    """A fresh address whose local part picks the sandbox's outcome (``bounce+…@``, ``open+…@``)."""
    return f"{local}+{uuid.uuid4().hex[:10]}@example.com"


def email_template(key: str, *, subject: str = SUBJECT, text: str | None = TEXT,
                   html: str | None = HTML) -> TemplatePublishedEvent:
    return TemplatePublishedEvent(
        subject=key,
        data=TemplatePublished(
            key=key, version=1, channel="email", locale="es-MX",
            content=TemplateContent(subject=subject, text=text, html=html),
            published_at=datetime.now(UTC),
        ),
    )


def email_settings_for(
    kafka: KafkaSettings, database_url: str, sandbox: SandboxHandle, port: int, *, group: str,
    request_timeout_s: float = 2.0,
) -> Any:
    return email_settings.Settings(
        env="test",
        host="127.0.0.1",
        port=port,
        public_url=f"http://127.0.0.1:{port}",
        kafka=kafka,
        database=DatabaseSettings(url=database_url, pool_size=5),
        sendgrid=SendGridSettings(api_key=sandbox.settings.sendgrid.api_key, base_url=sandbox.url),
        sender=EmailSenderSettings(from_email="cobranza@acme.example", from_name="ACME Cobranza",
                                   reply_to="ayuda@acme.example", rate=50.0),
        sending=SendingSettings(request_timeout_s=request_timeout_s, connect_timeout_s=1.0, retry_base_s=0.05,
                                retry_cap_s=1.0),
        unsubscribe=UnsubscribeSettings(secret="test-unsubscribe-secret", mailto="baja@acme.example"),
        orchestrator_url="http://127.0.0.1:9",  # templates come from the topic; the fallback is never needed
        consumer_group=group,
    )


def statuses(reader: TopicReader, dispatch_id: str) -> list[str]:
    return [e.data.status for e in reader.of_type(DELIVERY) if e.data.dispatch_id == dispatch_id]


def deliveries(reader: TopicReader, dispatch_id: str) -> list[Any]:
    return [e for e in reader.of_type(DELIVERY) if e.data.dispatch_id == dispatch_id]


def responses(reader: TopicReader, dispatch_id: str) -> list[Any]:
    return [e for e in reader.of_type(RESPONSE) if e.data.dispatch_id == dispatch_id]


async def mail_requests(sandbox: SandboxHandle, to: str) -> list[dict[str, Any]]:
    return [r for r in await sandbox.requests(provider="sendgrid", to=to.lower()) if r["path"] == "/v3/mail/send"]
