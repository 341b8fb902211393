"""inbox rows by age, so pruning past the retention reads an index, not the table

Revision ID: shared_0003
Revises: shared_0002
"""

from alembic import op

revision = "shared_0003"
down_revision = "shared_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_inbox_processed_at", "inbox", ["processed_at"])


def downgrade() -> None:
    op.drop_index("ix_inbox_processed_at", "inbox")
