"""The email channel's adapter: a rendered template as a SendGrid v3 mail.

The rendered subject, text and HTML become a v3 mail body with ``custom_args`` naming the dispatch (and
its trace) and RFC 8058 ``List-Unsubscribe`` headers. The dispatch consumer, send log and retry policy
are the shared ones (:class:`~shared.channels.dispatch.DispatchHandler`).
"""

from __future__ import annotations

from typing import Any

from services.email.settings import EmailSenderSettings, UnsubscribeSettings
from services.email.tokens import UnsubscribeTokens, unsubscribe_url
from shared.channels.ports import OutboundMessage, Unsendable
from shared.events.contracts import Channel, ContactDispatched
from shared.providers.base import Accepted
from shared.providers.sendgrid import SendGridMail
from shared.templates import RenderedMessage
from shared.tracing import current


def traceparent_arg() -> dict[str, str]:
    """The send's trace in SendGrid's ``custom_args``: its event webhook echoes it on every event."""
    context = current()
    return {"traceparent": context.traceparent} if context is not None else {}


class SendGridEmailAdapter:
    """The email channel's :class:`~shared.channels.ports.ChannelAdapter` on SendGrid v3 mail send."""

    channel: Channel = "email"
    provider = "sendgrid"
    lead_time_s = 0.0

    def __init__(
        self,
        client: SendGridMail,
        sender: EmailSenderSettings,
        unsubscribe: UnsubscribeSettings,
        tokens: UnsubscribeTokens,
        public_url: str,
    ) -> None:
        self.client, self.sender, self.unsubscribe, self.tokens = client, sender, unsubscribe, tokens
        self.public_url = public_url

    def list_unsubscribe(self, dispatch_id: str) -> dict[str, str]:
        token = self.tokens.sign(dispatch_id)
        targets = [f"<{unsubscribe_url(self.public_url, token)}>"]
        if self.unsubscribe.mailto:
            targets.append(f"<mailto:{self.unsubscribe.mailto}?subject=unsubscribe%20{token}>")
        return {"List-Unsubscribe": ", ".join(targets), "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}

    async def compose(
        self, dispatch: ContactDispatched, rendered: RenderedMessage, status_callback: str
    ) -> OutboundMessage:
        if not rendered.subject:
            raise Unsendable("template_error", f"template {rendered.key} v{rendered.version} has no subject")
        # SendGrid requires text/plain before text/html when both are present.
        content = [
            {"type": kind, "value": value}
            for kind, value in (("text/plain", rendered.text), ("text/html", rendered.html))
            if value
        ]
        if not content:
            raise Unsendable("template_error", f"template {rendered.key} v{rendered.version} has no text or html")
        sender: dict[str, str] = {"email": self.sender.from_email}
        if self.sender.from_name:
            sender["name"] = self.sender.from_name
        mail: dict[str, Any] = {
            "personalizations": [{"to": [{"email": dispatch.to}]}],
            "from": sender,
            "subject": rendered.subject,
            "content": content,
            "custom_args": {
                "dispatch_id": dispatch.dispatch_id,
                "request_id": dispatch.request_id,
                "debtor_id": dispatch.debtor_id,
                **traceparent_arg(),
            },
            "headers": self.list_unsubscribe(dispatch.dispatch_id),
        }
        if self.sender.reply_to:
            reply_to = {"email": self.sender.reply_to}
            if self.sender.reply_to_name:
                reply_to["name"] = self.sender.reply_to_name
            mail["reply_to"] = reply_to
        return OutboundMessage(to=dispatch.to, sender=self.sender.from_email, payload=mail)

    async def send(self, message: OutboundMessage) -> Accepted:
        return await self.client.send(message.payload)
