"""The rendered gateway config on a real Envoy, with tiny grpc.aio servers standing in for the services
(tests/integration/envoy_harness.py). The tests are ordered: the last one stops a researcher replica.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.integration.envoy_harness import (
    ACT,
    CALL_TIMEOUT_S,
    CHECK,
    Gateway,
    start_gateway,
    stat,
    stat_is,
    stop_gateway,
    wait_for,
)
from tests.integration.envoy_harness import echo_call as _echo_call
from tests.integration.envoy_harness import instances as _instances

REPLICAS = {"supervisor": 1, "researcher": 2, "analyst": 1, "executor": 1, "guard": 1}


@pytest_asyncio.fixture(scope="module")
async def gw(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    """Envoy on free ports in front of the stand-in servers, every cluster fully healthy."""
    running = await start_gateway(REPLICAS, tmp_path_factory.mktemp("gateway"))
    try:
        yield running
    finally:
        await stop_gateway(running)


async def _health(addr: str, service: str, metadata: tuple[tuple[str, str], ...] = ()) -> int:
    async with grpc.aio.insecure_channel(addr) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(
            health_pb2.HealthCheckRequest(service=service), metadata=metadata, timeout=CALL_TIMEOUT_S
        )
    return reply.status


async def test_envoy_starts_without_warnings(gw: Gateway) -> None:
    # Deprecated fields and missing limits show up as warnings at start, long before they break.
    noisy = [
        line for line in gw.log.read_text(errors="replace").splitlines() if "][warning][" in line or "][error][" in line
    ]
    assert noisy == []


async def test_internal_listener_routes_by_upstream_header(gw: Gateway) -> None:
    for service in ("analyst", "executor", "supervisor"):
        reply = await _echo_call(gw.internal, ACT, (("agentmesh-upstream", service),))
        assert reply["instance"] == f"{service}#0"
    # The launcher's readiness probe: Health/Check through the gateway, one service at a time.
    serving = health_pb2.HealthCheckResponse.SERVING
    assert await _health(gw.internal, "analyst", (("agentmesh-upstream", "analyst"),)) == serving
    assert await _health(gw.internal, "guard", (("agentmesh-upstream", "guard"),)) == serving
    # Internal callers are trusted: their identity headers reach the service.
    reply = await _echo_call(
        gw.internal,
        ACT,
        (("agentmesh-upstream", "analyst"), ("agentmesh-internal-token", "t"), ("agentmesh-tenant", "acme")),
    )
    assert reply["agentmesh_headers"] == ["agentmesh-internal-token", "agentmesh-tenant", "agentmesh-upstream"]


async def test_internal_listener_falls_back_to_path_routes(gw: Gateway) -> None:
    assert (await _echo_call(gw.internal, CHECK))["instance"] == "guard#0"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _echo_call(gw.internal, ACT, (("agentmesh-upstream", "no-such-service"),))
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_replicas_share_calls_round_robin(gw: Gateway) -> None:
    instances = await _instances(gw.internal, "researcher", 8)
    assert instances.count("researcher#0") == instances.count("researcher#1") == 4, instances


async def test_public_listener_hides_agents_and_ignores_routing_headers(gw: Gateway) -> None:
    for metadata in ((), (("agentmesh-upstream", "analyst"),)):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _echo_call(gw.public, ACT, metadata)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED  # Envoy's "no route" (HTTP 404)
    # Health goes to the supervisor whatever the header says: only it knows the service "supervisor",
    # and asking it about "analyst" is NOT_FOUND even with a header naming the analyst.
    assert await _health(gw.public, "supervisor") == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _health(gw.public, "analyst", (("agentmesh-upstream", "analyst"),))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    # Guard as a service: reachable, and forged identity headers never arrive.
    forged = (("agentmesh-upstream", "analyst"), ("agentmesh-internal-token", "x"), ("agentmesh-tenant", "victim"))
    reply = await _echo_call(gw.public, CHECK, forged)
    assert (reply["instance"], reply["agentmesh_headers"]) == ("guard#0", [])


async def test_client_deadline_is_capped_per_route(gw: Gateway) -> None:
    # grpc_timeout_header_max: a 60 s client deadline reaches the guard as at most its 10 s limit.
    reply = await _echo_call(gw.public, CHECK, deadline_s=60)
    assert 9.0 < reply["deadline_s"] < 10.5  # ~9.998 s measured; a clock read can land a few ms either side
    # Below the cap the client's own deadline passes through.
    reply = await _echo_call(gw.internal, ACT, (("agentmesh-upstream", "analyst"),), deadline_s=60)
    assert 59.0 < reply["deadline_s"] < 61.0  # grpc-timeout is coarse: it may round up a little


async def test_health_checks_and_grpc_stats(gw: Gateway) -> None:
    assert await stat(gw, "cluster.researcher.membership_healthy") == 2
    assert await stat(gw, "cluster.researcher.health_check.healthy") == 2
    assert await stat(gw, "cluster.researcher.health_check.success") >= 2
    await _echo_call(gw.internal, ACT, (("agentmesh-upstream", "executor"),))
    assert await stat(gw, "cluster.executor.grpc.success") >= 1  # the grpc_stats filter's per-cluster count


async def test_stopped_replica_leaves_rotation(gw: Gateway) -> None:
    # Last test in the module: it stops researcher#1 for good.
    await gw.servers["researcher#1"].stop()
    # Before health checks notice, connect-failure retries on the other host (previous_hosts) hide it.
    assert set(await _instances(gw.internal, "researcher", 4)) == {"researcher#0"}
    assert await stat(gw, "cluster.researcher.upstream_rq_retry_success") >= 1

    healthy = "cluster.researcher.membership_healthy"
    await wait_for(f"{healthy} == 1", lambda: stat_is(gw, healthy, 1), gw)
    assert set(await _instances(gw.internal, "researcher", 6)) == {"researcher#0"}
    assert await stat(gw, "cluster.researcher.health_check.failure") >= 1
