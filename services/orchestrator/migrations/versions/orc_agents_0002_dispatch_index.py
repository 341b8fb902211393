"""agent calls indexed by dispatch, for a request's view

Revision ID: orc_agents_0002
Revises: orc_agents_0001
"""

from alembic import op

revision = "orc_agents_0002"
down_revision = "orc_agents_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_agent_calls_dispatch_id", "agent_calls", ["dispatch_id"])


def downgrade() -> None:
    op.drop_index("ix_agent_calls_dispatch_id", table_name="agent_calls")
