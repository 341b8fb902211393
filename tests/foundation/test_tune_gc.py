"""A served process's collector: what exists at startup is frozen, the young generation is collected
less often, and cyclic garbage made afterwards is still collected without anyone asking."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_PROBE = """
import gc, weakref
from tooling.cli import GC_YOUNG_THRESHOLD, tune_gc
tune_gc()
print(gc.get_threshold()[0] == GC_YOUNG_THRESHOLD, gc.get_freeze_count() > 1000)
class Node:
    pass
a, b = Node(), Node()
a.other, b.other = b, a
gone = weakref.ref(a)
del a, b
kept = [[] for _ in range(3 * GC_YOUNG_THRESHOLD)]  # allocations enough for a young collection
print(gone() is None)
"""


def test_served_process_collects_less_often_but_still_collects() -> None:
    out = subprocess.run([sys.executable, "-c", _PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         check=True).stdout.split()
    assert out == ["True", "True", "True"]
