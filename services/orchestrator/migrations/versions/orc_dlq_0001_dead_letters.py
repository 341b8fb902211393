"""dead letters kept for ops

Revision ID: orc_dlq_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "orc_dlq_0001"
down_revision = None
branch_labels = ("dlq",)
depends_on = "shared_0001"


def upgrade() -> None:
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(200), nullable=False, unique=True),
        sa.Column("service", sa.String(100), nullable=False),
        sa.Column("source_topic", sa.String(250), nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("key", sa.String(200), nullable=True),
        sa.Column("value", sa.LargeBinary, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("replay_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("replayed_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_dead_letters_failed_at", "dead_letters", ["failed_at"])


def downgrade() -> None:
    op.drop_table("dead_letters")
