"""orchestrator runtime: addresses in canonical form (E.164, e-mail with a lower-cased domain)

Debtors' numbers were stored as written; suppressions by their digits. Both become E.164 (national
numbers read in the debtor's country), so a STOP matches however a number was first written, and
suppressions are indexed by address (an address's opt-out binds every debtor using it).

Revision ID: orc_rt_0004
Revises: orc_rt_0003
"""

import sqlalchemy as sa
from alembic import op

from shared.addresses import AddressError, address_key, canonical_email, canonical_phone, region_of

revision = "orc_rt_0004"
down_revision = "orc_rt_0003"
branch_labels = None
depends_on = None


def _debtor_address(name: str, value: str, jurisdiction: str | None) -> str:
    try:
        if name == "email":
            return canonical_email(value)
        return canonical_phone(value, region_of(jurisdiction))
    except AddressError:
        return value  # never valid: left for an operator to fix, not guessed


def upgrade() -> None:
    bind = op.get_bind()
    debtors = sa.table("debtors", sa.column("id", sa.String), sa.column("jurisdiction", sa.String),
                       sa.column("phone", sa.String), sa.column("email", sa.String), sa.column("whatsapp", sa.String))
    for row in bind.execute(sa.select(debtors)).mappings().all():
        changes = {
            name: _debtor_address(name, row[name], row["jurisdiction"])
            for name in ("phone", "email", "whatsapp") if row[name] is not None
        }
        changes = {k: v for k, v in changes.items() if v != row[k]}
        if changes:
            bind.execute(debtors.update().where(debtors.c.id == row["id"]).values(**changes))
    for table_name, key in (("dispatches", "id"), ("suppressions", "id"), ("responses", "id")):
        table = sa.table(table_name, sa.column(key), sa.column("channel", sa.String), sa.column("address", sa.String))
        rows = bind.execute(sa.select(table.c[key], table.c.channel, table.c.address)
                            .where(table.c.address.is_not(None))).all()
        for ident, channel, address in rows:
            canonical = address_key(channel, address)
            if canonical != address:
                bind.execute(table.update().where(table.c[key] == ident).values(address=canonical))
    op.create_index("ix_suppressions_address", "suppressions", ["address"])


def downgrade() -> None:
    op.drop_index("ix_suppressions_address", table_name="suppressions")
