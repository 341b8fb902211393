"""A client generated from ``/openapi.json`` by openapi-python-client submits a request and reads its timeline."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import httpx

from shared.config import KafkaSettings
from tests.orchestrator.conftest import FakeClock, make_settings, request_event, running

GENERATOR = Path(sys.executable).with_name("openapi-python-client")


def generate_client(spec: dict[str, object], into: Path) -> ModuleType:
    """Generate the package ``cadencia_client`` from ``spec`` in ``into`` and import it."""
    (into / "openapi.json").write_text(json.dumps(spec))
    # A PDF download is a binary body, which the generator reads through its octet-stream support.
    (into / "config.yaml").write_text("post_hooks: []\npackage_name_override: cadencia_client\n"
                                      "content_type_overrides:\n  application/pdf: application/octet-stream\n")
    done = subprocess.run(
        [str(GENERATOR), "generate", "--path", "openapi.json", "--config", "config.yaml", "--meta", "none",
         "--output-path", "cadencia_client"],
        cwd=into, capture_output=True, text=True, timeout=300,
    )
    # The generator warns (and skips the endpoint) on any schema it cannot type: none is allowed.
    assert done.returncode == 0 and "Warning" not in done.stdout + done.stderr, done.stdout + done.stderr
    sys.path.insert(0, str(into))
    try:
        return importlib.import_module("cadencia_client")
    finally:
        sys.path.remove(str(into))


async def test_a_generated_client_submits_a_request_and_reads_its_timeline(
    kafka_settings: KafkaSettings, database_url: str, tmp_path: Path
) -> None:
    clock = FakeClock()
    async with running(make_settings(kafka_settings, database_url), clock) as o:
        spec = (await o.http.get("/openapi.json")).json()
        # Bearer auth is a declared scheme, and every JSON operation says what it answers.
        assert spec["components"]["securitySchemes"]["bearer"] == {
            "type": "http", "scheme": "bearer", "description": spec["components"]["securitySchemes"]["bearer"][
                "description"]}
        intake = spec["paths"]["/v1/contact-requests"]["post"]
        assert intake["security"] == [{"bearer": []}]
        assert intake["responses"]["202"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/IntakeResponse"}
        for path, operations in spec["paths"].items():
            for method, operation in operations.items():
                if path in ("/metrics", "/ready") or "text/html" in json.dumps(operation["responses"]):
                    continue
                ok = next(v for k, v in operation["responses"].items() if k.startswith("2"))
                if "application/json" not in ok["content"]:  # a file (the signed agreement's PDF), not JSON
                    assert set(ok["content"]) <= {"application/pdf", "text/csv"}, (method, path, ok["content"])
                    continue
                schema = ok["content"]["application/json"]["schema"]
                assert schema.get("$ref") or schema.get("properties") or schema.get("items"), (method, path, schema)

        client_pkg = generate_client(spec, tmp_path)
        from cadencia_client.api.runtime import get_contact_request, submit_contact_requests  # type: ignore
        from cadencia_client.models import ContactRequestBatch, ContactRequestView, IntakeResponse  # type: ignore

        client = client_pkg.AuthenticatedClient(base_url="http://orchestrator", token="editor-key")
        client.set_async_httpx_client(httpx.AsyncClient(transport=httpx.ASGITransport(app=o.app),
                                                        base_url="http://orchestrator",
                                                        headers={"Authorization": "Bearer editor-key"}))
        event = request_event("deb-client", channel="sms")
        body = ContactRequestBatch.from_dict({"requests": [event.model_dump(mode="json")]})
        answer = await submit_contact_requests.asyncio(client=client, body=body)
        assert isinstance(answer, IntakeResponse)
        assert answer.request_ids == [event.id] and answer.results[0].status == "dispatched"

        timeline = await get_contact_request.asyncio(event.id, client=client)
        assert isinstance(timeline, ContactRequestView)
        assert timeline.id == event.id and timeline.debtor_id == "deb-client"
        assert [h.status for h in timeline.history] == ["dispatched"] and timeline.history[0].at is not None
        assert timeline.dispatches[0].channel == "sms" and timeline.dispatches[0].template_key == "reminder"

        # Errors parse as typed problems; a wrong key is refused.
        missing = await get_contact_request.asyncio("nope", client=client)
        assert missing.status == 404 and missing.title == "Not found"
        anonymous = client_pkg.AuthenticatedClient(base_url="http://orchestrator", token="wrong")
        anonymous.set_async_httpx_client(httpx.AsyncClient(transport=httpx.ASGITransport(app=o.app),
                                                           base_url="http://orchestrator",
                                                           headers={"Authorization": "Bearer wrong"}))
        refused = await get_contact_request.asyncio(event.id, client=anonymous)
        assert refused.status == 401
        await client.get_async_httpx_client().aclose()
        await anonymous.get_async_httpx_client().aclose()
