"""Unit tests of the channel building blocks: keywords, token bucket, backoff, status ranks, Twilio mapping."""

from __future__ import annotations

import random
from urllib.parse import urlencode

import orjson
import pytest
from starlette.requests import Request

from services.messaging.keywords import KeywordClassifier
from services.messaging.settings import KeywordSettings, shipped_keywords
from shared.channels.models import advances
from shared.channels.ratelimit import TokenBucket
from shared.channels.retry import backoff_delay
from shared.channels.sendlog import COLUMNS, SEND_LOG
from shared.config import TwilioSettings
from shared.providers.base import Accepted, Ambiguous, Rejected, Retryable
from shared.providers.http import CONNECT_FAILED, CONNECTION_LOST, NO_ANSWER
from shared.providers.twilio import TwilioMessages, TwilioSignature, classify_response
from shared.providers.twilio.client import form_body
from shared.providers.twilio.signature import signed_url


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("STOP", "opt_out"), ("stop", "opt_out"), ("Stop.", "opt_out"), ("BAJA", "opt_out"), ("baja", "opt_out"),
        ("Bájá", "opt_out"), ("B\u0430ja", "opt_out"), ("BAJA por favor", "opt_out"), ("cancelar", "opt_out"),
        ("Detener", "opt_out"), ("alto", "opt_out"), ("UNSUBSCRIBE", "opt_out"),
        ("START", "opt_in"), ("alta", "opt_in"), ("unstop", "opt_in"),
        ("HELP", "help"), ("Ayúda", "help"),
        ("1", "promise_to_pay"), (" PAGAR! ", "promise_to_pay"), ("pago", "promise_to_pay"),
        ("Ya pagué, gracias", "reply"), ("", "reply"), ("no me manden nada, stop", "opt_out"),
    ],
)
def test_keywords(text: str, kind: str) -> None:
    assert KeywordClassifier(KeywordSettings()).classify(text) == kind


@pytest.mark.parametrize(
    "text",
    [
        # Spanish, any case, with or without accents and punctuation, or in a short sentence
        "ya no me escriban", "Ya no me escriban!!", "YA NO ME ESCRIBAN POR FAVOR", "no más mensajes",
        "No mas mensajes.", "¡No más mensajes, gracias!", "baja", "BAJA.", "Bája por favor", "quiero darme de baja",
        "Dejen de llamarme", "no me llamen más", "Por favor ya no me manden mensajes", "basta", "cancelar",
        # English, and Twilio's own opt-out keywords
        "stop please", "Please STOP", "stop.", "STOP!!!", "Stop texting me", "stop sending me these",
        "do not contact me again", "Leave me alone", "opt out", "Opt-Out", "STOPALL", "unsubscribe", "cancel",
        "end", "quit", "revoke", "optout",
    ],
)
def test_opt_out_phrasings(text: str) -> None:
    assert KeywordClassifier(KeywordSettings()).classify(text) == "opt_out"


@pytest.mark.parametrize(
    "text",
    [
        "para cuando es el pago?", "I will pay at the end of the month", "stop by the office on friday to pay",
        "¿Cuánto debo?", "Ya pagué", "ok", "Who is this?", "no puedo pagar este mes, perdón",
    ],
)
def test_unclear_or_other_replies_are_replies(text: str) -> None:
    assert KeywordClassifier(KeywordSettings()).classify(text) == "reply"


def test_twilio_opt_out_type_wins_over_the_text() -> None:
    classifier = KeywordClassifier(KeywordSettings())
    assert classifier.classify("arrêtez", "STOP") == "opt_out"
    assert classifier.classify("whatever", "START") == "opt_in"
    assert classifier.classify("ayuda", None) == "help"


def test_keyword_lists_are_data_per_language() -> None:
    shipped = shipped_keywords()
    assert {"es", "en"} <= set(shipped)
    assert "BAJA" in shipped["es"]["opt_out"] and "STOP" in shipped["en"]["opt_out"]
    assert set(KeywordSettings().opt_out) == {w for lang in shipped.values() for w in lang["opt_out"]}


def test_keywords_are_configurable_and_help_is_localised() -> None:
    classifier = KeywordClassifier(KeywordSettings(opt_out=["PARAR"], help_text={"es": "ayuda", "en": "help"}))
    assert classifier.classify("parar") == "opt_out" and classifier.classify("BAJA") == "reply"
    assert classifier.help_text("es-CO") == "ayuda" and classifier.help_text("en-US") == "help"
    assert classifier.help_text(None) == "ayuda"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_spaces_requests_allows_burst_and_pauses() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10, burst=3, clock=clock)
    waits = [bucket.reserve() for _ in range(5)]
    assert waits == pytest.approx([0, 0, 0, 0.1, 0.2])
    assert bucket.reserve(max_wait=0.1) is None  # would wait 0.3 s: nothing reserved
    clock.now += 10
    bucket.pause(2.0)
    assert bucket.reserve() == pytest.approx(2.0)
    assert bucket.reserve() == pytest.approx(2.1)  # no burst right after a pause


