"""Named API keys: who saved, published and rolled back each version; four-eyes publishing."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from services.orchestrator.settings import Settings
from shared.config import ApiKeyIdentity, KafkaSettings
from tests.orchestrator.conftest import FakeClock, make_settings, running

KEYS = SecretStr("ana=editor:ana-key,luis=editor:luis-key,rosa=editor+four-eyes:rosa-key,viewer:viewer-key")
ANA, LUIS, ROSA = ({"Authorization": f"Bearer {k}"} for k in ("ana-key", "luis-key", "rosa-key"))
VIEWER = {"Authorization": "Bearer viewer-key"}
BODY = "{{ creditor.name }}: hola {{ debtor | first_name }}. Responde BAJA para no recibir mas"


def draft(text: str) -> dict[str, object]:
    return {"channel": "sms", "locale": "es-MX", "variant": "A", "content": {"body": text}}


def test_api_keys_carry_a_name_a_role_and_the_four_eyes_flag() -> None:
    keys = Settings(api_keys=KEYS).api_key_identities()
    assert keys["rosa-key"] == ApiKeyIdentity(name="rosa", role="editor", four_eyes=True)
    assert keys["viewer-key"] == ApiKeyIdentity(name="viewer", role="viewer", four_eyes=False)
    assert Settings(api_keys="admin:k:with:colons").role_by_key() == {"k:with:colons": "admin"}  # type: ignore[arg-type]
    for bad in ("ana=editor+two-eyes:k", "=editor:k", "ana=boss:k"):
        with pytest.raises(ValueError, match="CADENCIA_API_KEYS"):
            Settings(api_keys=bad).api_key_identities()  # type: ignore[arg-type]


async def test_history_shows_who_saved_published_and_rolled_back_and_four_eyes_needs_a_second_editor(
    kafka_settings: KafkaSettings, database_url: str
) -> None:
    async with running(make_settings(kafka_settings, database_url, api_keys=KEYS), FakeClock(), ()) as o:
        http = o.http
        v1 = (await http.post("/v1/templates/notice/versions", json=draft(BODY), headers=ANA)).json()
        assert v1["created_by"] == "ana"
        assert (await http.post(f"/v1/templates/notice/versions/{v1['version']}/publish", headers=ANA)).json()[
            "published_by"] == "ana"
        v2 = (await http.post("/v1/templates/notice/versions", json=draft(BODY + "."), headers=LUIS)).json()
        await http.post(f"/v1/templates/notice/versions/{v2['version']}/publish", headers=LUIS)
        rollback = (await http.post(f"/v1/templates/notice/versions/{v1['version']}/publish", headers=ANA)).json()
        assert rollback["status"] == "published" and rollback["version"] == v1["version"]

        # Rosa's key is four-eyes: her publish waits; she cannot approve it herself; Luis can.
        v3 = (await http.post("/v1/templates/notice/versions", json=draft(BODY + "!"), headers=ROSA)).json()
        asked = await http.post(f"/v1/templates/notice/versions/{v3['version']}/publish", headers=ROSA)
        assert asked.status_code == 200 and asked.json()["status"] == "pending_approval"
        approval = asked.json()["approval"]
        assert approval["state"] == "pending" and approval["requested_by"] == "rosa"
        detail = (await http.get("/v1/templates/notice", headers=VIEWER)).json()
        assert detail["templates"][0]["published_version"] == v1["version"]  # not live yet

        own = await http.post(f"/v1/templates/notice/approvals/{approval['id']}/approve", headers=ROSA)
        assert own.status_code == 403 and own.json()["type"] == "/problems/four-eyes"
        assert (await http.post(f"/v1/templates/notice/approvals/{approval['id']}/approve",
                                headers=VIEWER)).status_code == 403
        approved = (await http.post(f"/v1/templates/notice/approvals/{approval['id']}/approve", headers=LUIS)).json()
        assert (approved["status"], approved["published_by"], approved["approved_by"]) == ("published", "rosa", "luis")
        again = await http.post(f"/v1/templates/notice/approvals/{approval['id']}/approve", headers=ANA)
        assert again.status_code == 409

        # A second request, rejected by Ana, publishes nothing.
        v4 = (await http.post("/v1/templates/notice/versions", json=draft(BODY + "?"), headers=ROSA)).json()
        asked = (await http.post(f"/v1/templates/notice/versions/{v4['version']}/publish", headers=ROSA)).json()
        rejected = await http.post(f"/v1/templates/notice/approvals/{asked['approval']['id']}/reject", headers=ANA)
        assert rejected.json()["state"] == "rejected" and rejected.json()["decided_by"] == "ana"

        detail = (await http.get("/v1/templates/notice", headers=VIEWER)).json()
        assert detail["templates"][0]["published_version"] == v3["version"]
        assert [(v["version"], v["created_by"]) for v in detail["versions"]] == [
            (v1["version"], "ana"), (v2["version"], "luis"), (v3["version"], "rosa"), (v4["version"], "rosa")]
        assert [(h["version"], h["action"], h["actor"], h["approved_by"]) for h in detail["history"]] == [
            (v1["version"], "save", "ana", None),
            (v1["version"], "publish", "ana", None),
            (v2["version"], "save", "luis", None),
            (v2["version"], "publish", "luis", None),
            (v1["version"], "rollback", "ana", None),
            (v3["version"], "save", "rosa", None),
            (v3["version"], "publish_requested", "rosa", None),
            (v3["version"], "publish", "rosa", "luis"),
            (v4["version"], "save", "rosa", None),
            (v4["version"], "publish_requested", "rosa", None),
            (v4["version"], "rejected", "ana", None),
        ]
        assert [a["state"] for a in detail["approvals"]] == ["approved", "rejected"]
