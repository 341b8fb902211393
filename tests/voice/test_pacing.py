"""The progressive pacer alone: the ratio it learns from answers, and admission within the limit."""

from __future__ import annotations

import asyncio

from services.voice.pacing import Pacer


async def test_the_ratio_follows_the_human_answer_rate_within_bounds_and_drops_at_the_abandon_cap() -> None:
    pacer = Pacer(min_samples=5, abandon_cap=0.03)
    state = pacer.queue("q", agents=4, max_ratio=3.0)
    assert pacer.ratio(state) == 1.0 and pacer.limit(state) == 4  # too few calls ended to learn from
    for index in range(10):  # 1 in 2 calls reaches a person
        dispatch = f"d{index}"
        assert await pacer.admit("q", dispatch, timeout=1)
        await pacer.finish(dispatch, human=index % 2 == 0, outcome="agent_connected" if index % 2 == 0 else "voicemail")
    assert pacer.ratio(state) == 2.0 and pacer.limit(state) == 8
    for index in range(10, 30):  # 1 in 5 answers: the ratio is capped at max_ratio
        assert await pacer.admit("q", f"d{index}", timeout=1)
        await pacer.finish(f"d{index}", human=False, outcome="no_answer")
    assert pacer.ratio(state) == 3.0
    assert await pacer.admit("q", "gone", timeout=1)
    await pacer.finish("gone", human=True, outcome="abandoned")  # 1 abandoned of 6 people: over 3%
    assert pacer.ratio(state) == 1.0


async def test_a_full_queue_admits_the_next_call_when_one_ends_and_never_more() -> None:
    pacer = Pacer()
    pacer.queue("q", agents=1)
    assert await pacer.admit("q", "a", timeout=1)
    assert not await pacer.admit("q", "b", timeout=0.05)  # full: the caller retries later
    waiting = asyncio.create_task(pacer.admit("q", "b", timeout=5))
    await asyncio.sleep(0)
    assert not waiting.done()
    await pacer.finish("a", human=True, outcome="agent_connected")
    assert await waiting
    assert pacer.view("q")["peak_in_flight"] == 1
    await pacer.set_available("q", 0)
    pacer.queue("q", agents=5)  # a dispatch's fixed number does not override the API's
    assert pacer.view("q")["available"] == 0 and pacer.view("q")["pinned"]


async def test_a_refused_call_leaves_the_flight_without_counting_as_an_answer() -> None:
    pacer = Pacer()
    pacer.queue("q", agents=1)
    assert await pacer.admit("q", "refused", timeout=1)
    await pacer.release("refused")
    assert await pacer.admit("q", "next", timeout=0.05)
    assert pacer.view("q")["counts"] == {} and len(pacer.queues["q"].answers) == 0
