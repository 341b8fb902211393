"""SendGrid v3: the mail send client (aiohttp, on :class:`~shared.providers.http.ProviderHttpClient`).

The client posts the JSON body the official ``sendgrid`` package builds to ``POST /v3/mail/send`` with
the same Bearer auth, so it runs unchanged against ``api.sendgrid.com`` and the sandbox. Like the
Twilio client it talks aiohttp directly (see ``docs/channels.md``): it sees ``Retry-After`` and tells
"never left" (connect failure) from "may have been processed" (anything after).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Unpack

import aiohttp
import orjson

from shared.config import SendGridSettings
from shared.providers.base import Accepted
from shared.providers.http import ClientOptions, ProviderHttpClient
from shared.providers.sendgrid.errors import classify_mail_response

MAIL_SEND_PATH = "/v3/mail/send"
SANDBOX_PUBLIC_KEY_PATH = "/sandbox/sendgrid/public-key"


class SendGridMail(ProviderHttpClient):
    """Sends mail through ``POST /v3/mail/send`` on one aiohttp session.

    One instance per process, owned by the app's lifespan; safe for concurrent use. Only a failure to
    connect proves the request never left.
    """

    user_agent: ClassVar[str] = "cadencia-sendgrid/1"
    extra_headers: ClassVar[Mapping[str, str]] = {"Content-Type": "application/json"}

    def __init__(self, settings: SendGridSettings, **options: Unpack[ClientOptions]) -> None:
        super().__init__("Bearer " + settings.api_key.get_secret_value(), **options)
        self.base_url = settings.base_url.rstrip("/")
        self.url = self.base_url + MAIL_SEND_PATH

    async def send(self, mail: Mapping[str, Any]) -> Accepted:
        """Send one v3 mail body (``personalizations``, ``from``, ``subject``, ``content``...)."""
        return classify_mail_response(*await self._post(self.url, data=orjson.dumps(mail)))


async def fetch_sandbox_public_key(base_url: str, timeout: float = 10.0) -> str:
    """The event webhook's verification key published by the provider sandbox (development only)."""
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with (
        aiohttp.ClientSession(timeout=client_timeout, trust_env=False) as session,
        session.get(base_url.rstrip("/") + SANDBOX_PUBLIC_KEY_PATH) as response,
    ):
        response.raise_for_status()
        body = orjson.loads(await response.read())
    return str(body["public_key"])
