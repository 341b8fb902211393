"""orchestrator runtime: the status history indexed by time, for its pruner

Revision ID: orc_rt_0006
Revises: orc_rt_0005
"""

from alembic import op

revision = "orc_rt_0006"
down_revision = "orc_rt_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_contact_status_history_at", "contact_status_history", ["at"])


def downgrade() -> None:
    op.drop_index("ix_contact_status_history_at", table_name="contact_status_history")
