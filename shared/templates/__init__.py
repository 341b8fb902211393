"""Message templates shared by the orchestrator and the channel services.

* :func:`render_dispatch` renders a published version (``TemplatePublished``) for one dispatch.
* :func:`validate_template` returns every validation and compliance finding of a draft at once.
* :class:`TemplateCache` (``shared.templates.cache``) keeps published versions from the compacted
  templates topic, falling back to the orchestrator's HTTP API.
* :func:`choose_locale` / :func:`choose_variant` implement locale fallback and stable A/B splits.
"""

from shared.templates.engine import TemplateError, TemplateLimitError, render_source, steering_paths
from shared.templates.filters import first_name, format_day, format_money, minor_units, payment_link, self_service_link
from shared.templates.lint import lint
from shared.templates.models import DEFAULT_LIMITS, Finding, Limits, RenderedMessage, SmsInfo
from shared.templates.render import build_context, render_content, render_dispatch
from shared.templates.selection import choose_locale, choose_variant, locale_chain, variant_bucket
from shared.templates.sms import SmsSegments, sms_segments
from shared.templates.validation import ValidationReport, validate_template
from shared.templates.variables import STANDARD_VARIABLES, sample_context

__all__ = [
    "DEFAULT_LIMITS",
    "Finding",
    "Limits",
    "RenderedMessage",
    "STANDARD_VARIABLES",
    "SmsInfo",
    "SmsSegments",
    "TemplateError",
    "TemplateLimitError",
    "ValidationReport",
    "build_context",
    "choose_locale",
    "choose_variant",
    "first_name",
    "format_day",
    "format_money",
    "lint",
    "locale_chain",
    "minor_units",
    "payment_link",
    "render_content",
    "render_dispatch",
    "render_source",
    "sample_context",
    "self_service_link",
    "sms_segments",
    "steering_paths",
    "validate_template",
    "variant_bucket",
]
