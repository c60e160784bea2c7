"""The LLM client pacing itself to the provider's per-minute buckets, learned from its `anthropic-ratelimit-*`
headers, against the simulator's token buckets over a real socket (nothing mocked). The buckets use a short
window (`rate_window_s`, as the real API may enforce 60 RPM as 1 per second) so they empty within a test.
Every figure asserted is a count (attempts, 429s), never a duration."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from agentmesh.llm import LLMClient
from agentmesh.settings import Settings
from agentmesh.telemetry._metrics import LLMStatsCollector
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


async def burst(llm: LLMClient, callers: int, calls_each: int, **kwargs: Any) -> None:
    async def caller() -> None:
        for _ in range(calls_each):
            result = await llm.complete(system="s", messages=MSG, max_tokens=kwargs.get("max_tokens", 50))
            assert result.text

    await asyncio.gather(*(caller() for _ in range(callers)))


async def attempts_per_success(sim: str) -> tuple[float, dict[str, Any]]:
    stats = await sim_stats(sim)
    return stats["requests_total"] / stats["responses_by_status"]["200"], stats


@pytest.mark.parametrize("pace", [True, False])
async def test_rpm_is_paced_without_wasted_429s(sim_url: str, pace: bool) -> None:
    # 1,200 RPM in a 1 s window: 20 requests at once, then 20 a second; 40 callers make 80 calls.
    await put_faults(sim_url, rpm=1200, rate_window_s=1, latency_ms=20)
    llm = client(sim_url, llm_pace=pace)
    await burst(llm, callers=40, calls_each=2)
    await llm.close()
    ratio, stats = await attempts_per_success(sim_url)
    assert stats["responses_by_status"]["200"] == 80
    if pace:
        assert ratio <= 1.05, stats
        assert llm.pacer.limits() == {"requests": 1200} and llm.stats.paced > 0
        registry = CollectorRegistry()
        registry.register(LLMStatsCollector(llm, agent="test"))
        labels = {"agent": "test", "model": llm.model}
        assert registry.get_sample_value("agentmesh_llm_paced_total", labels) == llm.stats.paced
        assert registry.get_sample_value("agentmesh_llm_pace_share", labels) == llm.stats.pace_share
        # A 429 of an empty bucket is the pacer's, never a reason to halve the concurrency limit.
        assert llm.limiter.decreases == 0
    else:
        # The same load without the headers read: the bucket's 429s are what the pacer saves.
        assert ratio > 1.2, stats


async def test_output_tokens_are_paced_by_max_tokens(sim_url: str) -> None:
    # 100 output tokens at once, 100 a second: five calls of max_tokens 20 at once, then five a second.
    await put_faults(sim_url, otpm=6000, rate_window_s=1, latency_ms=20)
    llm = client(sim_url)
    await burst(llm, callers=10, calls_each=2, max_tokens=20)
    await llm.close()
    ratio, stats = await attempts_per_success(sim_url)
    assert stats["responses_by_status"]["200"] == 20 and ratio <= 1.05, stats
    assert "output-tokens" in llm.pacer.limits()


async def test_input_tokens_are_paced_from_the_request_size(sim_url: str) -> None:
    probe = client(sim_url, llm_pace=False)
    one = await probe.complete(system="s", messages=MSG, max_tokens=50)
    await probe.close()
    # Room for eight of these prompts at once, eight more a second.
    await put_faults(sim_url, itpm=one.input_tokens * 8 * 60, rate_window_s=1, latency_ms=20)
    llm = client(sim_url)
    await burst(llm, callers=10, calls_each=3)
    await llm.close()
    ratio, stats = await attempts_per_success(sim_url)
    # The first answer teaches the bucket; its usage the tokens per character of the size estimate (a guess
    # until the second answer, so a 429 or two may come before that).
    assert stats["responses_by_status"]["200"] == 31 and ratio <= 1.1, stats
    assert "input-tokens" in llm.pacer.limits()


async def test_two_processes_on_one_key_share_the_bucket(sim_url: str) -> None:
    # Two clients (as two processes would) each see the other only through the provider's remaining count.
    # A 3 s window (60 at once, 20 a second): the reserve each keeps (5% of it) must cover the other's sends
    # within a round trip, as a 60 s window's does easily.
    await put_faults(sim_url, rpm=1200, rate_window_s=3, latency_ms=20)
    a, b = client(sim_url), client(sim_url)
    await asyncio.gather(burst(a, callers=20, calls_each=4), burst(b, callers=20, calls_each=4))
    await a.close()
    await b.close()
    ratio, stats = await attempts_per_success(sim_url)
    assert stats["responses_by_status"]["200"] == 160 and ratio <= 1.1, stats


async def test_an_operator_cap_paces_below_the_provider(sim_url: str) -> None:
    # The provider allows far more than the operator's 600 per minute (10 a second, one second's worth at once).
    await put_faults(sim_url, rpm=60_000)
    llm = client(sim_url, llm_max_requests_per_minute=600)
    await burst(llm, callers=15, calls_each=1)
    await llm.close()
    assert llm.stats.paced >= 4  # beyond the first 10 (and the probe) every call waited for the cap's refill
    assert llm.pacer.limits() == {"operator-requests": 600, "requests": 60_000}


async def test_concurrency_mode_keeps_the_adaptive_limit(sim_url: str) -> None:
    # No per-minute buckets: the 429s of a concurrency cap still halve the AIMD limit, and nothing is paced.
    await put_faults(sim_url, max_concurrency=4, latency_ms=50, retry_after_s=0.05)
    llm = client(sim_url)
    await burst(llm, callers=16, calls_each=2)
    await llm.close()
    assert llm.limiter.decreases > 0 and llm.pacer.limits() == {} and llm.stats.paced == 0
