"""voice: send-log columns of the durable retry path (a send deferred out of its consumer batch)

Revision ID: voice_0004
Revises: voice_0003
"""

from shared.channels.migration_ops import add_durable_retries_v4, drop_durable_retries_v4

revision = "voice_0004"
down_revision = "voice_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    add_durable_retries_v4()


def downgrade() -> None:
    drop_durable_retries_v4()
