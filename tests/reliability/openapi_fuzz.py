"""Fuzz one running service through its own OpenAPI document with schemathesis.

Every operation gets generated requests, valid (positive) and invalid (negative) against its schema,
sent over real HTTP to the served app with an admin key. Each answer is checked: never a 5xx, a
declared status, the declared content type, a body that matches the declared schema, and (for an
operation that declares the bearer scheme) no success without a key. Separately, each such operation
is called with no key and with a wrong key: both must be a 401 problem.

Nothing generated may make a service call out of this machine: any string that looks like a URL, and
any field named like one, is pointed at a closed loopback port before the request leaves.

The calls are synchronous (``requests``), so the caller runs :func:`fuzz_service` in a worker thread
while its event loop serves the app.
"""

from __future__ import annotations

import os
import re
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    ignored_auth,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

#: Generated requests per operation and mode in ``make test``; ``make soak`` raises it.
EXAMPLES = int(os.environ.get("CADENCIA_FUZZ_EXAMPLES", "5"))
#: Where URL-shaped values are sent instead: a closed port on loopback (connection refused).
NOWHERE = "http://127.0.0.1:9/fuzz"
URL_KEY = re.compile(r"url|callback|webhook|href|link", re.IGNORECASE)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          ignored_auth]


@dataclass
class Finding:
    operation: str
    mode: str
    problem: str
    request: str
    status: int | None

    def __str__(self) -> str:
        return f"{self.operation} [{self.mode}] → {self.status}: {self.problem}\n    {self.request}"


@dataclass
class FuzzReport:
    service: str
    cases: int = 0
    auth_probes: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    findings: list[Finding] = field(default_factory=list)
    #: Seconds spent per operation (generation and calls), to keep the run's budget honest.
    seconds: Counter[str] = field(default_factory=Counter)

    def distinct(self) -> list[Finding]:
        """One finding per operation and problem (hypothesis finds the same one many times)."""
        seen: dict[tuple[str, str], Finding] = {}
        for finding in self.findings:
            seen.setdefault((finding.operation, finding.problem.splitlines()[0][:200]), finding)
        return list(seen.values())

    def summary(self) -> str:
        lines = [f"{self.service}: {self.cases} cases, {self.auth_probes} auth probes, statuses {dict(self.statuses)}"]
        lines += [str(f) for f in self.distinct()]
        return "\n".join(lines)


def defuse(value: Any, key: str = "") -> Any:
    """``value`` with every URL-shaped string, and every string under a URL-named key, sent nowhere."""
    if isinstance(value, dict):
        return {k: defuse(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [defuse(v, key) for v in value]
    if isinstance(value, str) and ("://" in value or value.startswith("//") or URL_KEY.search(key)):
        return NOWHERE
    return value


def _problem(exc: BaseException) -> str:
    """What a check found, one line per failure (a ``FailureGroup`` holds one per failed check)."""
    parts = exc.exceptions if isinstance(exc, BaseExceptionGroup) else (exc,)
    lines = []
    for part in parts:
        text = " ".join(str(part).split())
        lines.append(f"{type(part).__name__}: {text}" if text else traceback.format_exception_only(part)[-1].strip())
    return "\n".join(lines)


def _describe(case: Any) -> str:
    body = case.body if not isinstance(case.body, bytes | bytearray) else case.body[:200]
    text = f"{case.method} {case.formatted_path} query={case.query!r} body={body!r}"
    return text[:600]


def _secured(operation: Any, spec: dict[str, Any]) -> bool:
    security = operation.definition.raw.get("security", spec.get("security"))
    return bool(security) and all(requirement for requirement in security)


def portable(schema: Any) -> Any:
    """``schema`` with OpenAPI 3.1 tuple arrays (``prefixItems``) as a plain array of their item types.

    Our documents are valid 3.1, but schemathesis 4 rewrites ``prefixItems`` into draft-4 tuple
    ``items`` and then refuses its own rewrite when it validates a response (schemathesis issues
    3842 and 4099 fixed it for generation only). A slightly looser schema still checks the answer.
    """
    if isinstance(schema, list):
        return [portable(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: portable(value) for key, value in schema.items() if key != "prefixItems"}
    if "prefixItems" in schema:
        out["items"] = {"anyOf": portable(schema["prefixItems"])}
    return out


def fuzz_service(service: str, spec: dict[str, Any], base_url: str, key: str, examples: int = EXAMPLES,
                 skip: frozenset[str] = frozenset()) -> FuzzReport:
    """Fuzz every operation of ``spec`` (an OpenAPI document) at ``base_url``; ``skip``: ``"METHOD /path"``."""
    report = FuzzReport(service)
    schema = schemathesis.openapi.from_dict(portable(spec))
    session = requests.Session()
    session.trust_env = False  # loopback only, never a proxy from the environment
    headers = {"Authorization": f"Bearer {key}"}
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        if label in skip:
            continue
        if _secured(operation, spec):
            _probe_auth(report, operation, label, base_url, session)
        started = time.monotonic()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz_operation(report, operation, label, mode, base_url, session, headers, examples)
        report.seconds[label] += time.monotonic() - started
    return report


def _fuzz_operation(report: FuzzReport, operation: Any, label: str, mode: GenerationMode, base_url: str,
                    session: requests.Session, headers: dict[str, str], examples: int) -> None:
    @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        case.body = defuse(case.body) if not isinstance(case.body, bytes | bytearray) else case.body
        case.query = defuse(case.query) if case.query else case.query
        report.cases += 1
        try:
            response = case.call(base_url=base_url, session=session, headers=headers, timeout=30)
        except requests.RequestException as exc:  # the server hung up or never answered: a finding too
            report.findings.append(Finding(label, mode.value, f"no answer: {exc}", _describe(case), None))
            return
        report.statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - every failure is recorded, the run goes on
            problem = _problem(exc)
            report.findings.append(Finding(label, mode.value, problem[:1500], _describe(case), response.status_code))

    try:
        run()
    except Unsatisfiable:
        pass  # nothing to make invalid (an operation without parameters has no negative cases)
    except Exception as exc:  # noqa: BLE001 - a strategy that cannot generate is a finding, not a crash
        report.findings.append(Finding(label, mode.value, f"could not generate: {type(exc).__name__}: {exc}"[:500],
                                       "", None))


def _probe_auth(report: FuzzReport, operation: Any, label: str, base_url: str, session: requests.Session) -> None:
    """No key, and a wrong key: a 401 problem either way, whatever else the request holds."""
    path = re.sub(r"\{[^}]+\}", "1", operation.path)
    for headers in ({}, {"Authorization": "Bearer not-a-key"}):
        report.auth_probes += 1
        response = session.request(operation.method.upper(), base_url + path, headers=headers, timeout=30)
        report.statuses[response.status_code] += 1
        problem = response.headers.get("content-type", "").startswith("application/problem+json")
        if response.status_code != 401 or not problem:
            report.findings.append(Finding(
                label, "auth", f"{'a wrong key' if headers else 'no key'} answered {response.status_code} "
                f"({response.headers.get('content-type')}), not a 401 problem", f"{label} {headers}",
                response.status_code))
