"""The tests' own address digits: ``fresh`` never hands out the same number twice in a run, so two
tests asking the shared sandbox what reached an address never see each other's messages."""

from __future__ import annotations

from tests.helpers import fresh


def test_fresh_numbers_do_not_repeat_until_the_space_is_used_up() -> None:
    drawn = [fresh(300) for _ in range(300)]
    assert sorted(drawn) == list(range(300))
    assert fresh(300) == drawn[0]  # then it wraps, in the same order
    wide = [fresh(10**8) for _ in range(5000)]
    assert len(set(wide)) == 5000 and all(0 <= n < 10**8 for n in wide)
