"""The one object through which a process observes itself, built once in its composition root."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer
from prometheus_client import CollectorRegistry, Histogram

from agentmesh.llm import LLMClient, LLMInstruments
from agentmesh.settings import Settings
from agentmesh.telemetry import _tracing
from agentmesh.telemetry._metrics import LLMStatsCollector, RpcMetrics, RpcTelemetryInterceptor, llm_call_seconds

INSTRUMENTATION_SCOPE = "agentmesh"


@dataclass(frozen=True)
class Telemetry:
    """A process's metrics registry and, when an OTLP endpoint is configured, its tracer provider."""

    service: str
    registry: CollectorRegistry
    rpc: RpcMetrics
    llm_call_seconds: Histogram
    tracer_provider: TracerProvider | None = None

    @property
    def tracing(self) -> bool:
        return self.tracer_provider is not None

    def tracer(self) -> Tracer | None:
        """Our own spans' tracer; None with tracing off, so callers skip span work entirely."""
        return None if self.tracer_provider is None else self.tracer_provider.get_tracer(INSTRUMENTATION_SCOPE)

    def server_interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        """Outermost first: the tracing span (when on), then metrics; both outside the ErrorInterceptor."""
        tracing = [] if self.tracer_provider is None else _tracing.server_interceptors(self.tracer_provider)
        return [*tracing, RpcTelemetryInterceptor(self.rpc, tracing=self.tracing)]

    def client_interceptors(self) -> list[grpc.aio.ClientInterceptor]:
        """For channels to the gateway: client spans and the W3C traceparent header. None with tracing off."""
        return [] if self.tracer_provider is None else _tracing.client_interceptors(self.tracer_provider)

    def llm_instruments(self) -> LLMInstruments:
        """For `LLMClient(instruments=...)`: a GenAI span per call (with tracing on) and the latency histogram."""
        return LLMInstruments(agent=self.service, tracer=self.tracer(), call_seconds=self.llm_call_seconds)

    def register_llm(self, llm: LLMClient) -> None:
        """Export the client's own counters (calls, attempts, tokens, cost, limiter, breaker) at scrape time.
        One client per process: a second would export the same series twice."""
        self.registry.register(LLMStatsCollector(llm, agent=self.service))

    async def shutdown(self) -> None:
        """Flush the spans still batched (the exporter blocks: off the event loop)."""
        if self.tracer_provider is not None:
            await asyncio.to_thread(self.tracer_provider.shutdown)


def setup_telemetry(service: str, settings: Settings) -> Telemetry:
    """Metrics and (with OTEL_EXPORTER_OTLP_ENDPOINT set) tracing for this process. Installs nothing global."""
    endpoint = settings.otel_exporter_otlp_endpoint
    provider = None
    if endpoint:
        provider = _tracing.create_tracer_provider(
            service, endpoint=endpoint, protocol=settings.otel_exporter_otlp_protocol
        )
        _tracing.trace_database(provider)
    registry = CollectorRegistry()
    return Telemetry(
        service=service,
        registry=registry,
        rpc=RpcMetrics(registry),
        llm_call_seconds=llm_call_seconds(registry),
        tracer_provider=provider,
    )
