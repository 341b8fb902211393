"""The Kafka bus: one producer per process, a consumer runner with an error boundary, topic bootstrap.

Works against Apache Kafka and the embedded Tansu broker alike (no idempotent or transactional
producer: exactly-once effects come from the inbox and the outbox).
"""

from shared.bus.admin import ensure_topics
from shared.bus.consumer import (
    BatchHandler,
    ConsumerRunner,
    PermanentError,
    RecordMeta,
    TransientError,
    event_scope,
)
from shared.bus.producer import EventProducer

__all__ = [
    "BatchHandler",
    "ConsumerRunner",
    "EventProducer",
    "PermanentError",
    "RecordMeta",
    "TransientError",
    "ensure_topics",
    "event_scope",
]
