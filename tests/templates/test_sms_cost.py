"""SMS cost in view: the price per send and per 10,000, a GSM-7 rewrite, and the shipped SMS within budget."""

from __future__ import annotations

import pytest

from services.orchestrator.templates import template_store
from services.orchestrator.templates.cost import SEGMENT_BUDGET, gsm7_source
from shared.config import KafkaSettings
from shared.templates import sample_context
from shared.templates.sms import sms_segments, to_gsm7
from tests.orchestrator.conftest import FakeClock, make_settings, running

#: The es-CO early reminder as it shipped: "línea" and "más" made it 3 UCS-2 segments.
OLD_ES_CO = ("{{ debtor | first_name }}, {{ creditor.name }} te recuerda el pago de {{ account.balance | money }} "
             "con vencimiento el {{ account.due_date | date }}. Paga en línea: {{ account | payment_link }} "
             "Responde BAJA para no recibir más SMS")
EDITOR = {"Authorization": "Bearer editor-key"}


def test_gsm7_spelling_transliterates_accents_and_keeps_what_gsm7_has() -> None:
    assert to_gsm7("María Ángela pagó más: línea ¿sí? ñandú é ü") == "Maria Angela pago mas: linea ¿si? ñandu é ü"
    assert to_gsm7("“hola” — ok…") == '"hola" - ok...'
    assert sms_segments(to_gsm7("áéíóú " * 40)).encoding == "GSM-7"
    assert gsm7_source("{{ debtor | first_name }}, pagá {{- x -}} {{ y | gsm7 }}") == (
        "{{ (debtor | first_name) | gsm7 }}, paga {{- (x) | gsm7 -}} {{ y | gsm7 }}")


SHIPPED_SMS = [(key, d) for key, d in template_store.load_seed() if d.channel == "sms"]
LONG_SAMPLE = {"debtor": {"id": "d-1", "name": "Maximiliano Hernández Ruíz", "first_name": "Maximiliano"},
               "creditor": {"name": "Financiera Andina Crédito", "phone": "+57 601 555 0100"}}


@pytest.mark.parametrize(("key", "draft"), SHIPPED_SMS, ids=[f"{k}-{d.locale}-{d.variant}" for k, d in SHIPPED_SMS])
def test_every_shipped_sms_is_gsm7_within_its_segment_budget(key: str, draft: template_store.Draft) -> None:
    for overrides in ({}, LONG_SAMPLE):
        sample = {**sample_context(draft.locale, draft.variables_schema), **overrides}
        report = template_store.validate_draft(key, draft, sample)
        assert report.publishable and report.rendered is not None and report.rendered.sms is not None
        sms = report.rendered.sms
        assert (sms.encoding, sms.segments <= SEGMENT_BUDGET) == ("GSM-7", True), (report.rendered.body, sms)


async def test_the_preview_prices_a_send_and_offers_a_cheaper_gsm7_rewrite(
    kafka_settings: KafkaSettings, database_url: str
) -> None:
    settings = make_settings(kafka_settings, database_url, sms_prices={"PE": "0.21 PEN"})
    async with running(settings, FakeClock(), ()) as o:
        draft = {"channel": "sms", "locale": "es-CO", "variant": "A", "content": {"body": OLD_ES_CO}}
        preview = (await o.http.post("/v1/templates/reminder_early/preview", json=draft, headers=EDITOR)).json()
        assert (preview["sms"]["encoding"], preview["sms"]["segments"]) == ("UCS-2", 3)
        cost = preview["sms_cost"]
        assert cost["cost"] == {"currency": "USD", "per_segment": "0.0350", "segments": 3,
                                "per_send": "0.1050", "per_10k": "1050.00"}
        rewrite = cost["gsm7_rewrite"]
        assert (rewrite["sms"]["encoding"], rewrite["sms"]["segments"]) == ("GSM-7", 2)
        assert rewrite["cost"]["per_send"] == "0.0700" and rewrite["cost"]["per_10k"] == "700.00"
        assert "línea" not in rewrite["body"] and "Paga en linea" in rewrite["rendered"]
        assert "Maria" in rewrite["rendered"]  # the sample debtor María, spelled in GSM-7 by | gsm7

        # The rewrite is a template like any other: saved, it renders what the offer showed.
        saved = await o.http.post("/v1/templates/reminder_early/versions", headers=EDITOR, json={
            **draft, "content": {"body": rewrite["body"]}})
        assert saved.status_code == 201 and saved.json()["rendered"]["body"] == rewrite["rendered"]
        assert saved.json()["sms_cost"]["gsm7_rewrite"] is None  # nothing cheaper to offer

        # A configured price wins over the indicative one; a GSM-7 body offers no rewrite.
        pe = {**draft, "locale": "es-PE", "content": {"body": rewrite["body"]}}
        priced = (await o.http.post("/v1/templates/reminder_early/preview", json=pe, headers=EDITOR)).json()
        assert priced["sms_cost"]["cost"]["currency"] == "PEN" and priced["sms_cost"]["cost"]["per_send"] == "0.4200"
        email = {"channel": "email", "locale": "es-CO",
                 "content": {"subject": "{{ creditor.name }}", "text": "x BAJA", "html": "<p>x BAJA</p>"}}
        assert (await o.http.post("/v1/templates/x/preview", json=email, headers=EDITOR)).json()["sms_cost"] is None
