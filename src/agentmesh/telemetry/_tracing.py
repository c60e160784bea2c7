"""The tracer provider of one process, built only when an OTLP endpoint is configured.

It is deliberately NOT installed as OpenTelemetry's global provider: it is passed to the gRPC interceptors and
(as a tracer in `LLMInstruments`) to the LLM client. That keeps the anthropic SDK's own span
(`anthropic.messages.create`, which uses the global provider) silent, so every LLM call has exactly one span,
ours, named and attributed by the GenAI semantic conventions (see `agentmesh/llm/_instruments.py`)."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, SERVICE_NAMESPACE, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter


def create_tracer_provider(service: str, *, endpoint: str, protocol: str) -> TracerProvider:
    """A provider exporting in batches to `endpoint`. The sampler comes from OTEL_TRACES_SAMPLER(_ARG) (default:
    parent-based always-on, so a run sampled at the gateway is sampled in every service); batching from
    OTEL_BSP_*; extra resource attributes from OTEL_RESOURCE_ATTRIBUTES."""
    resource = Resource.create(
        {
            # OTEL_SERVICE_NAME wins when set (compose sets one per container); else one name per service.
            SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or f"agentmesh-{service}",
            SERVICE_NAMESPACE: "agentmesh",
            SERVICE_INSTANCE_ID: f"{socket.gethostname()}:{os.getpid()}",
        }
    )
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(_exporter(endpoint, protocol)))
    return provider


def _exporter(endpoint: str, protocol: str) -> SpanExporter:
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter(endpoint=endpoint, insecure=endpoint.startswith("http://"))
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    # The base endpoint gets the signal's path appended, as the OTLP spec says for OTEL_EXPORTER_OTLP_ENDPOINT.
    return HttpExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces")


def server_interceptors(provider: TracerProvider) -> list[grpc.aio.ServerInterceptor]:
    """A SERVER span per call of our own services (health checks and reflection are left out: Envoy probes
    every host every 2 s, which would bury the runs), continuing the caller's W3C traceparent."""
    from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters

    return [aio_server_interceptor(tracer_provider=provider, filter_=filters.service_prefix("agentmesh."))]


def client_interceptors(provider: TracerProvider) -> list[grpc.aio.ClientInterceptor]:
    """A CLIENT span per outgoing call, and the traceparent header that carries the trace through Envoy."""
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors(tracer_provider=provider))


class _QueryTracer(trace.Tracer):
    """The tracer the asyncpg instrumentation gets. It starts a query's span only inside a span of ours (an RPC,
    a run's step): the pool's own queries (lease renewals, the takeover poll, migrations) would otherwise each be
    a one-span trace, exported every few seconds and burying the runs. And it delegates to the provider set last,
    because asyncpg is instrumented once per process (it patches the Connection class) while a test process may
    build several providers."""

    def __init__(self) -> None:
        self.target: trace.Tracer | None = None

    def _active(self, context: Any) -> trace.Tracer | None:
        if self.target is None or not trace.get_current_span(context).get_span_context().is_valid:
            return None
        return self.target

    def start_span(self, name: str, context: Any = None, *args: Any, **kwargs: Any) -> trace.Span:
        tracer = self._active(context)
        return trace.INVALID_SPAN if tracer is None else tracer.start_span(name, context, *args, **kwargs)

    # The API's own decorator (_agnosticcontextmanager) is private; contextmanager gives the same protocol.
    @contextlib.contextmanager
    def start_as_current_span(  # type: ignore[override]
        self, name: str, context: Any = None, *args: Any, **kwargs: Any
    ) -> Iterator[trace.Span]:
        tracer = self._active(context)
        if tracer is None:
            yield trace.INVALID_SPAN  # not recording: the instrumentation skips its attributes too
            return
        with tracer.start_as_current_span(name, context, *args, **kwargs) as span:
            yield span


class _QueryTracerProvider(trace.TracerProvider):
    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return _QUERY_TRACER


_QUERY_TRACER = _QueryTracer()


def trace_database(provider: TracerProvider) -> bool:
    """A CLIENT span per asyncpg query (`db.statement` is the SQL with its $n placeholders, never the values), as a
    child of the span it runs in, so a run's checkpoint writes show in its trace. False when
    opentelemetry-instrumentation-asyncpg is not installed: tracing then works without database spans."""
    try:
        from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    except ImportError:
        return False
    _QUERY_TRACER.target = provider.get_tracer("agentmesh.db")
    instrumentor = AsyncPGInstrumentor(capture_parameters=False)
    if not instrumentor.is_instrumented_by_opentelemetry:  # a singleton: once per process
        instrumentor.instrument(tracer_provider=_QueryTracerProvider())
    return True
