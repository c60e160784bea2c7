"""The LLM client's retry, breaker and accounting logic, driven through the real anthropic SDK against the
simulator's injected faults (nothing mocked: every attempt is a real HTTP request the simulator counts)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from typing import Any

import aiohttp
import anthropic
import grpc
import httpx2
import pytest

from agentmesh.deadline import Deadline
from agentmesh.errors import CircuitOpen, DeadlineExceeded, LLMRateLimited, LLMRequestRejected, LLMUnavailable
from agentmesh.llm import BreakerState, LLMClient, cost_usd
from agentmesh.llm._retry import classify
from agentmesh.llm._wire import SDK_ABOVE_TOKENS
from agentmesh.settings import Settings
from tests.simctl import put_faults, sim_stats

MSG = [{"role": "user", "content": "Summarise the benefits of circuit breakers."}]


def client(sim: str, **overrides: Any) -> LLMClient:
    base = {
        "anthropic_base_url": sim,
        "llm_backoff_base_s": 0.01,
        "llm_backoff_max_s": 0.05,
        "llm_timeout_s": 5.0,
        "llm_jitter_ms": 0,
    }
    return LLMClient(settings=Settings(**{**base, **overrides}))


async def test_success_records_usage_and_cost(sim_url: str) -> None:
    llm = client(sim_url)
    r = await llm.complete(system="You are a researcher.", messages=MSG, max_tokens=200)
    await llm.close()
    assert r.text and r.attempts == 1 and r.stop_reason == "end_turn"
    assert r.input_tokens > 0 and r.output_tokens > 0
    assert r.cost_usd == pytest.approx(cost_usd("claude-haiku-4-5", r.input_tokens, r.output_tokens))
    assert llm.stats.input_tokens == r.input_tokens and llm.stats.cost_usd == pytest.approx(r.cost_usd)
    s = await sim_stats(sim_url)
    assert s["requests_total"] == 1 and s["input_tokens_total"] == r.input_tokens


async def test_streaming_path_gives_the_same_answer(sim_url: str) -> None:
    llm = client(sim_url)
    plain = await llm.complete(system="You are a researcher.", messages=MSG, max_tokens=200)
    streamed = await llm.complete(system="You are a researcher.", messages=MSG, max_tokens=200, stream=True)
    await llm.close()
    assert streamed.text == plain.text and streamed.output_tokens == plain.output_tokens


async def test_rate_limits_are_retried_honouring_retry_after(sim_url: str) -> None:
    # One slot at the provider, eight callers: the 429s carry retry-after and every call still succeeds.
    await put_faults(sim_url, max_concurrency=1, latency_ms=50, retry_after_s=0.05)
    # One attempt allowed for provider failures: 429s are not counted against it, only against the deadline.
    llm = client(sim_url, llm_max_attempts=1, breaker_failure_threshold=3)
    results = await asyncio.gather(*(llm.complete(system="s", messages=MSG, max_tokens=50) for _ in range(8)))
    await llm.close()
    s = await sim_stats(sim_url)
    assert all(r.text for r in results)
    assert s["responses_by_status"].get("429", 0) > 0
    assert s["responses_by_status"]["200"] == 8
    # 429 is back-pressure, not a provider failure: it must never open the breaker.
    assert llm.breaker.state is BreakerState.CLOSED and llm.stats.failures["429"] > 0


async def test_retry_after_above_cap_fails_at_once(sim_url: str) -> None:
    await put_faults(sim_url, max_concurrency=0, retry_after_s=3600)
    llm = client(sim_url, llm_retry_after_cap_s=5)
    started = time.monotonic()
    with pytest.raises(LLMRateLimited, match="above the cap"):
        await llm.complete(system="s", messages=MSG, max_tokens=50)
    await llm.close()
    assert time.monotonic() - started < 3  # the hour-long wait was refused, not slept
    assert (await sim_stats(sim_url))["requests_total"] == 1


async def test_bad_request_is_never_retried(sim_url: str) -> None:
    llm = client(sim_url)
    with pytest.raises(LLMRequestRejected, match="400"):
        await llm.complete(system="s", messages=[{"role": "robot", "content": "hi"}], max_tokens=50)
    await llm.close()
    assert (await sim_stats(sim_url))["requests_total"] == 1


async def test_server_errors_retry_up_to_the_attempt_limit(sim_url: str) -> None:
    await put_faults(sim_url, error_rate=1.0)
    llm = client(sim_url, llm_max_attempts=3, breaker_failure_threshold=100)
    with pytest.raises(LLMUnavailable, match="after 3 attempts"):
        await llm.complete(system="s", messages=MSG, max_tokens=50)
    await llm.close()
    assert (await sim_stats(sim_url))["responses_by_status"]["500"] == 3


async def test_x_should_retry_false_is_obeyed(sim_url: str) -> None:
    await put_faults(sim_url, error_rate=1.0, should_retry=False)
    llm = client(sim_url, llm_max_attempts=5)
    with pytest.raises(LLMUnavailable, match="after 1 attempt"):
        await llm.complete(system="s", messages=MSG, max_tokens=50)
    await llm.close()
    assert (await sim_stats(sim_url))["requests_total"] == 1


async def test_transient_errors_recover(sim_url: str) -> None:
    await put_faults(sim_url, error_rate=0.5, seed=7)
    llm = client(sim_url, llm_max_attempts=10, breaker_failure_threshold=100)
    results = [await llm.complete(system="s", messages=MSG, max_tokens=50) for _ in range(6)]
    await llm.close()
    assert all(r.text for r in results)
    assert sum(r.attempts for r in results) == (await sim_stats(sim_url))["requests_total"] > 6


async def test_outage_opens_the_breaker_then_a_probe_closes_it(sim_url: str) -> None:
    await put_faults(sim_url, outage=529)
    llm = client(sim_url, llm_max_attempts=2, breaker_failure_threshold=3, breaker_reset_timeout_s=0.5)
    for _ in range(2):
        with pytest.raises(LLMUnavailable):
            await llm.complete(system="s", messages=MSG, max_tokens=50)
    assert llm.breaker.state is BreakerState.OPEN and llm.stats.breaker_state == "open"
    seen = (await sim_stats(sim_url))["requests_total"]
    assert seen == 3  # the third failure opened it; the fourth attempt failed fast
    # While open: many calls, no provider traffic.
    for _ in range(20):
        with pytest.raises(CircuitOpen, match="outage"):
            await llm.complete(system="s", messages=MSG, max_tokens=50)
    assert (await sim_stats(sim_url))["requests_total"] == seen
    # Outage over, cool-down passed: one probe goes through and closes the breaker.
    await put_faults(sim_url, outage=None)
    await asyncio.sleep(0.6)
    r = await llm.complete(system="s", messages=MSG, max_tokens=50)
    await llm.close()
    assert r.text and llm.breaker.state is BreakerState.CLOSED
    assert (await sim_stats(sim_url))["requests_total"] == seen + 1
    # The breaker's history is in the client's stats, ready for a metrics exporter.
    # 21 failed fast: the 20 above, and the second call's retry once the breaker had opened.
    assert llm.stats.breaker_state == "closed" and llm.stats.fast_failures["circuit_open"] == 21
    assert llm.stats.breaker_transitions == {"closed->open": 1, "open->half_open": 1, "half_open->closed": 1}


async def test_half_open_admits_a_single_probe(sim_url: str) -> None:
    await put_faults(sim_url, outage=529)
    llm = client(sim_url, llm_max_attempts=1, breaker_failure_threshold=1, breaker_reset_timeout_s=0.2)
    with pytest.raises(LLMUnavailable):
        await llm.complete(system="s", messages=MSG, max_tokens=50)
    await put_faults(sim_url, outage=None, latency_ms=300)
    await asyncio.sleep(0.25)
    outcomes = await asyncio.gather(
        *(llm.complete(system="s", messages=MSG, max_tokens=50) for _ in range(5)), return_exceptions=True
    )
    await llm.close()
    assert sum(not isinstance(o, BaseException) for o in outcomes) == 1
    assert all(isinstance(o, CircuitOpen) for o in outcomes if isinstance(o, BaseException))
    assert (await sim_stats(sim_url))["requests_total"] == 2


async def test_hung_provider_is_cut_by_the_timeout(sim_url: str) -> None:
    await put_faults(sim_url, hang=True)
    llm = client(sim_url, llm_timeout_s=0.3, llm_max_attempts=2)
    with pytest.raises(LLMUnavailable, match="timeout"):
        await llm.complete(system="s", messages=MSG, max_tokens=50)
    await llm.close()
    assert llm.stats.failures["timeout"] == 2


@pytest.mark.parametrize(
    "fault,kind",
    [("error_event", "stream_error:overloaded_error"), ("cut", "stream_cut"), ("truncate", "stream_truncated")],
)
async def test_stream_failures_are_retried(sim_url: str, fault: str, kind: str) -> None:
    await put_faults(sim_url, stream_fault=fault, stream_fault_rate=0.5, seed=3)
    llm = client(sim_url, llm_max_attempts=10, breaker_failure_threshold=100)
    results = [await llm.complete(system="s", messages=MSG, max_tokens=80, stream=True) for _ in range(6)]
    await llm.close()
    assert all(r.stop_reason == "end_turn" and r.text for r in results)
    assert llm.stats.failures[kind] > 0
    assert sum(r.attempts for r in results) == 6 + llm.stats.failures[kind]


async def test_deadline_stops_retrying(sim_url: str) -> None:
    await put_faults(sim_url, error_rate=1.0)
    llm = client(
        sim_url, llm_max_attempts=100, llm_backoff_base_s=0.2, llm_backoff_max_s=0.2, breaker_failure_threshold=1000
    )
    started = time.monotonic()
    with pytest.raises((LLMUnavailable, DeadlineExceeded)):
        await llm.complete(system="s", messages=MSG, max_tokens=50, deadline=Deadline.after(0.5))
    await llm.close()
    # Without the deadline this call would try 100 times, 0.2 s apart (20 s); the bound is loose on purpose
    # (a loaded 2-core machine), the attempt count is the real check.
    assert time.monotonic() - started < 5
    assert (await sim_stats(sim_url))["requests_total"] < 10


async def test_a_429_storm_converges_on_what_the_provider_admits(sim_url: str) -> None:
    # 100 callers, 4 provider slots. Measured on 2 cores: a fixed limit of 30 drew 373 429s for these 100
    # calls; the adaptive limit halves per round trip of 429s and drew 44, in about the same 2 s.
    await put_faults(sim_url, max_concurrency=4, latency_ms=50, retry_after_s=0.05)
    llm = client(sim_url, llm_max_attempts=2, llm_jitter_ms=25)
    results = await asyncio.gather(
        *(llm.complete(system="s", messages=MSG, max_tokens=50, deadline=Deadline.after(30)) for _ in range(100))
    )
    await llm.close()
    s = await sim_stats(sim_url)
    assert len(results) == 100 and s["responses_by_status"]["200"] == 100
    assert s["responses_by_status"]["429"] < 150
    assert llm.stats.limit_decreases >= 2 and llm.stats.concurrency_limit_lowest <= 8
    assert llm.breaker.state is BreakerState.CLOSED and llm.stats.in_flight == llm.stats.queued == 0


async def test_retry_after_beyond_the_deadline_fails_at_once(sim_url: str) -> None:
    await put_faults(sim_url, max_concurrency=0, retry_after_s=10)  # under the 20 s cap, over the caller's 3 s
    llm = client(sim_url)
    started = time.monotonic()
    with pytest.raises(LLMRateLimited, match=r"wait 10\.0s \(retry-after\), more than the \d\.\ds left") as info:
        await llm.complete(system="s", messages=MSG, max_tokens=50, deadline=Deadline(started + 3.0))
    await llm.close()
    assert time.monotonic() - started < 2.5  # refused at once: neither the 10 s wait nor the 3 s deadline
    assert info.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED and info.value.retry_after_s == 10
    assert (await sim_stats(sim_url))["requests_total"] == 1
    assert llm.stats.fast_failures["retry_after_beyond_deadline"] == 1


async def test_the_callers_deadline_cutting_a_call_is_not_a_provider_failure(sim_url: str) -> None:
    await put_faults(sim_url, hang=True)
    llm = client(sim_url, llm_timeout_s=5.0, breaker_failure_threshold=1)
    with pytest.raises(DeadlineExceeded, match="in flight"):
        await llm.complete(system="s", messages=MSG, max_tokens=50, deadline=Deadline.after(0.3))
    await llm.close()
    # One slow call of ours says nothing about the provider: the breaker (threshold 1) stays closed.
    assert llm.breaker.state is BreakerState.CLOSED and not llm.stats.failures
    assert llm.stats.fast_failures == {"deadline": 1}


async def test_a_call_that_cannot_get_a_slot_before_its_deadline_fails_cleanly(sim_url: str) -> None:
    llm = client(sim_url, llm_max_concurrency=1)
    # Answered once, so the pacer no longer holds calls for its first answer: the slot is what they queue for.
    await llm.complete(system="s", messages=MSG, max_tokens=50)
    await put_faults(sim_url, latency_ms=500)
    first = asyncio.create_task(llm.complete(system="s", messages=MSG, max_tokens=50))
    await asyncio.sleep(0.05)
    with pytest.raises(DeadlineExceeded, match="queued for one of this process's 1 concurrency slots"):
        await llm.complete(system="s", messages=MSG, max_tokens=50, deadline=Deadline.after(0.2))
    assert (await first).text
    await llm.close()
    assert (await sim_stats(sim_url))["requests_total"] == 2 and llm.stats.queued == 0


async def test_calls_run_on_aiohttp_and_close_releases_both_sessions(sim_url: str) -> None:
    # Small calls take the direct wire, large ones the SDK (its aiohttp transport); neither session outlives close().
    llm = client(sim_url)
    http = llm._sdk._client
    assert isinstance(http, anthropic.DefaultAioHttpClient)
    await llm.complete(system="s", messages=MSG, max_tokens=50)
    wire = llm._wire._session
    assert isinstance(wire, aiohttp.ClientSession) and not wire.closed
    await llm.complete(system="s", messages=MSG, max_tokens=SDK_ABOVE_TOKENS + 1)
    session = http._transport.client  # type: ignore[attr-defined]
    assert isinstance(session, aiohttp.ClientSession) and not session.closed
    assert (await sim_stats(sim_url))["requests_total"] == 2
    await llm.close()
    assert wire.closed and session.closed and http.is_closed


def _wrapped(cause: BaseException) -> anthropic.APIConnectionError:
    """The error as anthropic >= 2.17 raises it: `raise APIConnectionError(...) from cause`."""
    err = anthropic.APIConnectionError(request=httpx2.Request("POST", "http://sim/v1/messages"))
    err.__cause__ = cause
    return err


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        # What the aiohttp transport raises for a connection cut mid-body (mapped by the SDK's vendored httpx_aiohttp).
        (httpx2.ReadError("Response payload is not completed"), "stream_cut"),
        # What it does not map, should it ever reach us raw.
        (aiohttp.ClientPayloadError("Response payload is not completed"), "stream_cut"),
        (aiohttp.ServerDisconnectedError(), "stream_cut"),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), "connection"),
        (aiohttp.SocketTimeoutError("Timeout on reading data from socket"), "timeout"),
        # anthropic >= 2.17 wraps what fails while a body is read in APIConnectionError: its cause decides.
        (_wrapped(httpx2.RemoteProtocolError("incomplete chunked read")), "stream_cut"),
        (_wrapped(httpx2.ReadError("Response payload is not completed")), "stream_cut"),
        (_wrapped(httpx2.ConnectError("All connection attempts failed")), "connection"),
        (httpx2.ConnectError("All connection attempts failed"), "connection"),
    ],
)
def test_transport_errors_of_the_aiohttp_client_are_transient_provider_failures(exc: BaseException, kind: str) -> None:
    failure = classify(exc)
    assert failure is not None and failure.kind == kind
    assert failure.transient and failure.provider_fault and not failure.rate_limited


def test_a_mesh_wide_cap_bounds_each_process_too() -> None:
    # More calls in flight than the whole mesh may have would only queue at the egress, inside the per-attempt timeout.
    assert LLMClient(settings=Settings(llm_max_concurrency=30)).limiter.capacity == 30
    assert LLMClient(settings=Settings(llm_max_concurrency=30, llm_mesh_concurrency=20)).limiter.capacity == 20
    assert LLMClient(settings=Settings(llm_max_concurrency=8, llm_mesh_concurrency=20)).limiter.capacity == 8


async def test_without_instruments_span_attributes_are_accepted_and_ignored(sim_url: str) -> None:
    # One signature for every caller: an uninstrumented client (tests, tools) takes `attributes` too.
    llm = client(sim_url)
    r = await llm.complete(system="s", messages=MSG, max_tokens=20, attributes={"agentmesh.run_id": "r1"})
    await llm.close()
    assert r.text and r.attempts == 1


def test_the_llm_package_does_not_import_telemetry() -> None:
    # agentmesh.telemetry imports agentmesh.llm (its stats collector): the other way round would be a cycle.
    code = "import sys, agentmesh.llm; print(sorted(m for m in sys.modules if m.startswith('agentmesh.telemetry')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
