"""Issue 12's limits and least privilege on one real grpc.aio server (no mesh): the per-key token bucket, the
health service's Watch through the mesh's interceptors, and the peer-identity check of mTLS (a service admits the
gateway's certificate and refuses another service's of the same CA)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from agentmesh.errors import ResourceExhausted
from agentmesh.rpc import (
    KeyRateLimiter,
    RunningServer,
    ServiceBinding,
    create_server,
    generate_certs,
    server_credentials,
)
from agentmesh.rpc._auth import AuthInterceptor


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_key_gets_its_burst_then_waits_for_its_rate_and_other_keys_are_not_affected() -> None:
    clock = FakeClock()
    limiter = KeyRateLimiter(rate_per_s=2.0, burst=3, clock=clock)
    for _ in range(3):
        limiter.take("key-a")
    with pytest.raises(ResourceExhausted) as caught:
        limiter.take("key-a")
    assert caught.value.reason == "KEY_RATE_LIMITED"
    assert caught.value.retry_after_s == pytest.approx(0.5)  # one token at 2/s
    limiter.take("key-b")  # a bucket per key
    clock.now += 0.5
    limiter.take("key-a")  # refilled by exactly one
    with pytest.raises(ResourceExhausted):
        limiter.take("key-a")


def test_buckets_stay_bounded_under_key_spraying() -> None:
    clock = FakeClock()
    limiter = KeyRateLimiter(rate_per_s=1.0, burst=1, max_keys=10, clock=clock)
    for i in range(1000):
        limiter.take(f"k{i}")
    assert len(limiter._buckets) <= 10


async def _tenant_of(key: str) -> str | None:
    return "tenant-a" if key == "am_good" else None


async def _echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    return request


def _add_echo(_servicer: object, server: grpc.aio.Server) -> None:
    handler = grpc.unary_unary_rpc_method_handler(_echo)  # bytes in, bytes out
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", {"Call": handler}),))


async def test_the_auth_interceptor_answers_resource_exhausted_with_retry_info_past_the_rate() -> None:
    auth = AuthInterceptor(tenant_of=_tenant_of, internal_token=None, rate=KeyRateLimiter(rate_per_s=0.5, burst=2))
    running = await create_server("127.0.0.1:0", [ServiceBinding(_add_echo, None, "test.Echo")], interceptors=[auth])
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            call = ch.unary_unary("/test.Echo/Call")
            key = (("authorization", "Bearer am_good"),)
            assert [await call(b"x", metadata=key, timeout=5) for _ in range(2)] == [b"x", b"x"]
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call(b"x", metadata=key, timeout=5)
            # An unknown key is refused as before and costs no bucket.
            with pytest.raises(grpc.aio.AioRpcError) as unknown:
                await call(b"x", metadata=(("authorization", "Bearer am_bad"),), timeout=5)
    finally:
        await running.server.stop(0)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    status = rpc_status.from_call(caught.value)
    assert status is not None
    info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info) and info.reason == "KEY_RATE_LIMITED"
    assert status.details[1].Unpack(retry) and 1.0 < retry.retry_delay.ToTimedelta().total_seconds() <= 2.0
    assert unknown.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def _watch_first(running: RunningServer, credentials: grpc.ChannelCredentials | None = None) -> int:
    addr = f"127.0.0.1:{running.port}"
    channel = (
        grpc.aio.secure_channel(addr, credentials, options=[("grpc.ssl_target_name_override", "localhost")])
        if credentials
        else grpc.aio.insecure_channel(addr)
    )
    async with channel:
        call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=5)
        async for reply in call:
            call.cancel()
            return int(reply.status)
    raise AssertionError("Watch ended without a status")


async def test_health_watch_streams_its_status_through_the_interceptors() -> None:
    # grpc_health's Watch writes with context.write (a coroutine, not a generator): wrapped as a generator by
    # every interceptor it answered INTERNAL; this is why Health/Watch failed through the gateway too.
    auth = AuthInterceptor(tenant_of=_tenant_of, internal_token=None)
    running = await create_server("127.0.0.1:0", [], interceptors=[auth])
    try:
        assert await _watch_first(running) == health_pb2.HealthCheckResponse.SERVING
        await running.set_serving(False)
        assert await _watch_first(running) == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        await running.server.stop(0)


@pytest.fixture
async def mtls_server(tmp_path: Path) -> AsyncIterator[tuple[RunningServer, Path]]:
    generate_certs(tmp_path, ["gateway", "supervisor", "researcher"])
    running = await create_server(
        "127.0.0.1:0", [], credentials=server_credentials(tmp_path, "researcher"), peers=("gateway",)
    )
    try:
        yield running, tmp_path
    finally:
        await running.server.stop(0)


def _creds(tls: Path, name: str) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=(tls / "ca.crt").read_bytes(),
        private_key=(tls / f"{name}.key").read_bytes(),
        certificate_chain=(tls / f"{name}.crt").read_bytes(),
    )


async def _list_services(running: RunningServer, creds: grpc.ChannelCredentials) -> grpc.StatusCode:
    opts = [("grpc.ssl_target_name_override", "localhost")]
    async with grpc.aio.secure_channel(f"127.0.0.1:{running.port}", creds, options=opts) as ch:
        call = reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(timeout=5)
        try:
            await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
            await call.done_writing()
        except grpc.aio.AioRpcError:
            # The server may refuse the stream before the request is written (the write then fails locally with
            # INTERNAL): the call's own status, from the server, says why.
            return await call.code()
        try:
            async for _ in call:
                pass
        except grpc.aio.AioRpcError as exc:
            status = rpc_status.from_call(exc)
            if status is not None:
                info = error_details_pb2.ErrorInfo()
                assert status.details[0].Unpack(info) and info.reason == "PEER_NOT_ALLOWED"
            return exc.code()
    return grpc.StatusCode.OK


async def test_a_service_admits_the_gateways_certificate_only(mtls_server: tuple[RunningServer, Path]) -> None:
    running, tls = mtls_server
    assert await _list_services(running, _creds(tls, "gateway")) == grpc.StatusCode.OK
    # Same CA, another identity: the supervisor cannot go around the gateway to an agent.
    assert await _list_services(running, _creds(tls, "supervisor")) == grpc.StatusCode.PERMISSION_DENIED
    # Probes check a service with its own certificate: health stays open to any certificate of the mesh.
    assert await _watch_first(running, _creds(tls, "researcher")) == health_pb2.HealthCheckResponse.SERVING
