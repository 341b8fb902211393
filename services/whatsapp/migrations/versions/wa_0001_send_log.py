"""whatsapp: send log, webhook receipts and customer-service windows

Revision ID: wa_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from shared.channels.migration_ops import create_channel_tables_v1, drop_channel_tables_v1

revision = "wa_0001"
down_revision = None
branch_labels = ("whatsapp",)
depends_on = "shared_0001"


def upgrade() -> None:
    create_channel_tables_v1()
    op.create_table(
        "whatsapp_windows",
        sa.Column("address", sa.String(40), primary_key=True),
        sa.Column("last_inbound_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("whatsapp_windows")
    drop_channel_tables_v1()
