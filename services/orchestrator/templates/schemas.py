"""Request and response bodies of ``/v1/templates``: what ``/openapi.json`` promises the editor and clients."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.events.contracts import Channel, TemplateContent
from shared.http import UtcDateTime
from shared.templates import Finding
from shared.templates.models import RenderedMessage, SmsInfo


class DraftIn(BaseModel):
    channel: Channel
    locale: str = Field(max_length=20)
    variant: str = Field("A", max_length=40)
    content: TemplateContent
    variables_schema: dict[str, Any] = Field(default_factory=dict)


class PreviewIn(DraftIn):
    #: Overrides of the sample data (``debtor``, ``account``, ``creditor``, variables).
    sample: dict[str, Any] | None = None


class PublishIn(BaseModel):
    #: A/B weight of this variant (kept from the previous publish when omitted).
    weight: float | None = Field(None, ge=0)


class SmsPrice(BaseModel):
    """What one send and 10,000 sends of a rendered SMS cost at the configured per-segment price."""

    currency: str
    per_segment: str
    segments: int
    per_send: str
    per_10k: str


class Gsm7Rewrite(BaseModel):
    """The same SMS in GSM-7: accents transliterated in the text, ``| gsm7`` on every output."""

    body: str
    rendered: str
    sms: SmsInfo
    cost: SmsPrice | None = None


class SmsCost(BaseModel):
    cost: SmsPrice | None = None
    #: Offered when the body is UCS-2 (or above the budget) and GSM-7 would take fewer segments.
    gsm7_rewrite: Gsm7Rewrite | None = None
    budget: int


class ValidationResult(BaseModel):
    findings: list[Finding]
    errors: int
    publishable: bool
    rendered: RenderedMessage | None = None
    sms: SmsInfo | None = None
    sms_cost: SmsCost | None = None


class SavedVersion(ValidationResult):
    key: str
    version: int
    created_by: str


class PreviewResult(ValidationResult):
    key: str


class TemplateSummary(BaseModel):
    key: str
    channel: str
    locale: str
    variant: str
    published_version: int | None = None
    latest_version: int
    weight: float | None = None
    published_at: UtcDateTime | None = None


class TemplateList(BaseModel):
    items: list[TemplateSummary]


class VersionView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    key: str
    version: int
    channel: str
    locale: str
    variant: str
    content: dict[str, Any]
    variables_schema: dict[str, Any]
    created_at: UtcDateTime
    created_by: str | None = None
    published_at: UtcDateTime | None = None
    live: bool = False


class ChangeView(BaseModel):
    """One entry of a template's history: who saved, published, rolled back or approved what."""

    model_config = ConfigDict(from_attributes=True)

    version: int
    channel: str
    locale: str
    variant: str
    action: str
    actor: str
    approved_by: str | None = None
    weight: float | None = None
    at: UtcDateTime


class ApprovalView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    key: str
    version: int
    weight: float | None = None
    state: Literal["pending", "approved", "rejected"]
    requested_by: str
    requested_at: UtcDateTime
    decided_by: str | None = None
    decided_at: UtcDateTime | None = None


class TemplateDetail(BaseModel):
    key: str
    templates: list[TemplateSummary]
    versions: list[VersionView]
    history: list[ChangeView]
    approvals: list[ApprovalView]


class PublishResult(BaseModel):
    """``published``: the version is live; ``pending_approval``: it waits for a second editor."""

    status: Literal["published", "pending_approval"]
    key: str
    version: int
    channel: str
    locale: str
    variant: str
    weight: float | None = None
    published_at: UtcDateTime | None = None
    published_by: str
    approved_by: str | None = None
    approval: ApprovalView | None = None


class DiffResult(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    key: str
    from_: int = Field(alias="from")
    to: int
    fields: dict[str, str]
