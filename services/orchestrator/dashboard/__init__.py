"""Ops view of delivery: ``GET /v1/stats`` (JSON), ``/dashboard`` (a page), Prometheus gauges."""
