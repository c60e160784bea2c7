"""The seed baseline's client (semaphore + tenacity) and the (C) tenants' arithmetic: pure logic, no processes."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest

from bench import _baseline, _tenants
from bench._load import LoadResult, RunOutcome, RunSample
from bench._seed_client import SeedClient, design_label, seed_retryable

_REQ = httpx2.Request("POST", "http://sim.invalid/v1/messages")


def _status(cls: type[anthropic.APIStatusError], code: int) -> anthropic.APIStatusError:
    return cls(f"{code}", response=httpx2.Response(code, request=_REQ), body=None)


@pytest.mark.parametrize(
    ("exc", "retried"),
    [
        (_status(anthropic.RateLimitError, 429), True),
        (_status(anthropic.InternalServerError, 500), True),
        (_status(anthropic.InternalServerError, 502), True),
        (_status(anthropic.OverloadedError, 529), True),
        (anthropic.APIConnectionError(request=_REQ), True),
        (anthropic.APITimeoutError(_REQ), True),
        (_status(anthropic.BadRequestError, 400), False),
        (_status(anthropic.AuthenticationError, 401), False),
        (_status(anthropic.NotFoundError, 404), False),
        (ValueError("a bug"), False),
    ],
)
def test_seed_retries_429_5xx_and_connection_failures_only(exc: BaseException, retried: bool) -> None:
    assert seed_retryable(exc) is retried


class _FakeMessages:
    def __init__(self, failures: list[BaseException]) -> None:
        self.failures = failures
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0

    async def create(self, **kwargs: Any) -> str:
        self.calls += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.001)
            if self.failures:
                raise self.failures.pop(0)
            return "ok"
        finally:
            self.in_flight -= 1


class _FakeClient:
    def __init__(self, failures: list[BaseException] | None = None) -> None:
        self.messages = _FakeMessages(failures or [])


def _seed(client: _FakeClient, **kw: Any) -> SeedClient:
    return SeedClient(client, max_wait_s=0, **kw)  # type: ignore[arg-type]  # no backoff sleeps in a unit test


async def test_seed_client_retries_then_returns() -> None:
    client = _FakeClient([_status(anthropic.RateLimitError, 429), _status(anthropic.OverloadedError, 529)])
    assert await _seed(client).create(model="m") == "ok"
    assert client.messages.calls == 3


async def test_seed_client_gives_up_after_six_attempts_with_the_last_error() -> None:
    client = _FakeClient([_status(anthropic.RateLimitError, 429) for _ in range(10)])
    with pytest.raises(anthropic.RateLimitError):
        await _seed(client).create(model="m")
    assert client.messages.calls == 6


async def test_seed_client_raises_a_4xx_at_once() -> None:
    client = _FakeClient([_status(anthropic.BadRequestError, 400)])
    with pytest.raises(anthropic.BadRequestError):
        await _seed(client).create(model="m")
    assert client.messages.calls == 1


async def test_seed_semaphore_bounds_calls_in_flight() -> None:
    client = _FakeClient()
    seed = _seed(client, concurrency=3)
    await asyncio.gather(*(seed.create(model="m") for _ in range(20)))
    assert client.messages.max_in_flight == 3
    assert len(seed.semaphore_wait_s) == 20


def test_design_labels_name_what_ran() -> None:
    assert design_label("seed", "postgres") == "LangGraph seed (semaphore 30 + tenacity, AsyncPostgresSaver)"
    assert design_label("sdk", "memory") == "LangGraph in-process (SDK defaults, InMemorySaver)"


def test_baseline_command_passes_client_checkpointer_and_database() -> None:
    args = argparse.Namespace(
        baseline_client="seed",
        baseline_checkpointer="postgres",
        concurrency_limit=20,
        latency_ms=200.0,
        rpm=0,
        rate_window_s=1.0,
        message="hi",
        drain_timeout=5.0,
    )
    cmd = _baseline.command(args, "http://sim", Path("/tmp/x.json"), "postgresql://db", ["--users", "4"])
    joined = " ".join(cmd)
    assert "--client seed --checkpointer postgres" in joined and cmd[-2:] == ["--dsn", "postgresql://db"]
    assert "--users 4" in joined
    memory = _baseline.command(
        argparse.Namespace(**{**vars(args), "baseline_checkpointer": "memory"}), "s", Path("o"), None, []
    )
    assert "--dsn" not in memory


def test_tenant_split_is_n_small_users_and_r_times_as_many_flooding() -> None:
    small, flood = _tenants.split(10, 10)
    assert (len(small), len(flood)) == (10, 100) and small.stop == flood.start
    assert len(_tenants.split(0, 3)[0]) == 1  # never an empty small tenant


def _sample(user: int, start: float, end: float, calls: int = 5, status: str = "OK") -> RunSample:
    return RunSample(start, end, RunOutcome(status=status, llm_calls=calls, steps=[("route", 250.0)]), user=user)


def test_group_summary_rates_count_runs_finished_in_the_window() -> None:
    samples = [
        _sample(0, 0.0, 1.0),
        _sample(0, 1.0, 2.0),
        _sample(1, 0.0, 3.0),
        _sample(1, 3.0, 12.0),  # finished after the 10 s window: in the latencies, not in the rates
        _sample(5, 0.0, 1.0),  # another group
        _sample(1, 0.0, 1.0, status="UNAVAILABLE"),
    ]
    stats = {"requests_total": 0, "responses_by_status": {}}
    result = LoadResult(samples, 10.0, 12.0, 0, stats, {**stats, "requests_total": 12}, [])
    g = result.group_summary(range(2))
    assert (g["users"], g["runs"], g["runs_ok"]) == (2, 5, 4)
    assert g["failures_by_status"] == {"UNAVAILABLE": 1}
    assert g["runs_per_s"] == 0.3 and g["llm_calls_per_s"] == 1.5
    assert g["run_latency"]["n"] == 4 and g["run_latency"]["max_ms"] == 9000.0
    assert g["route_step"]["p50_ms"] == 250.0
    both = result.groups({"small": range(2), "flood": range(2, 6)})
    assert both["flood"]["runs"] == 1 and both["small"]["phase_attempts_per_success"] is None  # no successes


def test_p99_ratio_compares_the_small_group_with_and_without_the_flood() -> None:
    def group(p99_ms: float, n: int = 10) -> dict[str, Any]:
        return {"run_latency": {"n": n, "p99_ms": p99_ms}}

    assert _tenants.p99_ratio({"alone": {"small": group(1000)}, "with_flood": {"small": group(1500)}}) == 1.5
    assert _tenants.p99_ratio({"alone": {"small": group(1000)}, "with_flood": {"small": group(0, n=0)}}) is None
