"""Twilio: the Messages API client (httpx over aiohttp) and ``X-Twilio-Signature`` verification.

The client posts the same form the official ``twilio`` package sends, to the same path, with the
same Basic auth, so it runs unchanged against ``api.twilio.com`` and the sandbox. It is built on
``httpx`` with the ``httpx_aiohttp`` transport rather than the official async client because it
must see the ``Retry-After`` header (``TwilioRestException`` drops it) and tell "never left"
from "may have been processed" precisely; ``bench/pipeline.py`` measures the throughput of both.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport
from twilio.request_validator import RequestValidator

from shared.config import TwilioSettings
from shared.providers.base import Accepted, Ambiguous, Rejected, Retryable

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


def request_never_left(exc: httpx.TransportError) -> bool:
    """True when the error proves the request was not sent (connect failure or connect/pool timeout).

    ``httpx_aiohttp`` maps every ``aiohttp.ClientConnectionError`` — including a server dropping the
    connection after reading the request — to ``httpx.ConnectTimeout``, so its original exception
    decides: only a failure to connect is safe to retry.
    """
    cause = exc.__cause__
    if isinstance(cause, aiohttp.ClientError | aiohttp.ServerTimeoutError):
        return isinstance(cause, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


def _error_body(response: httpx.Response) -> tuple[str | None, str]:
    try:
        body = response.json()
    except ValueError:
        return None, response.text[:500] or response.reason_phrase
    if not isinstance(body, dict):
        return None, str(body)[:500]
    code = body.get("code")
    return (str(code) if code is not None else None), str(body.get("message") or response.reason_phrase)


def classify_response(response: httpx.Response) -> Accepted:
    """The outcome of a Messages.json create; raises ``Rejected``, ``Retryable`` or ``Ambiguous``."""
    status = response.status_code
    if status in (200, 201):
        try:
            body = response.json()
            return Accepted(provider_id=str(body["sid"]), status=str(body.get("status") or "accepted"))
        except (ValueError, KeyError, TypeError) as exc:
            raise Ambiguous(f"unreadable success response: {exc}", status=status) from exc
    code, message = _error_body(response)
    retry_after = parse_retry_after(response.headers.get("retry-after"))
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
    """Creates messages through ``POST /2010-04-01/Accounts/{sid}/Messages.json``.

    One instance per process, owned by the app's lifespan (``async with``); safe for concurrent use.
    """

    def __init__(
        self,
        settings: TwilioSettings,
        *,
        timeout: float = 10.0,
        connect_timeout: float = 3.0,
        max_connections: int = 64,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.account_sid = settings.account_sid
        self.url = f"{settings.base_url.rstrip('/')}/{API_VERSION}/Accounts/{settings.account_sid}/Messages.json"
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections, keepalive_expiry=4.0
        )
        self._client = httpx.AsyncClient(
            auth=(settings.account_sid, settings.auth_token.get_secret_value()),
            timeout=httpx.Timeout(timeout, connect=connect_timeout, pool=connect_timeout),
            transport=transport or AiohttpTransport(limits=limits, trust_env=False),
            trust_env=False,
            headers={"Accept": "application/json", "User-Agent": "cadencia-twilio/1"},
        )

    async def __aenter__(self) -> TwilioMessages:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def create(self, params: Mapping[str, str]) -> Accepted:
        """Create one message from Twilio's form parameters (``To``, ``From``, ``Body``, ``StatusCallback``...)."""
        try:
            response = await self._client.post(self.url, data=dict(params))
        except httpx.TransportError as exc:
            if request_never_left(exc):
                raise Retryable(f"{type(exc).__name__}: {exc}") from exc
            raise Ambiguous(f"{type(exc).__name__}: {exc}") from exc
        except (httpx.HTTPError, OSError, TimeoutError, aiohttp.ClientError) as exc:
            # Unmapped failures (a bare timeout, a protocol error) may come after the request left.
            raise Ambiguous(f"{type(exc).__name__}: {exc}") from exc
        return classify_response(response)


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
