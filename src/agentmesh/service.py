"""Process-level wiring shared by every service's `main()`: logging, tracing, the LLM client, the gRPC
server with health and reflection, and a clean shutdown."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import grpc

from agentmesh.agent import AgentServicer, Toolbox
from agentmesh.llm import LLMClient
from agentmesh.rpc import RunningServer, ServiceBinding, create_server, serve_until_signal
from agentmesh.settings import ServiceName, Settings
from agentmesh.telemetry import grpc_server_interceptors, setup_logging, setup_tracing
from agentmesh.v1 import agent_pb2_grpc

log = logging.getLogger(__name__)


def process_setup(name: ServiceName, settings: Settings) -> bool:
    """Logging and tracing for this process; returns whether tracing is on."""
    setup_logging(name, settings.log_level)
    return setup_tracing(name)


async def serve_bindings(
    name: ServiceName,
    settings: Settings,
    bindings: Sequence[ServiceBinding],
    *,
    port: int | None = None,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    tracing: bool = False,
    on_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
) -> None:
    addr = f"{settings.host}:{settings.port_of(name) if port is None else port}"
    running: RunningServer = await create_server(
        addr, bindings, interceptors=[*grpc_server_interceptors(tracing), *interceptors]
    )
    log.info("serving", extra={"service": name, "port": running.port})
    await serve_until_signal(running, on_shutdown=on_shutdown)


async def serve_agent(
    name: ServiceName,
    settings: Settings,
    *,
    system_prompt: str,
    toolbox: Toolbox | None = None,
    port: int | None = None,
) -> None:
    """The whole life of an agent process: the researcher, analyst and executor differ only in their args."""
    tracing = process_setup(name, settings)
    llm = LLMClient(settings=settings)
    servicer = AgentServicer(name=name, system_prompt=system_prompt, llm=llm,
                             default_max_tokens=settings.agent_max_output_tokens, toolbox=toolbox)
    binding = ServiceBinding(agent_pb2_grpc.add_AgentServiceServicer_to_server, servicer, "agentmesh.v1.AgentService")
    await serve_bindings(name, settings, [binding], port=port, tracing=tracing, on_shutdown=[llm.close])
