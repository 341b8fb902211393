"""Ops features over the runtime: pre-aggregated counters, campaign control, suppressions and search."""
