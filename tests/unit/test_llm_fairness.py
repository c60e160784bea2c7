"""Fair turns at the LLM budget across tenants: the turn itself (order, counted), and the client against the
simulator's token bucket, where a flooding tenant must not starve a small one."""

from __future__ import annotations

import asyncio
import time

import pytest

from agentmesh.errors import DeadlineExceeded
from agentmesh.llm import LLMClient
from agentmesh.llm._fair import FairTurn
from agentmesh.settings import Settings

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


# How long a small tenant waits beside a flood is a speed figure: `agentmesh bench e2e --tenants 10` measures it
# (never a timed assertion here).
