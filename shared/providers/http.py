"""The HTTP plumbing every provider client shares: one aiohttp session, its timeouts, and how a
request's failure is classified before the provider answered.

A client subclasses :class:`ProviderHttpClient`, names its ``user_agent`` and default headers, and
reads the answer of :meth:`ProviderHttpClient._request`: only a failure to connect (refused, connect
timeout) proves the request never left (:class:`Retryable`); anything after it may have been
processed (:class:`Ambiguous`).
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any, ClassVar, Self, TypedDict

import aiohttp

from shared.providers.base import Ambiguous, Retryable

#: The codes of failures before the provider answered (no HTTP status): the connection could not be
#: made (the request never left), no answer came in time (it left), or the connection broke (it may
#: have left). Metrics and the send log show them where a provider's own code would be.
CONNECT_FAILED, NO_ANSWER, CONNECTION_LOST = "connect_failed", "no_answer", "connection_lost"


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


def retry_after(headers: Mapping[str, str]) -> float | None:
    return parse_retry_after(headers.get("Retry-After") or headers.get("retry-after"))


class ClientOptions(TypedDict, total=False):
    """How long a provider client waits and how many connections it keeps open (see ``SendingSettings``)."""

    timeout: float
    connect_timeout: float
    max_connections: int


#: How long an idle provider connection is reused: under the 5 s a server commonly keeps one (uvicorn's
#: default, which the sandbox runs with), so a request never crosses the server closing it.
KEEPALIVE_S = 4.0


class ProviderHttpClient:
    """One aiohttp session per client, created on first use and closed by :meth:`aclose`.

    One instance per process, owned by the app's lifespan (``async with`` or :meth:`aclose`); safe for
    concurrent use.
    """

    user_agent: ClassVar[str] = "cadencia/1"
    #: Headers of every request besides ``Accept``, ``User-Agent`` and ``Authorization``.
    extra_headers: ClassVar[Mapping[str, str]] = {}

    def __init__(
        self, authorization: str, *, timeout: float = 10.0, connect_timeout: float = 3.0, max_connections: int = 64
    ) -> None:
        self._authorization = authorization
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_connect=connect_timeout, sock_read=timeout
        )
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running loop (aiohttp binds sessions to it).
        connector = aiohttp.TCPConnector(limit=self._max_connections, keepalive_timeout=KEEPALIVE_S)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            trust_env=False,
            headers={
                "Accept": "application/json",
                **self.extra_headers,
                "User-Agent": self.user_agent,
                "Authorization": self._authorization,
            },
        )
        return self._session

    @property
    def session(self) -> aiohttp.ClientSession:
        return self._session or self._open()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _post(self, url: str, **kwargs: Any) -> tuple[int, Mapping[str, str], bytes, str]:
        """``POST url``: the answer's status, headers, body and reason; raises :class:`Retryable` when the
        request never left and :class:`Ambiguous` when it may have been processed without an answer."""
        try:
            async with self.session.post(url, **kwargs) as response:
                body = await response.read()
                return response.status, response.headers, body, response.reason or ""
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise Retryable(f"{type(exc).__name__}: {exc}", code=CONNECT_FAILED) from exc
        except TimeoutError as exc:  # aiohttp's read timeouts among them (ServerTimeoutError is one)
            # Sent, no answer in time: the provider has it, or is still working on it.
            raise Ambiguous(f"{type(exc).__name__}: {exc}", code=NO_ANSWER) from exc
        except (aiohttp.ClientError, OSError) as exc:
            # Dropped connection, protocol error (a kept-alive connection the provider had closed
            # among them): the request may or may not have reached it, so it may have been processed.
            raise Ambiguous(f"{type(exc).__name__}: {exc}", code=CONNECTION_LOST) from exc
