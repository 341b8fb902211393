"""SendGrid v3: the mail send client (aiohttp) and the signed event webhook verification.

The client posts the JSON body the official ``sendgrid`` package builds to ``POST /v3/mail/send`` with
the same Bearer auth, so it runs unchanged against ``api.sendgrid.com`` and the sandbox. Like the
Twilio client it talks aiohttp directly (see ``docs/channels.md``): it sees ``Retry-After`` and tells
"never left" (connect failure) from "may have been processed" (anything after).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson
from cryptography.exceptions import UnsupportedAlgorithm
from sendgrid.helpers.eventwebhook import EventWebhook

from shared.config import SendGridSettings
from shared.providers.base import Accepted, Ambiguous, Rejected, Retryable
from shared.providers.twilio import parse_retry_after

MAIL_SEND_PATH = "/v3/mail/send"
SANDBOX_PUBLIC_KEY_PATH = "/sandbox/sendgrid/public-key"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


def _error_message(body: bytes, reason: str) -> tuple[str | None, str]:
    """SendGrid's ``{"errors": [{"message", "field", "help"}]}`` as (first field, joined messages)."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, body[:500].decode("utf-8", "replace") or reason
    errors = parsed.get("errors") if isinstance(parsed, dict) else None
    if not isinstance(errors, list) or not errors:
        return None, reason or str(parsed)[:500]
    messages, field = [], None
    for error in errors:
        if isinstance(error, dict):
            messages.append(str(error.get("message") or ""))
            field = field or (str(error["field"]) if error.get("field") else None)
    return field, "; ".join(m for m in messages if m) or reason


def classify_mail_response(status: int, headers: Mapping[str, str], body: bytes, reason: str = "") -> Accepted:
    """The outcome of a mail send; raises ``Rejected``, ``Retryable`` or ``Ambiguous``."""
    if status in (200, 202):
        message_id = headers.get("X-Message-Id") or headers.get("x-message-id")
        if not message_id:
            raise Ambiguous("accepted without an X-Message-Id", status=status)
        return Accepted(provider_id=message_id, status="accepted")
    field, message = _error_message(body, reason)
    retry_after = parse_retry_after(headers.get("Retry-After") or headers.get("retry-after"))
    if status == 429:
        raise Retryable(message, status=status, code="429", retry_after=retry_after)
    if status in (401, 503):
        # Nothing was processed; a 401 retried until the deadline survives a key rotation.
        raise Retryable(message, status=status, code=str(status), retry_after=retry_after)
    if 400 <= status < 500:
        raise Rejected(f"{field}: {message}" if field else message, status=status, code=str(status))
    raise Ambiguous(f"HTTP {status}: {message}", status=status, code=str(status))


class SendGridMail:
    """Sends mail through ``POST /v3/mail/send`` on one aiohttp session.

    One instance per process, owned by the app's lifespan; safe for concurrent use. Only a failure to
    connect proves the request never left.
    """

    def __init__(
        self,
        settings: SendGridSettings,
        *,
        timeout: float = 10.0,
        connect_timeout: float = 3.0,
        max_connections: int = 64,
    ) -> None:
        self.base_url = settings.base_url.rstrip("/")
        self.url = self.base_url + MAIL_SEND_PATH
        self._authorization = "Bearer " + settings.api_key.get_secret_value()
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
                "Content-Type": "application/json",
                "User-Agent": "cadencia-sendgrid/1",
                "Authorization": self._authorization,
            },
        )
        return self._session

    async def __aenter__(self) -> SendGridMail:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, mail: Mapping[str, Any]) -> Accepted:
        """Send one v3 mail body (``personalizations``, ``from``, ``subject``, ``content``...)."""
        session = self._session or self._open()
        try:
            async with session.post(self.url, data=orjson.dumps(mail)) as response:
                body = await response.read()
                status, headers, reason = response.status, response.headers, response.reason or ""
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise Retryable(f"{type(exc).__name__}: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            # Read timeout, dropped connection, protocol error: the request may have been processed.
            raise Ambiguous(f"{type(exc).__name__}: {exc}") from exc
        return classify_mail_response(status, headers, body, reason)


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


class EventWebhookVerifier:
    """Verifies SendGrid's signed event webhook: ECDSA P-256/SHA-256 over timestamp + raw body.

    ``max_age_s`` refuses replays of old (validly signed) requests, and timestamps that far ahead.
    """

    def __init__(self, public_key: str, *, max_age_s: float = 600.0) -> None:
        self._webhook = EventWebhook(public_key.strip())
        self.max_age_s = max_age_s

    def verify(self, body: bytes, signature: str | None, timestamp: str | None, now: float | None = None) -> bool:
        return self.refusal(body, signature, timestamp, now) is None

    def refusal(self, body: bytes, signature: str | None, timestamp: str | None,
                now: float | None = None) -> str | None:
        """Why the request is refused: ``forged`` (unsigned, or not signed with SendGrid's key) or
        ``replayed`` (signed by SendGrid, but longer ago than ``max_age_s``); None when it is good."""
        if not signature or not timestamp:
            return "forged"
        try:
            sent_at = float(timestamp)
            payload = body.decode("utf-8")
            valid: Any = self._webhook.verify_signature(payload, signature, timestamp)
        except (ValueError, UnicodeDecodeError, UnsupportedAlgorithm):  # bad base64 or DER: not signed by them
            return "forged"
        if not valid:
            return "forged"
        if abs((time.time() if now is None else now) - sent_at) > self.max_age_s:
            return "replayed"
        return None
