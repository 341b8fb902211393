"""Migration steps for the tables in :mod:`shared.channels.models`, called from each channel
service's own first revision (each service has its own database and Alembic branch)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


def create_channel_tables_v1() -> None:
    op.create_table(
        "send_log",
        sa.Column("dispatch_id", sa.String(200), primary_key=True),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("request_id", sa.String(200), nullable=False),
        sa.Column("debtor_id", sa.String(200), nullable=False),
        sa.Column("account_id", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("address_key", sa.String(320), nullable=False),
        sa.Column("locale", sa.String(20), nullable=False),
        sa.Column("sender", sa.String(100), nullable=False),
        sa.Column("template_key", sa.String(200), nullable=False),
        sa.Column("template_version", sa.Integer, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=True),
        sa.Column("provider_id", sa.String(200), nullable=True),
        sa.Column("error_code", sa.String(50), nullable=True),
        sa.Column("error_message", sa.String(2000), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_send_log_address_created", "send_log", ["address_key", "created_at"])
    op.create_index("ix_send_log_provider_id", "send_log", ["provider_id"])
    op.create_table(
        "provider_receipts",
        sa.Column("provider_id", sa.String(200), primary_key=True),
        sa.Column("status", sa.String(40), primary_key=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )


def drop_channel_tables_v1() -> None:
    op.drop_table("provider_receipts")
    op.drop_index("ix_send_log_provider_id", table_name="send_log")
    op.drop_index("ix_send_log_address_created", table_name="send_log")
    op.drop_table("send_log")


def canonicalise_send_log_v2() -> None:
    """Rewrite send-log addresses in their canonical form (E.164; e-mail with a lower-cased domain), so
    inbound replies and opt-outs match rows written before addresses were canonical."""
    from shared.channels.models import bare_address

    bind = op.get_bind()
    log = sa.table("send_log", sa.column("dispatch_id", sa.String), sa.column("address", sa.String),
                   sa.column("address_key", sa.String))
    rows = bind.execute(sa.select(log.c.dispatch_id, log.c.address, log.c.address_key)).all()
    for dispatch_id, address, key in rows:
        canonical = bare_address(address)
        new_address = f"whatsapp:{canonical}" if address.strip().startswith("whatsapp:") else canonical
        if (new_address, canonical) != (address, key):
            bind.execute(log.update().where(log.c.dispatch_id == dispatch_id)
                         .values(address=new_address, address_key=canonical))


def index_receipts_by_age() -> None:
    """Webhook receipts by ``received_at``: pruning past the retention reads the index, not the table."""
    op.create_index("ix_provider_receipts_received_at", "provider_receipts", ["received_at"])


def unindex_receipts_by_age() -> None:
    op.drop_index("ix_provider_receipts_received_at", "provider_receipts")


def add_durable_retries_v4() -> None:
    """Send-log columns of the durable retry path: when a deferred send is due, and what it sends."""
    op.add_column("send_log", sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("send_log", sa.Column("resume", sa.Text, nullable=True))
    op.create_index("ix_send_log_state_next_attempt", "send_log", ["state", "next_attempt_at"])


def drop_durable_retries_v4() -> None:
    op.drop_index("ix_send_log_state_next_attempt", "send_log")
    with op.batch_alter_table("send_log") as batch:
        batch.drop_column("resume")
        batch.drop_column("next_attempt_at")
