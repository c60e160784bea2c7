"""`agentmesh health NAME`: one gRPC health check of a service, for container healthchecks (docker compose)
and for people. Exit 0 when it answers SERVING, 1 otherwise, with the reason on stderr."""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agentmesh.rpc import channel_credentials
from agentmesh.settings import SERVICES, Settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("health", help="check a service's gRPC health (exit 0: SERVING)")
    p.add_argument("name", choices=SERVICES)
    p.add_argument("--addr", default=None, help="HOST:PORT (default: 127.0.0.1 and the service's settings port)")
    p.add_argument("--timeout", type=float, default=3.0)


async def run(args: argparse.Namespace) -> int:
    settings = Settings()
    addr = args.addr or f"127.0.0.1:{settings.port_of(args.name)}"
    # With mTLS on, the service checks itself with its own certificate (the one it serves with), so the probe
    # needs no identity the container does not already hold.
    channel = (
        grpc.aio.secure_channel(
            addr,
            channel_credentials(settings.tls_dir, args.name),
            options=[("grpc.ssl_target_name_override", args.name)],
        )
        if settings.tls_dir
        else grpc.aio.insecure_channel(addr)
    )
    async with channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=args.timeout
            )
        except grpc.aio.AioRpcError as e:
            print(f"{args.name} at {addr}: {e.code().name}: {e.details()}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"{args.name} at {addr}: {status}")
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1
