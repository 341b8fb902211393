"""orchestrator runtime: debtors, accounts, contact requests, dispatches, outcomes, suppressions, deferrals

Revision ID: orc_rt_0001
Revises:
"""

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "orc_rt_0001"
down_revision = None
branch_labels = ("runtime",)
depends_on = "shared_0001"

_ID = 200
_PK = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def _at(name: str, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "debtors",
        sa.Column("id", sa.String(_ID), primary_key=True),
        sa.Column("name", sa.String(300), nullable=False, server_default=""),
        sa.Column("locale", sa.String(20), nullable=False, server_default="es-MX"),
        sa.Column("jurisdiction", sa.String(10), nullable=True),
        sa.Column("time_zone", sa.String(64), nullable=True),
        sa.Column("phone", sa.String(40), nullable=True),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("whatsapp", sa.String(40), nullable=True),
        sa.Column("authorized_channels", sa.JSON, nullable=True),
        sa.Column("preferred_channel", sa.String(20), nullable=True),
        sa.Column("consents", sa.JSON, nullable=True),
        _at("updated_at", nullable=True),
    )
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(_ID), primary_key=True),
        sa.Column("debtor_id", sa.String(_ID), nullable=False, index=True),
        sa.Column("product", sa.String(100), nullable=False, server_default=""),
        sa.Column("balance", sa.Numeric(18, 4), nullable=True),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column("days_past_due", sa.Integer, nullable=True),
        sa.Column("due_date", sa.Date, nullable=True),
        sa.Column("risk_score", sa.Float, nullable=True),
        sa.Column("payment_url", sa.String(2000), nullable=True),
        sa.Column("status", sa.String(20), nullable=False, server_default="active"),
        _at("promise_until", nullable=True),
        sa.Column("promise_date", sa.Date, nullable=True),
        _at("status_changed_at", nullable=True),
    )
    op.create_table(
        "contact_requests",
        sa.Column("id", sa.String(_ID), primary_key=True),
        sa.Column("debtor_id", sa.String(_ID), nullable=False),
        sa.Column("account_id", sa.String(_ID), nullable=False),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("template", sa.String(_ID), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("channels", sa.JSON, nullable=False),
        sa.Column("tried_channels", sa.JSON, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("segment", sa.String(100), nullable=True),
        sa.Column("intake_status", sa.String(20), nullable=False),
        sa.Column("intake_reason", sa.Text, nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        _at("expires_at", nullable=True),
        _at("created_at"),
        _at("updated_at"),
    )
    op.create_index("ix_contact_requests_debtor_at", "contact_requests", ["debtor_id", "created_at"])
    op.create_table(
        "contact_status_history",
        sa.Column("id", _PK, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(_ID), nullable=False, index=True),
        sa.Column("debtor_id", sa.String(_ID), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("channel", sa.String(20), nullable=True),
        sa.Column("dispatch_id", sa.String(_ID), nullable=True),
        _at("not_before", nullable=True),
        sa.Column("rules", sa.JSON, nullable=False),
        _at("at"),
    )
    op.create_table(
        "dispatches",
        sa.Column("id", sa.String(_ID), primary_key=True),
        sa.Column("request_id", sa.String(_ID), nullable=False, index=True),
        sa.Column("debtor_id", sa.String(_ID), nullable=False),
        sa.Column("account_id", sa.String(_ID), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("template_key", sa.String(_ID), nullable=False),
        sa.Column("template_version", sa.Integer, nullable=False),
        sa.Column("consented", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("error_code", sa.String(50), nullable=True),
        _at("at"),
        _at("updated_at"),
    )
    op.create_index("ix_dispatches_debtor_at", "dispatches", ["debtor_id", "at"])
    op.create_table(
        "outcomes",
        sa.Column("id", _PK, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(_ID), nullable=False),
        sa.Column("dispatch_id", sa.String(_ID), nullable=False, index=True),
        sa.Column("request_id", sa.String(_ID), nullable=False),
        sa.Column("debtor_id", sa.String(_ID), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("provider", sa.String(50), nullable=False),
        sa.Column("error_code", sa.String(50), nullable=True),
        _at("occurred_at"),
        _at("at"),
    )
    op.create_index("ix_outcomes_debtor_at", "outcomes", ["debtor_id", "at"])
    op.create_table(
        "responses",
        sa.Column("id", _PK, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(_ID), nullable=False),
        sa.Column("debtor_id", sa.String(_ID), nullable=False),
        sa.Column("dispatch_id", sa.String(_ID), nullable=True),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("text", sa.Text, nullable=True),
        sa.Column("digits", sa.String(50), nullable=True),
        sa.Column("address", sa.String(320), nullable=True),
        _at("occurred_at"),
        _at("at"),
    )
    op.create_index("ix_responses_debtor_at", "responses", ["debtor_id", "at"])
    op.create_table(
        "suppressions",
        sa.Column("id", _PK, primary_key=True, autoincrement=True),
        sa.Column("debtor_id", sa.String(_ID), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("address", sa.String(320), nullable=True),
        sa.Column("reason", sa.String(50), nullable=False),
        sa.Column("source", sa.String(50), nullable=False),
        _at("at"),
        _at("lifted_at", nullable=True),
    )
    op.create_index("ix_suppressions_debtor_at", "suppressions", ["debtor_id", "at"])
    op.create_table(
        "deferred_contacts",
        sa.Column("id", _PK, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(_ID), nullable=False, index=True),
        sa.Column("debtor_id", sa.String(_ID), nullable=False),
        sa.Column("account_id", sa.String(_ID), nullable=False),
        _at("not_before"),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("rules", sa.JSON, nullable=False),
        _at("created_at"),
        _at("released_at", nullable=True),
    )
    op.create_index("ix_deferred_contacts_due", "deferred_contacts", ["state", "not_before"])
    op.create_index("ix_deferred_contacts_debtor_at", "deferred_contacts", ["debtor_id", "created_at"])


def downgrade() -> None:
    for table in (
        "deferred_contacts", "suppressions", "responses", "outcomes", "dispatches",
        "contact_status_history", "contact_requests", "accounts", "debtors",
    ):
        op.drop_table(table)
