"""The runtime's view of the template store: does a key exist, which version does a dispatch pin.

Kept to a few calls so the runtime does not depend on how templates are stored. What they read is
kept for the rest of the transaction (``session.info``): a batch asks for the same few keys hundreds
of times, and what is published cannot change under a transaction that already read it.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.database import Database, memo_of
from shared.events.contracts import TemplateRef


def _service() -> Any:
    try:
        from services.orchestrator.templates import template_store
    except ImportError:  # the template store is not installed: accept any key, pin version 1
        return None
    return template_store


_ROWS = "cadencia.templates.rows"


async def _published(session: AsyncSession, service: Any, keys: Iterable[str]) -> dict[str, list[Any]]:
    """The published rows of each key (every channel), read once per transaction: the keys not read yet
    go in one statement together."""
    rows: dict[str, list[Any]] = session.info.setdefault(_ROWS, {})
    missing = set(keys).difference(rows)
    if missing:
        for key in missing:
            rows[key] = []
        for row in await service.published_of(session, missing):
            rows[row.key].append(row)
    return rows


async def preload(session: AsyncSession, keys: Iterable[str]) -> None:
    """Read the published rows of ``keys`` in one statement (a batch names its requests' keys up front,
    so its checks and picks ask no more queries)."""
    service = _service()
    if service is not None:
        await _published(session, service, keys)


async def key_exists(session: AsyncSession, key: str) -> bool:
    """True if any version of ``key`` is published (drafts alone do not make a key usable)."""
    service = _service()
    if service is None:
        return True
    return bool((await _published(session, service, (key,)))[key])


async def resolve(
    session: AsyncSession, key: str, channel: str, locale: str, debtor_id: str, variant: str | None
) -> TemplateRef | None:
    """The published version a dispatch on ``channel`` pins, or None when there is none.

    ``variant`` (from the strategy) forces that A/B variant when it is published; otherwise the
    store splits debtors by its own weights.
    """
    service = _service()
    if service is None:
        return TemplateRef(key=key, version=1, channel=channel, locale=locale, variant=variant)
    weights = {variant: 1.0} if variant else None
    rows = [row for row in (await _published(session, service, (key,)))[key] if row.channel == channel]
    ref: TemplateRef | None = service.pick(rows, key, locale, debtor_id, weights=weights)
    return ref


#: Published versions are immutable, so their content is kept by (key, version) in the database's memo
#: (``Database.memo``): the same (key, version) in another database opened by the process is another version.
_VERSIONS = "templates.versions"
_STEERS = "templates.steers"
_MEMO_LIMIT = 10_000


def _kept(memo: dict[Any, Any] | None, name: str) -> dict[tuple[str, int], Any]:
    """What the database's memo keeps under ``name``, by (key, version)."""
    if memo is None:  # a session not made by a Database: nothing to keep it in, read every time
        return {}
    kept: dict[tuple[str, int], Any] = memo.setdefault(name, {})
    return kept


async def render_problem(session: AsyncSession, ref: TemplateRef, variables: dict[str, Any]) -> str | None:
    """Render the pinned version with the dispatch's data, as the channel service will; the error, if any.

    A request that cannot render (say the template shows ``account.due_date`` and the backend sent
    none) is rejected at the orchestrator with the reason, instead of failing later in a channel
    service where the backend only sees a failed delivery.
    """
    service = _service()
    if service is None:
        return None
    from shared.templates import TemplateError, render_dispatch

    published = await pinned(session, ref.key, ref.version)
    if published is None:
        return f"template {ref.key} v{ref.version} not found"
    checked: dict[Any, str | None] = session.info.setdefault(_RENDERED, {})
    kept = _kept(memo_of(session), _STEERS)
    steers = kept.get((ref.key, ref.version))
    if steers is None:
        steers = kept[(ref.key, ref.version)] = steering(published)
    shape = (ref.key, ref.version, render_shape(variables, steers))
    if shape in checked:
        return checked[shape]
    try:
        render_dispatch(published, variables)
        problem = None
    except TemplateError as exc:
        problem = f"template {ref.key} v{ref.version} cannot render: {exc.message}"
    checked[shape] = problem
    return problem


