"""sms: send-log addresses in canonical form (E.164, e-mail with a lower-cased domain)

Revision ID: sms_0002
Revises: sms_0001
"""

from shared.channels.migration_ops import canonicalise_send_log_v2

revision = "sms_0002"
down_revision = "sms_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    canonicalise_send_log_v2()


def downgrade() -> None:
    pass  # the canonical form is a valid spelling of every address: nothing to undo
