"""The observability runtime in one process: GenAI spans of LLM calls (against the simulator, through the real
SDK), the gRPC metrics/status interceptor, the /metrics endpoint, trace ids in log lines, and the zero-cost
path when no OTLP endpoint is set. Spans go to an in-memory exporter of a provider made here, never global."""

from __future__ import annotations

import json
import logging
import socket
from typing import Any

import aiohttp
import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry

from agentmesh.agent import AgentServicer
from agentmesh.errors import AgentMeshError
from agentmesh.llm import LLMClient
from agentmesh.rpc import ServiceBinding, create_server
from agentmesh.settings import Settings
from agentmesh.telemetry import JsonFormatter, MetricsServer, RpcMetrics, Telemetry, setup_telemetry
from agentmesh.telemetry._metrics import llm_call_seconds
from agentmesh.v1 import agent_pb2, agent_pb2_grpc

SECRET_PROMPT = "Summarise the merger plans of Initech for Jane Roe"


def _provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _telemetry(provider: TracerProvider | None) -> Telemetry:
    registry = CollectorRegistry()
    return Telemetry(
        service="researcher",
        registry=registry,
        rpc=RpcMetrics(registry),
        llm_call_seconds=llm_call_seconds(registry),
        tracer_provider=provider,
    )


async def _put_faults(sim: str, **faults: Any) -> None:
    async with aiohttp.ClientSession() as http, http.put(f"{sim}/_sim/faults", json=faults) as resp:
        assert resp.status == 200


def _llm(sim: str, telemetry: Telemetry, **overrides: Any) -> LLMClient:
    """A client instrumented and registered as a composition root does it."""
    llm = LLMClient(
        settings=Settings(
            **{
                "anthropic_base_url": sim,
                "llm_backoff_base_s": 0.01,
                "llm_backoff_max_s": 0.02,
                "llm_jitter_ms": 0,
                **overrides,
            }
        ),
        instruments=telemetry.llm_instruments(),
    )
    telemetry.register_llm(llm)
    return llm


async def test_an_llm_call_is_one_genai_span_with_usage_and_no_text(sim_url: str) -> None:
    provider, exporter = _provider()
    telemetry = _telemetry(provider)
    llm = _llm(sim_url, telemetry)
    result = await llm.complete(
        system="You are a researcher.",
        messages=[{"role": "user", "content": SECRET_PROMPT}],
        max_tokens=100,
        attributes={"agentmesh.run_id": "r1", "agentmesh.step": 1},
    )
    await llm.close()
    spans = exporter.get_finished_spans()
    # Exactly one span: ours. The SDK's own span would need OpenTelemetry's global provider, never installed.
    assert [s.name for s in spans] == ["chat claude-haiku-4-5"]
    span = spans[0]
    assert span.kind is SpanKind.CLIENT
    attrs = dict(span.attributes or {})
    assert attrs["gen_ai.operation.name"] == "chat" and attrs["gen_ai.provider.name"] == "anthropic"
    assert attrs["gen_ai.request.model"] == "claude-haiku-4-5"
    assert attrs["gen_ai.usage.input_tokens"] == result.input_tokens > 0
    assert attrs["gen_ai.usage.output_tokens"] == result.output_tokens > 0
    assert attrs["gen_ai.response.finish_reasons"] == ("end_turn",)
    assert attrs["agentmesh.llm.attempts"] == 1 and attrs["agentmesh.cost_usd"] == pytest.approx(result.cost_usd)
    assert attrs["agentmesh.breaker.state"] == "closed" and attrs["agentmesh.run_id"] == "r1"
    assert "Initech" not in json.dumps(attrs) and "Jane" not in json.dumps(attrs)  # metadata only
    assert (
        telemetry.registry.get_sample_value(
            "agentmesh_llm_call_duration_seconds_count",
            {"agent": "researcher", "model": "claude-haiku-4-5", "outcome": "ok"},
        )
        == 1
    )
    assert (
        telemetry.registry.get_sample_value(
            "agentmesh_llm_calls_total", {"agent": "researcher", "model": "claude-haiku-4-5"}
        )
        == 1
    )


async def test_a_failed_llm_call_is_an_error_span_with_a_stable_error_type(sim_url: str) -> None:
    provider, exporter = _provider()
    telemetry = _telemetry(provider)
    llm = _llm(sim_url, telemetry, llm_max_attempts=2, breaker_failure_threshold=100)
    await _put_faults(sim_url, outage=529)
    with pytest.raises(AgentMeshError):
        await llm.complete(system="s", messages=[{"role": "user", "content": "hi"}], max_tokens=10)
    await llm.close()
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None and span.attributes["error.type"] == "LLM_PROVIDER_UNAVAILABLE"
    assert not span.events  # no exception event: its message and stack trace are not metadata
    assert (
        telemetry.registry.get_sample_value(
            "agentmesh_llm_failed_attempts_total", {"agent": "researcher", "model": "claude-haiku-4-5", "cause": "529"}
        )
        == 2
    )
    assert (
        telemetry.registry.get_sample_value(
            "agentmesh_llm_call_duration_seconds_count",
            {"agent": "researcher", "model": "claude-haiku-4-5", "outcome": "LLM_PROVIDER_UNAVAILABLE"},
        )
        == 1
    )


