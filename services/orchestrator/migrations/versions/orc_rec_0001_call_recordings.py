"""call recordings' metadata

Revision ID: orc_rec_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "orc_rec_0001"
down_revision = None
branch_labels = ("recordings",)
depends_on = "shared_0001"


def upgrade() -> None:
    op.create_table(
        "call_recordings",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("recording_sid", sa.String(200), nullable=False, unique=True),
        sa.Column("dispatch_id", sa.String(200), nullable=False),
        sa.Column("request_id", sa.String(200), nullable=False),
        sa.Column("debtor_id", sa.String(200), nullable=False),
        sa.Column("call_sid", sa.String(200), nullable=False),
        sa.Column("provider", sa.String(50), nullable=False),
        sa.Column("duration_s", sa.Integer, nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_call_recordings_debtor_id", "call_recordings", ["debtor_id"])


def downgrade() -> None:
    op.drop_table("call_recordings")
