"""Jurisdiction packs: YAML data, composed (a state pack adds to its country) and overridable."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from services.orchestrator.policy.deny_rules import AccountStatusRule
from services.orchestrator.policy.models import StrategyLimits
from services.orchestrator.policy.registry import compile_rule
from services.orchestrator.policy.rules import CapRule, DenyRule, MinGapRule, PromiseRule, TimeRule
from services.orchestrator.policy.zones import zone

PACKS_DIR = Path(__file__).with_name("packs")
DEFAULT_PACK = "default"
CORE_SOURCE = "Cadencia account state machine (docs/internals.md)"
#: Opted-out channel → channels a confirmation may go on, unless a pack says otherwise.
DEFAULT_CONFIRMATION: dict[str, tuple[str, ...]] = {
    "sms": ("sms",), "whatsapp": ("whatsapp",), "voice": (), "email": (),
}
STRATEGY_SOURCE = "operator strategy configuration"

_ACCOUNT_RULE = AccountStatusRule({"id": "core.account_status", "source": CORE_SOURCE,
                                   "title": "paid stops; disputed/ceased allow only their notice"})
_PROMISE_RULE = PromiseRule({"id": "core.promise_to_pay", "source": CORE_SOURCE,
                             "title": "a promise to pay pauses collection until its date"})


@dataclass(frozen=True)
class CompiledPack:
    """The composed rules for one jurisdiction (e.g. ``US-MA`` = US + US-MA)."""

    jurisdiction: str
    pack_ids: tuple[str, ...]
    deny_rules: tuple[DenyRule, ...]
    time_rules: tuple[TimeRule, ...]
    default_zones: tuple[str, ...]
    holiday_country: str | None
    holiday_subdivision: str | None
    lookback_days: int


@dataclass
class Policy:
    """Loaded packs by id; ``pack(jurisdiction)`` composes and caches them."""

    specs: dict[str, dict[str, Any]]
    horizon_days: int = 60
    #: Subtracted from the end of a lawful window to give ``Allow.send_before``; a window with less
    #: than this left counts as closed.
    send_margin: timedelta = timedelta(0)
    _cache: dict[str, CompiledPack] = field(default_factory=dict, repr=False)
    _strategy_cache: dict[StrategyLimits, tuple[TimeRule, ...]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        # the simulation API accepts contacts up to two years from the ends of the calendar
        if not 1 <= self.horizon_days <= 366:
            raise ValueError(f"horizon_days must be between 1 and 366, not {self.horizon_days}")

    def chain(self, jurisdiction: str) -> tuple[str, ...]:
        """Pack ids applied to a jurisdiction, country first; ``default`` when none matches."""
        j = jurisdiction.strip().upper()
        candidates = [j] if j in self.specs else []
        country = j.split("-", 1)[0]
        if not candidates and country in self.specs:
            candidates = [country]
        if not candidates:
            return (DEFAULT_PACK,)
        ids: list[str] = []
        pid: str | None = candidates[0]
        while pid is not None:
            if pid in ids:
                raise ValueError(f"pack {pid}: circular extends")
            ids.append(pid)
            parent = self.specs[pid].get("extends")
            if parent is not None and parent not in self.specs:
                raise ValueError(f"pack {pid}: extends unknown pack {parent!r}")
            pid = parent
        return tuple(reversed(ids))

    def rule_specs(self, jurisdiction: str) -> list[dict[str, Any]]:
        """The raw (overridden) rule specs applied to a jurisdiction, for tooling and tests."""
        return [copy.deepcopy(r) for pid in self.chain(jurisdiction) for r in self.specs[pid].get("rules", [])]

    def pack(self, jurisdiction: str) -> CompiledPack:
        cached = self._cache.get(jurisdiction)
        if cached is not None:
            return cached
        j = jurisdiction.strip().upper()
        ids = self.chain(j)
        rules = [compile_rule(spec) for spec in self.rule_specs(j)]
        seen: set[str] = set()
        for r in rules:
            if r.id in seen:
                raise ValueError(f"jurisdiction {j}: duplicate rule id {r.id}")
            seen.add(r.id)
        zones: tuple[str, ...] = ()
        country: str | None = None
        subdivision: str | None = None
        for pid in ids:
            spec = self.specs[pid]
            zones = tuple(spec.get("default_zones") or ()) or zones
            country = spec.get("country") or country
            subdivision = spec.get("subdivision") or subdivision
        if ids == (DEFAULT_PACK,) or country is None:
            country = country or j.split("-", 1)[0] or None
        if "-" in j and subdivision is None:
            subdivision = j.split("-", 1)[1]
        for name in zones:
            zone(name)
        deny = tuple(r for r in rules if isinstance(r, DenyRule))
        timed = tuple(r for r in rules if isinstance(r, TimeRule))
        lookback = max([getattr(r, "lookback_days", 0) for r in timed] + [9])
        compiled = CompiledPack(
            j, ids, (_ACCOUNT_RULE, *deny), (_PROMISE_RULE, *timed), zones, country, subdivision, lookback
        )
        self._cache[jurisdiction] = compiled
        return compiled

    def opt_out_confirmation_channels(self, jurisdiction: str, channel: str) -> tuple[str, ...]:
        """Where an opt-out of ``channel`` may be confirmed by a new message (the pack key
        ``opt_out_confirmation``: opted-out channel → channels; a later pack in the chain replaces an
        earlier one's entry). By default a text opt-out gets one text on the same channel, and a call
        or e-mail opt-out none: the IVR and the unsubscribe page confirm it where it happened, and a
        new contact on the medium the debtor just refused is never the confirmation."""
        allowed = dict(DEFAULT_CONFIRMATION)
        for pid in self.chain(jurisdiction):
            allowed.update(self.specs[pid].get("opt_out_confirmation") or {})
        return tuple(allowed.get(channel) or ())

    def strategy_rules(self, limits: StrategyLimits) -> tuple[TimeRule, ...]:
        cached = self._strategy_cache.get(limits)
        if cached is None:
            cached = tuple(_strategy_rules(limits))
            self._strategy_cache[limits] = cached
        return cached


def _strategy_rules(limits: StrategyLimits) -> Iterable[TimeRule]:
    if limits.min_gap:
        gap_us = limits.min_gap // timedelta(microseconds=1)
        yield MinGapRule({"id": "strategy.min_gap", "source": STRATEGY_SOURCE, "gap_us": gap_us,
                          "title": f"at least {limits.min_gap} between outbound contacts"})
    for channel, cap in limits.daily_caps:
        yield CapRule({"id": f"strategy.daily_cap.{channel}", "source": STRATEGY_SOURCE, "type": "cap",
                       "title": f"at most {cap} {channel} contact(s) per local day", "channels": [channel],
                       "per": "debtor", "max": cap, "window": "day"})
    for channel, cap in limits.weekly_caps:
        yield CapRule({"id": f"strategy.weekly_cap.{channel}", "source": STRATEGY_SOURCE, "type": "cap",
                       "title": f"at most {cap} {channel} contact(s) per 7 local days", "channels": [channel],
                       "per": "debtor", "max": cap, "window": {"rolling_days": 7}})


def _read_dir(directory: Path) -> dict[str, dict[str, Any]]:
    specs: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml")):
        with path.open(encoding="utf-8") as fh:
            spec = yaml.safe_load(fh)
        if not isinstance(spec, dict) or "id" not in spec:
            raise ValueError(f"pack file {path.name}: a mapping with an id is required")
        spec.setdefault("rules", [])
        specs[str(spec["id"]).upper() if spec["id"] != DEFAULT_PACK else DEFAULT_PACK] = spec
    return specs


def load_policy(
    extra_dirs: Iterable[str | Path] = (),
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    horizon_days: int = 60,
    send_margin: timedelta = timedelta(0),
) -> Policy:
    """Load the shipped packs, then each extra directory (a pack with the same id replaces it).

    ``overrides`` maps a rule id to parameters to replace in it (``{"CO.ley2300.one_channel_per_week":
    {"window": {"rolling_days": 7}}}``) or a pack id to pack-level keys (``{"MX": {"default_zones":
    [...]}}``). Everything is validated here, so a bad pack fails at start-up, not mid-traffic.
    """
    specs = _read_dir(PACKS_DIR)
    for directory in extra_dirs:
        specs.update(_read_dir(Path(directory)))
    for key, params in (overrides or {}).items():
        _apply_override(specs, key, dict(params))
    policy = Policy(specs, horizon_days=horizon_days, send_margin=send_margin)
    for pid in specs:
        policy.pack(pid)  # compile everything once: fail fast
    policy._cache.clear()
    return policy


def _apply_override(specs: dict[str, dict[str, Any]], key: str, params: dict[str, Any]) -> None:
    pack_key = key.upper() if key != DEFAULT_PACK else key
    if pack_key in specs and "id" not in params:
        if "rules" in params:
            raise ValueError(f"override {key}: override rules by their id")
        specs[pack_key].update(copy.deepcopy(params))
        return
    for spec in specs.values():
        for rule in spec.get("rules", []):
            if rule.get("id") == key:
                if "id" in params or "type" in params:
                    raise ValueError(f"override {key}: id and type cannot be overridden")
                rule.update(copy.deepcopy(params))
                return
    raise ValueError(f"override {key}: no such pack or rule")


