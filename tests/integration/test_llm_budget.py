"""The mesh-wide LLM budget in Redis: two clients (as two processes, or replicas on two hosts) sharing one Redis
and one simulator key admit their calls against one set of buckets; with Redis down, calls go on, paced per
process. Real Redis at 127.0.0.1:6379, each test under its own key prefix, removed afterwards."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from agentmesh.llm import LLMClient
from agentmesh.llm._shared import SharedBudget
from agentmesh.settings import Settings
from agentmesh.telemetry._metrics import LLMStatsCollector
from tests.integration.conftest import REDIS_URL
from tests.simctl import put_faults, sim_stats

MSG = [{"role": "user", "content": "Summarise the benefits of circuit breakers."}]


def client(sim: str, **overrides: Any) -> LLMClient:
    base = {
        "anthropic_base_url": sim,
        "llm_backoff_base_s": 0.01,
        "llm_backoff_max_s": 0.05,
        "llm_timeout_s": 10.0,
        "llm_jitter_ms": 0,
    }
    return LLMClient(settings=Settings(**{**base, **overrides}))


async def bucket_limits(r: aioredis.Redis, redis_prefix: str) -> dict[str, bytes]:
    """Each per-minute bucket's learned limit (the mesh-wide concurrency limit's keys sit beside them)."""
    keys = [k.decode() async for k in r.scan_iter(match=f"{redis_prefix}:*")]
    buckets = [
        k for k in keys if k.rsplit(":", 1)[1] in ("requests", "input-tokens", "output-tokens", "operator-requests")
    ]
    return {k.rsplit(":", 1)[1]: await r.hget(k, "limit") for k in buckets}


async def burst(llm: LLMClient, callers: int, calls_each: int) -> None:
    async def caller() -> None:
        for _ in range(calls_each):
            assert (await llm.complete(system="s", messages=MSG, max_tokens=50)).text

    await asyncio.gather(*(caller() for _ in range(callers)))


async def test_two_processes_share_one_budget_in_redis(sim_url: str, redis_prefix: str) -> None:
    # 2,400 RPM in a 1 s window: 40 at once, then 40 a second. Two clients, 20 callers each, 160 calls.
    await put_faults(sim_url, rpm=2400, rate_window_s=1, latency_ms=20)
    a = client(sim_url, redis_url=REDIS_URL, redis_key_prefix=redis_prefix)
    b = client(sim_url, redis_url=REDIS_URL, redis_key_prefix=redis_prefix)
    started = time.monotonic()
    await asyncio.gather(burst(a, 20, 4), burst(b, 20, 4))
    elapsed = time.monotonic() - started
    await a.close()
    await b.close()
    stats = await sim_stats(sim_url)
    ok = stats["responses_by_status"]["200"]
    assert ok == 160 and stats["requests_total"] / ok <= 1.05, stats
    # At most a full bucket plus the refill over the run (the simulator would refuse more anyway).
    assert ok <= 40 + 40 * elapsed + 1
    assert isinstance(a.pacer, SharedBudget) and a.stats.budget_fallbacks == b.stats.budget_fallbacks == 0
    # One bucket for both, in Redis, learned from the headers.
    r = aioredis.Redis.from_url(REDIS_URL)
    limits = await bucket_limits(r, redis_prefix)
    await r.aclose()
    assert limits == {"requests": b"2400"}, limits


async def test_calls_go_on_per_process_when_redis_is_down(
    sim_url: str, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Nothing listens on port 1: every admission falls back to this process's own pacer, which still paces.
    await put_faults(sim_url, rpm=1200, rate_window_s=1, latency_ms=20)
    llm = client(sim_url, redis_url="redis://127.0.0.1:1/0", redis_key_prefix=redis_prefix)
    with caplog.at_level(logging.WARNING, logger="agentmesh.llm._shared"):
        await burst(llm, 10, 3)
    await llm.close()
    stats = await sim_stats(sim_url)
    assert stats["responses_by_status"]["200"] == 30 and stats["requests_total"] / 30 <= 1.1, stats
    assert llm.stats.budget_fallbacks >= 1 and llm.pacer.limits() == {"requests": 1200}
    # One warning per outage (retried after 5 s), not one per call.
    assert [r.message for r in caplog.records].count(
        "the shared LLM budget in Redis is unreachable; pacing per process for 5s"
    ) == 1
    registry = CollectorRegistry()
    registry.register(LLMStatsCollector(llm, agent="test"))
    labels = {"agent": "test", "model": llm.model}
    assert registry.get_sample_value("agentmesh_llm_budget_fallbacks_total", labels) == llm.stats.budget_fallbacks


async def test_an_operator_cap_is_the_meshs_under_a_shared_budget(sim_url: str, redis_prefix: str) -> None:
    # The provider allows far more than the operator's 600 per minute (10 a second, 10 at once). Two clients
    # with 15 calls each: per process, 10 of each would go at once; shared, 10 in all, so at least 20 wait.
    await put_faults(sim_url, rpm=60_000)
    a = client(sim_url, redis_url=REDIS_URL, redis_key_prefix=redis_prefix, llm_max_requests_per_minute=600)
    b = client(sim_url, redis_url=REDIS_URL, redis_key_prefix=redis_prefix, llm_max_requests_per_minute=600)
    await asyncio.gather(burst(a, 15, 1), burst(b, 15, 1))
    await a.close()
    await b.close()
    assert a.stats.paced + b.stats.paced >= 18, (a.stats.paced, b.stats.paced)
    r = aioredis.Redis.from_url(REDIS_URL)
    limits = await bucket_limits(r, redis_prefix)
    await r.aclose()
    assert limits == {"operator-requests": b"600", "requests": b"60000"}, limits
