"""Process-level wiring shared by every service's `main()`: logging, tracing, the LLM client, the gRPC
server with health and reflection, and a clean shutdown."""

from __future__ import annotations

import gc
import logging
from collections.abc import Awaitable, Callable, Sequence

import grpc

from agentmesh.agent import AgentServicer, Toolbox
from agentmesh.catalog import Entry, load_catalog
from agentmesh.llm import LLMClient
from agentmesh.mcp_tools import CombinedToolbox, GuardScreen, McpToolbox
from agentmesh.rpc import (
    GatewayChannels,
    KeyRateLimiter,
    RequestValidator,
    RunningServer,
    ServiceBinding,
    ValidationInterceptor,
    channel_credentials,
    create_server,
    serve_until_signal,
    server_credentials,
    settings_text_limits,
)
from agentmesh.settings import ServiceName, Settings
from agentmesh.telemetry import MetricsServer, Telemetry, setup_logging, setup_telemetry
from agentmesh.v1 import agent_pb2_grpc

log = logging.getLogger(__name__)

GATEWAY_IDENTITY = "gateway"  # the name in the gateway's certificate (`agentmesh certs`)


def key_rate(settings: Settings) -> KeyRateLimiter | None:
    """The per-key request rate of a service that takes API keys (AGENTMESH_KEY_RATE_PER_S; 0: none)."""
    if not settings.key_rate_per_s:
        return None
    return KeyRateLimiter(rate_per_s=settings.key_rate_per_s, burst=settings.key_rate_burst)


def process_setup(name: ServiceName, settings: Settings) -> Telemetry:
    """Logging, metrics and tracing (when OTEL_EXPORTER_OTLP_ENDPOINT is set) for this process."""
    telemetry = setup_telemetry(name, settings)
    setup_logging(name, settings.log_level, trace_ids=telemetry.tracing)
    return telemetry


async def serve_bindings(
    name: ServiceName,
    settings: Settings,
    bindings: Sequence[ServiceBinding],
    *,
    port: int | None = None,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    telemetry: Telemetry | None = None,
    on_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
    on_drain: Callable[[float], Awaitable[None]] | None = None,
    reflect_also: Sequence[str] = (),
) -> None:
    addr = f"{settings.host}:{settings.port_of(name) if port is None else port}"
    running: RunningServer = await create_server(
        addr,
        bindings,
        # Input rules innermost, after auth: a caller without a key learns nothing about them.
        interceptors=[
            *interceptors,
            ValidationInterceptor(RequestValidator(text_limits=settings_text_limits(settings))),
        ],
        outer_interceptors=telemetry.server_interceptors() if telemetry is not None else (),
        credentials=server_credentials(settings.tls_dir, name) if settings.tls_dir is not None else None,
        # Least privilege: only the gateway reaches a service; another service's certificate does not.
        peers=(GATEWAY_IDENTITY,),
        reflect_also=reflect_also,
    )
    # What start-up built (modules, the SDK's and protobuf's types, clients) lives as long as the process: out of
    # the collector's sight, a full collection scans only what serving made. Unfrozen, each of the supervisor's
    # scanned ~300k objects (~0.2 s of CPU, and a pause) every few hundred runs.
    gc.collect()
    gc.freeze()
    # Serving allocates in bursts (a request's protobufs, dicts and coroutines live across a few awaits): at the
    # default 700 allocations a young collection ran every few requests and scanned, and promoted, what was still
    # in flight. At 20,000 most of it is gone before a collection looks.
    gc.set_threshold(20_000, 20, 20)
    metrics = None
    if telemetry is not None and settings.metrics_port_offset:
        metrics = await MetricsServer.start(
            telemetry.registry,
            settings.host,
            running.port + settings.metrics_port_offset,
            serving=lambda: running.serving,
        )
    log.info(
        "serving",
        extra={
            "service": name,
            "port": running.port,
            "metrics": metrics.url if metrics else None,
            "tracing": telemetry is not None and telemetry.tracing,
        },
    )
    # Spans are flushed last, so those of the shutdown itself are exported too.
    closers = [*on_shutdown, *([metrics.stop] if metrics else []), *([telemetry.shutdown] if telemetry else [])]
    await serve_until_signal(running, grace_s=settings.shutdown_grace_s, on_drain=on_drain, on_shutdown=closers)


async def serve_agent(
    name: ServiceName,
    settings: Settings,
    *,
    system_prompt: str,
    toolbox: Toolbox | None = None,
    port: int | None = None,
) -> None:
    """The whole life of an agent process: the researcher, analyst and executor differ only in their args."""
    telemetry = process_setup(name, settings)
    llm = LLMClient(settings=settings, instruments=telemetry.llm_instruments())
    telemetry.register_llm(llm)
    closers: list[Callable[[], Awaitable[None]]] = [llm.close]
    entry = load_catalog(settings.agents_file, settings).get(name)
    if entry is not None and entry.mcp:
        toolbox = await mcp_toolbox(name, settings, entry, toolbox, telemetry, closers)
    elif entry is not None and not entry.tools:
        toolbox = None
    servicer = AgentServicer(
        name=name,
        system_prompt=system_prompt,
        llm=llm,
        default_max_tokens=settings.agent_max_output_tokens,
        toolbox=toolbox,
    )
    binding = ServiceBinding(agent_pb2_grpc.add_AgentServiceServicer_to_server, servicer, "agentmesh.v1.AgentService")
    await serve_bindings(name, settings, [binding], port=port, telemetry=telemetry, on_shutdown=closers)


async def mcp_toolbox(
    name: ServiceName,
    settings: Settings,
    entry: Entry,
    builtin: Toolbox | None,
    telemetry: Telemetry,
    closers: list[Callable[[], Awaitable[None]]],
) -> Toolbox:
    """The entry's MCP tools (over its built-in ones unless `tools: false`), results screened by the guard through
    the gateway's internal listener (with mTLS, as this agent's certificate)."""
    token = settings.internal_token.get_secret_value() if settings.internal_token else None
    channels = GatewayChannels(
        settings.gateway_internal_addr,
        internal_token=token,
        credentials=channel_credentials(settings.tls_dir, name) if settings.tls_dir else None,
        interceptors=telemetry.client_interceptors(),
    )
    mcp = McpToolbox(entry.mcp, GuardScreen(channels, settings.guard_timeout_s))
    await mcp.start()
    closers[:0] = [mcp.close, channels.close]
    return CombinedToolbox(mcp, builtin if entry.tools else None)
