"""Export the event contracts: one JSON Schema per event type and an AsyncAPI 3 document.

``cadencia schemas`` regenerates ``docs/schemas/*.json`` and ``docs/asyncapi.yaml``; a test fails
when the committed files are stale, so the published contract always matches the code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from shared.events import EVENT_TYPES, TOPIC_OF_TYPE
from shared.events.topics import BASE_TOPICS, COMPACTED

#: Who publishes / consumes each topic, from Cadencia's point of view.
_TOPIC_DOC = {
    "contact.requests": ("receive", "Contact requests published by backends (loan servicing, billing, CRM)."),
    "account.events": ("receive", "Account events from backends: payments, promises, disputes, cease, updates."),
    "dispatch.sms": ("send", "Dispatches the orchestrator allowed, consumed by the SMS service."),
    "dispatch.email": ("send", "Dispatches the orchestrator allowed, consumed by the email service."),
    "dispatch.voice": ("send", "Dispatches the orchestrator allowed, consumed by the voice service."),
    "dispatch.whatsapp": ("send", "Dispatches the orchestrator allowed, consumed by the WhatsApp service."),
    "contact.outcomes": ("send", "Delivery updates and debtor responses from the channel services."),
    "contact.status": ("send", "Lifecycle of each contact request, for the backends."),
    "templates": ("send", "Published template versions (compacted; key = key:channel:locale:variant)."),
    "dlq": ("send", "Poison messages with the original bytes, where they came from and why they failed."),
}


def schema_documents() -> dict[str, dict[str, Any]]:
    docs: dict[str, dict[str, Any]] = {}
    for cls in EVENT_TYPES:
        type_name = cls.model_fields["type"].default
        schema = cls.model_json_schema(mode="validation")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://cadencia.dev/schemas/{type_name}.json"
        schema["title"] = type_name
        docs[type_name] = schema
    return docs


def asyncapi_document() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for type_name in sorted(TOPIC_OF_TYPE):
        name = type_name.removeprefix("cadencia.").replace(".", "_")
        messages[name] = {
            "name": type_name,
            "title": type_name,
            "contentType": "application/cloudevents+json",
            "payload": {"$ref": f"./schemas/{type_name}.json"},
            "bindings": {"kafka": {"key": {"type": "string", "description": "debtor id (template key for templates)"}}},
        }
    for base in BASE_TOPICS:
        action, description = _TOPIC_DOC[base]
        channel_id = base.replace(".", "_")
        carried = [
            t for t, topic in TOPIC_OF_TYPE.items()
            if topic == base or (topic == "dispatch.{channel}" and base.startswith("dispatch."))
        ]
        channels[channel_id] = {
            "address": f"cadencia.{base}",
            "description": description,
            "messages": {
                t.removeprefix("cadencia.").replace(".", "_"): {
                    "$ref": f"#/components/messages/{t.removeprefix('cadencia.').replace('.', '_')}"
                }
                for t in sorted(carried)
            },
            "bindings": {
                "kafka": {
                    "topic": f"cadencia.{base}",
                    "topicConfiguration": {"cleanup.policy": ["compact" if base in COMPACTED else "delete"]},
                }
            },
        }
        operations[f"{action}_{channel_id}"] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "summary": description,
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Cadencia events",
            "version": "1.0.0",
            "description": (
                "CloudEvents 1.0 (structured JSON mode) on Kafka. The Kafka key and `subject` are the debtor id; "
                "`id` is the idempotency key; `type` is versioned and changes are additive. The topic prefix "
                "(default `cadencia.`) is configurable."
            ),
        },
        "defaultContentType": "application/cloudevents+json",
        "servers": {"local": {"host": "127.0.0.1:9092", "protocol": "kafka", "description": "make run"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def rendered_files() -> dict[str, str]:
    files = {
        f"schemas/{name}.json": json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        for name, schema in schema_documents().items()
    }
    files["asyncapi.yaml"] = yaml.safe_dump(asyncapi_document(), sort_keys=False, allow_unicode=True, width=110)
    return files


def export(out: str | Path = "docs") -> list[Path]:
    root = Path(out)
    written = []
    for rel, content in rendered_files().items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        written.append(path)
    return written
