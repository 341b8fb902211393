"""PII never reaches log output, whichever way a call site logs it."""

from __future__ import annotations

import logging

import pytest
import structlog

from shared.logging import configure_logging, get_logger, mask_phone

PHONE, EMAIL, NAME = "+525512345678", "maria.perez@example.mx", "María José Pérez"


@pytest.fixture(params=["console", "json"])
def configured(request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]):
    configure_logging("INFO", request.param)
    yield
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


def test_pii_is_masked_in_keys_values_free_text_and_stdlib_logs(configured, capsys: pytest.CaptureFixture[str]) -> None:
    log = get_logger("test")
    log.info("sending", to=PHONE, email=EMAIL, name=NAME, debtor={"phone": PHONE, "name": NAME})
    log.info(f"free text mentions {PHONE} and {EMAIL}")
    log.warning("whatsapp", address=f"whatsapp:{PHONE}", detail=f"reply from {PHONE}: BAJA")
    logging.getLogger("uvicorn.error").info("stdlib call with %s and %s", PHONE, EMAIL)
    structlog.contextvars.bind_contextvars(recipient=PHONE)
    try:
        log.info("bound context")
    finally:
        structlog.contextvars.clear_contextvars()
    out = capsys.readouterr()
    text = out.out + out.err
    assert "sending" in text and "bound context" in text and "stdlib call" in text
    for secret in (PHONE, PHONE[1:], EMAIL, "maria.perez", "José", "Pérez"):
        assert secret not in text, f"{secret!r} leaked"
    assert mask_phone(PHONE) in text  # masked, still correlatable


def test_addresses_dates_and_short_numbers_are_not_mistaken_for_phones() -> None:
    from shared.logging import mask_text

    text = "listening on http://127.0.0.1:8090 since 2026-11-22T08:10:17Z, batch 1234567, 55 1234 5678"
    assert mask_text(text) == (
        "listening on http://127.0.0.1:8090 since 2026-11-22T08:10:17Z, batch 1234567, +55****5678"
    )


def test_mask_phone_keeps_country_and_last_four() -> None:
    assert mask_phone(PHONE) == "+52******5678"
    assert mask_phone("whatsapp:+13125550100") == "whatsapp:+13*****0100"
