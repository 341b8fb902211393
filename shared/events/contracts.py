"""Event payloads (``data``) and their typed envelopes. Names here are a public contract."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from shared.events.envelope import CloudEvent, Contract

Channel = Literal["sms", "email", "voice", "whatsapp"]
RequestedChannel = Literal["sms", "email", "voice", "whatsapp", "auto"]
CHANNELS: tuple[Channel, ...] = ("sms", "email", "voice", "whatsapp")
ContactKind = Literal[
    "collection", "opt_out_confirmation", "cease_notice", "dispute_ack", "promise_confirmation", "self_service_link",
]

def _representable(value: datetime) -> datetime:
    if value.tzinfo is not None:
        try:
            value.astimezone(UTC)
        except OverflowError as exc:
            raise ValueError("the instant is out of range in UTC (years 1 to 9999)") from exc
    return value


#: An instant the services compare and convert to UTC: ``0001-01-01T00:00:00+01:00`` has no UTC
#: equivalent, so it is invalid input (a 422, a dead letter), not an error deep inside a handler.
Instant = Annotated[datetime, AfterValidator(_representable)]

# --- contact requests ------------------------------------------------------------------------

_PHONE = "E.164, or national in the jurisdiction's country; stored and sent as E.164"
_EMAIL = "stored trimmed, with the domain lower-cased"


class Debtor(Contract):
    id: str = Field(min_length=1, max_length=200)
    name: str = Field("", max_length=300)
    locale: str = Field("es-MX", max_length=20)
    jurisdiction: str = Field(min_length=2, max_length=10, description="ISO 3166 code: MX, CO, US, US-MA")
    time_zone: str | None = Field(None, max_length=64, description="IANA zone, e.g. America/Bogota")
    phone: str | None = Field(None, max_length=40, description=_PHONE)
    email: str | None = Field(None, max_length=320, description=_EMAIL)
    whatsapp: str | None = Field(None, max_length=40, description=_PHONE)
    authorized_channels: list[Channel] | None = None
    preferred_channel: Channel | None = None


class Account(Contract):
    id: str = Field(min_length=1, max_length=200)
    product: str = Field("", max_length=100)
    #: Up to 14 integer and 4 fractional digits: what the ledger stores (NUMERIC(18, 4)).
    balance: Decimal = Field(max_digits=18, decimal_places=4, description="decimal string, e.g. \"1234.50\"")
    currency: str = Field(min_length=3, max_length=3, description="ISO 4217")
    days_past_due: int = Field(ge=0, le=100_000)
    due_date: date | None = None
    risk_score: float | None = Field(None, ge=0, le=1)
    payment_url: str | None = Field(None, max_length=2000)


class ContactRequested(Contract):
    debtor: Debtor
    account: Account
    channel: RequestedChannel = "auto"
    template: str = Field(min_length=1, max_length=200, description="template key")
    variables: dict[str, Any] = Field(default_factory=dict)
    campaign_id: str | None = Field(None, max_length=200)
    priority: int = Field(5, ge=0, le=9)
    not_before: Instant | None = None
    expires_at: Instant | None = None
    kind: ContactKind = "collection"


class ContactRequestedEvent(CloudEvent):
    type: Literal["cadencia.contact.requested.v1"] = "cadencia.contact.requested.v1"
    data: ContactRequested


# --- account events --------------------------------------------------------------------------


class AccountEventData(Contract):
    debtor_id: str = Field(min_length=1, max_length=200)
    account_id: str = Field(min_length=1, max_length=200)


class PaymentReceived(AccountEventData):
    amount: Decimal | None = Field(None, max_digits=18, decimal_places=4)
    currency: str | None = Field(None, min_length=3, max_length=3)
    #: A partial payment does not stop collection of the remainder.
    settles_account: bool = True


class PromiseMade(AccountEventData):
    amount: Decimal | None = Field(None, max_digits=18, decimal_places=4)
    due_date: date
    #: Set when the debtor signed on the self-service page (additive to the v1 contract): a plan
    #: publishes one promise per instalment, ``instalment`` of ``instalments``.
    agreement_id: str | None = Field(None, max_length=64)
    instalment: int | None = Field(None, ge=1)
    instalments: int | None = Field(None, ge=1)


class PromiseBroken(AccountEventData):
    pass


class DisputeOpened(AccountEventData):
    reason: str | None = Field(None, max_length=1000)


class DisputeResolved(AccountEventData):
    pass


class CommunicationCeased(AccountEventData):
    scope: Literal["all", "sms", "email", "voice", "whatsapp"] = "all"
    source: Literal["debtor", "attorney", "regulator", "operator"] = "debtor"


class Attorney(Contract):
    name: str = Field("", max_length=300)
    phone: str | None = Field(None, max_length=40)
    email: str | None = Field(None, max_length=320)


class DebtorUpdated(AccountEventData):
    name: str | None = Field(None, max_length=300)
    locale: str | None = Field(None, max_length=20)
    time_zone: str | None = Field(None, max_length=64)
    phone: str | None = Field(None, max_length=40)
    email: str | None = Field(None, max_length=320)
    whatsapp: str | None = Field(None, max_length=40)
    authorized_channels: list[Channel] | None = None
    preferred_channel: Channel | None = None
    consents: dict[str, bool] | None = Field(None, max_length=50)
    #: The debtor is (``True``, with ``attorney``) or is no longer (``False``) represented by an attorney
    #: for ``account_id`` (12 CFR 1006.6(b)(2)): while represented, no collection contact reaches the debtor.
    represented_by_attorney: bool | None = None
    attorney: Attorney | None = None


class PaymentReceivedEvent(CloudEvent):
    type: Literal["cadencia.account.payment_received.v1"] = "cadencia.account.payment_received.v1"
    data: PaymentReceived


class PromiseMadeEvent(CloudEvent):
    type: Literal["cadencia.account.promise_made.v1"] = "cadencia.account.promise_made.v1"
    data: PromiseMade


class PromiseBrokenEvent(CloudEvent):
    type: Literal["cadencia.account.promise_broken.v1"] = "cadencia.account.promise_broken.v1"
    data: PromiseBroken


class DisputeOpenedEvent(CloudEvent):
    type: Literal["cadencia.account.dispute_opened.v1"] = "cadencia.account.dispute_opened.v1"
    data: DisputeOpened


class DisputeResolvedEvent(CloudEvent):
    type: Literal["cadencia.account.dispute_resolved.v1"] = "cadencia.account.dispute_resolved.v1"
    data: DisputeResolved


class CommunicationCeasedEvent(CloudEvent):
    type: Literal["cadencia.account.communication_ceased.v1"] = "cadencia.account.communication_ceased.v1"
    data: CommunicationCeased


class DebtorUpdatedEvent(CloudEvent):
    type: Literal["cadencia.account.debtor_updated.v1"] = "cadencia.account.debtor_updated.v1"
    data: DebtorUpdated


# --- dispatch --------------------------------------------------------------------------------


class TemplateRef(Contract):
    key: str = Field(min_length=1, max_length=200)
    version: int = Field(ge=1, le=2**31 - 1)
    channel: Channel | None = None
    locale: str | None = Field(None, max_length=20)
    variant: str | None = Field(None, max_length=20)


class AgentQueue(Contract):
    """Where a voice dispatch's answered person is bridged (the strategy's queue, open at dispatch time)."""

    name: str = Field(min_length=1, max_length=100)
    #: E.164 number or ``sip:`` address the agents answer at.
    dial: str = Field(min_length=1, max_length=320)
    #: Agents available unless ``PUT /v1/agents/{queue}/availability`` says otherwise.
    agents: int = Field(1, ge=0)
    #: Seconds the debtor waits for an agent before the callback offer.
    wait_s: int = Field(20, ge=1, le=120)
    #: Upper bound of calls in flight per available agent (learned from the human-answer rate).
    max_ratio: float = Field(2.0, ge=1, le=5)
    campaign_id: str | None = Field(None, max_length=200)


class ContactDispatched(Contract):
    dispatch_id: str = Field(min_length=1, max_length=200)
    request_id: str = Field(min_length=1, max_length=200)
    debtor_id: str = Field(min_length=1, max_length=200)
    account_id: str = Field(min_length=1, max_length=200)
    channel: Channel
    to: str = Field(min_length=1, max_length=320)
    locale: str = Field("es-MX", max_length=20)
    template: TemplateRef
    variables: dict[str, Any] = Field(default_factory=dict)
    attempt: int = Field(1, ge=1, le=1000)
    deadline: Instant
    kind: ContactKind = "collection"
    #: The end of the contact's lawful window less a safety margin (additive to v1): no provider
    #: request, retry or call may start at or after it; such a dispatch ends ``expired``.
    send_before: Instant | None = None
    #: Voice: record the call (the strategy's choice); the opening script then starts with
    #: ``recording_notice``, the jurisdiction's notice in the debtor's language (additive to v1).
    record_call: bool = False
    recording_notice: str | None = Field(None, max_length=1000)
    #: Voice: bridge a person to this agent queue after the opening script (additive to v1).
    agent_queue: AgentQueue | None = None


class ContactDispatchedEvent(CloudEvent):
    type: Literal["cadencia.contact.dispatched.v1"] = "cadencia.contact.dispatched.v1"
    data: ContactDispatched


# --- outcomes --------------------------------------------------------------------------------

DeliveryStatus = Literal[
    "accepted", "sent", "delivered", "read", "failed", "undelivered", "bounced", "opened", "clicked",
    "conversation", "voicemail", "no_answer", "busy", "unknown", "expired", "agent_connected", "abandoned",
]
#: How far a contact got: a dispatch's status only moves up this ranking, so late or duplicate outcomes
#: never move it back. A failure reported after a delivery (a spam report, an asynchronous bounce) ranks
#: below it: the debtor was reached. The channels report along the same order (``shared.channels.models``).
#: ``unknown`` (the channel cannot tell whether the provider processed the request, or the provider
#: never reported a final status) ends a request, but a later proof of failure or delivery still wins.
STATUS_RANK: dict[str, int] = {
    "dispatched": 0, "accepted": 1, "sent": 2, "unknown": 3,
    "failed": 4, "undelivered": 4, "bounced": 4, "no_answer": 4, "busy": 4,
    "delivered": 5, "voicemail": 5, "read": 6, "opened": 6, "conversation": 6, "clicked": 7,
    # never sent: the lawful window ended first (send_before); the contact is re-decided
    "expired": 4,
    # how an answered call bridged to agents ended (after its "conversation")
    "agent_connected": 7, "abandoned": 7,
}
#: Why a delivery failed, in words no provider owns: the channel translates its provider's error code
#: (Twilio ``21211`` → ``invalid_address``, ``21610`` → ``opted_out``), so consumers never read one.
DeliveryReason = Literal["invalid_address", "opted_out"]
ResponseKind = Literal[
    "reply", "opt_out", "opt_in", "keypress", "promise_to_pay", "callback_request", "unsubscribe", "help",
]


class DeliveryUpdated(Contract):
    dispatch_id: str = Field(min_length=1, max_length=200)
    request_id: str = Field(min_length=1, max_length=200)
    debtor_id: str = Field(min_length=1, max_length=200)
    channel: Channel
    status: DeliveryStatus
    provider: str = Field(max_length=50)
    provider_id: str | None = Field(None, max_length=200)
    error_code: str | None = Field(None, max_length=50)
    error_message: str | None = Field(None, max_length=2000)
    occurred_at: datetime
    #: ``agent_connected``: seconds the debtor talked with the agent (additive to v1).
    talk_time_s: int | None = Field(None, ge=0)
    #: The provider-neutral reason of a failure the channel recognised (additive to v1: events from
    #: before it carry only ``provider`` and ``error_code``; see ``shared.providers.delivery_reason``).
    reason: DeliveryReason | None = None


class ResponseReceived(Contract):
    debtor_id: str = Field(min_length=1, max_length=200)
    dispatch_id: str | None = Field(None, max_length=200)
    channel: Channel
    kind: ResponseKind
    text: str | None = Field(None, max_length=5000)
    digits: str | None = Field(None, max_length=50)
    address: str | None = Field(None, max_length=320)
    occurred_at: datetime


class CallRecorded(Contract):
    """A call's recording is stored at the provider; only its metadata travels, never the audio."""

    dispatch_id: str = Field(min_length=1, max_length=200)
    request_id: str = Field(min_length=1, max_length=200)
    debtor_id: str = Field(min_length=1, max_length=200)
    provider: str = Field(max_length=50)
    call_sid: str = Field(max_length=200)
    recording_sid: str = Field(min_length=1, max_length=200)
    duration_s: int = Field(ge=0)
    #: The provider's media URL (fetched, when ever, with the provider's credentials; never logged).
    url: str = Field(max_length=2000)
    occurred_at: datetime


