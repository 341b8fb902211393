"""The orchestrator: owns debtors, the contact ledger, suppressions, deferrals, templates, policies."""
