"""sms: webhook receipts by age, so pruning past the retention reads an index, not the table

Revision ID: sms_0003
Revises: sms_0002
"""

from shared.channels.migration_ops import index_receipts_by_age, unindex_receipts_by_age

revision = "sms_0003"
down_revision = "sms_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    index_receipts_by_age()


def downgrade() -> None:
    unindex_receipts_by_age()
