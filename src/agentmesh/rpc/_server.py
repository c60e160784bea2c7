"""create_server: a grpc.aio server with health, reflection and the mesh's interceptors; and a
serve loop with a clean shutdown (health NOT_SERVING, drain, then close resources)."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from agentmesh.rpc._errors import ErrorInterceptor
from agentmesh.rpc._limits import PeerInterceptor

log = logging.getLogger(__name__)

# Bounded by default: a 4 MiB message is far above any text limit, and keeps a bad client from
# making a server buffer arbitrarily much.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class ServiceBinding:
    """A servicer and how to add it: `add(servicer, server)` and its full proto service name."""

    add: Callable[[object, grpc.aio.Server], None]
    servicer: object
    full_name: str


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    service_names: list[str] = field(default_factory=list)
    serving: bool = False
    """What the gRPC health service answers; also read by the plain-HTTP /healthz next to /metrics."""

    async def set_serving(self, serving: bool) -> None:
        self.serving = serving
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ["", *self.service_names]:
            await self.health.set(name, status)


async def create_server(
    addr: str,
    bindings: Sequence[ServiceBinding],
    *,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    outer_interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    credentials: grpc.ServerCredentials | None = None,
    peers: Sequence[str] = (),
    reflect_also: Sequence[str] = (),
) -> RunningServer:
    """Bind `addr` (port 0 picks a free one), register services, health and reflection; started. With
    `credentials` (mTLS, see agentmesh.rpc._tls) the port speaks only TLS; `peers` (with credentials): the
    certificate names admitted (the gateway's), any other certificate of the mesh CA answers PERMISSION_DENIED.
    `reflect_also`: full names of
    services served elsewhere that this server's reflection lists too (their descriptors must be imported)."""
    server = grpc.aio.server(
        # ErrorInterceptor maps errors raised by the interceptors after it. `outer_interceptors` (tracing,
        # metrics) wrap it, so they see the status code an error was mapped to.
        interceptors=[
            *outer_interceptors,
            ErrorInterceptor(),
            *([PeerInterceptor(peers)] if credentials is not None and peers else []),
            *interceptors,
        ],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
    )
    for b in bindings:
        b.add(b.servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [b.full_name for b in bindings]
    reflection.enable_server_reflection([*names, *reflect_also, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    port = server.add_secure_port(addr, credentials) if credentials is not None else server.add_insecure_port(addr)
    if port == 0:
        raise OSError(f"could not bind {addr}")
    await server.start()
    running = RunningServer(server=server, port=port, health=health_servicer, service_names=names)
    await running.set_serving(True)
    return running


async def serve_until_signal(
    running: RunningServer,
    *,
    grace_s: float = 5.0,
    on_drain: Callable[[float], Awaitable[None]] | None = None,
    on_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
) -> None:
    """Serve until SIGTERM/SIGINT; then NOT_SERVING (the gateway's health checks stop routing here), `on_drain`
    (the supervisor's runs finish their steps, at most `grace_s`), stop with what is left of the grace (at least
    2 s, for calls in flight), then close resources in order."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down", extra={"grace_s": grace_s})
    await running.set_serving(False)
    started = loop.time()
    if on_drain is not None:
        try:
            await on_drain(grace_s)
        except Exception:
            log.exception("error while draining")
    await running.server.stop(max(2.0, grace_s - (loop.time() - started)))
    for close in on_shutdown:
        try:
            await close()
        except Exception:
            log.exception("error while closing a resource")
