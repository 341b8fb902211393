"""structlog configuration with PII masking at the processor level, so no call site can forget.

Phones, emails and names are masked in every event dict: by key (``phone``, ``to``, ``email``,
``name`` …) and by pattern in any string value (E.164-like numbers, email addresses).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

_PHONE_RE = re.compile(r"(?<![\w+])(?:whatsapp:)?\+?\d[\d\s().-]{6,}\d(?!\w)")
_EMAIL_RE = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
_NAME_KEYS = frozenset({"name", "first_name", "last_name", "full_name", "debtor_name", "from_name", "to_name"})
_ADDRESS_KEYS = frozenset(
    {"phone", "to", "from", "from_", "email", "whatsapp", "address", "recipient", "caller", "called", "number"}
)
_TEXT_KEYS = frozenset({"body", "text", "html", "message_body"})
#: Hex identifiers that follow a contact across services; a run of digits in one is not a phone number.
_TRACE_KEYS = frozenset({"trace_id", "span_id", "traceparent"})


def mask_phone(value: str) -> str:
    """``+525512345678`` → ``+52******5678``: enough to correlate, not enough to dial."""
    digits = re.sub(r"\D", "", value)
    if len(digits) <= 4:
        return "*" * len(digits)
    prefix = "whatsapp:" if value.startswith("whatsapp:") else ""
    return f"{prefix}+{digits[:2]}{'*' * (len(digits) - 6)}{digits[-4:]}"


def mask_email(value: str) -> str:
    return _EMAIL_RE.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", value)


def mask_name(value: str) -> str:
    return " ".join(part[:1] + "***" for part in value.split()) if value else value


_IPV4_RE = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def _mask_phone_match(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = sum(c.isdigit() for c in text)
    # The shortest national numbers we serve have 9 digits (PE, CL); IPs and dates are not phones.
    if digits < 9 or _IPV4_RE.match(text) or _DATE_RE.match(text):
        return text
    return mask_phone(text)


def mask_text(value: str) -> str:
    """Mask any phone number or email address embedded in free text."""
    value = _EMAIL_RE.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", value)
    return _PHONE_RE.sub(_mask_phone_match, value)


def _mask_value(key: str, value: Any) -> Any:
    if isinstance(value, str):
        lowered = key.lower()
        if lowered in _TRACE_KEYS:
            return value
        if lowered in _NAME_KEYS:
            return mask_name(value)
        if lowered in _ADDRESS_KEYS:
            return mask_email(value) if "@" in value else mask_phone(value) if any(
                c.isdigit() for c in value
            ) else mask_text(value)
        if lowered in _TEXT_KEYS:
            return f"<{len(value)} chars>"
        return mask_text(value)
    if isinstance(value, Mapping):
        return {k: _mask_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_value(key, v) for v in value]
    return value


def mask_pii(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: mask PII in every key and free-text value."""
    for key in list(event_dict):
        event_dict[key] = _mask_value(key, event_dict[key])
    return event_dict


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg,unused-ignore]
    """Writes to whatever ``sys.stderr`` is now, and never echoes a failed record's raw arguments."""

    @property  # type: ignore[override,unused-ignore]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - stdlib name
        # The stdlib prints the record's args on failure, which may hold unmasked PII.
        sys.__stderr__.write(f"logging error in {record.name} (record suppressed)\n") if sys.__stderr__ else None


def configure_logging(level: str = "INFO", fmt: str = "console") -> None:
    """Configure structlog and route stdlib logging (uvicorn, aiokafka) through the same chain."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        mask_pii,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = _StderrHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "kafka"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
