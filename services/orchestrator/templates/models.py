"""Template tables: immutable numbered versions, and the published pointer per (key, channel, locale, variant)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base
from shared.events.contracts import TemplateContent, TemplatePublished, TemplateRef


class TemplateVersion(Base):
    """One immutable version. Numbers are unique per key, so ``(key, version)`` pins one content."""

    __tablename__ = "template_versions"
    __table_args__ = (Index("ix_template_versions_combo", "key", "channel", "locale", "variant"),)

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(20))
    locale: Mapped[str] = mapped_column(String(20))
    variant: Mapped[str] = mapped_column(String(40))
    content: Mapped[dict[str, Any]] = mapped_column(JSON)
    variables_schema: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: Last time this version was published (it may have been rolled back since).
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    #: The name of the API key that saved it (None for versions saved before keys had names).
    created_by: Mapped[str | None] = mapped_column(String(100), nullable=True)

    @property
    def template_content(self) -> TemplateContent:
        return TemplateContent.model_validate(self.content)

    def ref(self) -> TemplateRef:
        return TemplateRef(key=self.key, version=self.version, channel=self.channel,
                           locale=self.locale, variant=self.variant)

    def as_published(self, published_at: datetime | None = None) -> TemplatePublished:
        """The event payload / channel-side view of this version."""
        return TemplatePublished(
            key=self.key, version=self.version, channel=self.channel,
            locale=self.locale, variant=self.variant, content=self.template_content,
            variables_schema=self.variables_schema,
            published_at=published_at or self.published_at or self.created_at,
        )


class PublishedTemplate(Base):
    """Which version is live for one (key, channel, locale, variant), and its A/B weight."""

    __tablename__ = "template_published"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    channel: Mapped[str] = mapped_column(String(20), primary_key=True)
    locale: Mapped[str] = mapped_column(String(20), primary_key=True)
    variant: Mapped[str] = mapped_column(String(40), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    weight: Mapped[float] = mapped_column(Float, default=1.0)
    published_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TemplateChange(Base):
    """Who did what to which version: ``save``, ``publish``, ``rollback``, ``publish_requested``, ``rejected``."""

    __tablename__ = "template_changes"
    __table_args__ = (Index("ix_template_changes_key", "key", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    key: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(20))
    locale: Mapped[str] = mapped_column(String(20))
    variant: Mapped[str] = mapped_column(String(40))
    action: Mapped[str] = mapped_column(String(30))
    actor: Mapped[str] = mapped_column(String(100))
    #: The second editor of a four-eyes publish.
    approved_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    weight: Mapped[float | None] = mapped_column(Float, nullable=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TemplateApproval(Base):
    """A publish waiting for a second editor (the requesting key has four-eyes publishing)."""

    __tablename__ = "template_approvals"
    __table_args__ = (Index("ix_template_approvals_key_state", "key", "state"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    key: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer)
    weight: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: pending | approved | rejected
    state: Mapped[str] = mapped_column(String(20))
    requested_by: Mapped[str] = mapped_column(String(100))
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    decided_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class TemplateTestSend(Base):
    """A version sent to an editor's own address to see it on a real phone or inbox (never a debtor's)."""

    __tablename__ = "template_test_sends"
    __table_args__ = (Index("ix_template_test_sends_by_at", "requested_by", "at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    key: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(20))
    to: Mapped[str] = mapped_column(String(320))
    requested_by: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
