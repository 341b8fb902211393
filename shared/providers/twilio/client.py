"""Twilio: the Messages API client (httpx over aiohttp) and ``X-Twilio-Signature`` verification.

The client posts the same form the official ``twilio`` package sends, to the same path, with the
same Basic auth, so it runs unchanged against ``api.twilio.com`` and the sandbox. It talks aiohttp
directly: ``bench/http_clients.py`` measured it as fast as the official ``AsyncTwilioHttpClient`` (also
aiohttp) and well ahead of httpx on either transport, and unlike the official client it sees the
``Retry-After`` header (``TwilioRestException`` drops it) and tells "never left" (connect failure)
from "may have been processed" (anything after) without guessing from a mapped exception.
"""

from __future__ import annotations

import base64
import email.utils
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import quote

import aiohttp
import orjson
from twilio.request_validator import RequestValidator

from shared.config import TwilioSettings
from shared.providers.base import Accepted, Ambiguous, ProviderError, Rejected, Retryable

API_VERSION = "2010-04-01"
SIGNATURE_HEADER = "X-Twilio-Signature"
#: Twilio error codes the channel services act on.
INVALID_TO_NUMBER = "21211"
OPTED_OUT = "21610"
WHATSAPP_WINDOW_CLOSED = "63016"
TOO_MANY_REQUESTS = "20429"


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; ``None`` when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _error_body(body: bytes, reason: str) -> tuple[str | None, str]:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, body[:500].decode("utf-8", "replace") or reason
    if not isinstance(parsed, dict):
        return None, str(parsed)[:500]
    code = parsed.get("code")
    return (str(code) if code is not None else None), str(parsed.get("message") or reason)


def classify_response(status: int, headers: Mapping[str, str], body: bytes, reason: str = "") -> Accepted:
    """The outcome of a Messages.json create; raises ``Rejected``, ``Retryable`` or ``Ambiguous``."""
    if status in (200, 201):
        try:
            parsed = orjson.loads(body)
            return Accepted(provider_id=str(parsed["sid"]), status=str(parsed.get("status") or "accepted"))
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise Ambiguous(f"unreadable success response: {exc}", status=status) from exc
    code, message = _error_body(body, reason)
    retry_after = parse_retry_after(headers.get("Retry-After") or headers.get("retry-after"))
    if status == 429:
        raise Retryable(message, status=status, code=code or TOO_MANY_REQUESTS, retry_after=retry_after)
    if status == 503:
        raise Retryable(message, status=status, code=code, retry_after=retry_after)
    if status == 401:
        # Credentials refused: nothing was processed; retrying until the deadline survives a rotation.
        raise Retryable(message, status=status, code=code)
    if 400 <= status < 500:
        raise Rejected(message, status=status, code=code or str(status))
    raise Ambiguous(f"HTTP {status}: {message}", status=status, code=code)


class TwilioMessages:
    """Creates messages through ``POST /2010-04-01/Accounts/{sid}/Messages.json`` on one aiohttp session.

    One instance per process, owned by the app's lifespan (``async with`` or :meth:`aclose`); safe for
    concurrent use. Only a failure to connect (refused, connect timeout) proves the request never left.
    """

    #: The API resource created by :meth:`create` (``Messages``; :class:`TwilioCalls` uses ``Calls``).
    resource: ClassVar[str] = "Messages"

    def __init__(
        self,
        settings: TwilioSettings,
        *,
        timeout: float = 10.0,
        connect_timeout: float = 3.0,
        max_connections: int = 64,
    ) -> None:
        self.account_sid = settings.account_sid
        self.url = f"{settings.base_url.rstrip('/')}/{API_VERSION}/Accounts/{settings.account_sid}/{self.resource}.json"
        credentials = f"{settings.account_sid}:{settings.auth_token.get_secret_value()}".encode()
        self._authorization = "Basic " + base64.b64encode(credentials).decode()
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_connect=connect_timeout, sock_read=timeout
        )
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running loop (aiohttp binds sessions to it).
        connector = aiohttp.TCPConnector(limit=self._max_connections, keepalive_timeout=4.0)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            trust_env=False,
            headers={
                "Accept": "application/json",
                "User-Agent": "cadencia-twilio/1",
                "Authorization": self._authorization,
            },
        )
        return self._session

    async def __aenter__(self) -> TwilioMessages:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def create(self, params: Mapping[str, str]) -> Accepted:
        """Create one message from Twilio's form parameters (``To``, ``From``, ``Body``, ``StatusCallback``...)."""
        return await self._post(dict(params))

    async def fetch(self, sid: str) -> dict[str, Any]:
        """The resource as Twilio has it now (``GET …/Messages/{sid}.json``, ``…/Calls/{sid}.json``):
        the reconciler asks for the status of a message whose callbacks never arrived."""
        session = self._session or self._open()
        url = self.url.removesuffix(".json") + f"/{quote(sid, safe='')}.json"
        async with session.get(url) as response:
            body = await response.read()
            if response.status != 200:
                raise ProviderError(f"fetch {self.resource} {sid}: HTTP {response.status}", status=response.status)
        fetched: dict[str, Any] = orjson.loads(body)
        return fetched

    async def _post(self, form: dict[str, str] | list[tuple[str, str]]) -> Accepted:
        session = self._session or self._open()
        try:
            async with session.post(self.url, data=form) as response:
                body = await response.read()
                status, headers, reason = response.status, response.headers, response.reason or ""
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise Retryable(f"{type(exc).__name__}: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            # Read timeout, dropped connection, protocol error: the request may have been processed.
            raise Ambiguous(f"{type(exc).__name__}: {exc}") from exc
        return classify_response(status, headers, body, reason)


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
        return await self._post(form)


class _Params(dict[str, list[str]]):
    """The multi-valued form view ``RequestValidator`` understands (``getall``)."""

    def getall(self, name: str) -> list[str]:
        return self[name]


class TwilioSignature:
    """Verifies ``X-Twilio-Signature``: HMAC-SHA1 with the auth token over the URL and the sorted params."""

    def __init__(self, auth_token: str) -> None:
        self._validator = RequestValidator(auth_token)

    def verify(self, url: str, params: Mapping[str, str | Sequence[str]], signature: str | None) -> bool:
        """``url`` is the full public URL Twilio called (with its query string)."""
        if not signature:
            return False
        multi = _Params({k: [v] if isinstance(v, str) else list(v) for k, v in params.items()})
        valid: Any = self._validator.validate(url, multi, signature)
        return bool(valid)

    def sign(self, url: str, params: Mapping[str, str]) -> str:
        """The signature Twilio would send (for tests and tools)."""
        signature: Any = self._validator.compute_signature(url, dict(params))
        return str(signature)
