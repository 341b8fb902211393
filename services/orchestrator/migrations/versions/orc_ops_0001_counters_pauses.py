"""ops: pre-aggregated counters, request tags for search, pauses; indexes for request search

Revision ID: orc_ops_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "orc_ops_0001"
down_revision = None
branch_labels = ("ops",)
depends_on = "orc_rt_0002"


def upgrade() -> None:
    op.create_table(
        "ops_counters",
        sa.Column("grain", sa.String(1), primary_key=True),
        sa.Column("bucket", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("metric", sa.String(40), primary_key=True),
        sa.Column("dim", sa.String(40), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("shard", sa.Integer, primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "ops_request_tags",
        sa.Column("request_id", sa.String(200), primary_key=True),
        sa.Column("campaign_id", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_ops_request_tags_campaign", "ops_request_tags", ["campaign_id", "created_at"])
    op.create_table(
        "ops_pauses",
        sa.Column("scope", sa.String(20), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("by", sa.String(40), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    # Request search by status or time range alone, newest first.
    op.create_index("ix_ops_contact_requests_created", "contact_requests", ["created_at"])
    op.create_index("ix_ops_contact_requests_status", "contact_requests", ["status", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_ops_contact_requests_status", "contact_requests")
    op.drop_index("ix_ops_contact_requests_created", "contact_requests")
    op.drop_table("ops_pauses")
    op.drop_table("ops_request_tags")
    op.drop_table("ops_counters")
