"""The shipped alert rules and Grafana dashboard parse and use only metrics the services export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
NAME = re.compile(r"\b((?:cadencia|orchestrator)_[a-z_]+)")


def defined_metrics() -> set[str]:
    """Metric names the code registers (the quoted first argument of a metric or family)."""
    names: set[str] = set()
    for path in [*(ROOT / "shared").rglob("*.py"), *(ROOT / "services").rglob("*.py")]:
        names.update(re.findall(r'"((?:cadencia|orchestrator)_[a-z_]+)"', path.read_text(encoding="utf-8")))
    return names


def base(name: str) -> str:
    return re.sub(r"_(total|bucket|count|sum)$", "", name)


def test_alert_rules_are_complete_and_name_only_exported_metrics() -> None:
    rules = yaml.safe_load((MONITORING / "prometheus-rules.yaml").read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert len(alerts) >= 10
    known = defined_metrics()
    for rule in alerts:
        assert rule["alert"].startswith("Cadencia") and rule["labels"]["severity"] in ("critical", "warning", "info")
        assert rule["annotations"]["summary"]
        used = {base(n) for n in NAME.findall(rule["expr"])}
        assert used <= known, f"{rule['alert']} uses unknown metrics {used - known}"


def test_grafana_dashboard_panels_query_exported_metrics() -> None:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    known = defined_metrics()
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert dashboard["uid"] == "cadencia-ops" and len(exprs) >= 15
    for expr in exprs:
        used = {base(n) for n in NAME.findall(expr)}
        assert used and used <= known, f"{expr} uses unknown metrics {used - known}"
    # every family the channel services export has a panel
    for family in ("cadencia_channel_sends", "cadencia_provider_request_seconds", "cadencia_rate_limit_wait_seconds",
                   "cadencia_webhook_rejections", "cadencia_consumer_lag", "cadencia_consumer_batch_size",
                   "cadencia_http_requests", "cadencia_http_request_seconds", "cadencia_event_loop_lag_seconds"):
        assert any(family in e for e in exprs), family
