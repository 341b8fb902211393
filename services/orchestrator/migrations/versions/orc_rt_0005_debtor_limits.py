"""orchestrator runtime: a debtor's inconvenient times and an account's attorney

Revision ID: orc_rt_0005
Revises: orc_rt_0004
"""

import sqlalchemy as sa
from alembic import op

revision = "orc_rt_0005"
down_revision = "orc_rt_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("debtors") as batch:
        batch.add_column(sa.Column("inconvenient_times", sa.JSON, nullable=True))
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("attorney", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("attorney")
    with op.batch_alter_table("debtors") as batch:
        batch.drop_column("inconvenient_times")
