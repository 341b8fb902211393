"""Validation on save and preview: every problem at once, with field, line and column where known.

Order: channel fields present → source size → syntax → sandbox safety (no ``_private`` attributes)
→ variables against the declared schema (names and attribute paths of ``debtor``/``account``/
``creditor``) → a sample render → SMS encoding/segments, WhatsApp and voice rules → compliance lint.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import TemplateSyntaxError, meta, nodes

from shared.events.contracts import Channel, TemplateContent
from shared.templates.engine import TemplateError, parse_template
from shared.templates.lint import lint
from shared.templates.models import DEFAULT_LIMITS, Finding, Limits, RenderedMessage
from shared.templates.render import build_context, render_content
from shared.templates.variables import (
    CHANNEL_FIELDS,
    CONTEXT_NAMES,
    MAP_FIELDS,
    STANDARD_VARIABLES,
    TEMPLATE_FIELDS,
    sample_context,
)

CONTENT_SID = re.compile(r"^HX[0-9a-fA-F]{32}$")
DEFAULT_SMS_SEGMENT_BUDGET = 3
VOICE_SCRIPT_MAX_CHARS = 1500
VOICEMAIL_MAX_CHARS = 400


@dataclass
class ValidationReport:
    findings: list[Finding] = field(default_factory=list)
    #: The sample render, when every field compiled and rendered.
    rendered: RenderedMessage | None = None

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def has_syntax_errors(self) -> bool:
        return any(f.code in ("syntax", "too_large") for f in self.findings)

    @property
    def publishable(self) -> bool:
        return not self.errors


def declared_variables(schema: Mapping[str, Any]) -> set[str]:
    properties = schema.get("properties") or {}
    return set(properties) if isinstance(properties, Mapping) else set()


def _column(source: str, line: int | None, token: str) -> int | None:
    if line is None:
        return None
    lines = source.splitlines()
    if not 1 <= line <= len(lines):
        return None
    match = re.search(r"(?<!\w)" + re.escape(token) + r"(?!\w)", lines[line - 1])
    return match.start() + 1 if match else None


def _sources(content: TemplateContent) -> Iterator[tuple[str, str]]:
    for name in ("body", "subject", "text", "html", "voice_script", "voicemail_script"):
        value = getattr(content, name)
        if value is not None:
            yield name, value
    for name in MAP_FIELDS:
        mapping: dict[str, str] | None = getattr(content, name)
        for k, v in (mapping or {}).items():
            yield f"{name}.{k}", v


def check_fields(channel: Channel, content: TemplateContent) -> list[Finding]:
    found = []
    allowed = {name for name, _ in CHANNEL_FIELDS[channel]}
    for name, required in CHANNEL_FIELDS[channel]:
        value = getattr(content, name)
        if required and (value is None or (isinstance(value, str) and not value.strip())):
            found.append(Finding(code="missing_field", severity="error", field=name,
                                 message=f"{channel} templates need {name!r}"))
    for name in TEMPLATE_FIELDS | MAP_FIELDS | {"content_sid"}:
        if name not in allowed and getattr(content, name) is not None:
            found.append(Finding(code="unused_field", severity="warning", field=name,
                                 message=f"{name!r} is not used by {channel} templates"))
    return found


def check_source(
    field_name: str, source: str, declared: set[str], limits: Limits
) -> list[Finding]:
    """Size, syntax, safety and variables of one field's source."""
    if len(source) > limits.max_source_chars:
        return [Finding(code="too_large", severity="error", field=field_name,
                        message=f"longer than {limits.max_source_chars} characters")]
    try:
        ast = parse_template(source, html=field_name == "html", limits=limits)
    except TemplateSyntaxError as exc:
        return [Finding(code="syntax", severity="error", field=field_name, line=exc.lineno,
                        message=exc.message or "syntax error")]
    found = []
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        assert isinstance(node, nodes.Getattr | nodes.Getitem)
        attr: str | None = None
        if isinstance(node, nodes.Getattr):
            attr = node.attr
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            attr = node.arg.value
        if attr is None:
            continue
        if attr.startswith("_"):
            found.append(Finding(code="unsafe_attribute", severity="error", field=field_name, line=node.lineno,
                                 column=_column(source, node.lineno, attr),
                                 message=f"access to {attr!r} is not allowed in templates"))
        elif isinstance(node.node, nodes.Name) and node.node.name in STANDARD_VARIABLES:
            obj = node.node.name
            if obj not in declared and attr not in STANDARD_VARIABLES[obj]:
                found.append(Finding(
                    code="unknown_attribute", severity="error", field=field_name, line=node.lineno,
                    column=_column(source, node.lineno, attr),
                    message=f"{obj} has no {attr!r}; available: {', '.join(sorted(STANDARD_VARIABLES[obj]))}",
                ))
    known = set(STANDARD_VARIABLES) | CONTEXT_NAMES | declared
    first_use: dict[str, int] = {}
    for name_node in ast.find_all(nodes.Name):
        first_use.setdefault(name_node.name, name_node.lineno)
    for name in sorted(meta.find_undeclared_variables(ast) - known):
        line = first_use.get(name)
        found.append(Finding(code="undeclared_variable", severity="error", field=field_name, line=line,
                             column=_column(source, line, name),
                             message=f"{name!r} is neither a standard variable nor declared in variables_schema"))
    return found


