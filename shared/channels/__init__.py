"""The provider-neutral pipeline every channel service runs (SMS, WhatsApp, email, voice).

* :class:`~shared.channels.dispatch.DispatchHandler` — render, claim, send at most once, record; a
  consumer batch at a time (one claim transaction, concurrent sends, results group-committed).
* :class:`~shared.channels.sendlog.SendLogRows` — the send log's set-based read and write-back.
* :mod:`shared.channels.outcomes` — delivery and response events, with a failure's neutral reason.
* :mod:`shared.channels.callbacks` — the webhook context base, idempotent receipts, send-log lookups.
* :mod:`shared.channels.lifespan` — what a channel's lifespan starts; ``settings`` its settings base.
* :class:`~shared.channels.ratelimit.TokenBucket` / ``SenderLimits`` — per-sender rate limits.
* :func:`~shared.channels.retry.backoff_delay` — exponential backoff with jitter and ``Retry-After``.
* :class:`~shared.channels.reconcile.Reconciler` — messages whose provider callbacks never arrived.

What a channel does alone lives in its service package (``services/messaging``, ``services/email``,
``services/voice``); the provider's client, signatures and codes in ``shared/providers``.
"""
