"""The retry policy for transient provider failures: exponential backoff with jitter, bounded by a deadline."""

from __future__ import annotations

import random


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based).

    ``min(cap, base * 2**(attempt-1))`` with "equal jitter" (half fixed, half random) so retries of
    many sends spread out; never less than the provider's ``Retry-After``.
    """
    ceiling = min(cap, base * 2 ** max(0, min(attempt - 1, 30)))
    uniform = rng.uniform if rng is not None else random.uniform
    draw: float = uniform(0.0, ceiling / 2)
    delay = float(ceiling / 2 + draw)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay
