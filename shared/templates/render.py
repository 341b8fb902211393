"""Rendering a whole template (every field of its channel) for one recipient."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from shared.events.contracts import Channel, TemplateContent, TemplatePublished
from shared.templates.engine import render_source
from shared.templates.filters import first_name
from shared.templates.models import DEFAULT_LIMITS, Limits, RenderedMessage, SmsInfo
from shared.templates.sms import sms_segments
from shared.templates.variables import STANDARD_VARIABLES


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="python")
    return value


def build_context(
    data: Mapping[str, Any], *, locale: str, channel: Channel
) -> dict[str, Any]:
    """The render context: ``debtor``, ``account``, ``creditor`` (mappings or pydantic models, e.g. the
    contract's ``Debtor``/``Account``), every other entry of ``data`` as a top-level variable and under
    ``variables``, plus ``locale`` and ``channel``. ``debtor.first_name`` is derived from ``name`` if absent.
    """
    variables = {k: _plain(v) for k, v in data.items() if k not in STANDARD_VARIABLES and k != "variables"}
    nested = data.get("variables")
    if isinstance(nested, Mapping):
        variables = {**{k: _plain(v) for k, v in nested.items()}, **variables}
    context: dict[str, Any] = dict(variables)
    for name in STANDARD_VARIABLES:
        value = _plain(data.get(name))
        context[name] = dict(value) if isinstance(value, Mapping) else {}
    debtor = context["debtor"]
    if "first_name" not in debtor and debtor.get("name"):
        debtor["first_name"] = first_name(debtor["name"])
    context.update(variables=variables, locale=locale, channel=channel)
    return context


def render_content(
    content: TemplateContent,
    context: Mapping[str, Any],
    *,
    key: str,
    channel: Channel,
    locale: str,
    variant: str = "A",
    version: int | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> RenderedMessage:
    """Render every field ``content`` has; ``context`` is already built (see :func:`build_context`).

    Raises ``TemplateError`` (``TemplateLimitError`` when a limit stopped it) on the first failing field.
    """
    out: dict[str, Any] = {}
    for field in ("body", "subject", "text", "html", "voice_script", "voicemail_script"):
        source = getattr(content, field)
        if source is not None:
            out[field] = render_source(source, context, html=field == "html", limits=limits).strip()
    for field in ("ivr_prompts", "content_variables"):
        mapping: dict[str, str] | None = getattr(content, field)
        if mapping is not None:
            out[field] = {k: render_source(v, context, limits=limits).strip() for k, v in mapping.items()}
    sms = None
    if channel == "sms" and out.get("body") is not None:
        seg = sms_segments(out["body"])
        sms = SmsInfo(encoding=seg.encoding, units=seg.units, segments=seg.segments,
                      per_segment=seg.per_segment, non_gsm=list(seg.non_gsm))
    return RenderedMessage(
        key=key, version=version, channel=channel, locale=locale, variant=variant,
        content_sid=content.content_sid, sms=sms, **out,
    )


def render_dispatch(
    template: TemplatePublished, context: Mapping[str, Any], *, limits: Limits = DEFAULT_LIMITS
) -> RenderedMessage:
    """Render a published template version for one dispatch.

    ``context`` is the dispatch's data: ``debtor``, ``account``, ``creditor`` and the request variables
    (typically ``ContactDispatched.variables``, into which the orchestrator puts those three objects).
    """
    return render_content(
        template.content,
        build_context(context, locale=template.locale, channel=template.channel),
        key=template.key,
        channel=template.channel,
        locale=template.locale,
        variant=template.variant,
        version=template.version,
        limits=limits,
    )
