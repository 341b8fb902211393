"""The template store's Python API. Everything takes an ``AsyncSession`` inside the caller's transaction.

For the orchestrator runtime::

    async with ctx.db.transaction() as session:
        if not await key_exists(session, request.template):        # reject unknown keys at intake
            ...
        ref = await resolve(session, key, channel, debtor.locale, debtor.id)   # TemplateRef | None
        # ref pins (key, version) and records channel, locale and the A/B variant on the dispatch.
        row = await get_version(session, ref.key, ref.version)     # TemplateVersion | None
        row.as_published()                                         # the TemplatePublished payload

For editors (used by ``views.py``): ``create_version``, ``publish`` (rollback = publish an older
version), ``list_templates``, ``list_versions``, ``diff_versions``, ``seed_store``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.templates.models import PublishedTemplate, TemplateVersion
from shared.db import add_to_outbox
from shared.events.contracts import Channel, TemplateContent, TemplatePublishedEvent, TemplateRef
from shared.templates import Finding, ValidationReport, validate_template
from shared.templates.models import DEFAULT_LOCALE
from shared.templates.selection import choose_locale, choose_variant

SEED_DIR = Path(__file__).parent / "seed"
KEY_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")
VARIANT_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
LOCALE_PATTERN = re.compile(r"^[a-z]{2,3}(-[A-Z]{2})?$")


class PublishRefused(Exception):
    """The version has lint or validation errors; ``findings`` lists them all."""

    def __init__(self, findings: list[Finding]) -> None:
        super().__init__(f"{len(findings)} error(s)")
        self.findings = findings


# --- runtime API -------------------------------------------------------------------------------

# Built once, run with parameters: the runtime reads it in every batch (docs/benchmarks.md, tenth round).
_PUBLISHED_OF = select(PublishedTemplate).where(PublishedTemplate.key.in_(bindparam("keys", expanding=True)))


async def key_exists(session: AsyncSession, key: str) -> bool:
    """True if any version of ``key`` has been published (drafts alone do not make a key usable)."""
    found = await session.scalar(select(PublishedTemplate.key).where(PublishedTemplate.key == key).limit(1))
    return found is not None


async def resolve(
    session: AsyncSession,
    key: str,
    channel: str,
    locale: str | None,
    debtor_id: str,
    *,
    default_locale: str = DEFAULT_LOCALE,
    weights: Mapping[str, float] | None = None,
) -> TemplateRef | None:
    """The published version a debtor gets: locale fallback (exact → language → same language →
    ``default_locale``), then a variant chosen by a stable sha256 of (key, debtor id) over the published
    variants' weights (``weights`` overrides the stored ones). ``None`` if nothing is published.
    """
    return pick(await published(session, key, channel), key, locale, debtor_id, default_locale=default_locale,
                weights=weights)


async def published_of(session: AsyncSession, keys: Iterable[str]) -> list[PublishedTemplate]:
    """The live versions of every key of ``keys`` (every channel, locale and variant), in one statement."""
    return list((await session.execute(_PUBLISHED_OF, {"keys": sorted(set(keys))})).scalars().all())


async def published(session: AsyncSession, key: str, channel: str) -> list[PublishedTemplate]:
    """The live versions of ``key`` on ``channel`` (every locale and variant)."""
    return list((await session.execute(
        select(PublishedTemplate).where(PublishedTemplate.key == key, PublishedTemplate.channel == channel)
    )).scalars().all())


def pick(
    rows: Iterable[PublishedTemplate],
    key: str,
    locale: str | None,
    debtor_id: str,
    *,
    default_locale: str = DEFAULT_LOCALE,
    weights: Mapping[str, float] | None = None,
) -> TemplateRef | None:
    """:func:`resolve` over rows already read (a batch reads each key's rows once)."""
    rows = list(rows)
    chosen_locale = choose_locale(locale, {r.locale for r in rows}, default_locale)
    if chosen_locale is None:
        return None
    candidates = {r.variant: r for r in rows if r.locale == chosen_locale}
    variant = choose_variant(key, debtor_id, weights or {v: r.weight for v, r in candidates.items()})
    row = candidates.get(variant) or candidates[sorted(candidates)[0]]
    return TemplateRef(key=key, version=row.version, channel=row.channel,
                       locale=row.locale, variant=row.variant)


async def get_version(session: AsyncSession, key: str, version: int) -> TemplateVersion | None:
    """One immutable version (published or not); ``.as_published()`` gives the contract payload."""
    return await session.get(TemplateVersion, (key, version))


# --- editor API --------------------------------------------------------------------------------


@dataclass
class Draft:
    channel: Channel
    locale: str
    variant: str
    content: TemplateContent
    variables_schema: dict[str, Any]


def validate_draft(key: str, draft: Draft, sample: Mapping[str, Any] | None = None) -> ValidationReport:
    report = validate_template(key, draft.channel, draft.locale, draft.content, draft.variables_schema, sample=sample)
    problems = []
    if not KEY_PATTERN.match(key):
        problems.append(Finding(code="invalid_key", severity="error", field="key",
                                message="keys are lower case letters, digits, '_', '.', '-' (max 100)"))
    if not LOCALE_PATTERN.match(draft.locale):
        problems.append(Finding(code="invalid_locale", severity="error", field="locale",
                                message="locales look like es-MX, es-CO, en-US or es"))
    if not VARIANT_PATTERN.match(draft.variant):
        problems.append(Finding(code="invalid_variant", severity="error", field="variant",
                                message="variants are 1-40 letters, digits, '_' or '-'"))
    report.findings[:0] = problems
    return report


def blocks_save(report: ValidationReport) -> bool:
    """Syntax, size and identifier errors refuse a draft; lint errors only block publishing."""
    return any(f.code in ("syntax", "too_large", "invalid_key", "invalid_locale", "invalid_variant",
                          "invalid_schema") for f in report.findings)


async def next_version(session: AsyncSession, key: str) -> int:
    current = await session.scalar(select(func.max(TemplateVersion.version)).where(TemplateVersion.key == key))
    return int(current or 0) + 1


async def create_version(session: AsyncSession, key: str, draft: Draft, now: datetime) -> TemplateVersion:
    """Store ``draft`` as the key's next version (the caller validated it)."""
    row = TemplateVersion(
        key=key, version=await next_version(session, key), channel=draft.channel, locale=draft.locale,
        variant=draft.variant, content=draft.content.model_dump(mode="json", exclude_none=True),
        variables_schema=draft.variables_schema, created_at=now, published_at=None,
    )
    session.add(row)
    await session.flush()
    return row


def draft_of(row: TemplateVersion) -> Draft:
    return Draft(channel=row.channel, locale=row.locale, variant=row.variant,  # type: ignore[arg-type]
                 content=row.template_content, variables_schema=row.variables_schema)


async def publish(
    session: AsyncSession, topic: str, row: TemplateVersion, now: datetime, weight: float | None = None
) -> PublishedTemplate:
    """Make ``row`` the live version of its (key, channel, locale, variant) and stage the event.

    Refuses (``PublishRefused``) when validation or lint finds errors. Publishing an older version is
    a rollback. The event goes to the outbox in the caller's transaction, keyed
    ``key:channel:locale:variant`` so compaction keeps the live version of each combination.
    """
    report = validate_draft(row.key, draft_of(row))
    if report.errors:
        raise PublishRefused(report.errors)
    pointer = await session.get(PublishedTemplate, (row.key, row.channel, row.locale, row.variant))
    if pointer is None:
        pointer = PublishedTemplate(key=row.key, channel=row.channel, locale=row.locale, variant=row.variant,
                                    weight=1.0 if weight is None else weight)
        session.add(pointer)
    elif weight is not None:
        pointer.weight = weight
    pointer.version, pointer.published_at = row.version, now
    row.published_at = now
    event = TemplatePublishedEvent(
        source="cadencia.orchestrator",
        subject=f"{row.key}:{row.channel}:{row.locale}:{row.variant}",
        data=row.as_published(now),
    )
    add_to_outbox(session, topic, event)
    await session.flush()
    return pointer


async def list_templates(session: AsyncSession) -> list[dict[str, Any]]:
    """One row per (key, channel, locale, variant): published version, latest version, weight."""
    latest = (await session.execute(
        select(TemplateVersion.key, TemplateVersion.channel, TemplateVersion.locale, TemplateVersion.variant,
               func.max(TemplateVersion.version))
        .group_by(TemplateVersion.key, TemplateVersion.channel, TemplateVersion.locale, TemplateVersion.variant)
    )).all()
    pointers = {(p.key, p.channel, p.locale, p.variant): p
                for p in (await session.execute(select(PublishedTemplate))).scalars()}
    items = []
    for key, channel, locale, variant, latest_version in sorted(latest):
        pointer = pointers.get((key, channel, locale, variant))
        items.append({
            "key": key, "channel": channel, "locale": locale, "variant": variant,
            "published_version": pointer.version if pointer else None,
            "latest_version": latest_version,
            "weight": pointer.weight if pointer else None,
            "published_at": pointer.published_at if pointer else None,
        })
    return items


async def list_versions(session: AsyncSession, key: str) -> list[TemplateVersion]:
    return list((await session.execute(
        select(TemplateVersion).where(TemplateVersion.key == key).order_by(TemplateVersion.version)
    )).scalars())


async def live_versions(session: AsyncSession, key: str) -> set[int]:
    return set((await session.execute(
        select(PublishedTemplate.version).where(PublishedTemplate.key == key)
    )).scalars())


def _field_texts(row: TemplateVersion) -> dict[str, str]:
    texts: dict[str, str] = {}
    for name, value in row.content.items():
        if isinstance(value, Mapping):
            for k, v in value.items():
                texts[f"{name}.{k}"] = str(v)
        elif value is not None:
            texts[name] = str(value)
    texts["variables_schema"] = yaml.safe_dump(row.variables_schema, sort_keys=True, allow_unicode=True)
    for name in ("channel", "locale", "variant"):
        texts[name] = str(getattr(row, name))
    return texts


def diff_versions(a: TemplateVersion, b: TemplateVersion) -> dict[str, str]:
    """Unified diff per changed field (content fields, map entries, schema, channel/locale/variant)."""
    left, right = _field_texts(a), _field_texts(b)
    diffs = {}
    for name in sorted(set(left) | set(right)):
        before, after = left.get(name, ""), right.get(name, "")
        if before != after:
            diffs[name] = "".join(difflib.unified_diff(
                before.splitlines(keepends=True), after.splitlines(keepends=True),
                fromfile=f"{a.key}@{a.version}/{name}", tofile=f"{b.key}@{b.version}/{name}",
            ))
    return diffs


# --- seeding -----------------------------------------------------------------------------------


def load_seed(seed_dir: Path = SEED_DIR) -> Iterable[tuple[str, Draft]]:
    """Every shipped template: one YAML file per key with ``variables_schema`` and ``templates``."""
    for path in sorted(seed_dir.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        schema = doc.get("variables_schema") or {}
        for item in doc["templates"]:
            yield doc["key"], Draft(
                channel=item["channel"], locale=item["locale"], variant=str(item.get("variant", "A")),
                content=TemplateContent.model_validate(item["content"]),
                variables_schema=item.get("variables_schema", schema),
            )


async def store_is_empty(session: AsyncSession) -> bool:
    return await session.scalar(select(TemplateVersion.key).limit(1)) is None


#: Who the history names for the shipped versions.
SEED_AUTHOR = "cadencia (shipped)"


async def seed_store(session: AsyncSession, topic: str, now: datetime, seed_dir: Path = SEED_DIR) -> int:
    """Create and publish every shipped template; returns how many. Call only on an empty store."""
    count = 0
    for key, draft in load_seed(seed_dir):
        row = await create_version(session, key, draft, now)
        row.created_by = SEED_AUTHOR
        await publish(session, topic, row, now)
        count += 1
    return count
