"""outcomes of calls bridged to agents

Revision ID: orc_agents_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "orc_agents_0001"
down_revision = None
branch_labels = ("agents",)
depends_on = "shared_0001"


def upgrade() -> None:
    op.create_table(
        "agent_calls",
        sa.Column("event_id", sa.String(200), primary_key=True),
        sa.Column("dispatch_id", sa.String(200), nullable=False),
        sa.Column("debtor_id", sa.String(200), nullable=False),
        sa.Column("campaign_id", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("talk_time_s", sa.Integer, nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_agent_calls_debtor_id", "agent_calls", ["debtor_id"])
    op.create_index("ix_agent_calls_campaign_id", "agent_calls", ["campaign_id"])


def downgrade() -> None:
    op.drop_table("agent_calls")
