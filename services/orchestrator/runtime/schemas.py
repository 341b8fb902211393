"""Request and response bodies of the runtime's HTTP API, so ``/openapi.json`` types every field.

A client generated from the schema (``openapi-python-client``) submits requests and reads their
timeline with these models; the views build them from the ledger rows.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from shared.events.contracts import ContactRequested, ContactRequestedEvent


def _intake_kind(value: Any) -> str:
    """Which of the three accepted shapes a body is, so an error names the fields of that shape."""
    if isinstance(value, dict):
        if "requests" in value:
            return "batch"
        if "data" in value:
            return "event"
    elif isinstance(value, ContactRequestBatch):
        return "batch"
    elif isinstance(value, ContactRequestedEvent):
        return "event"
    return "request"


def _item_kind(value: Any) -> str:
    if isinstance(value, ContactRequestedEvent) or (isinstance(value, dict) and "data" in value):
        return "event"
    return "request"


#: One request: a CloudEvent envelope (its ``id`` is the idempotency key) or a bare request (a new id).
ContactRequestItem = Annotated[
    Annotated[ContactRequestedEvent, Tag("event")] | Annotated[ContactRequested, Tag("request")],
    Discriminator(_item_kind),
]


class ContactRequestBatch(BaseModel):
    """Up to 500 requests in one call, each decided as if read from ``contact.requests``."""

    model_config = ConfigDict(extra="forbid")

    requests: list[ContactRequestItem] = Field(min_length=1)


ContactRequestIntake = Annotated[
    Annotated[ContactRequestBatch, Tag("batch")]
    | Annotated[ContactRequestedEvent, Tag("event")]
    | Annotated[ContactRequested, Tag("request")],
    Discriminator(_intake_kind),
]


class IntakeResult(BaseModel):
    request_id: str
    #: ``accepted``, ``deferred``, ``rejected``... as the intake decided; a repeated id answers the original.
    status: str
    reason: str | None = None
    duplicate: bool = False


class IntakeResponse(BaseModel):
    request_ids: list[str]
    results: list[IntakeResult]


class _Rows(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class DispatchView(_Rows):
    id: str
    request_id: str
    account_id: str
    channel: str
    address: str
    kind: str
    attempt: int
    template_key: str
    template_version: int
    status: str
    error_code: str | None = None
    at: datetime
    updated_at: datetime


class StatusHistoryView(_Rows):
    status: str
    reason: str | None = None
    channel: str | None = None
    dispatch_id: str | None = None
    not_before: datetime | None = None
    rules: list[str] = Field(default_factory=list)
    at: datetime


class ContactRequestView(_Rows):
    """A request's current status, its timeline (status history) and its attempts."""

    id: str
    debtor_id: str
    account_id: str
    kind: str
    template: str
    segment: str | None = None
    channels: list[str]
    tried_channels: list[str]
    attempts: int
    status: str
    reason: str | None = None
    intake_status: str
    intake_reason: str | None = None
    expires_at: datetime | None = None
    created_at: datetime
    updated_at: datetime
    history: list[StatusHistoryView] = Field(default_factory=list)
    dispatches: list[DispatchView] = Field(default_factory=list)


class StoredInconvenientTime(BaseModel):
    """An inconvenient time as stored: who stated it (``ops`` or ``reply``) and when."""

    days: list[str] = Field(default_factory=list)
    start: str | None = None
    end: str | None = None
    channels: list[str] = Field(default_factory=list)
    #: A place ("not at work") is kept but not enforced: addresses carry no type.
    place: str | None = None
    source: str
    at: str | None = None


class PreferencesView(BaseModel):
    """``PUT /v1/debtors/{id}/preferences``: every inconvenient time now on record for the debtor."""

    debtor_id: str
    inconvenient_times: list[StoredInconvenientTime]


class DebtorSummary(_Rows):
    id: str
    name: str
    locale: str
    jurisdiction: str | None = None
    time_zone: str | None = None
    authorized_channels: list[str] | None = None
    preferred_channel: str | None = None
    consents: dict[str, bool] | None = None
    #: Times the debtor said are inconvenient (12 CFR 1006.6(b)(1)), each with ``source`` and ``at``.
    inconvenient_times: list[dict[str, Any]] | None = None
    updated_at: datetime | None = None


class AccountView(_Rows):
    id: str
    product: str
    balance: Decimal | None = None
    currency: str | None = None
    days_past_due: int | None = None
    status: str
    promise_until: datetime | None = None
    status_changed_at: datetime | None = None
    #: Represented by an attorney for this debt (12 CFR 1006.6(b)(2)); the attorney's details are not shown.
    represented_by_attorney: bool = False

    @model_validator(mode="before")
    @classmethod
    def _attorney(cls, value: Any) -> Any:
        if hasattr(value, "attorney") and not isinstance(value, dict):
            return {name: getattr(value, name) for name in cls.model_fields if name != "represented_by_attorney"} | {
                "represented_by_attorney": value.attorney is not None}
        return value


class OutcomeView(_Rows):
    dispatch_id: str
    request_id: str
    channel: str
    status: str
    error_code: str | None = None
    occurred_at: datetime
    at: datetime


class ResponseView(_Rows):
    dispatch_id: str | None = None
    channel: str
    kind: str
    digits: str | None = None
    occurred_at: datetime
    at: datetime


class SuppressionView(_Rows):
    channel: str
    address: str | None = None
    reason: str
    source: str
    at: datetime
    lifted_at: datetime | None = None


class DeferralView(_Rows):
    request_id: str
    account_id: str
    not_before: datetime
    reason: str | None = None
    rules: list[str] = Field(default_factory=list)
    created_at: datetime


class DebtorView(BaseModel):
    """A debtor's state, recent ledger, suppressions and pending deferrals."""

    debtor: DebtorSummary
    accounts: list[AccountView]
    ledger: list[DispatchView]
    outcomes: list[OutcomeView]
    responses: list[ResponseView]
    suppressions: list[SuppressionView]
    deferred: list[DeferralView]
