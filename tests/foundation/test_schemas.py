"""The exported contract documents match the code (run ``cadencia schemas`` after changing events)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from shared.events.export import rendered_files
from tests.foundation.samples import sample_events

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_committed_schemas_and_asyncapi_are_current() -> None:
    stale = [rel for rel, content in rendered_files().items()
             if not (DOCS / rel).exists() or (DOCS / rel).read_text(encoding="utf-8") != content]
    assert not stale, f"regenerate with `cadencia schemas`: {stale}"


def test_asyncapi_describes_every_topic_and_message() -> None:
    doc = yaml.safe_load((DOCS / "asyncapi.yaml").read_text())
    assert doc["asyncapi"] == "3.0.0"
    addresses = {c["address"] for c in doc["channels"].values()}
    assert "cadencia.contact.requests" in addresses and "cadencia.dlq" in addresses and len(addresses) == 10
    names = {m["name"] for m in doc["components"]["messages"].values()}
    assert names == {e.type for e in sample_events()}


def test_schema_files_accept_the_samples_required_fields() -> None:
    for event in sample_events():
        schema = json.loads((DOCS / "schemas" / f"{event.type}.json").read_text())
        assert set(schema["required"]) <= set(event.model_dump(mode="json"))
