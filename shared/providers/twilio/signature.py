"""``X-Twilio-Signature``: HMAC-SHA1 with the auth token over the public URL and the sorted form params."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request
from twilio.request_validator import RequestValidator

from shared.http import Problem
from shared.logging import get_logger

log = get_logger(__name__)

SIGNATURE_HEADER = "X-Twilio-Signature"


class _Params(dict[str, list[str]]):
    """The multi-valued form view ``RequestValidator`` understands (``getall``)."""

    def getall(self, name: str) -> list[str]:
        return self[name]


class TwilioSignature:
    """Verifies ``X-Twilio-Signature``: HMAC-SHA1 with the auth token over the URL and the sorted params."""

    def __init__(self, auth_token: str) -> None:
        self._validator = RequestValidator(auth_token)
        #: The keyed HMAC, copied per request: the key is not set up again for every callback.
        self._mac = hmac.new(auth_token.encode("utf-8"), digestmod=hashlib.sha1)

    def verify(self, url: str, params: Mapping[str, str | Sequence[str]], signature: str | None) -> bool:
        """``url`` is the full public URL Twilio called (with its query string)."""
        if not signature:
            return False
        # Twilio signs the URL it called; that URL is one of the two spellings (with and without the
        # port) the library tries, so a match here is a match there, at one HMAC instead of two.
        if hmac.compare_digest(self._digest(url, params), signature.strip()):
            return True
        multi = _Params({k: [v] if isinstance(v, str) else list(v) for k, v in params.items()})
        valid: Any = self._validator.validate(url, multi, signature)
        return bool(valid)

    def _digest(self, url: str, params: Mapping[str, str | Sequence[str]]) -> str:
        """What ``RequestValidator.compute_signature`` computes (HMAC-SHA1), with the keyed state reused."""
        parts = [url]
        for name in sorted(params):
            values = params[name]
            if isinstance(values, str):
                parts.append(name + values)
            elif len(values) == 1:
                parts.append(name + values[0])
            else:
                parts.extend(name + value for value in sorted(set(values)))
        mac = self._mac.copy()
        mac.update("".join(parts).encode("utf-8"))
        return base64.b64encode(mac.digest()).decode("ascii")

    def sign(self, url: str, params: Mapping[str, str]) -> str:
        """The signature Twilio would send (for tests and tools)."""
        signature: Any = self._validator.compute_signature(url, dict(params))
        return str(signature)


#: What Starlette's ``request.url`` would rewrite in a path (escape, or drop when it splits the URL)
#: and in a query string (a fragment, or a character ``urlsplit`` removes).
_ODD_PATH = re.compile(r"[?#\\\t\r\n]|^(?!/)|^//")
_ODD_QUERY = re.compile(r"[#\t\r\n]")
_SIGNATURE_KEY = SIGNATURE_HEADER.lower().encode("latin-1")


def signed_url(public_url: str, request: Request) -> str:
    """The URL Twilio signed: ``public_url`` with the request's path and query, as
    ``request.url.path`` and ``request.url.query`` give them (a unit test holds the two together).
    Read from the ASGI scope: building ``request.url`` (a URL object, then ``urlsplit``) for the two
    callbacks of every message costs more than the HMAC; a path or query it would rewrite still goes
    through it."""
    scope = request.scope
    path: str = scope["path"]
    query = scope.get("query_string", b"").decode()
    if _ODD_PATH.search(path) or _ODD_QUERY.search(query):
        path, query = request.url.path, request.url.query
    url = public_url.rstrip("/") + path
    return url + "?" + query if query else url


async def verify_twilio_form(
    request: Request, signature: TwilioSignature, public_url: str, count: Callable[[str], None]
) -> dict[str, str]:
    """The form parameters of a request Twilio signed for ``public_url``; 403 problem otherwise.

    Every Twilio webhook of every channel (messages, calls, TwiML fetches) goes through here.
    """
    raw = await request.body()
    pairs = parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
    multi: dict[str, list[str]] = {}
    for key, value in pairs:
        multi.setdefault(key, []).append(value)
    url = signed_url(public_url, request)
    # The first such header, as ``request.headers.get`` finds it (ASGI header names are lower case).
    given = next((v.decode("latin-1") for k, v in request.scope["headers"] if k == _SIGNATURE_KEY), None)
    if not signature.verify(url, multi, given):
        count("forged")
        log.warning("webhook refused: bad or missing Twilio signature", path=request.url.path)
        raise Problem(403, "Forbidden", "invalid or missing X-Twilio-Signature", "/problems/signature")
    return {key: values[0] for key, values in multi.items()}
