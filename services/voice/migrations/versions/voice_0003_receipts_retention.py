"""voice: webhook receipts by age, so pruning past the retention reads an index, not the table

Revision ID: voice_0003
Revises: voice_0002
"""

from shared.channels.migration_ops import index_receipts_by_age, unindex_receipts_by_age

revision = "voice_0003"
down_revision = "voice_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    index_receipts_by_age()


def downgrade() -> None:
    unindex_receipts_by_age()
