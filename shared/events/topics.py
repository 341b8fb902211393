"""Topic names. The prefix is configurable (default ``cadencia.``) so tests can isolate themselves."""

from __future__ import annotations

from dataclasses import dataclass

#: Which topic (without prefix) carries each event type; ``{channel}`` is filled per dispatch.
TOPIC_OF_TYPE: dict[str, str] = {
    "cadencia.contact.requested.v1": "contact.requests",
    "cadencia.account.payment_received.v1": "account.events",
    "cadencia.account.promise_made.v1": "account.events",
    "cadencia.account.promise_broken.v1": "account.events",
    "cadencia.account.dispute_opened.v1": "account.events",
    "cadencia.account.dispute_resolved.v1": "account.events",
    "cadencia.account.communication_ceased.v1": "account.events",
    "cadencia.account.debtor_updated.v1": "account.events",
    "cadencia.contact.dispatched.v1": "dispatch.{channel}",
    "cadencia.contact.delivery_updated.v1": "contact.outcomes",
    "cadencia.contact.response_received.v1": "contact.outcomes",
    "cadencia.contact.call_recorded.v1": "contact.outcomes",
    "cadencia.contact.status_changed.v1": "contact.status",
    "cadencia.template.published.v1": "templates",
    "cadencia.dlq.dead_lettered.v1": "dlq",
}

BASE_TOPICS = (
    "contact.requests",
    "account.events",
    "dispatch.sms",
    "dispatch.email",
    "dispatch.voice",
    "dispatch.whatsapp",
    "contact.outcomes",
    "contact.status",
    "templates",
    "dlq",
)
#: Compacted topics keep the latest value per key (published template versions).
COMPACTED = frozenset({"templates"})


@dataclass(frozen=True)
class Topics:
    prefix: str = "cadencia."

    def name(self, base: str) -> str:
        return f"{self.prefix}{base}"

    @property
    def contact_requests(self) -> str:
        return self.name("contact.requests")

    @property
    def account_events(self) -> str:
        return self.name("account.events")

    @property
    def contact_outcomes(self) -> str:
        return self.name("contact.outcomes")

    @property
    def contact_status(self) -> str:
        return self.name("contact.status")

    @property
    def templates(self) -> str:
        return self.name("templates")

    @property
    def dlq(self) -> str:
        return self.name("dlq")

    def dispatch(self, channel: str) -> str:
        return self.name(f"dispatch.{channel}")

    def all(self) -> list[str]:
        return [self.name(b) for b in BASE_TOPICS]

    def is_compacted(self, topic: str) -> bool:
        return topic.removeprefix(self.prefix) in COMPACTED
