"""Twilio: the Messages and Calls API clients (aiohttp, on :class:`~shared.providers.http.ProviderHttpClient`).

The client posts the same form the official ``twilio`` package sends, to the same path, with the
same Basic auth, so it runs unchanged against ``api.twilio.com`` and the sandbox. It talks aiohttp
directly: ``bench/http_clients.py`` measured it as fast as the official ``AsyncTwilioHttpClient`` (also
aiohttp) and well ahead of httpx on either transport, and unlike the official client it sees the
``Retry-After`` header (``TwilioRestException`` drops it) and tells "never left" (connect failure)
from "may have been processed" (anything after) without guessing from a mapped exception.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, ClassVar, Unpack
from urllib.parse import quote, urlencode

import orjson

from shared.config import TwilioSettings
from shared.providers.base import Accepted, ProviderError
from shared.providers.http import ClientOptions, ProviderHttpClient
from shared.providers.twilio.errors import classify_response

API_VERSION = "2010-04-01"


_FORM = {"Content-Type": "application/x-www-form-urlencoded"}

#: Each byte as ``urllib.parse.quote_plus(…, safe="")`` writes it: letters, digits and ``_.-~`` as they
#: are, a space as ``+``, every other byte as ``%XX``.
_QUOTED = [
    chr(b) if chr(b).isascii() and (chr(b).isalnum() or chr(b) in "_.-~") else "+" if b == 0x20 else f"%{b:02X}"
    for b in range(256)
]


def form_body(form: Mapping[str, str] | list[tuple[str, str]]) -> bytes:
    """``urlencode(form).encode()``, the same bytes (a unit test holds the two together), in about half
    the time: each byte is looked up in a table instead of going through ``quote_plus``'s per-byte
    Python quoter. The form's text (the message body, the callback URL) is mostly not safe as it is."""
    items = form.items() if isinstance(form, Mapping) else form
    quoted = _QUOTED.__getitem__
    try:
        return "&".join(
            "".join(map(quoted, key.encode())) + "=" + "".join(map(quoted, value.encode())) for key, value in items
        ).encode()
    except AttributeError:  # a value that is not text (the form is typed as text): as urlencode writes it
        return urlencode(form, doseq=True).encode()


class TwilioMessages(ProviderHttpClient):
    """Creates messages through ``POST /2010-04-01/Accounts/{sid}/Messages.json`` on one aiohttp session.

    One instance per process, owned by the app's lifespan (``async with`` or :meth:`aclose`); safe for
    concurrent use. Only a failure to connect (refused, connect timeout) proves the request never left.
    """

    #: The API resource created by :meth:`create` (``Messages``; :class:`TwilioCalls` uses ``Calls``).
    resource: ClassVar[str] = "Messages"
    user_agent: ClassVar[str] = "cadencia-twilio/1"

    def __init__(self, settings: TwilioSettings, **options: Unpack[ClientOptions]) -> None:
        credentials = f"{settings.account_sid}:{settings.auth_token.get_secret_value()}".encode()
        super().__init__("Basic " + base64.b64encode(credentials).decode(), **options)
        self.account_sid = settings.account_sid
        self.url = f"{settings.base_url.rstrip('/')}/{API_VERSION}/Accounts/{settings.account_sid}/{self.resource}.json"

    async def create(self, params: Mapping[str, str]) -> Accepted:
        """Create one message from Twilio's form parameters (``To``, ``From``, ``Body``, ``StatusCallback``...)."""
        return await self._send(dict(params))

    async def fetch(self, sid: str) -> dict[str, Any]:
        """The resource as Twilio has it now (``GET …/Messages/{sid}.json``, ``…/Calls/{sid}.json``):
        the reconciler asks for the status of a message whose callbacks never arrived."""
        url = self.url.removesuffix(".json") + f"/{quote(sid, safe='')}.json"
        async with self.session.get(url) as response:
            body = await response.read()
            if response.status != 200:
                raise ProviderError(f"fetch {self.resource} {sid}: HTTP {response.status}", status=response.status)
        fetched: dict[str, Any] = orjson.loads(body)
        return fetched

    async def _send(self, form: dict[str, str] | list[tuple[str, str]]) -> Accepted:
        # Encoded here as aiohttp's ``FormData`` would encode it (the same bytes and content type),
        # without the multipart writer it builds for every form.
        return classify_response(*await self._post(self.url, data=form_body(form), headers=_FORM))


class TwilioCalls(TwilioMessages):
    """Places calls through ``POST /2010-04-01/Accounts/{sid}/Calls.json``: the same session, auth and
    outcome classes as messages (a 201 is :class:`Accepted` with the ``CA…`` sid, status ``queued``).

    ``StatusCallbackEvent`` may be given space-separated (``"initiated ringing answered completed"``);
    it is sent as one repeated form field per event, as Twilio's own client does.
    """

    resource: ClassVar[str] = "Calls"

    async def create(self, params: Mapping[str, str]) -> Accepted:
        """Create one call from Twilio's form parameters (``To``, ``From``, ``Url``, ``StatusCallback``...)."""
        form = [(key, value) for key, value in params.items() if key != "StatusCallbackEvent"]
        form += [("StatusCallbackEvent", event) for event in params.get("StatusCallbackEvent", "").split()]
        return await self._send(form)
