"""The Twilio Messages adapter shared by SMS and WhatsApp.

WhatsApp outside the 24-hour customer-service window can only carry an approved template: the
template's Content SID with its rendered ``ContentVariables``. Inside the window (the debtor wrote
to us within 24 hours) the rendered body goes free-form. Without a Content SID the body is sent
anyway and Twilio decides: outside the window it fails the message with 63016.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson

from services.messaging.settings import SenderSettings
from shared.channels.models import bare_address
from shared.channels.ports import OutboundMessage, Unsendable
from shared.events.contracts import Channel, ContactDispatched
from shared.providers.base import Accepted
from shared.providers.twilio import TwilioMessages
from shared.templates import RenderedMessage

#: Whether a bare ``+E.164`` number's WhatsApp window is open now.
WindowLookup = Callable[[str], Awaitable[bool]]


def whatsapp_address(address: str) -> str:
    return address if address.startswith("whatsapp:") else f"whatsapp:{bare_address(address)}"


class TwilioMessageAdapter:
    provider = "twilio"
    #: A message is delivered, not rung: it only has to leave before ``send_before``.
    lead_time_s = 0.0

    def __init__(
        self,
        channel: Channel,
        client: TwilioMessages,
        sender: SenderSettings,
        window_open: WindowLookup | None = None,
    ) -> None:
        if channel not in ("sms", "whatsapp"):
            raise ValueError(f"Twilio Messages carries sms and whatsapp, not {channel}")
        self.channel: Channel = channel
        self.client, self.sender, self.window_open = client, sender, window_open

    async def compose(
        self, dispatch: ContactDispatched, rendered: RenderedMessage, status_callback: str
    ) -> OutboundMessage:
        whatsapp = self.channel == "whatsapp"
        to = whatsapp_address(dispatch.to) if whatsapp else dispatch.to
        payload = {"To": to, "StatusCallback": status_callback}
        if self.sender.messaging_service_sid:
            payload["MessagingServiceSid"] = self.sender.messaging_service_sid
        else:
            payload["From"] = whatsapp_address(self.sender.from_number) if whatsapp else self.sender.from_number
        use_template = False
        if whatsapp and rendered.content_sid:
            use_template = not (self.window_open is not None and await self.window_open(bare_address(to)))
        if use_template:
            assert rendered.content_sid is not None
            payload["ContentSid"] = rendered.content_sid
            payload["ContentVariables"] = orjson.dumps(rendered.content_variables or {}).decode()
        elif rendered.body:
            payload["Body"] = rendered.body
        else:
            raise Unsendable("template_error", f"template {rendered.key} v{rendered.version} has no body")
        return OutboundMessage(to=to, sender=self.sender.key, payload=payload)

    async def send(self, message: OutboundMessage) -> Accepted:
        return await self.client.create(message.payload)
