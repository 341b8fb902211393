"""self-service links and signed agreements

Revision ID: orc_ss_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "orc_ss_0001"
down_revision = None
branch_labels = ("selfservice",)
depends_on = "shared_0001"


def upgrade() -> None:
    op.create_table(
        "self_service_links",
        sa.Column("ref", sa.String(32), primary_key=True),
        sa.Column("debtor_id", sa.String(200), nullable=False),
        sa.Column("account_id", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "self_service_agreements",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("submission_id", sa.String(64), nullable=False, unique=True),
        sa.Column("debtor_id", sa.String(200), nullable=False),
        sa.Column("account_id", sa.String(200), nullable=False),
        sa.Column("choice", sa.String(20), nullable=False),
        sa.Column("terms", sa.JSON, nullable=False),
        sa.Column("terms_sha256", sa.String(64), nullable=False),
        sa.Column("signed_name", sa.String(300), nullable=False),
        sa.Column("ip", sa.String(64), nullable=False),
        sa.Column("user_agent", sa.String(500), nullable=False),
        sa.Column("seal", sa.String(64), nullable=False),
        sa.Column("pdf", sa.LargeBinary, nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_self_service_agreements_debtor_id", "self_service_agreements", ["debtor_id"])


def downgrade() -> None:
    op.drop_table("self_service_agreements")
    op.drop_table("self_service_links")