class CallRecordedEvent(CloudEvent):
    type: Literal["cadencia.contact.call_recorded.v1"] = "cadencia.contact.call_recorded.v1"
    data: CallRecorded


class DeliveryUpdatedEvent(CloudEvent):
    type: Literal["cadencia.contact.delivery_updated.v1"] = "cadencia.contact.delivery_updated.v1"
    data: DeliveryUpdated


class ResponseReceivedEvent(CloudEvent):
    type: Literal["cadencia.contact.response_received.v1"] = "cadencia.contact.response_received.v1"
    data: ResponseReceived


# --- status ----------------------------------------------------------------------------------

ContactStatus = Literal[
    "accepted", "deferred", "rejected", "dispatched", "delivered", "failed", "responded", "expired",
    # Terminal: the provider request may or may not have been processed; never re-sent automatically.
    "unknown",
]


class StatusChanged(Contract):
    request_id: str = Field(min_length=1, max_length=200)
    debtor_id: str = Field(min_length=1, max_length=200)
    status: ContactStatus
    reason: str | None = Field(None, max_length=2000)
    not_before: datetime | None = None
    channel: Channel | None = None
    dispatch_id: str | None = Field(None, max_length=200)
    #: Ids of the policy rules that decided (additive to the v1 contract).
    rules: list[str] = Field(default_factory=list)


