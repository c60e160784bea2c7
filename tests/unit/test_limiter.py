"""The AIMD limiter on its own: admission, queueing, and how 429s and successes move the limit."""

from __future__ import annotations

import asyncio

import pytest

from agentmesh.llm import AIMDLimiter, Outcome


async def test_admits_up_to_the_limit_then_queues_first_come_first_served() -> None:
    lim = AIMDLimiter(max_limit=2)
    a, b = await lim.acquire(), await lim.acquire()
    assert lim.try_acquire() is None and not a.waited
    order: list[int] = []

    async def take(i: int) -> None:
        permit = await lim.acquire()
        assert permit.waited
        order.append(i)
        lim.release(permit, Outcome.NEUTRAL)

    waiters = [asyncio.create_task(take(i)) for i in range(3)]
    await asyncio.sleep(0)
    assert lim.waiting == 3 and lim.in_flight == 2
    lim.release(a, Outcome.NEUTRAL)
    lim.release(b, Outcome.NEUTRAL)
    await asyncio.gather(*waiters)
    assert order == [0, 1, 2] and lim.in_flight == 0


async def test_a_burst_of_429s_halves_the_limit_once_per_round_trip() -> None:
    lim = AIMDLimiter(max_limit=32)
    burst = [await lim.acquire() for _ in range(32)]  # all sent under the same limit
    for permit in burst:
        lim.release(permit, Outcome.RATE_LIMITED)
    assert lim.limit == 16 and lim.decreases == 1
    # The next round trip (sent under the new limit) gets 429s too: one more halving, not sixteen.
    second = [await lim.acquire() for _ in range(16)]
    for permit in second:
        lim.release(permit, Outcome.RATE_LIMITED)
    assert lim.limit == 8 and lim.decreases == 2 and lim.lowest == 8


async def test_the_limit_never_drops_below_the_minimum() -> None:
    lim = AIMDLimiter(max_limit=4)
    for _ in range(10):
        lim.release(await lim.acquire(), Outcome.RATE_LIMITED)
    assert lim.limit == 1 and lim.capacity == 1


async def test_successes_grow_the_limit_by_one_per_round_trip_up_to_the_ceiling() -> None:
    lim = AIMDLimiter(max_limit=10)
    lim.release(await lim.acquire(), Outcome.RATE_LIMITED)
    lim.release(await lim.acquire(), Outcome.RATE_LIMITED)
    assert lim.limit == 2.5
    # A full round trip at the limit: `capacity` successes add about one.
    permits = [await lim.acquire() for _ in range(lim.capacity)]
    for permit in permits:
        lim.release(permit, Outcome.SUCCESS)
    assert 3.2 < lim.limit < 3.4
    for _ in range(200):
        permits = [await lim.acquire() for _ in range(lim.capacity)]
        for permit in permits:
            lim.release(permit, Outcome.SUCCESS)
    assert lim.limit == 10


async def test_no_growth_without_use_or_when_the_provider_says_it_is_full() -> None:
    lim = AIMDLimiter(max_limit=16)
    for _ in range(2):
        burst = [await lim.acquire() for _ in range(lim.capacity)]
        for permit in burst:
            lim.release(permit, Outcome.RATE_LIMITED)
    assert lim.limit == 4
    # One call at a time uses a quarter of the limit: no evidence the provider would take more.
    for _ in range(20):
        lim.release(await lim.acquire(), Outcome.SUCCESS)
    assert lim.limit == 4
    # At the limit, but anthropic-ratelimit-requests-remaining said 0: hold.
    permits = [await lim.acquire() for _ in range(4)]
    for permit in permits:
        lim.release(permit, Outcome.AT_CAPACITY)
    assert lim.limit == 4


async def test_a_shrunk_limit_holds_new_callers_until_enough_slots_free() -> None:
    lim = AIMDLimiter(max_limit=4)
    permits = [await lim.acquire() for _ in range(4)]
    lim.release(permits[0], Outcome.RATE_LIMITED)  # limit 2, three still in flight
    waiter = asyncio.create_task(lim.acquire())
    await asyncio.sleep(0)
    lim.release(permits[1], Outcome.NEUTRAL)
    await asyncio.sleep(0)
    assert not waiter.done()  # two in flight = the new limit
    lim.release(permits[2], Outcome.NEUTRAL)
    permit = await asyncio.wait_for(waiter, 1)
    assert lim.in_flight == 2
    lim.release(permit, Outcome.NEUTRAL)
    lim.release(permits[3], Outcome.NEUTRAL)
    assert lim.in_flight == 0


async def test_a_cancelled_waiter_leaves_the_queue_and_leaks_no_slot() -> None:
    lim = AIMDLimiter(max_limit=1)
    held = await lim.acquire()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await lim.acquire()
    assert lim.waiting == 0
    # Granted and cancelled in the same tick: the slot passes to the next caller instead of leaking.
    doomed = asyncio.create_task(lim.acquire())
    await asyncio.sleep(0)
    lim.release(held, Outcome.NEUTRAL)
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    assert lim.in_flight == 0
    assert (await asyncio.wait_for(lim.acquire(), 1)) is not None


def test_rejects_nonsense_bounds() -> None:
    with pytest.raises(ValueError):
        AIMDLimiter(max_limit=0)
    with pytest.raises(ValueError):
        AIMDLimiter(max_limit=4, decrease_factor=1.0)
