"""Which published template a debtor gets: locale fallback, then a stable A/B variant split."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from functools import lru_cache

from shared.templates.models import DEFAULT_LOCALE


@lru_cache(maxsize=1024)  # a handful of locales, asked for on every decision
def _norm(locale: str) -> str:
    parts = locale.replace("_", "-").split("-")
    return "-".join([parts[0].lower(), *(p.upper() for p in parts[1:])])


def locale_chain(locale: str | None, default: str = DEFAULT_LOCALE) -> list[str]:
    """``es-CO`` → ``["es-CO", "es", "es-MX"]``: exact, bare language, then the configured default."""
    chain: list[str] = []
    if locale:
        exact = _norm(locale)
        chain += [exact, exact.split("-")[0]]
    chain.append(_norm(default))
    return list(dict.fromkeys(chain))


def choose_locale(wanted: str | None, available: Iterable[str], default: str = DEFAULT_LOCALE) -> str | None:
    """The locale to use among ``available``: exact, then bare language, then ``default``; a wanted
    language that differs from the default's first tries its other locales (alphabetically, so ``en-GB``
    finds ``en-US`` rather than Spanish). ``None`` if none exists.
    """
    have = {_norm(a): a for a in available}
    chain = locale_chain(wanted, default)
    for candidate in chain[:2] if wanted else []:
        if candidate in have:
            return have[candidate]
    if wanted and _norm(wanted).split("-")[0] != _norm(default).split("-")[0]:
        language = _norm(wanted).split("-")[0]
        same = sorted(a for a in have if a.split("-")[0] == language)
        if same:
            return have[same[0]]
    return have.get(_norm(default))


def variant_bucket(key: str, debtor_id: str) -> float:
    """A stable number in [0, 1) for (template key, debtor): sha256, identical across processes and runs."""
    digest = hashlib.sha256(f"{key}\x00{debtor_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def choose_variant(key: str, debtor_id: str, weights: Mapping[str, float]) -> str:
    """Pick a variant by weight (variants in name order); the same debtor always gets the same one.

    Zero or negative weights take no traffic; if every weight is zero, the first variant is used.
    """
    if not weights:
        raise ValueError("no variants to choose from")
    names = sorted(weights)
    total = sum(max(weights[n], 0.0) for n in names)
    if total <= 0:
        return names[0]
    point = variant_bucket(key, debtor_id) * total
    upto = 0.0
    for name in names:
        upto += max(weights[name], 0.0)
        if point < upto:
            return name
    return names[-1]
