"""whatsapp: webhook receipts by age, so pruning past the retention reads an index, not the table

Revision ID: wa_0003
Revises: wa_0002
"""

from shared.channels.migration_ops import index_receipts_by_age, unindex_receipts_by_age

revision = "wa_0003"
down_revision = "wa_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    index_receipts_by_age()


def downgrade() -> None:
    unindex_receipts_by_age()
