"""Rules time cannot fix: an opt-out or suppression, a cease, the channels the debtor authorised, the
account's state. Each denies a contact outright (the time rules in :mod:`.rules` defer it instead)."""

from __future__ import annotations

from services.orchestrator.policy.models import (
    KINDS,
    PHONE_CHANNELS,
    Suppression,
    epoch_us,
    normalise_address,
)
from services.orchestrator.policy.rules import DenyRule, EvalContext


class OptOutRule(DenyRule):
    """A suppressed channel+address is never used again; one ``opt_out_confirmation`` is allowed."""

    kind = "opt_out"

    def default_kinds(self) -> tuple[str, ...]:
        return KINDS

    def deny(self, ctx: EvalContext) -> str | None:
        return suppression_block(ctx)


def contact_address(ctx: EvalContext) -> str | None:
    c = ctx.contact
    if c.address is not None:
        return c.address
    if c.channel in PHONE_CHANNELS and ctx.debtor.phone:
        return normalise_address(c.channel, ctx.debtor.phone)
    return None


def suppression_block(ctx: EvalContext) -> str | None:
    c = ctx.contact
    address: str | None = None
    resolved = False
    for s in ctx.suppressions:
        if s.channel != c.channel:
            continue
        if not resolved:
            address, resolved = contact_address(ctx), True
        # unknown destination address: any suppression on the channel binds (conservative)
        if address is not None and s.address != address:
            continue
        if c.kind == "opt_out_confirmation" and not _confirmed(ctx, s):
            continue
        shown = "unknown address" if address is None else s.address
        return f"{c.channel} to {shown} is opted out" + (
            "; its one confirmation was already sent" if c.kind == "opt_out_confirmation" else ""
        )
    return None


def _confirmed(ctx: EvalContext, s: Suppression) -> bool:
    since = epoch_us(s.at) if s.at is not None else None
    for e in ctx.ledger:
        if (
            e.direction == "outbound" and e.kind == "opt_out_confirmation" and e.channel == s.channel
            and (e.address is None or e.address == s.address)
            and (since is None or e.us >= since)
        ):
            return True
    return False


class CeaseRule(DenyRule):
    """After a written cease only the final notice (``cease_notice``) may go out."""

    kind = "cease"

    def default_kinds(self) -> tuple[str, ...]:
        return KINDS

    def deny(self, ctx: EvalContext) -> str | None:
        if ctx.account.status == "ceased" and ctx.contact.kind != "cease_notice":
            return f"account {ctx.account.id} is ceased: only a cease_notice may be sent"
        return None


class AuthorizedChannelsRule(DenyRule):
    """Only the channels the debtor authorised (``None`` = all)."""

    kind = "authorized_channels"

    def default_kinds(self) -> tuple[str, ...]:
        return KINDS

    def deny(self, ctx: EvalContext) -> str | None:
        allowed = ctx.debtor.authorized_channels
        if allowed is not None and ctx.contact.channel not in allowed:
            shown = ", ".join(sorted(allowed)) or "none"
            return f"channel {ctx.contact.channel} not authorised by the debtor (authorised: {shown})"
        return None


class AccountStatusRule(DenyRule):
    """Account state machine: paid stops; disputed/ceased allow only their acknowledgement."""

    kind = "account_status"

    def default_kinds(self) -> tuple[str, ...]:
        return KINDS

    def deny(self, ctx: EvalContext) -> str | None:
        a, kind = ctx.account, ctx.contact.kind
        if a.status == "paid":
            return f"account {a.id} is paid"
        if a.status == "disputed" and kind != "dispute_ack":
            return f"account {a.id} is disputed: only a dispute_ack may be sent"
        if a.status == "ceased" and kind != "cease_notice":
            return f"account {a.id} is ceased: only a cease_notice may be sent"
        if a.status == "promised" and a.promise_until is None and kind == "collection":
            return f"account {a.id} is promised without an end date"
        return None
