"""Browser tests: Debian's chromium through Playwright, and screenshots kept as test artifacts.

Screenshots go to ``test-artifacts/screenshots/`` at the repository root (git-ignored), or under
``CADENCIA_TEST_ARTIFACTS`` when set, so CI can upload them.
"""

from __future__ import annotations

import os
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def screenshot_path(name: str) -> Path:
    root = Path(os.environ.get("CADENCIA_TEST_ARTIFACTS") or Path(__file__).resolve().parents[1] / "test-artifacts")
    folder = root / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}.png"
