"""orchestrator runtime: a dispatch records the send_before it carried

Revision ID: orc_rt_0003
Revises: orc_rt_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "orc_rt_0003"
down_revision = "orc_rt_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dispatches") as batch:
        batch.add_column(sa.Column("send_before", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dispatches") as batch:
        batch.drop_column("send_before")
