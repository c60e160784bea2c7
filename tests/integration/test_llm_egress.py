"""The gateway's LLM egress (AGENTMESH_LLM_MESH_CONCURRENCY): a real Envoy in front of the simulator (or a slow
SSE stand-in), the real anthropic SDK and LLM client through it, then a whole mesh. What must hold: the provider
never sees more than N calls, the rest wait their turn and finish; a full queue answers 503 x-envoy-overloaded,
which the client retries without blaming the provider; the provider's 429s and headers reach the client as
they are; streams are passed on as they arrive, and their failures stay retryable."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import grpc
import pytest
from aiohttp import web

from agentmesh.gateway import LLMEgress, local_spec, render_envoy_config
from agentmesh.llm import BreakerState, LLMClient
from agentmesh.llm._retry import EGRESS_OVERLOADED, classify
from agentmesh.settings import Settings
from agentmesh.v1 import supervisor_pb2, supervisor_pb2_grpc
from tests.integration.envoy_harness import ENVOY, free_ports
from tests.mesh import Mesh, start_mesh, stop_mesh
from tests.simctl import put_faults, sim_stats

MSG = [{"role": "user", "content": "Summarise the benefits of circuit breakers."}]
MODEL = "claude-haiku-4-5"


@dataclass
class Egress:
    url: str
    admin: str
    envoy: asyncio.subprocess.Process
    log: Path

    async def stats(self) -> dict[str, int]:
        async with aiohttp.ClientSession() as http, http.get(f"http://{self.admin}/stats?format=json") as resp:
            body = await resp.json()
        return {s["name"]: s.get("value", 0) for s in body["stats"] if "value" in s}


@contextlib.asynccontextmanager
async def egress_gateway(
    workdir: Path, provider_url: str, *, concurrency: int, max_pending_requests: int = 10_000
) -> AsyncIterator[Egress]:
    """The gateway config with only its egress in use (the service clusters point at closed ports)."""
    public, internal, admin, listen, *dead = free_ports(7)
    egress = dataclasses.replace(
        LLMEgress.for_url(provider_url, listen=("127.0.0.1", listen), concurrency=concurrency),
        max_pending_requests=max_pending_requests,
    )
    spec = local_spec(
        ports={"supervisor": [dead[0]], "guard": [dead[1]]},
        public=("127.0.0.1", public),
        internal=("127.0.0.1", internal),
        admin=("127.0.0.1", admin),
        egress=egress,
    )
    config = workdir / "envoy.yaml"
    config.write_text(render_envoy_config(spec))
    log = workdir / "envoy.log"
    with log.open("wb") as out:
        # One worker, as `agentmesh up` runs a gateway that carries the egress (one connection pool: an exact cap).
        envoy = await asyncio.create_subprocess_exec(
            ENVOY,
            "-c",
            str(config),
            "--disable-hot-restart",
            "--concurrency",
            "1",
            "--base-id",
            str(random.randrange(1, 1 << 20)),
            "-l",
            "warning",
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    gw = Egress(url=f"http://127.0.0.1:{listen}", admin=f"127.0.0.1:{admin}", envoy=envoy, log=log)
    try:
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError, aiohttp.ClientError):
                async with aiohttp.ClientSession() as http, http.get(f"http://{gw.admin}/ready") as resp:
                    if (await resp.text()).strip() == "LIVE":
                        break
            if envoy.returncode is not None or time.monotonic() > deadline:
                pytest.fail(f"envoy did not become ready:\n{log.read_text(errors='replace')[-3000:]}")
            await asyncio.sleep(0.05)
        yield gw
    finally:
        if envoy.returncode is None:
            envoy.terminate()  # only the process this fixture started
            await envoy.wait()


def _client(base_url: str, **overrides: Any) -> LLMClient:
    base = {
        "anthropic_base_url": base_url,
        "llm_backoff_base_s": 0.02,
        "llm_backoff_max_s": 0.1,
        "llm_timeout_s": 10.0,
        "llm_jitter_ms": 0,
    }
    return LLMClient(settings=Settings(**{**base, **overrides}))


def _sdk(base_url: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        api_key="test", base_url=base_url, max_retries=0, http_client=anthropic.DefaultAioHttpClient()
    )


async def test_calls_queue_at_the_cap_and_the_provider_never_sees_more(sim_url: str, tmp_path: Path) -> None:
    # A provider that would 429 above 3 calls; 12 callers; the egress lets 3 through at a time.
    await put_faults(sim_url, latency_ms=150, max_concurrency=3, retry_after_s=0.05)
    async with egress_gateway(tmp_path, sim_url, concurrency=3) as gw:
        llm = _client(gw.url)
        try:
            results = await asyncio.gather(*(llm.complete(system="s", messages=MSG, max_tokens=60) for _ in range(12)))
        finally:
            await llm.close()
        stats = await sim_stats(sim_url)
        envoy = await gw.stats()
    assert all(r.text and r.attempts == 1 for r in results), llm.stats.failures
    assert stats["in_flight_max"] == 3 and stats["requests_total"] == 12
    assert stats["responses_by_status"] == {"200": 12}  # queued, never rejected: no 429 at all
    assert envoy["cluster.llm_provider.upstream_rq_pending_total"] >= 12 - 3
    assert envoy["cluster.llm_provider.upstream_cx_total"] <= 3


async def test_a_full_queue_answers_503_overloaded_and_the_client_retries_it(sim_url: str, tmp_path: Path) -> None:
    await put_faults(sim_url, latency_ms=300)
    async with egress_gateway(tmp_path, sim_url, concurrency=1, max_pending_requests=1) as gw:
        sdk = _sdk(gw.url)
        try:
            outcomes = await asyncio.gather(
                *(sdk.messages.create(model=MODEL, system="s", messages=MSG, max_tokens=50) for _ in range(4)),
                return_exceptions=True,
            )
        finally:
            await sdk.close()
        rejected = [o for o in outcomes if isinstance(o, BaseException)]
        # One slot, one waiting place: the rest overflow (while the first connection is set up, the first call
        # holds the waiting place, so up to three of the four may).
        assert 1 <= len(rejected) <= 3
        for exc in rejected:
            assert isinstance(exc, anthropic.ServiceUnavailableError), exc
            assert exc.response.headers.get("x-envoy-overloaded") == "true"
            assert exc.type == EGRESS_OVERLOADED and "queue is full" in str(exc)
            failure = classify(exc)
            assert failure is not None and failure.transient and not failure.provider_fault and not failure.rate_limited
        assert (await gw.stats())["cluster.llm_provider.upstream_rq_pending_overflow"] == len(rejected)

        # Our client retries the overflow with backoff: every call finishes, and the breaker never opened.
        llm = _client(gw.url, llm_max_attempts=20, breaker_failure_threshold=2)
        try:
            results = await asyncio.gather(*(llm.complete(system="s", messages=MSG, max_tokens=50) for _ in range(4)))
        finally:
            await llm.close()
    assert all(r.text for r in results)
    assert llm.stats.failures[EGRESS_OVERLOADED] > 0
    assert llm.breaker.state == BreakerState.CLOSED and not llm.stats.breaker_transitions
    assert llm.limiter.decreases == 0  # our own queue is not the provider's 429


async def test_the_providers_429_and_its_headers_pass_through(sim_url: str, tmp_path: Path) -> None:
    # The egress admits 4, the provider only 1: the provider's 429s must reach the client as they are.
    await put_faults(sim_url, latency_ms=200, max_concurrency=1, retry_after_s=0.05)
    async with egress_gateway(tmp_path, sim_url, concurrency=4) as gw:
        sdk = _sdk(gw.url)
        try:
            outcomes = await asyncio.gather(
                *(sdk.messages.create(model=MODEL, system="s", messages=MSG, max_tokens=50) for _ in range(3)),
                return_exceptions=True,
            )
        finally:
            await sdk.close()
        limited = [o for o in outcomes if isinstance(o, anthropic.RateLimitError)]
        assert limited, outcomes
        headers = limited[0].response.headers
        assert headers["retry-after-ms"] == "50" and headers["retry-after"] == "1"
        assert headers["request-id"].startswith("req_")
        assert limited[0].type == "rate_limit_error"

        llm = _client(gw.url)  # and the client honours them: everything finishes
        try:
            results = await asyncio.gather(*(llm.complete(system="s", messages=MSG, max_tokens=50) for _ in range(4)))
        finally:
            await llm.close()
    assert all(r.text for r in results) and llm.stats.failures["429"] > 0


@pytest.mark.parametrize(
    ("fault", "kind"),
    [("error_event", "stream_error:overloaded_error"), ("cut", "stream_cut"), ("truncate", "stream_truncated")],
)
async def test_stream_failures_through_the_egress_stay_retryable(
    sim_url: str, tmp_path: Path, fault: str, kind: str
) -> None:
    await put_faults(sim_url, stream_fault=fault, stream_fault_rate=0.5, seed=3)
    async with egress_gateway(tmp_path, sim_url, concurrency=2) as gw:
        llm = _client(gw.url, llm_max_attempts=10, breaker_failure_threshold=100)
        try:
            results = [await llm.complete(system="s", messages=MSG, max_tokens=80, stream=True) for _ in range(6)]
        finally:
            await llm.close()
    assert all(r.stop_reason == "end_turn" and r.text for r in results)
    assert llm.stats.failures[kind] > 0


# --- streams are passed on as they arrive ------------------------------------------------------------------------

PAUSE_S = 1.0


def _sse(event: str, data: str) -> bytes:
    return f"event: {event}\ndata: {data}\n\n".encode()


async def _slow_stream(request: web.Request) -> web.StreamResponse:
    """A provider that sends message_start, then thinks for PAUSE_S before the rest of the answer."""
    await request.read()
    response = web.StreamResponse(headers={"content-type": "text/event-stream", "request-id": "req_slow"})
    await response.prepare(request)
    start = (
        '{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"'
        + MODEL
        + '","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":5,"output_tokens":1}}}'
    )
    await response.write(_sse("message_start", start))
    await asyncio.sleep(PAUSE_S)
    for event, data in [
        ("content_block_start", '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}'),
        ("content_block_delta", '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"late"}}'),
        ("content_block_stop", '{"type":"content_block_stop","index":0}'),
        (
            "message_delta",
            '{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
            '"usage":{"output_tokens":2}}',
        ),
        ("message_stop", '{"type":"message_stop"}'),
    ]:
        await response.write(_sse(event, data))
    await response.write_eof()
    return response


@pytest.fixture
async def slow_provider() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/v1/messages", _slow_stream)
    runner = web.AppRunner(app)
    await runner.setup()
    (port,) = free_ports(1)
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_streams_pass_through_unbuffered(slow_provider: str, tmp_path: Path) -> None:
    async with egress_gateway(tmp_path, slow_provider, concurrency=2) as gw:
        sdk = _sdk(gw.url)
        try:
            started = time.monotonic()
            async with sdk.messages.stream(model=MODEL, system="s", messages=MSG, max_tokens=50) as stream:
                seen: list[tuple[str, float]] = []
                async for event in stream:
                    seen.append((event.type, time.monotonic() - started))
                final = await stream.get_final_message()
        finally:
            await sdk.close()
    first_type, first_at = seen[0]
    assert first_type == "message_start"
    # The first event arrived while the provider was still pausing: Envoy did not hold the body back.
    assert first_at < PAUSE_S * 0.6, seen
    assert seen[-1][1] >= PAUSE_S and final.stop_reason == "end_turn" and final.content[0].text == "late"  # type: ignore[union-attr]


# --- a whole mesh behind the egress ---------------------------------------------------------------------------

QUESTION = "Compare two payment providers and recommend one"


@pytest.fixture(scope="module")
def capped_mesh(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    # Streaming on: every LLM call of the mesh is a stream through the egress.
    m = start_mesh(
        tmp_path_factory.mktemp("egress-mesh"),
        database_url,
        extra_env={"AGENTMESH_LLM_MESH_CONCURRENCY": "2", "AGENTMESH_LLM_STREAM": "true"},
    )
    try:
        yield m
    finally:
        stop_mesh(m.proc)


async def test_a_mesh_keeps_the_provider_at_the_cap_while_every_run_finishes(capped_mesh: Mesh) -> None:
    mesh = capped_mesh
    # The simulator keeps its own URL in the launcher's contract line; the services were pointed at the egress.
    assert f"LLM egress on http://{mesh.egress}" in "\n".join(mesh.lines)
    assert any(line == f"simulator ready on {mesh.sim}" for line in mesh.lines)
    mesh.reset_sim()
    # Without the egress, 10 runs would put up to 4 processes x 30 calls at a provider that admits 2.
    mesh.set_faults(latency_ms=100, max_concurrency=2, retry_after_s=0.5)
    async with grpc.aio.insecure_channel(mesh.gateway) as channel:
        stub = supervisor_pb2_grpc.SupervisorServiceStub(channel)

        async def one() -> supervisor_pb2.RunEvent:
            events = [
                e
                async for e in stub.Run(supervisor_pb2.RunRequest(message=QUESTION), metadata=mesh.auth(), timeout=120)
            ]
            return events[-1]

        finals = await asyncio.gather(*(one() for _ in range(10)))
    assert all(f.WhichOneof("event") == "final" and f.final.answer for f in finals)
    assert all(f.final.reason == supervisor_pb2.FINISH_REASON_COMPLETED for f in finals)
    stats = mesh.sim_stats()
    assert stats["in_flight_max"] <= 2
    assert stats["responses_by_status"].get("429", 0) == 0  # queued at the egress, never rejected by the provider
    llm_calls = sum(f.final.usage.llm_calls for f in finals)
    assert stats["streams_total"] == stats["requests_total"] == llm_calls  # one attempt per call, each a stream
    envoy = mesh.envoy_stats()
    assert envoy["cluster.llm_provider.upstream_rq_total"] == llm_calls
    assert envoy["cluster.llm_provider.upstream_rq_pending_overflow"] == 0