async def test_with_tracing_off_an_llm_call_is_only_timed(sim_url: str) -> None:
    telemetry = _telemetry(None)
    assert telemetry.llm_instruments().tracer is None
    llm = _llm(sim_url, telemetry)
    await llm.complete(system="s", messages=[{"role": "user", "content": "hi"}], max_tokens=10)
    await llm.close()
    assert (
        telemetry.registry.get_sample_value(
            "agentmesh_llm_call_duration_seconds_count",
            {"agent": "researcher", "model": "claude-haiku-4-5", "outcome": "ok"},
        )
        == 1
    )


def test_with_no_endpoint_there_is_no_provider_and_no_tracing_interceptor() -> None:
    telemetry = setup_telemetry("guard", Settings(_env_file=None, **{"OTEL_EXPORTER_OTLP_ENDPOINT": ""}))
    assert telemetry.tracer_provider is None and telemetry.tracer() is None
    assert telemetry.client_interceptors() == []
    assert [type(i).__name__ for i in telemetry.server_interceptors()] == ["RpcTelemetryInterceptor"]


async def test_rpc_calls_are_counted_by_final_code_and_the_span_gets_that_code() -> None:
    provider, exporter = _provider()
    telemetry = _telemetry(provider)
    llm = LLMClient(settings=Settings(), instruments=telemetry.llm_instruments())
    servicer = AgentServicer(name="researcher", system_prompt="s", llm=llm, default_max_tokens=10)
    running = await create_server(
        "127.0.0.1:0",
        [ServiceBinding(agent_pb2_grpc.add_AgentServiceServicer_to_server, servicer, "agentmesh.v1.AgentService")],
        outer_interceptors=telemetry.server_interceptors(),
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as err:  # an empty task: the servicer raises InvalidArgument
                await agent_pb2_grpc.AgentServiceStub(channel).Act(agent_pb2.ActRequest(task=""), timeout=5)
    finally:
        await running.server.stop(0)
        await llm.close()
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    labels = {"grpc_service": "agentmesh.v1.AgentService", "grpc_method": "Act"}
    assert (
        telemetry.registry.get_sample_value(
            "agentmesh_grpc_server_handled_total", {**labels, "grpc_code": "INVALID_ARGUMENT"}
        )
        == 1
    )
    assert telemetry.registry.get_sample_value("agentmesh_grpc_server_handling_seconds_count", labels) == 1
    (span,) = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert span.name == "/agentmesh.v1.AgentService/Act" and span.status.status_code is StatusCode.ERROR
    assert (
        span.attributes is not None
        and span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    )


async def test_metrics_endpoint_serves_the_registry_and_a_taken_port_is_not_fatal() -> None:
    telemetry = _telemetry(None)
    telemetry.rpc.handled.labels("agentmesh.v1.GuardService", "Check", "OK").inc()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = await MetricsServer.start(telemetry.registry, "127.0.0.1", port)
    assert server is not None
    try:
        async with aiohttp.ClientSession() as http, http.get(server.url) as resp:
            body = await resp.text()
            assert resp.status == 200 and resp.content_type == "text/plain"
        assert 'agentmesh_grpc_server_handled_total{grpc_code="OK",grpc_method="Check"' in body
        assert await MetricsServer.start(telemetry.registry, "127.0.0.1", port) is None  # taken: logged, not raised
    finally:
        await server.stop()


async def test_healthz_answers_what_the_grpc_health_service_answers() -> None:
    # The k8s probes' endpoint: a real server's health, flipped as a SIGTERM would flip it.
    telemetry = _telemetry(None)
    running = await create_server("127.0.0.1:0", [])
    server = await MetricsServer.start(telemetry.registry, "127.0.0.1", 0, serving=lambda: running.serving)
    assert server is not None
    healthz = server.url.replace("/metrics", "/healthz")
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(healthz) as resp:
                assert (resp.status, await resp.text()) == (200, "SERVING\n")
            await running.set_serving(False)
            async with http.get(healthz) as resp:
                assert (resp.status, await resp.text()) == (503, "NOT_SERVING\n")
    finally:
        await server.stop()
        await running.server.stop(0)


def test_log_lines_written_inside_a_span_carry_its_trace_id() -> None:
    provider, _ = _provider()
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "act", None, None)
    record.run_id = "r1"
    with provider.get_tracer("t").start_as_current_span("s") as span:
        line = json.loads(JsonFormatter("researcher", trace_ids=True).format(record))
    assert line["trace_id"] == format(span.get_span_context().trace_id, "032x") and line["run_id"] == "r1"
    assert "trace_id" not in json.loads(JsonFormatter("researcher").format(record))


def test_the_telemetry_package_exports_a_small_surface() -> None:
    import agentmesh.telemetry

    assert sorted(agentmesh.telemetry.__all__) == sorted(
        [
            "JsonFormatter",
            "LLMStatsCollector",
            "MetricsServer",
            "RpcMetrics",
            "RpcTelemetryInterceptor",
            "Telemetry",
            "setup_logging",
            "setup_telemetry",
        ]
    )
