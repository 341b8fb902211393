"""voice: send log, webhook receipts and call sessions

Revision ID: voice_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from shared.channels.migration_ops import create_channel_tables_v1, drop_channel_tables_v1

revision = "voice_0001"
down_revision = None
branch_labels = ("voice",)
depends_on = "shared_0001"


def upgrade() -> None:
    create_channel_tables_v1()
    op.create_table(
        "call_sessions",
        sa.Column("dispatch_id", sa.String(200), primary_key=True),
        sa.Column("call_sid", sa.String(200), nullable=True),
        sa.Column("debtor_id", sa.String(200), nullable=False),
        sa.Column("request_id", sa.String(200), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("locale", sa.String(20), nullable=False),
        sa.Column("voice_script", sa.Text, nullable=False),
        sa.Column("voicemail_script", sa.Text, nullable=True),
        sa.Column("ivr_prompt", sa.Text, nullable=True),
        sa.Column("answered_by", sa.String(40), nullable=True),
        sa.Column("digits", sa.String(50), nullable=True),
        sa.Column("outcome", sa.String(40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_call_sessions_call_sid", "call_sessions", ["call_sid"])


def downgrade() -> None:
    op.drop_index("ix_call_sessions_call_sid", table_name="call_sessions")
    op.drop_table("call_sessions")
    drop_channel_tables_v1()
