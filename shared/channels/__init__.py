"""What every channel service shares: the send log, the dispatch consumer, sender rate limits,
the retry policy, reply keywords and the provider webhooks.

* :class:`~shared.channels.dispatch.DispatchHandler` — render, claim, send at most once, record; a
  consumer batch at a time (one claim transaction, concurrent sends, results group-committed).
* :class:`~shared.channels.sendlog.SendLogRows` — the send log's set-based read and write-back.
* :class:`~shared.channels.ratelimit.TokenBucket` / ``SenderLimits`` — per-sender rate limits.
* :func:`~shared.channels.retry.backoff_delay` — exponential backoff with jitter and ``Retry-After``.
* :class:`~services.messaging.keywords.KeywordClassifier` — opt-out / opt-in / help / promise to pay.
* :func:`~services.messaging.webhooks.twilio_webhooks` — signed status and inbound webhooks.
* :func:`~services.messaging.app.create_message_app` — the SMS/WhatsApp app and lifespan.
"""
