"""consumer attempts per partition; outbox rows that fail to publish are counted and parked

Revision ID: shared_0002
Revises: shared_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "shared_0002"
down_revision = "shared_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consumer_attempts",
        sa.Column("group_id", sa.String(200), primary_key=True),
        sa.Column("topic", sa.String(250), primary_key=True),
        sa.Column("partition", sa.Integer, primary_key=True),
        sa.Column("first_offset", sa.BigInteger, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("alone_attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("attempts", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("last_error", sa.Text, nullable=True))
        batch.add_column(sa.Column("parked_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_outbox_parked_key", "outbox", ["parked_at", "key"])


def downgrade() -> None:
    op.drop_index("ix_outbox_parked_key", "outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("parked_at")
        batch.drop_column("last_error")
        batch.drop_column("attempts")
    op.drop_table("consumer_attempts")
