"""The committed lock is the only source of installed packages, and it agrees with pyproject.toml."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
DEV_LOCK = ROOT / "requirements" / "dev.txt"
RUNTIME_LOCK = ROOT / "requirements" / "runtime.txt"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def _entries(lock: Path) -> dict[str, tuple[Version, str | None, list[str]]]:
    """``name → (version, marker, hashes)`` for every pinned package of a uv/pip-tools lock."""
    entries: dict[str, tuple[Version, str | None, list[str]]] = {}
    current: str | None = None
    for line in lock.read_text().splitlines():
        match = PIN.match(line)
        if match:
            current = canonicalize_name(match[1])
            entries[current] = (Version(match[2]), match[3], [])
        elif line.strip().startswith("--hash=sha256:") and current:
            entries[current][2].append(line.strip().removeprefix("--hash=sha256:").rstrip(" \\"))
        elif line.strip() and not line.lstrip().startswith("#"):
            current = None
    return entries


def _requirements(extra: str | None) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] if extra is None else project["optional-dependencies"][extra]
    build = [line for line in (ROOT / "requirements" / "build.in").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    return [Requirement(spec) for spec in [*specs, *build]]


@pytest.mark.parametrize(("lock", "extras"), [(RUNTIME_LOCK, [None]), (DEV_LOCK, [None, "dev"])])
def test_every_declared_dependency_is_pinned_in_the_lock_within_its_range(lock: Path, extras: list[str | None]) -> None:
    entries = _entries(lock)
    for extra in extras:
        for requirement in _requirements(extra):
            name = canonicalize_name(requirement.name)
            assert name in entries, f"{requirement} is in pyproject.toml but not in {lock.name}: run make lock"
            version = entries[name][0]
            assert requirement.specifier.contains(version, prereleases=True), (
                f"{lock.name} pins {name}=={version}, outside pyproject.toml's {requirement}: run make lock"
            )


def test_every_pin_has_hashes_and_the_runtime_lock_agrees_with_the_dev_lock() -> None:
    dev, runtime = _entries(DEV_LOCK), _entries(RUNTIME_LOCK)
    assert dev and runtime
    for name, (_, _, hashes) in {**dev, **runtime}.items():
        assert hashes, f"{name} has no --hash in the lock"
    for name, (version, _, _) in runtime.items():
        assert name in dev and dev[name][0] == version, f"runtime pins {name}=={version}, dev {dev.get(name)}"


def test_the_environment_under_test_is_exactly_the_lock() -> None:
    environment = default_environment()
    for name, (version, marker, _) in _entries(DEV_LOCK).items():
        if marker and not Requirement(f"{name}; {marker}").marker.evaluate(environment):  # type: ignore[union-attr]
            continue
        installed = Version(metadata.version(name))
        assert installed == version, f"{name} {installed} is installed but the lock pins {version}: run make install"


def test_make_ci_and_the_image_install_from_the_lock_with_hashes() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes --no-deps -r $(LOCK_DEV)" in makefile
    assert "LOCK_DEV     := requirements/dev.txt" in makefile
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "--require-hashes --no-deps -r requirements/runtime.txt" in dockerfile
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_nothing_is_installed_that_the_lock_does_not_name() -> None:
    # A package left over from an older lock hides a missing dependency until a fresh clone fails.
    locked = set(_entries(DEV_LOCK)) | {"pip", "cadencia"}
    installed = {canonicalize_name(d.metadata["Name"]) for d in metadata.distributions()}
    assert installed - locked == set(), "installed but not locked: declare them in pyproject.toml and run make lock"
