"""Dead letters that can always be published: bounded copies of records a consumer cannot apply.

A record larger than the consumer's event limit is not copied whole (its base64 copy, wrapped in an
envelope, could exceed the producer's or broker's message limit and kill the consumer that tries to
publish it): the letter carries its size, SHA-256, headers and a prefix, and the original stays at
its offset on the source topic. Whoever owns a database may keep the whole payload first
(:data:`PayloadKeeper`), as the orchestrator does in its dead-letter table.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from shared.events.contracts import DeadLettered, DeadLetteredEvent
from shared.events.envelope import utcnow

#: Bytes of an oversized record kept in its dead letter, enough to recognise what it was.
PREFIX_BYTES = 4096
MAX_HEADERS, MAX_HEADER_CHARS = 20, 200

#: ``async keep(letter, original_value)``: store the full payload before the bounded letter leaves.
PayloadKeeper = Callable[[DeadLetteredEvent, bytes], Awaitable[None]]


def dead_letter(record: Any, reason: str, service: str, max_inline_bytes: int) -> DeadLetteredEvent:
    """The bounded dead letter of ``record`` (an aiokafka ``ConsumerRecord``)."""
    value: bytes = record.value or b""
    key = record.key.decode("utf-8", "replace")[:1000] if record.key else None
    truncated = len(value) > max_inline_bytes
    kept = value[:PREFIX_BYTES] if truncated else value
    headers = {
        str(name)[:MAX_HEADER_CHARS]: (raw or b"").decode("utf-8", "replace")[:MAX_HEADER_CHARS]
        for name, raw in list(record.headers or ())[:MAX_HEADERS]
    }
    return DeadLetteredEvent(
        subject=(key or "unknown")[:200],
        source=f"cadencia/{service}",
        data=DeadLettered(
            source_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=key,
            value_b64=base64.b64encode(kept).decode(),
            error=reason[:5000],
            service=service,
            failed_at=utcnow(),
            size=len(value),
            sha256=hashlib.sha256(value).hexdigest(),
            truncated=truncated,
            headers=headers,
        ),
    )