def check_schema(schema: Mapping[str, Any]) -> list[Finding]:
    properties = schema.get("properties", {})
    if not isinstance(properties, Mapping) or any(not isinstance(v, Mapping) for v in properties.values()):
        return [Finding(code="invalid_schema", severity="error", field="variables_schema",
                        message="variables_schema must be a JSON Schema object with 'properties'")]
    clashes = sorted(set(properties) & (set(STANDARD_VARIABLES) | CONTEXT_NAMES))
    if clashes:
        return [Finding(code="invalid_schema", severity="error", field="variables_schema",
                        message=f"reserved names cannot be redeclared: {', '.join(clashes)}")]
    return []


def check_rendered(channel: Channel, content: TemplateContent, rendered: RenderedMessage,
                   sms_segment_budget: int) -> list[Finding]:
    found = []
    if channel == "sms" and rendered.sms is not None:
        sms = rendered.sms
        if sms.encoding == "UCS-2":
            found.append(Finding(
                code="sms_ucs2", severity="info", field="body",
                message=f"UCS-2 ({sms.per_segment} characters per segment) because of: {' '.join(sms.non_gsm[:10])}",
            ))
        if sms.segments > sms_segment_budget:
            found.append(Finding(
                code="sms_segments", severity="warning", field="body",
                message=f"{sms.segments} segments ({sms.encoding}, {sms.units} units) exceeds the budget of "
                        f"{sms_segment_budget}",
            ))
    if channel == "whatsapp":
        if not content.content_sid:
            found.append(Finding(
                code="whatsapp_no_content_sid", severity="warning", field="content_sid",
                message="no approved Content SID: this template can only be sent inside the 24-hour window",
            ))
        elif not CONTENT_SID.match(content.content_sid):
            found.append(Finding(code="whatsapp_content_sid", severity="error", field="content_sid",
                                 message="a Content SID looks like HX followed by 32 hex digits"))
        for k in content.content_variables or {}:
            if not k.isdigit():
                found.append(Finding(code="whatsapp_content_variables", severity="error",
                                     field=f"content_variables.{k}",
                                     message="Content API variables are numbered: \"1\", \"2\"..."))
    if channel == "voice":
        if rendered.voice_script and len(rendered.voice_script) > VOICE_SCRIPT_MAX_CHARS:
            found.append(Finding(code="voice_length", severity="warning", field="voice_script",
                                 message=f"longer than {VOICE_SCRIPT_MAX_CHARS} characters when spoken"))
        if rendered.voicemail_script and len(rendered.voicemail_script) > VOICEMAIL_MAX_CHARS:
            found.append(Finding(code="voice_length", severity="warning", field="voicemail_script",
                                 message=f"voicemails should stay under {VOICEMAIL_MAX_CHARS} characters"))
    return found


def validate_template(
    key: str,
    channel: Channel,
    locale: str,
    content: TemplateContent,
    variables_schema: Mapping[str, Any] | None = None,
    *,
    sample: Mapping[str, Any] | None = None,
    limits: Limits = DEFAULT_LIMITS,
    sms_segment_budget: int = DEFAULT_SMS_SEGMENT_BUDGET,
) -> ValidationReport:
    """Validate and lint a template; renders it on ``sample`` (default: the locale's sample data)."""
    schema = variables_schema or {}
    report = ValidationReport()
    report.findings += check_fields(channel, content)
    report.findings += check_schema(schema)
    declared = declared_variables(schema)
    for field_name, source in _sources(content):
        report.findings += check_source(field_name, source, declared, limits)
    if not report.errors:
        data = sample if sample is not None else sample_context(locale, schema)
        try:
            report.rendered = render_content(
                content, build_context(data, locale=locale, channel=channel),
                key=key, channel=channel, locale=locale, limits=limits,
            )
        except TemplateError as exc:
            report.findings.append(Finding(code=exc.code, severity="error", line=exc.line,
                                           message=f"sample render failed: {exc.message}"))
    if report.rendered is not None:
        report.findings += check_rendered(channel, content, report.rendered, sms_segment_budget)
    report.findings += lint(key, channel, locale, content)
    return report
