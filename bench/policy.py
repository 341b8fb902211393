"""Policy engine throughput: evaluations per second on one core, 50-entry ledgers, every pack.

    python bench/policy.py [--seconds 3]

Inputs are built up front (as the orchestrator does once per debtor); the loop times ``evaluate``.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.orchestrator.policy import (  # noqa: E402
    AccountState,
    DebtorContext,
    LedgerEntry,
    ProposedContact,
    Suppression,
    evaluate,
    load_policy,
)

DEBTORS = [
    DebtorContext("us", "US", None, "+13125550100"),
    DebtorContext("ma", "US-MA", None, "+16175550100"),
    DebtorContext("amb", "US", ("America/New_York", "America/Los_Angeles"), None),
    DebtorContext("co", "CO", None, "+573001234567", frozenset({"voice", "sms", "whatsapp"})),
    DebtorContext("mx", "MX", None, "+526641234567"),
    DebtorContext("pe", "PE", None, None),
    DebtorContext("cl", "CL", None, None),
    DebtorContext("br", "BR", ("America/Sao_Paulo",), None),
]
CHANNELS = ("voice", "sms", "email", "whatsapp")
OUTCOMES = ("conversation", "voicemail", "no_answer", "busy", "not_connected", "sent", "delivered", "failed")


def workload(rng: random.Random, n: int) -> list[tuple]:
    start = datetime(2025, 3, 1, tzinfo=UTC)
    cases = []
    for _ in range(n):
        debtor = rng.choice(DEBTORS)
        now = start + timedelta(minutes=rng.randrange(0, 60 * 24 * 270))
        ledger = []
        for _ in range(50):
            at = now - timedelta(minutes=rng.randrange(1, 60 * 24 * 30))
            inbound = rng.random() < 0.05
            ledger.append(LedgerEntry(
                rng.choice(CHANNELS), "inbound" if inbound else "outbound", at,
                rng.choice(("A1", "A2")), "replied" if inbound else rng.choice(OUTCOMES),
            ))
        ledger.sort(key=lambda e: e.at)
        channel = rng.choice(CHANNELS)
        address = "debtor@example.com" if channel == "email" else None
        contact = ProposedContact(channel, now, "A1", address=address)
        suppressions = [Suppression("email", "someone@example.com")]
        cases.append((debtor, AccountState("A1"), ledger, contact, suppressions))
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--cases", type=int, default=2000)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    policy = load_policy()
    cases = workload(random.Random(7), args.cases)
    tally: dict[str, int] = {}
    for debtor, account, ledger, contact, supp in cases:  # warm caches, count outcomes
        d = evaluate(debtor, account, ledger, contact, policy, suppressions=supp).decision
        tally[d] = tally.get(d, 0) + 1
    done = 0
    began = time.perf_counter()
    deadline = began + args.seconds
    while time.perf_counter() < deadline:
        for debtor, account, ledger, contact, supp in cases:
            evaluate(debtor, account, ledger, contact, policy, suppressions=supp)
        done += len(cases)
    elapsed = time.perf_counter() - began
    print(f"decisions in workload: {tally}")
    print(f"{done / elapsed:,.0f} evaluations/s on one core (50-entry ledgers, {len(DEBTORS)} jurisdictions)")


if __name__ == "__main__":
    main()
