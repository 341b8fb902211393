"""Portfolio rows to contact requests, one at a time: CSV (one column per field) or JSON Lines.

Nothing here holds more than one row: a file of any size streams through ``read_rows``, which
yields each row's line number with its request or its errors.

CSV columns: ``debtor_id``, ``name``, ``locale``, ``jurisdiction``, ``time_zone``, ``phone``,
``email``, ``whatsapp``, ``account_id``, ``product``, ``balance``, ``currency``,
``days_past_due``, ``due_date``, ``payment_url``, ``template``, ``channel``, ``campaign_id``,
``priority``, ``not_before``, ``expires_at``, ``kind``, and ``var.<name>`` for template
variables. Empty cells are absent values. A JSON line is a ``ContactRequested`` object.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Literal

from pydantic import ValidationError

from shared.events.contracts import ContactRequested

Format = Literal["csv", "jsonl"]
DEBTOR = ("name", "locale", "jurisdiction", "time_zone", "phone", "email", "whatsapp")
ACCOUNT = ("product", "balance", "currency", "days_past_due", "due_date", "payment_url")
REQUEST = ("template", "channel", "campaign_id", "priority", "not_before", "expires_at", "kind")
KNOWN = {"debtor_id", "account_id", *DEBTOR, *ACCOUNT, *REQUEST}
#: A row longer than this is refused (a CSV missing a closing quote would otherwise swallow the file).
MAX_ROW_CHARS = 100_000


@dataclass
class Row:
    line: int
    request: ContactRequested | None = None
    errors: list[str] = field(default_factory=list)


def format_of(filename: str) -> Format | None:
    name = filename.lower()
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    return None


def _nested(record: dict[str, str]) -> dict[str, Any]:
    def present(names: Iterable[str]) -> dict[str, str]:
        return {n: record[n] for n in names if record.get(n, "") != ""}

    out: dict[str, Any] = {
        "debtor": {"id": record.get("debtor_id", ""), **present(DEBTOR)},
        "account": {"id": record.get("account_id", ""), **present(ACCOUNT)},
        **present(REQUEST),
    }
    variables = {k[4:]: v for k, v in record.items() if k.startswith("var.") and v != ""}
    if variables:
        out["variables"] = variables
    return out


def _errors(exc: ValidationError) -> list[str]:
    return [f"{'.'.join(str(p) for p in e['loc']) or 'row'}: {e['msg']}" for e in exc.errors(include_url=False)]


def _validated(line: int, data: Any) -> Row:
    try:
        return Row(line, ContactRequested.model_validate(data))
    except ValidationError as exc:
        return Row(line, errors=_errors(exc))


def _csv_rows(text: IO[str]) -> Iterator[Row]:
    reader = csv.reader(text)
    try:
        header = next(reader)
    except StopIteration:
        return
    header = [h.strip().lstrip("\ufeff") for h in header]
    unknown = [h for h in header if h not in KNOWN and not h.startswith("var.")]
    if unknown or "debtor_id" not in header:
        problem = f"unknown column(s): {', '.join(unknown)}" if unknown else "the debtor_id column is missing"
        yield Row(1, errors=[f"header: {problem}"])
        return
    start = reader.line_num + 1
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield Row(start, errors=[f"csv: {exc}"])
            return
        line, start = start, reader.line_num + 1
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(header):
            yield Row(line, errors=[f"row: {len(values)} cells for {len(header)} columns"])
            continue
        yield _validated(line, _nested(dict(zip(header, (v.strip() for v in values), strict=True))))


def _jsonl_rows(text: IO[str]) -> Iterator[Row]:
    for line, raw in enumerate(text, start=1):
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            yield Row(line, errors=[f"json: {exc.msg} at column {exc.colno}"])
            continue
        except (ValueError, RecursionError) as exc:  # an integer of 4300+ digits; arrays nested too deep
            reason = "nested too deep" if isinstance(exc, RecursionError) else str(exc).split(":")[0]
            yield Row(line, errors=[f"json: {reason}"])
            continue
        yield _validated(line, data)


def read_rows(binary: IO[bytes], fmt: Format) -> Iterator[Row]:
    """Every row of the file, in order, with its 1-based line number."""
    text = io.TextIOWrapper(binary, encoding="utf-8-sig", errors="strict", newline="")
    csv.field_size_limit(MAX_ROW_CHARS)
    try:
        yield from (_csv_rows(text) if fmt == "csv" else _jsonl_rows(text))
    except UnicodeDecodeError as exc:
        yield Row(0, errors=[f"file: not UTF-8 ({exc.reason} at byte {exc.start})"])
    finally:
        text.detach()
