"""dead letters record the original's size and hash, and whether the whole payload was kept

Revision ID: orc_dlq_0002
Revises: orc_dlq_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "orc_dlq_0002"
down_revision = "orc_dlq_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dead_letters") as batch:
        batch.add_column(sa.Column("size", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("sha256", sa.String(64), nullable=True))
        batch.add_column(sa.Column("complete", sa.Boolean, nullable=False, server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table("dead_letters") as batch:
        batch.drop_column("complete")
        batch.drop_column("sha256")
        batch.drop_column("size")
