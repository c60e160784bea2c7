"""The mesh-wide concurrency limit in Redis (llm/_mesh_limit.py): every process on one provider key holds a lease
per call in flight under one limit, learned from 429s. Real Redis at 127.0.0.1:6379, each test under a key
prefix of its own (removed afterwards), and the simulator's concurrency cap for the provider."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from agentmesh.llm import AIMDLimiter, LLMClient, Outcome
from agentmesh.llm._mesh_limit import MeshLimiter
from agentmesh.settings import Settings
from tests.integration.conftest import REDIS_URL
from tests.simctl import put_faults, sim_stats

MSG = [{"role": "user", "content": "Summarise the benefits of circuit breakers."}]


LIMITER_KWARGS: dict[str, Any] = {
    "per_process": 30,
    "ceiling": 1024,
    "lease_ttl_s": 10.0,
    "clock": time.monotonic,
}


def limiter(redis_prefix: str, **overrides: Any) -> MeshLimiter:
    kwargs = {"prefix": redis_prefix, "local": AIMDLimiter(max_limit=30), **LIMITER_KWARGS, **overrides}
    return MeshLimiter.from_url(REDIS_URL, **kwargs)


def client(sim: str, redis_prefix: str) -> LLMClient:
    return LLMClient(
        settings=Settings(
            anthropic_base_url=sim,
            llm_backoff_base_s=0.01,
            llm_backoff_max_s=0.05,
            llm_timeout_s=10.0,
            llm_jitter_ms=0,
            redis_url=REDIS_URL,
            redis_key_prefix=redis_prefix,
        )
    )


async def test_two_processes_learn_the_providers_cap_together(sim_url: str, redis_prefix: str) -> None:
    # The provider admits 6 calls at once, 100 ms each; two clients (two processes) with 30 callers between them.
    # Each on its own would start at its ceiling (30) and halve on 429s; sharing one limit they slow-start to
    # the cap, and a 429 takes exactly one slot away.
    await put_faults(sim_url, max_concurrency=6, latency_ms=100, retry_after_s=0.1)
    a, b = client(sim_url, redis_prefix), client(sim_url, redis_prefix)

    async def caller(llm: LLMClient) -> None:
        for _ in range(6):
            assert (await llm.complete(system="s", messages=MSG, max_tokens=50)).text

    started = time.monotonic()
    await asyncio.gather(*(caller(a) for _ in range(20)), *(caller(b) for _ in range(10)))
    elapsed = time.monotonic() - started
    await a.close()
    await b.close()
    stats = await sim_stats(sim_url)
    ok, refused = stats["responses_by_status"]["200"], stats["responses_by_status"].get("429", 0)
    assert ok == 180 and refused <= 6, stats
    assert isinstance(a.limiter, MeshLimiter) and 5 <= a.limiter.limit < 8, a.limiter.limit
    # Close to the provider's 60 calls/s after the slow start (a loose bound: a shared 2-core machine).
    assert ok / elapsed >= 30, ok / elapsed


async def test_a_429_takes_exactly_one_slot_away(redis_prefix: str) -> None:
    lim = limiter(redis_prefix)
    try:
        held = [await asyncio.wait_for(lim.acquire(), 2) for _ in range(4)]  # slow start begins at 4
        fifth = asyncio.create_task(lim.acquire())
        await asyncio.sleep(0.1)
        assert not fifth.done() and lim.limit == 4
        lim.release(held[0], Outcome.RATE_LIMITED)  # limit 3, three in flight: still full
        await asyncio.sleep(0.1)
        assert not fifth.done() and lim.limit == 3 and lim.decreases == 1
        lim.release(held[1], Outcome.NEUTRAL)
        permit = await asyncio.wait_for(fifth, 2)
        assert permit.lease and lim.in_flight == 3
        for p in (held[2], held[3], permit):
            lim.release(p, Outcome.NEUTRAL)
    finally:
        await lim.aclose()


async def test_a_process_waiting_is_woken_when_another_frees_a_slot(redis_prefix: str) -> None:
    # b would ask again only after 0.9 s on its own (its registration as waiting lasts 1 s).
    a, b = limiter(redis_prefix), limiter(redis_prefix, reask_s=0.9)
    try:
        held = [await asyncio.wait_for(a.acquire(), 2) for _ in range(4)]
        waiting = asyncio.create_task(b.acquire())
        await asyncio.sleep(0.3)  # b asked, found no slot, registered and blocks on its wake list
        assert not waiting.done()
        freed = time.monotonic()
        a.release(held[0], Outcome.NEUTRAL)
        permit = await asyncio.wait_for(waiting, 2)
        # Woken by a's release, well before its own re-ask (0.6 s later) would have found the slot.
        assert time.monotonic() - freed < 0.4
        b.release(permit, Outcome.NEUTRAL)
        for p in held[1:]:
            a.release(p, Outcome.NEUTRAL)
    finally:
        await a.aclose()
        await b.aclose()


class CountingLimiter(MeshLimiter):
    """A MeshLimiter that counts its own round trips of the script (admissions and releases)."""

    asked = 0

    async def _call(self, released: list[tuple[str, str, str, str]], want: int) -> Any:
        self.asked += 1
        return await super()._call(released, want)


async def test_a_process_with_callers_waiting_is_handed_a_slot_for_each_without_asking_again(
    redis_prefix: str,
) -> None:
    a = limiter(redis_prefix)
    b = CountingLimiter.from_url(
        REDIS_URL, prefix=redis_prefix, local=AIMDLimiter(max_limit=30), reask_s=5.0, **LIMITER_KWARGS
    )
    try:
        held = [await asyncio.wait_for(a.acquire(), 2) for _ in range(4)]
        waiting = [asyncio.create_task(b.acquire()) for _ in range(3)]
        await asyncio.sleep(0.3)  # b asked once, found no slot and registered its three callers
        assert not any(w.done() for w in waiting)
        asked = b.asked
        for permit in held[:3]:
            a.release(permit, Outcome.NEUTRAL)
            await asyncio.sleep(0.05)
        permits = await asyncio.wait_for(asyncio.gather(*waiting), 2)
        # Three hand-overs, in the callers' order, and b never had to ask again in between.
        assert b.asked == asked
        assert len({p.lease for p in permits}) == 3
        for permit in permits:
            b.release(permit, Outcome.NEUTRAL)
        a.release(held[3], Outcome.NEUTRAL)
    finally:
        await a.aclose()
        await b.aclose()


async def test_the_slots_of_a_process_that_died_come_back(redis_prefix: str) -> None:
    # Leases last the call's timeout and a margin: here 0.5 s in all.
    dead, alive = limiter(redis_prefix, lease_ttl_s=0.5, lease_margin_s=0.0), limiter(redis_prefix)
    try:
        for _ in range(4):
            await asyncio.wait_for(dead.acquire(), 2)  # never released: its process "died" mid-call
        started = time.monotonic()
        permit = await asyncio.wait_for(alive.acquire(), 3)
        assert 0.3 <= time.monotonic() - started < 2.0
        alive.release(permit, Outcome.NEUTRAL)
    finally:
        await dead.aclose()
        await alive.aclose()


async def test_redis_down_falls_back_to_this_processs_own_limit(redis_prefix: str) -> None:
    lim = MeshLimiter.from_url(
        "redis://127.0.0.1:1/0",  # nothing listens there
        prefix=redis_prefix,
        local=AIMDLimiter(max_limit=3),
        per_process=30,
        ceiling=1024,
        lease_ttl_s=10.0,
        clock=time.monotonic,
    )
    try:
        permit = await asyncio.wait_for(lim.acquire(), 3)
        assert not permit.lease and lim.fallbacks == 1 and not lim.shared
        assert lim.try_acquire() is not None  # the local limiter answers at once while Redis is down
        assert lim.capacity == 3
    finally:
        await lim.aclose()
