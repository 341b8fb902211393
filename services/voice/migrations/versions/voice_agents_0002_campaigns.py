"""voice: queue calls know their campaign, whether a person answered and when the call ended (the
abandoned-call rate per campaign), whether they are bridged or placed as plain IVR calls at the cap, and
how long the person has waited on hold

Revision ID: voice_agents_0002
Revises: voice_agents_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "voice_agents_0002"
down_revision = "voice_agents_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("queue_calls", sa.Column("campaign_id", sa.String(200), nullable=False, server_default=""))
    op.add_column("queue_calls", sa.Column("mode", sa.String(10), nullable=False, server_default="bridge"))
    op.add_column("queue_calls", sa.Column("held_s", sa.Integer, nullable=False, server_default="0"))
    op.add_column("queue_calls", sa.Column("answered", sa.Boolean, nullable=True))
    op.add_column("queue_calls", sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_queue_calls_campaign_ended", "queue_calls", ["campaign_id", "ended_at"])


def downgrade() -> None:
    op.drop_index("ix_queue_calls_campaign_ended", table_name="queue_calls")
    for column in ("ended_at", "answered", "held_s", "mode", "campaign_id"):
        op.drop_column("queue_calls", column)
