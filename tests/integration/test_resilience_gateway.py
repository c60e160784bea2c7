"""The gateway's resilience on a real Envoy: a replica that answers errors is ejected, concurrency past a
cluster's limit is refused at once with a status naming the limit, a killed replica is routed around and a
cluster with none left fails fast. Stand-in servers from envoy_harness; each test uses its own cluster, so
an ejection (15 s) or a stopped replica in one test cannot leak into another.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio

from agentmesh.gateway import ClusterLimits
from tests.integration.envoy_harness import (
    ACT,
    CALL_TIMEOUT_S,
    Gateway,
    admin,
    instances,
    start_gateway,
    stat,
    stat_is,
    stop_gateway,
    wait_for,
)

# researcher: ejection; analyst: overflow (limit 2); executor: killed replicas.
REPLICAS = {"supervisor": 1, "researcher": 2, "analyst": 1, "executor": 2, "guard": 1}
ANALYST_LIMIT = 2


@pytest_asyncio.fixture(scope="module")
async def gw(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    running = await start_gateway(
        REPLICAS,
        tmp_path_factory.mktemp("resilience-gateway"),
        limits={"analyst": ClusterLimits(max_requests=ANALYST_LIMIT, max_pending_requests=ANALYST_LIMIT)},
    )
    try:
        yield running
    finally:
        await stop_gateway(running)


async def _act(channel: grpc.aio.Channel, upstream: str) -> str | grpc.aio.AioRpcError:
    """The answering instance, or the error (kept, not raised: the tests count them)."""
    try:
        reply = await channel.unary_unary(ACT)(
            b"ping", metadata=(("agentmesh-upstream", upstream),), timeout=CALL_TIMEOUT_S
        )
    except grpc.aio.AioRpcError as exc:
        return exc
    return reply.decode().split('"instance": "', 1)[1].split('"', 1)[0]


async def _host_flags(gw: Gateway, cluster: str, port: int) -> str:
    """The health flags /clusters shows for one host, e.g. "healthy" or "/failed_outlier_check"."""
    for line in (await admin(gw, "/clusters")).splitlines():
        if line.startswith(f"{cluster}::127.0.0.1:{port}::health_flags::"):
            return line.rsplit("::", 1)[1]
    raise AssertionError(f"no host {port} in cluster {cluster}")


async def test_a_replica_that_returns_errors_is_ejected(gw: Gateway) -> None:
    sick = gw.servers["researcher#1"]
    sick.mode = "unavailable"
    ejections = "cluster.researcher.outlier_detection.ejections_enforced_total"
    assert await stat(gw, ejections) == 0
    async with grpc.aio.insecure_channel(gw.internal) as channel:
        outcomes = [await _act(channel, "researcher") for _ in range(20)]
    failures = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    # Round robin sends every other call to the sick replica; its 5th consecutive UNAVAILABLE ejects it
    # (consecutive_gateway_failure 5, update_merge_window 0s), so exactly those 5 calls fail.
    assert len(failures) == 5, outcomes
    assert all(f.code() == grpc.StatusCode.UNAVAILABLE for f in failures)
    assert outcomes[10:] == ["researcher#0"] * 10  # the traffic moved to the healthy replica
    assert await stat(gw, ejections) == 1
    assert await stat(gw, "cluster.researcher.outlier_detection.ejections_active") == 1
    assert "failed_outlier_check" in await _host_flags(gw, "researcher", sick.port)
    # Its health check still passes (the server is up), and must not bring it back early
    # (successful_active_health_check_uneject_host: false): wait for two more checks of each host.
    checks = await stat(gw, "cluster.researcher.health_check.success")
    await wait_for(
        "two more health check rounds", lambda: _at_least(gw, "cluster.researcher.health_check.success", checks + 4), gw
    )
    assert "failed_outlier_check" in await _host_flags(gw, "researcher", sick.port)
    assert set(await instances(gw.internal, "researcher", 4)) == {"researcher#0"}


async def _at_least(gw: Gateway, name: str, value: int) -> bool:
    return await stat(gw, name) >= value


async def test_concurrency_past_the_limit_is_refused_at_once_naming_the_limit(gw: Gateway) -> None:
    analyst = gw.servers["analyst#0"]
    analyst.mode, analyst.delay_s = "slow", 3.0

    async def timed(channel: grpc.aio.Channel) -> tuple[float, str | grpc.aio.AioRpcError]:
        started = time.monotonic()
        outcome = await _act(channel, "analyst")
        return time.monotonic() - started, outcome

    async with grpc.aio.insecure_channel(gw.internal) as channel:
        # Warm: with no upstream connection yet, a burst waits as *pending* requests while Envoy connects
        # (counted in upstream_rq_pending_overflow). The steady state is the case that matters.
        assert await _act(channel, "analyst") == "analyst#0"
        results = await asyncio.gather(*(timed(channel) for _ in range(ANALYST_LIMIT + 4)))
    served = [o for _, o in results if isinstance(o, str)]
    refused = [(t, o) for t, o in results if isinstance(o, grpc.aio.AioRpcError)]
    assert len(served) == ANALYST_LIMIT and len(refused) == 4
    for elapsed, err in refused:
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert err.details() == (
            f"agentmesh gateway: analyst is at a circuit breaker limit: {ANALYST_LIMIT} calls in "
            "flight (max_requests), or retries beyond its retry budget; try again later"
        )
        assert ("x-envoy-overloaded", "true") in tuple(err.trailing_metadata() or ())
        assert elapsed < 1.5  # answered at once, not after the 3 s the admitted calls took (margin: a busy CI box)
    # Since Envoy 1.38 this overflow is counted here, not in upstream_rq_pending_overflow.
    assert await stat(gw, "cluster.analyst.upstream_rq_active_overflow") == 4
    assert await stat(gw, "cluster.analyst.upstream_rq_pending_overflow") == 0
    # Envoy's own refusal says nothing about the host: it is not ejected.
    assert await stat(gw, "cluster.analyst.outlier_detection.ejections_enforced_total") == 0
    assert await stat(gw, "cluster.analyst.membership_healthy") == 1


async def test_a_killed_replica_is_routed_around_and_none_left_fails_fast(gw: Gateway) -> None:
    await gw.servers["executor#1"].stop()
    # Before the health checks notice, a call sent to the dead replica fails to connect and is retried on
    # the other one (connect-failure, previous_hosts): no client sees an error.
    assert set(await instances(gw.internal, "executor", 6)) == {"executor#0"}
    healthy = "cluster.executor.membership_healthy"
    await wait_for(f"{healthy} == 1", lambda: stat_is(gw, healthy, 1), gw)
    assert set(await instances(gw.internal, "executor", 4)) == {"executor#0"}

    await gw.servers["executor#0"].stop()
    await wait_for(f"{healthy} == 0", lambda: stat_is(gw, healthy, 0), gw)
    # healthy_panic_threshold 0: no spraying of dead hosts, an immediate UNAVAILABLE that says why.
    started = time.monotonic()
    async with grpc.aio.insecure_channel(gw.internal) as channel:
        outcome = await _act(channel, "executor")
    assert isinstance(outcome, grpc.aio.AioRpcError) and time.monotonic() - started < 2.0
    assert outcome.code() == grpc.StatusCode.UNAVAILABLE
    assert outcome.details() == (
        "agentmesh gateway: no healthy executor replica (failing health checks or ejected for errors); try again later"
    )
