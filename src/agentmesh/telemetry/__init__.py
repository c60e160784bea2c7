"""How every process observes itself, set up once from settings and the standard OTEL_* variables.

- Logs: JSON lines, metadata only (ids, agent, tokens, latency, model, status), never prompt or customer text.
- Metrics: Prometheus, in a registry per process, served on HTTP /metrics (gRPC port + metrics_port_offset).
- Traces: only with OTEL_EXPORTER_OTLP_ENDPOINT set: gRPC server and client spans with W3C traceparent (through
  Envoy, which traces too), one GenAI span per LLM call (opened by the LLMClient, with the instruments
  `Telemetry.llm_instruments()` gives it). Unset: no provider and no tracing interceptors."""

from agentmesh.telemetry._logging import JsonFormatter, setup_logging
from agentmesh.telemetry._metrics import LLMStatsCollector, MetricsServer, RpcMetrics, RpcTelemetryInterceptor
from agentmesh.telemetry._telemetry import Telemetry, setup_telemetry

__all__ = [
    "JsonFormatter",
    "LLMStatsCollector",
    "MetricsServer",
    "RpcMetrics",
    "RpcTelemetryInterceptor",
    "Telemetry",
    "setup_logging",
    "setup_telemetry",
]
