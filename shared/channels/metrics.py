"""Prometheus metrics every channel service exports, wrapped around the send pipeline.

The pipeline itself is untouched: :func:`instrument` wraps the channel's adapter (provider requests
by result and error, provider latency) and its sender limits (time spent waiting for a rate-limit
slot), and a collector reads the webhook contexts' counts (forged webhooks refused) at scrape time.

* ``cadencia_channel_sends_total{channel, status, error}``: provider requests; ``status`` is
  ``accepted``, ``rejected`` (``error`` = the provider's code), ``retryable`` (``error`` = the HTTP
  status or code) or ``unknown`` (the answer was lost);
* ``cadencia_provider_request_seconds{channel, provider}``: provider request latency;
* ``cadencia_rate_limit_wait_seconds{channel}``: time a send waited for its sender's slot;
* ``cadencia_webhook_rejections_total{channel, reason}`` (``forged``, ``replayed``) and
  ``cadencia_webhook_events_total{channel, kind}``.

Consumer lag and batch sizes come from :class:`shared.bus.metrics.ConsumerMetrics`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from shared.channels.ports import ChannelAdapter, OutboundMessage
from shared.channels.ratelimit import Bucket, SenderLimits, TokenBucket
from shared.events.contracts import Channel, ContactDispatched
from shared.providers.base import Accepted, Ambiguous, Rejected, Retryable
from shared.templates import RenderedMessage

#: Webhook counts that mean a request (or one event of it) was refused: ``forged`` (unsigned, or not
#: signed with the provider's key: a forgery or a request re-signed with another key) and ``replayed``
#: (a callback already applied, or a SendGrid request signed too long ago). The rest are events.
REJECTIONS = frozenset({"forged", "replayed"})
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
WAIT_BUCKETS = (0.0, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0)


class ChannelMetrics:
    def __init__(self, registry: CollectorRegistry, channel: str) -> None:
        self.channel = channel
        self.sends = Counter("cadencia_channel_sends", "Provider requests by channel, result and error",
                             ["channel", "status", "error"], registry=registry)
        self.latency = Histogram("cadencia_provider_request_seconds", "Provider request latency",
                                 ["channel", "provider"], registry=registry, buckets=LATENCY_BUCKETS)
        self.rate_limit_wait = Histogram("cadencia_rate_limit_wait_seconds",
                                         "Time a send waited for its sender's rate-limit slot", ["channel"],
                                         registry=registry, buckets=WAIT_BUCKETS)


class MeteredAdapter:
    """The channel's adapter, timing and classifying each provider request."""

    def __init__(self, inner: ChannelAdapter, metrics: ChannelMetrics) -> None:
        self.inner, self.metrics = inner, metrics
        self.channel: Channel = inner.channel
        self.provider: str = inner.provider

    def __getattr__(self, name: str) -> Any:  # channel-specific extras (the WhatsApp window, …)
        return getattr(self.inner, name)

    async def compose(self, dispatch: ContactDispatched, rendered: RenderedMessage,
                      status_callback: str) -> OutboundMessage:
        return await self.inner.compose(dispatch, rendered, status_callback)

    async def send(self, message: OutboundMessage) -> Accepted:
        started = time.perf_counter()
        status, error = "accepted", ""
        try:
            return await self.inner.send(message)
        except Rejected as exc:
            status, error = "rejected", exc.code or ""
            raise
        except Retryable as exc:
            status, error = "retryable", str(exc.status or exc.code or "")
            raise
        except Ambiguous as exc:
            status, error = "unknown", str(exc.status or exc.code or "")
            raise
        except BaseException:
            status = "error"
            raise
        finally:
            self.metrics.latency.labels(self.channel, self.provider).observe(time.perf_counter() - started)
            self.metrics.sends.labels(self.channel, status, error).inc()


class MeteredBucket:
    """One sender's bucket (in process or in Redis), recording how long each acquire waited."""

    def __init__(self, inner: Bucket, observe: Callable[[float], None]) -> None:
        self.inner, self._observe = inner, observe

    async def acquire(self, max_wait: float | None = None) -> bool:
        started = time.perf_counter()
        try:
            return await self.inner.acquire(max_wait)
        finally:
            self._observe(time.perf_counter() - started)

    def pause(self, seconds: float) -> None:
        self.inner.pause(seconds)


class MeteredLimits(SenderLimits):
    """The same limits (local or shared in Redis), with buckets that record each send's wait for its slot."""

    def __init__(self, inner: SenderLimits, observe: Callable[[float], None]) -> None:
        super().__init__(inner.default_rate, inner.burst, inner.rates)
        self.inner, self._observe = inner, observe
        self._metered: dict[str, MeteredBucket] = {}

    def rate_of(self, sender: str) -> float:
        return self.inner.rate_of(sender)

    def bucket(self, sender: str) -> Bucket:
        found = self._metered.get(sender)
        if found is None:
            found = self._metered[sender] = MeteredBucket(self.inner.bucket(sender), self._observe)
        return found

    def local_bucket(self, sender: str) -> TokenBucket:
        return self.inner.local_bucket(sender)


class WebhookCounts(Collector):
    """Reads ``counts`` of the app's webhook contexts (``app.state.webhooks``, ``app.state.voice``) at scrape."""

    def __init__(self, app: FastAPI, channel: str) -> None:
        self.app, self.channel = app, channel

    def collect(self) -> Iterator[CounterMetricFamily]:
        rejections = CounterMetricFamily("cadencia_webhook_rejections", "Webhook requests refused, by reason",
                                         labels=["channel", "reason"])
        events = CounterMetricFamily("cadencia_webhook_events", "Notable webhook events, by kind",
                                     labels=["channel", "kind"])
        totals: dict[str, int] = dict.fromkeys(REJECTIONS, 0)  # the series exist before the first refusal
        for name in ("webhooks", "voice"):
            for kind, n in getattr(getattr(self.app.state, name, None), "counts", {}).items():
                totals[kind] = totals.get(kind, 0) + n
        for kind, n in totals.items():
            (rejections if kind in REJECTIONS else events).add_metric([self.channel, kind], n)
        yield rejections
        yield events


def instrument(app: FastAPI, channel: str, adapter: ChannelAdapter,
               limits: SenderLimits) -> tuple[ChannelAdapter, SenderLimits]:
    """Register the channel's metrics on the app's registry; the adapter and limits to use instead."""
    registry: CollectorRegistry = app.state.metrics
    metrics = ChannelMetrics(registry, channel)
    registry.register(WebhookCounts(app, channel))
    wait = metrics.rate_limit_wait.labels(channel)
    return MeteredAdapter(adapter, metrics), MeteredLimits(limits, wait.observe)
