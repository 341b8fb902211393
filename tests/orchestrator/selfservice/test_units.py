"""Pure parts of self-service: link signing, the terms a debtor may choose, the PDF, the template filter."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from services.orchestrator.runtime.strategy import PlanOffer, SelfService, Strategy
from services.orchestrator.selfservice import agreements, links, pdf, terms
from shared.events.contracts import TemplatePublished
from shared.templates import render_dispatch, sms_segments

SECRET = b"unit-secret"
NOW = datetime(2025, 3, 12, 15, 0, tzinfo=UTC)


def test_a_link_verifies_for_its_account_until_it_expires_and_never_for_another() -> None:
    token = links.sign(SECRET, "deb-1", "acc-1", links.expiry_for(NOW, 14))
    assert len(token) == links.TOKEN_CHARS and re.fullmatch(r"[A-Za-z0-9_-]+", token)
    claims = links.verify(SECRET, token, "deb-1", "acc-1", NOW)
    assert claims.expires_on == date(2025, 3, 26)
    assert claims.ref == links.account_ref(SECRET, "deb-1", "acc-1")
    links.verify(SECRET, token, "deb-1", "acc-1", datetime(2025, 3, 26, 23, 59, tzinfo=UTC))
    with pytest.raises(links.LinkError) as expired:
        links.verify(SECRET, token, "deb-1", "acc-1", datetime(2025, 3, 27, 0, 0, tzinfo=UTC))
    assert expired.value.reason == "expired"
    for debtor, account, secret in (("deb-2", "acc-1", SECRET), ("deb-1", "acc-2", SECRET), ("deb-1", "acc-1", b"x")):
        with pytest.raises(links.LinkError) as wrong:
            links.verify(secret, token, debtor, account, NOW)
        assert wrong.value.reason == "invalid"


def test_every_single_character_change_of_a_token_is_refused() -> None:
    token = links.sign(SECRET, "deb-1", "acc-1", date(2025, 3, 26))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for i, ch in enumerate(token):
        other = alphabet[(alphabet.index(ch) + 1) % len(alphabet)]
        with pytest.raises(links.LinkError):
            links.verify(SECRET, token[:i] + other + token[i + 1:], "deb-1", "acc-1", NOW)
    for bad in ("", "short", token + "A", "!" * 24):
        with pytest.raises(links.LinkError):
            links.decode(bad)


def test_the_link_and_a_whole_reminder_fit_one_sms_segment() -> None:
    url = links.link_url("https://cad.example", links.sign(SECRET, "deb-1", "acc-1", date(2025, 3, 26)))
    published = TemplatePublished(
        key="reminder", version=1, channel="sms", locale="es-MX", published_at=NOW,
        content={"body": "{{ creditor.name }}: {{ debtor | first_name }}, tu saldo es {{ account.balance | money }}. "
                         "Paga o elige un plan: {{ account | self_service_link }} BAJA para salir"},
    )
    variables = {"debtor": {"name": "Ana Perez"}, "creditor": {"name": "Banco Ejemplo"},
                 "account": {"balance": "1234.50", "currency": "MXN", "self_service_url": url}}
    message = render_dispatch(published, variables)
    assert url in message.body or ""
    assert sms_segments(message.body or "").segments == 1


def test_limits_follow_the_strategy_and_plans_split_the_balance_exactly() -> None:
    config = SelfService(max_promise_days=30, min_promise_share=Decimal("0.1"),
                         plans=PlanOffer(min_instalments=2, max_instalments=6, min_instalment=Decimal("300")))
    lim = terms.limits(config, Decimal("1234.51"), "USD", date(2025, 3, 12))
    assert (lim.first_date, lim.last_date, lim.min_amount) == (date(2025, 3, 13), date(2025, 4, 11), Decimal("123.45"))
    assert lim.plan_counts == (2, 3, 4)  # five instalments of 246.90 would be under the 300 minimum
    plan = terms.plan_instalments(lim, "3", "2025-03-20")
    assert [i.amount for i in plan] == [Decimal("411.51"), Decimal("411.50"), Decimal("411.50")]
    assert sum(i.amount for i in plan) == Decimal("1234.51")
    assert [i.due_date for i in plan] == [date(2025, 3, 20), date(2025, 4, 19), date(2025, 5, 19)]
    assert terms.split(Decimal("100000"), "CLP", 3) == [Decimal("33334"), Decimal("33333"), Decimal("33333")]
    [promise] = terms.promise_instalments(lim, "500,5", "2025-04-11")
    assert (promise.amount, promise.due_date) == (Decimal("500.5"), date(2025, 4, 11))
    for amount, day, field, code in (("100", "2025-03-20", "amount", "amount_range"),
                                     ("2000", "2025-03-20", "amount", "amount_range"),
                                     ("1.005", "2025-03-20", "amount", "amount_invalid"),
                                     # more digits than a decimal context holds: quantize raised (a 500)
                                     ("9" * 40, "2025-03-20", "amount", "amount_invalid"),
                                     ("1" + "0" * 27, "2025-03-20", "amount", "amount_invalid"),
                                     ("500", "2025-03-12", "date", "date_range"),
                                     ("500", "2025-04-12", "date", "date_range"),
                                     ("500", "mañana", "date", "date_invalid")):
        with pytest.raises(terms.TermsError) as refused:
            terms.promise_instalments(lim, amount, day)
        assert (refused.value.field, refused.value.code) == (field, code)
    with pytest.raises(terms.TermsError):
        terms.plan_instalments(lim, "5", "2025-03-20")


def test_the_shipped_strategy_offers_self_service() -> None:
    config = Strategy.load().config.self_service
    assert config.enabled and config.plans is not None and config.plans.max_instalments == 6


def test_the_terms_hash_changes_with_any_term() -> None:
    base = terms.Terms(choice="promise", creditor="Banco", debtor_id="d", debtor_name="Ana", account_id="a",
                       currency="USD", balance=Decimal("10.00"), locale="es-MX",
                       instalments=(terms.Instalment(date(2025, 3, 20), Decimal("5.00")),))
    other = terms.Terms(**{**base.__dict__, "instalments": (terms.Instalment(date(2025, 3, 21), Decimal("5.00")),)})
    assert base.digest() != other.digest() and len(base.digest()) == 64
    assert base.digest() == terms.Terms(**base.__dict__).digest()


def test_the_agreement_pdf_is_well_formed_and_carries_the_terms_hash_and_seal() -> None:
    t = terms.Terms(choice="plan", creditor="Banco (Ejemplo)", debtor_id="d", debtor_name="María Pérez",
                    account_id="a", currency="MXN", balance=Decimal("900.00"), locale="es-MX",
                    instalments=tuple(terms.Instalment(date(2025, 3, 20 + i), Decimal("300.00")) for i in range(3)))
    document = agreements.document(t, "agr-1", "María Pérez", NOW, "203.0.113.9", "ab" * 32, "America/Mexico_City")
    assert document.startswith(b"%PDF-1.4") and document.rstrip().endswith(b"%%EOF")
    assert t.digest().encode() in document and ("ab" * 32).encode() in document
    assert "María Pérez".encode("cp1252") in document and b"Banco \\(Ejemplo\\)" in document
    assert b"203.0.113.9" in document and b"2025-03-12T09:00:00-06:00" in document
    # every cross-reference entry points at its object
    xref_at = int(document.rsplit(b"startxref\n", 1)[1].split(b"\n")[0])
    assert document[xref_at:].startswith(b"xref\n")
    entries = re.findall(rb"(\d{10}) 00000 n ", document[xref_at:])
    for number, offset in enumerate(entries, start=1):
        assert document[int(offset):].startswith(b"%d 0 obj" % number)
    long = pdf.render("t", ["line"] * 200)
    assert long.count(b"/Type /Page ") == 5  # 46 lines under the title, then 48 a page


def test_a_typed_signature_matches_the_name_on_file_regardless_of_case_and_accents() -> None:
    assert agreements.name_matches("  maria   PEREZ ", "María Pérez")
    assert not agreements.name_matches("Maria", "María Pérez")
    assert not agreements.name_matches("", "María Pérez")
    assert agreements.name_matches("Jordan Smith", "")
