"""voice: calls bridged to agent queues (its own branch, so it composes with the voice history)

Revision ID: voice_agents_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "voice_agents_0001"
down_revision = None
branch_labels = ("voice_agents",)
depends_on = "voice_0001"


def upgrade() -> None:
    op.create_table(
        "queue_calls",
        sa.Column("dispatch_id", sa.String(200), primary_key=True),
        sa.Column("queue", sa.String(100), nullable=False),
        sa.Column("dial", sa.String(320), nullable=False),
        sa.Column("wait_s", sa.Integer, nullable=False),
        sa.Column("account_id", sa.String(200), nullable=False),
        sa.Column("script_played", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("bridged", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("outcome", sa.String(40), nullable=True),
        sa.Column("talk_time_s", sa.Integer, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("queue_calls")
