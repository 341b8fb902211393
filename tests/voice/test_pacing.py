"""The progressive pacer alone: the ratio it learns from answers and from the campaign's abandoned calls,
admission within the limit, the hold line's order, and the same state shared by two instances in Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from services.voice.pacing import CampaignFigure, LocalPacingStore, Pacer, PacingStore
from services.voice.pacing_redis import RedisPacingStore
from tests.channel_harness import free_port


class Figures:
    """Campaign figures set by the test (what ``services.voice.abandonment`` reads from the database)."""

    def __init__(self) -> None:
        self.by_campaign: dict[str, CampaignFigure] = {}
        self.forgotten: list[str] = []

    async def figure(self, campaign: str) -> CampaignFigure:
        return self.by_campaign.get(campaign, CampaignFigure())

    def forget(self, campaign: str) -> None:
        self.forgotten.append(campaign)


@pytest.fixture(params=["local", pytest.param("redis", marks=pytest.mark.redis)])
async def stores(request: pytest.FixtureRequest) -> AsyncIterator[tuple[PacingStore, PacingStore]]:
    """Two voice instances' stores: each its own memory, or one Redis shared by both."""
    if request.param == "local":
        yield LocalPacingStore(), LocalPacingStore()
        return
    redis = Redis.from_url(request.getfixturevalue("redis_url"))
    prefix = f"test:{uuid.uuid4().hex}:pacing:"
    try:
        yield RedisPacingStore(redis, prefix, poll_s=0.02), RedisPacingStore(redis, prefix, poll_s=0.02)
    finally:
        keys = [key async for key in redis.scan_iter(match=prefix + "*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


async def test_the_ratio_follows_the_human_answer_rate_and_the_campaigns_abandoned_calls(
    stores: tuple[PacingStore, PacingStore],
) -> None:
    figures = Figures()
    pacer = Pacer(stores[0], min_samples=5, abandon_cap=0.03, throttle_share=2 / 3, figures=figures)
    await pacer.configure("q", agents=4, max_ratio=3.0)
    state = await pacer.store.snapshot("q")
    assert pacer.ratio(state) == 1.0 and pacer.limit(state) == 4  # too few calls ended to learn from
    for index in range(10):  # 1 in 2 calls reaches a person
        assert await pacer.admit("q", f"d{index}", timeout=1)
        assert await pacer.finish("q", f"d{index}", human=index % 2 == 0, outcome="voicemail")
    state = await pacer.store.snapshot("q")
    assert pacer.ratio(state) == 2.0 and pacer.limit(state) == 8
    for index in range(10, 60):  # 1 in 5... then none: the ratio is capped at max_ratio
        assert await pacer.admit("q", f"d{index}", timeout=1)
        await pacer.finish("q", f"d{index}", human=False, outcome="no_answer")
    state = await pacer.store.snapshot("q")
    assert pacer.ratio(state) == 3.0 and len(state.answers) == 50  # the last 50 ended calls

    # The campaign's 30-day abandoned calls: from 2% (2/3 of the 3% cap) no over-dialling, at 3% no bridging.
    figures.by_campaign = {"calm": CampaignFigure(answered=100, abandoned=1),
                           "close": CampaignFigure(answered=100, abandoned=2),
                           "capped": CampaignFigure(answered=100, abandoned=3)}
    assert pacer.ratio(state, figures.by_campaign["calm"]) == 3.0
    assert pacer.ratio(state, figures.by_campaign["close"]) == 1.0
    assert [await pacer.bridging(c) for c in ("calm", "close", "capped", "new")] == [True, True, False, True]
    # a throttled campaign's call waits for room under agents × 1 while another campaign's is admitted
    for index in range(4):
        assert await pacer.admit("q", f"busy{index}", timeout=1, campaign="calm")
    assert not await pacer.admit("q", "close-1", timeout=0, campaign="close")
    assert await pacer.admit("q", "calm-5", timeout=0, campaign="calm")
    pacer.ended("close")
    assert figures.forgotten == ["close"]


async def test_a_full_queue_admits_the_next_call_when_one_ends_on_any_instance_and_never_more(
    stores: tuple[PacingStore, PacingStore],
) -> None:
    here, there = Pacer(stores[0]), Pacer(stores[1])
    await here.configure("q", agents=1)
    await there.configure("q", agents=1)
    assert await here.admit("q", "a", timeout=1)
    shared = isinstance(stores[0], RedisPacingStore)
    # the other instance sees the call in flight only when the state is shared
    assert await there.admit("q", "b", timeout=0) is not shared
    if not shared:
        await there.release("q", "b")
    waiting = asyncio.create_task(here.admit("q", "c", timeout=30))
    await asyncio.sleep(0)
    assert not waiting.done()
    # The final status reaches the other instance (webhooks go to any instance): it frees the slot.
    assert await there.finish("q", "a", human=True, outcome="agent_connected") is shared
    if not shared:
        await here.finish("q", "a", human=True, outcome="agent_connected")
    assert await waiting
    view = await here.view("q")
    assert view["peak_in_flight"] == 1 and view["in_flight"] == 1 and view["counts"] == {"agent_connected": 1}
    # Availability set through the API wins over the dispatches' fixed number, for every instance.
    await here.set_available("q", 0)
    await there.configure("q", agents=5)
    assert (await there.view("q"))["available"] == (0 if shared else 5)
    assert (await here.view("q"))["available"] == 0 and (await here.view("q"))["pinned"]


async def test_a_refused_call_leaves_the_flight_without_counting_as_an_answer(
    stores: tuple[PacingStore, PacingStore],
) -> None:
    pacer = Pacer(stores[0])
    await pacer.configure("q", agents=1)
    assert await pacer.admit("q", "refused", timeout=1)
    await pacer.release("q", "refused")
    assert await pacer.admit("q", "next", timeout=0)
    state = await pacer.store.snapshot("q")
    assert state.counts == {} and state.answers == ()
    assert not await pacer.finish("q", "never-admitted", human=True, outcome="conversation")  # counted once


async def test_free_agents_go_to_the_hold_line_in_order_and_newcomers_wait_their_turn(
    stores: tuple[PacingStore, PacingStore],
) -> None:
    here, there = Pacer(stores[0]), Pacer(stores[1])
    shared = isinstance(stores[0], RedisPacingStore)
    other = there if shared else here  # a second instance acts on the same line only when it is shared
    await here.configure("q", agents=1)
    assert await here.take_agent("q", "first")  # a free agent, no one waiting: straight through
    for caller in ("second", "third"):
        assert not await other.take_agent("q", caller)
        await other.hold("q", caller)
    assert (await here.view("q"))["waiting"] == 2 and (await other.view("q"))["connected"] == 1
    await other.disconnect("q", "first")  # the first call's agent is free again
    assert not await here.take_agent("q", "newcomer")  # people wait before it
    assert not await here.take_agent("q", "third")  # not its turn
    assert await other.take_agent("q", "second") and await here.is_connected("q", "second")
    await here.set_available("q", 3)  # two more agents: the rest of the line, then a newcomer
    assert await here.take_agent("q", "third")
    assert await other.take_agent("q", "newcomer")
    assert not await here.take_agent("q", "one-too-many")
    await here.hold("q", "gives-up")
    await other.leave_hold("q", "gives-up")
    assert (await here.view("q"))["waiting"] == 0


@pytest.mark.redis
async def test_an_unreachable_redis_dials_no_one_and_bridges_no_one() -> None:
    redis = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    store = RedisPacingStore(redis, "x:", poll_s=0.01)
    pacer = Pacer(store)
    try:
        assert not await pacer.admit("q", "a", timeout=0.05)
        assert not await pacer.take_agent("q", "a")
        await pacer.configure("q", agents=1)  # never raises: a lost configuration is repeated by the next call
        assert not await pacer.finish("q", "a", human=True, outcome="conversation")
        assert store.outages >= 4
    finally:
        await redis.aclose()
