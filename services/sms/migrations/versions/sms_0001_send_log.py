"""sms: send log and webhook receipts

Revision ID: sms_0001
Revises:
"""

from shared.channels.migration_ops import create_channel_tables_v1, drop_channel_tables_v1

revision = "sms_0001"
down_revision = None
branch_labels = ("sms",)
depends_on = "shared_0001"


def upgrade() -> None:
    create_channel_tables_v1()


def downgrade() -> None:
    drop_channel_tables_v1()
