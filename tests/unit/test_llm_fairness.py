"""Fair turns at the LLM budget across tenants: the turn itself (order, counted), and the client against the
simulator's token bucket, where a flooding tenant must not starve a small one."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from agentmesh.errors import DeadlineExceeded
from agentmesh.llm import LLMClient
from agentmesh.llm._fair import FairTurn
from agentmesh.settings import Settings
from tests.simctl import put_faults

MSG = [{"role": "user", "content": "Summarise the benefits of circuit breakers."}]


async def test_turns_go_round_robin_across_tenants() -> None:
    turn = FairTurn()
    order: list[str] = []
    release = asyncio.Event()

    async def call(tenant: str) -> None:
        async with turn.turn(tenant, 5.0):
            order.append(tenant)
            await release.wait()

    holder = asyncio.create_task(call("flood"))
    await asyncio.sleep(0)
    # Ten flood calls queue before the small tenant's one: first come, first served would serve it eleventh.
    tasks = [asyncio.create_task(call("flood")) for _ in range(10)]
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(call("small")))
    await asyncio.sleep(0)
    assert turn.waiting == {"flood": 10, "small": 1}
    release.set()
    await asyncio.gather(holder, *tasks)
    assert order[:3] == ["flood", "flood", "small"] and len(order) == 12
    assert turn.waiting == {}


async def test_a_waiter_that_gives_up_leaves_the_queue_and_passes_no_turn_on() -> None:
    turn = FairTurn()
    gate = asyncio.Event()

    async def hold() -> None:
        async with turn.turn("a", 5.0):
            await gate.wait()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    with pytest.raises(DeadlineExceeded):
        async with turn.turn("b", 0.01):
            pass
    assert turn.waiting == {}
    gate.set()
    await holder
    # The turn is free again: taken at once.
    async with turn.turn("c", 0.0):
        assert turn.waiting == {}


def client(sim: str) -> LLMClient:
    return LLMClient(
        settings=Settings(
            anthropic_base_url=sim, llm_backoff_base_s=0.01, llm_backoff_max_s=0.05, llm_timeout_s=10, llm_jitter_ms=0
        )
    )


async def small_tenant_latencies(llm: LLMClient, calls: int) -> list[float]:
    out: list[float] = []
    for _ in range(calls):
        started = time.monotonic()
        await llm.complete(system="s", messages=MSG, max_tokens=20, tenant="small")
        out.append(time.monotonic() - started)
    return out


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


async def test_a_flooding_tenant_does_not_starve_a_small_one(sim_url: str) -> None:
    # 1,200 RPM (20 calls/s, one second's worth at once), 200 ms per call. The small tenant (one caller) alone
    # never waits for the bucket; with a flood of 20 callers keeping it empty, round-robin turns let its call in
    # within two refill intervals (50 ms each): p99 about 1.5x alone. First come, first served, it would queue
    # behind the whole flood (about a second: 6x).
    await put_faults(sim_url, rpm=1200, rate_window_s=1, latency_ms=200)
    llm = client(sim_url)
    alone = await small_tenant_latencies(llm, 15)
    stop = asyncio.Event()
    flood_calls = 0

    async def flood() -> None:
        nonlocal flood_calls
        while not stop.is_set():
            await llm.complete(system="s", messages=MSG, max_tokens=20, tenant="flood")
            flood_calls += 1

    floods: list[asyncio.Task[Any]] = [asyncio.create_task(flood()) for _ in range(20)]
    await asyncio.sleep(1.5)  # the flood empties the bucket first
    shared = await small_tenant_latencies(llm, 15)
    stop.set()
    await asyncio.gather(*floods)
    await llm.close()
    assert llm.pacer.limits() == {"requests": 1200} and llm.stats.paced > 0
    assert flood_calls > 40  # the flood did keep the bucket empty
    assert p99(shared) <= 2 * p99(alone), (sorted(alone), sorted(shared))