class StatusChangedEvent(CloudEvent):
    type: Literal["cadencia.contact.status_changed.v1"] = "cadencia.contact.status_changed.v1"
    data: StatusChanged


# --- templates -------------------------------------------------------------------------------


class TemplateContent(Contract):
    """Channel-specific fields; only those of the template's channel are set."""

    body: str | None = None
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    content_sid: str | None = None
    content_variables: dict[str, str] | None = None
    voice_script: str | None = None
    voicemail_script: str | None = None
    ivr_prompts: dict[str, str] | None = None


class TemplatePublished(Contract):
    key: str = Field(min_length=1, max_length=200)
    version: int = Field(ge=1)
    channel: Channel
    locale: str
    variant: str = "A"
    content: TemplateContent
    variables_schema: dict[str, Any] = Field(default_factory=dict)
    published_at: datetime


class TemplatePublishedEvent(CloudEvent):
    type: Literal["cadencia.template.published.v1"] = "cadencia.template.published.v1"
    data: TemplatePublished


# --- dead letters ----------------------------------------------------------------------------


class DeadLettered(Contract):
    """A record a consumer could not apply. Bounded: ``value_b64`` holds the whole record only when
    it is no larger than the consumer's event limit; otherwise a prefix (``truncated``), and
    ``size`` and ``sha256`` identify the original, which stays at its offset on the source topic."""

    source_topic: str = Field(max_length=250)
    partition: int
    offset: int
    key: str | None = Field(None, max_length=1000)
    value_b64: str
    error: str = Field(max_length=5000)
    service: str = Field(max_length=100)
    failed_at: datetime
    #: Size of the original record value in bytes, and its SHA-256 (hex); additive to v1.
    size: int | None = None
    sha256: str | None = Field(None, max_length=64)
    truncated: bool = False
    #: The original record's headers (values decoded as UTF-8, each cut to 200 characters).
    headers: dict[str, str] = Field(default_factory=dict)


class DeadLetteredEvent(CloudEvent):
    type: Literal["cadencia.dlq.dead_lettered.v1"] = "cadencia.dlq.dead_lettered.v1"
    data: DeadLettered