_RENDERED = "cadencia.templates.rendered"


def cached(db: Database, key: str, version: int) -> Any | None:
    """The version's contract payload when :func:`pinned` read it before from ``db`` (no query)."""
    return _kept(db.memo, _VERSIONS).get((key, version))


async def pinned(session: AsyncSession, key: str, version: int) -> Any | None:
    """A version as the channels render it (``TemplatePublished``), None when there is none; read once
    per process and database (a version never changes)."""
    versions = _kept(memo_of(session), _VERSIONS)
    published = versions.get((key, version))
    if published is None:
        service = _service()
        row = await service.get_version(session, key, version) if service is not None else None
        if row is None:
            return None
        published = row.as_published()
        if len(versions) > _MEMO_LIMIT:
            versions.clear()
        versions[(key, version)] = published
    return published


def steering(published: Any) -> frozenset[tuple[str, ...]]:
    """The variable paths that steer any field of a version (:func:`shared.templates.steering_paths`)."""
    from shared.templates import steering_paths

    content, found = published.content, set[tuple[str, ...]]()
    for field in ("body", "subject", "text", "html", "voice_script", "voicemail_script"):
        source = getattr(content, field)
        if source is not None:
            found |= steering_paths(source, html=field == "html")
    for field in ("ivr_prompts", "content_variables"):
        for source in (getattr(content, field) or {}).values():
            found |= steering_paths(source)
    return frozenset(found)


def render_shape(variables: dict[str, Any], steers: Iterable[tuple[str, ...]] = ()) -> Any:
    """What decides whether a version renders, for the rest of a transaction: which debtor and account
    fields are there, empty or of which type; their currency and locale (money and date filters); what
    a filter reads of an account's values: the balance's decimals (``money`` refuses an amount finer
    than the currency's minor units) and the payment URL's scheme (``payment_link`` takes only http(s));
    the values at ``steers``, the paths the version's conditions, loops and arguments read
    (:func:`steering`: ``{% if account.days_past_due > 60 %}`` takes its branch by the value); every
    other variable (the creditor's, the request's own) exactly. Debtors alike in these render alike, so
    a batch renders each version once per shape instead of once per dispatch."""
    debtor, account = variables.get("debtor"), variables.get("account")
    exact = {k: v for k, v in variables.items() if k not in ("debtor", "account")}
    money = link = None
    if isinstance(account, dict):
        money, link = _decimals(account.get("balance")), _scheme(account.get("payment_url"))
    return (_outline(debtor), _outline(account),
            account.get("currency") if isinstance(account, dict) else None,
            debtor.get("locale") if isinstance(debtor, dict) else None,
            money, link, tuple(_at(variables, path) for path in sorted(steers)),
            orjson.dumps(exact, default=str, option=orjson.OPT_SORT_KEYS))


def _at(variables: dict[str, Any], path: tuple[str, ...]) -> Any:
    """The value at ``path``, comparable and hashable (JSON text), or a marker that it is not there."""
    value: Any = variables
    for part in path:
        if not isinstance(value, dict) or part not in value:
            return "<missing>"
        value = value[part]
    return orjson.dumps(value, default=str, option=orjson.OPT_SORT_KEYS)


def _decimals(value: Any) -> int | str | None:
    """Digits after the point that are not trailing zeros (``"1234.50"`` → 1), or what the value is."""
    if value is None:
        return None
    try:
        exponent = Decimal(str(value)).normalize().as_tuple().exponent
    except InvalidOperation:
        return "not a number"
    return max(0, -exponent) if isinstance(exponent, int) else str(exponent)  # 'n', 'N', 'F': not finite


def _scheme(value: Any) -> str | None:
    return urlsplit(value).scheme if isinstance(value, str) else None


def _outline(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((str(k), _outline(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return ("list", tuple(_outline(v) for v in value))
    if isinstance(value, str):
        return "str" if value else "empty"
    return type(value).__name__