def test_backoff_grows_with_jitter_and_honours_retry_after() -> None:
    rng = random.Random(7)
    delays = [backoff_delay(n, base=0.2, cap=5, rng=rng) for n in range(1, 8)]
    for n, delay in enumerate(delays, start=1):
        ceiling = min(5, 0.2 * 2 ** (n - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert backoff_delay(1, base=0.2, cap=5, retry_after=3, rng=rng) == 3


def test_status_only_moves_forward() -> None:
    assert advances(None, "accepted") and advances("accepted", "delivered") and advances("sent", "read")
    assert not advances("delivered", "sent") and not advances("delivered", "accepted")
    assert not advances("failed", "delivered") and not advances("undelivered", "read")
    assert advances("unknown", "sent") and advances("delivered", "undelivered")


def _response(status: int, body: object, headers: dict[str, str] | None = None) -> Accepted:
    return classify_response(status, headers or {}, orjson.dumps(body))


def test_the_set_based_send_log_entry_has_exactly_the_tables_columns() -> None:
    assert sorted(COLUMNS) == sorted(column.key for column in SEND_LOG.columns)


def test_the_form_body_is_what_urlencode_writes() -> None:
    rng = random.Random(12)
    planes = [(0, 0x80), (0x80, 0x800), (0x800, 0xD800), (0xE000, 0x10000), (0x10000, 0x110000)]

    def text() -> str:
        return "".join(chr(rng.randrange(*rng.choice(planes))) for _ in range(rng.randrange(0, 24)))

    forms: list[dict[str, str] | list[tuple[str, str]]] = [
        {"To": "+15551234567", "From": "+15557654321", "StatusCallback": "https://x.example/s/01J?a=b&c=d e",
         "Body": "Hola María, 1.234,56 € ~ 100% _ok_. Responda STOP"},
        [("StatusCallbackEvent", "initiated"), ("StatusCallbackEvent", "ringing"), ("Url", "")],
        {},
        *({text(): text() for _ in range(rng.randrange(1, 5))} for _ in range(3000)),
    ]
    for form in forms:
        assert form_body(form) == urlencode(form, doseq=True).encode()


def test_twilio_responses_are_classified() -> None:
    accepted = _response(201, {"sid": "SM1", "status": "queued"})
    assert (accepted.provider_id, accepted.status) == ("SM1", "queued")
    with pytest.raises(Retryable) as limited:
        _response(429, {"code": 20429, "message": "Too Many Requests"}, {"Retry-After": "2"})
    assert limited.value.retry_after == 2 and limited.value.code == "20429"
    with pytest.raises(Retryable):
        _response(503, {"code": 20503})
    for code in (21211, 21610, 63016):
        with pytest.raises(Rejected) as rejected:
            _response(400, {"code": code, "message": "no"})
        assert rejected.value.code == str(code)
    for status in (500, 502, 504):
        with pytest.raises(Ambiguous):
            _response(status, {"code": 20500})


async def test_a_dropped_connection_is_ambiguous() -> None:
    import asyncio

    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)  # the request arrived: now the answer is lost
        writer.close()

    server = await asyncio.start_server(drop, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with TwilioMessages(TwilioSettings(base_url=f"http://127.0.0.1:{port}")) as client:
            with pytest.raises(Ambiguous) as lost:
                await client.create({"To": "+15005550006", "From": "+15005550001", "Body": "x"})
        assert lost.value.code == CONNECTION_LOST and lost.value.status is None
    finally:
        server.close()
        await server.wait_closed()


async def test_no_answer_in_time_is_ambiguous_with_its_own_code() -> None:
    import asyncio

    arrived = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        arrived.set()
        await reader.read()  # holds the connection, never answers, until the client gives up
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with TwilioMessages(TwilioSettings(base_url=f"http://127.0.0.1:{port}"), timeout=0.2) as client:
            with pytest.raises(Ambiguous) as late:
                await client.create({"To": "+15005550006", "From": "+15005550001", "Body": "x"})
        assert arrived.is_set() and late.value.code == NO_ANSWER
    finally:
        server.close()
        await server.wait_closed()


async def test_connection_refused_is_retryable() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with TwilioMessages(TwilioSettings(base_url=f"http://127.0.0.1:{port}"), connect_timeout=1) as client:
        with pytest.raises(Retryable) as refused:
            await client.create({"To": "+15005550006", "From": "+15005550001", "Body": "x"})
    assert refused.value.code == CONNECT_FAILED and refused.value.status is None


def test_signature_round_trip() -> None:
    signer = TwilioSignature("token")
    url = "https://sms.example/webhooks/twilio/status?dispatch=d1"
    params = {"MessageSid": "SM1", "MessageStatus": "delivered"}
    signature = signer.sign(url, params)
    assert signer.verify(url, params, signature)
    assert not signer.verify(url, {**params, "MessageStatus": "read"}, signature)
    assert not signer.verify(url.replace("d1", "d2"), params, signature)
    assert not signer.verify(url, params, None)
    assert not TwilioSignature("other").verify(url, params, signature)


def test_the_signed_url_is_the_public_url_with_the_requests_path_and_query() -> None:
    rng = random.Random(7)
    alphabet = "/?#\\\t\r\n %&=+.:;@ab09é"
    paths = ["/webhooks/twilio/status", "//x", "x", "", "/a?b", "/a#b", "/a\\b", "/a\tb", " /a", "/é/%2F",
             *("".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12))) for _ in range(3000))]
    queries = [b"", b"dispatch=d1", b"dispatch=d1&traceparent=00-ab", b"a=b#c", b"a=\tb", b"a=%C3%A9",
               "é".encode(), b"x", b" y", b"a\\b",
               *("".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12))).encode() for _ in range(3000))]
    for path, query in zip(paths, queries, strict=True):
        for server in (("127.0.0.1", 8000), None):
            headers = [(b"host", b"sms.internal:8002")] if server is None and rng.random() < 0.5 else []
            request = Request({"type": "http", "method": "POST", "scheme": "http", "server": server, "path": path,
                               "query_string": query, "headers": headers})
            expected = "https://sms.example" + request.url.path
            if request.url.query:
                expected += "?" + request.url.query
            assert signed_url("https://sms.example/", request) == expected, (path, query, server)
