"""orchestrator runtime: the status history indexed by debtor, for the debtor's audit record

Revision ID: orc_rt_0007
Revises: orc_rt_0006
"""

from alembic import op

revision = "orc_rt_0007"
down_revision = "orc_rt_0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_contact_status_history_debtor_id", "contact_status_history", ["debtor_id"])


def downgrade() -> None:
    op.drop_index("ix_contact_status_history_debtor_id", table_name="contact_status_history")
