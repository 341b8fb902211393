"""Every integer path and query parameter of every service is range-checked: too large → 422, never 500.

The fuzzed 500s came from integers SQLite and PostgreSQL cannot store; a bound in the OpenAPI
schema means FastAPI refuses them before any query runs.
"""

from __future__ import annotations

from typing import Any

import pytest

from shared.config import KafkaSettings
from shared.http import DB_INT_MAX
from tests.orchestrator.conftest import make_settings, request_event, running
from tooling.cli import SERVICES, load_service


def _integer_parameters(service: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    settings_cls, create_app = load_service(service)
    app = create_app(settings_cls(env="test"))
    found = []
    for path, operations in app.openapi()["paths"].items():
        for method, operation in operations.items():
            for param in operation.get("parameters", []):
                schema = param.get("schema", {})
                options = schema.get("anyOf", [schema])
                for option in options:
                    if option.get("type") == "integer":
                        found.append((f"{method.upper()} {path}", param["in"], param["name"], option))
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_every_integer_parameter_has_bounds_the_databases_can_store(service: str) -> None:
    unbounded = [
        (route, where, name) for route, where, name, schema in _integer_parameters(service)
        if "maximum" not in schema or schema["maximum"] > DB_INT_MAX
        or "minimum" not in schema or schema["minimum"] < -DB_INT_MAX
    ]
    assert unbounded == []


def test_the_orchestrator_has_integer_parameters_to_check() -> None:
    # The property above is not vacuous: ids, versions and limits are integers.
    names = {name for _, _, name, _ in _integer_parameters("orchestrator")}
    assert {"letter_id", "version", "limit"} <= names


HUGE = 2**70


async def test_integers_too_large_for_the_database_get_422_problems(
    kafka_settings: KafkaSettings, database_url: str
) -> None:
    from tests.orchestrator.conftest import FakeClock

    admin = {"Authorization": "Bearer admin-key"}
    async with running(make_settings(kafka_settings, database_url), FakeClock(), ()) as orc:
        for method, url in [
            ("GET", f"/v1/dlq/{HUGE}"),
            ("POST", f"/v1/dlq/{HUGE}/replay"),
            ("GET", f"/v1/dlq/{2**63}"),
            ("GET", f"/v1/dlq?before_id={HUGE}"),
            ("GET", f"/v1/dlq?limit={HUGE}"),
            ("GET", f"/v1/templates/reminder/versions/{HUGE}"),
            ("POST", f"/v1/templates/reminder/versions/{2**40}/publish"),
            ("GET", f"/v1/debtors/d1?limit={HUGE}"),
            ("GET", f"/v1/dlq/outbox/{HUGE}"),
            ("POST", f"/v1/dlq/outbox/{-HUGE}/replay"),
        ]:
            response = await orc.http.request(method, url, headers=admin)
            assert response.status_code == 422, (url, response.status_code, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
        # Integers and amounts in a request body are bounded by the event contract the same way.
        for change in ({"days_past_due": HUGE}, {"balance": "1e30"}):
            body = request_event("deb-big").data.model_dump(mode="json")
            body["account"].update(change)
            response = await orc.http.post("/v1/contact-requests", json=body, headers=admin)
            assert response.status_code == 422, (change, response.status_code, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
        # In range but absent is still a clean 404.
        assert (await orc.http.get("/v1/dlq/12345", headers=admin)).status_code == 404
        assert (await orc.http.get("/ready")).status_code == 200



