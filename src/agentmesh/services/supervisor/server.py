"""The supervisor's composition root: pool, migrations, LLM client, gateway channel, executor, server."""

from __future__ import annotations

import logging
import os
import socket
import uuid

from a2a.types import a2a_pb2_grpc

from agentmesh import Settings
from agentmesh.catalog import load_catalog
from agentmesh.db import CORE_MIGRATIONS, KeyStore, MigrationSet, create_pool, migrate
from agentmesh.errors import InvalidArgument
from agentmesh.llm import LLMClient
from agentmesh.rpc import (
    AuthInterceptor,
    GatewayChannels,
    RequestValidator,
    ServiceBinding,
    channel_credentials,
    settings_text_limits,
)
from agentmesh.service import key_rate, process_setup, serve_bindings
from agentmesh.services.supervisor.a2a import A2A_SERVICE, A2AServicer
from agentmesh.services.supervisor.budgets import TenantBudgets
from agentmesh.services.supervisor.clients import MeshClients
from agentmesh.services.supervisor.health import GatewayHealth
from agentmesh.services.supervisor.holds import RunHolds
from agentmesh.services.supervisor.migrations import MIGRATIONS
from agentmesh.services.supervisor.observe import RunObserver
from agentmesh.services.supervisor.runner import RunExecutor
from agentmesh.services.supervisor.runs import RunManager
from agentmesh.services.supervisor.servicer import SupervisorServicer
from agentmesh.services.supervisor.store import CheckpointStore
from agentmesh.v1 import guard_pb2, review_pb2, supervisor_pb2_grpc

log = logging.getLogger(__name__)

# The gateway sends every reflection call to the supervisor, so its reflection also lists the other public
# services (by name; their descriptors are in this process through the imports above). AgentService is internal.
PUBLIC_PEERS = (
    guard_pb2.DESCRIPTOR.services_by_name["GuardService"].full_name,
    review_pb2.DESCRIPTOR.services_by_name["ReviewService"].full_name,
)


async def main(settings: Settings, *, port: int | None = None) -> None:
    telemetry = process_setup("supervisor", settings)
    catalog = load_catalog(settings.agents_file, settings)  # a bad catalog stops the start, naming the entry
    if settings.database_url is None:
        raise InvalidArgument("the supervisor needs DATABASE_URL (agentmesh up sets it)")
    pool = await create_pool(
        settings.database_url.get_secret_value(),
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        acquire_timeout_s=settings.db_acquire_timeout_s,
    )
    async with pool.acquire() as conn:
        await migrate(conn, [MigrationSet("core", CORE_MIGRATIONS), MIGRATIONS])
    llm = LLMClient(settings=settings, instruments=telemetry.llm_instruments())
    telemetry.register_llm(llm)
    token = settings.internal_token.get_secret_value() if settings.internal_token else None
    channels = GatewayChannels(
        settings.gateway_internal_addr,
        internal_token=token,
        credentials=channel_credentials(settings.tls_dir, "supervisor") if settings.tls_dir else None,
        interceptors=telemetry.client_interceptors(),
    )
    # The lease owner names this process, so a log line or a row tells which supervisor holds a run.
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    store = CheckpointStore(pool=pool, owner=owner, lease_s=settings.run_lease_s)
    holds = RunHolds(
        pool=pool,
        owner=owner,
        lease_s=settings.run_lease_s,
        approval_agents=settings.approval_agent_set,
        pause_on_flag=settings.pause_on_flag,
    )
    budgets = TenantBudgets(
        pool=pool, default_tokens=settings.tenant_daily_tokens, default_usd=settings.tenant_daily_usd
    )
    observer = RunObserver(registry=telemetry.registry, tracer=telemetry.tracer())
    executor = RunExecutor(
        settings=settings,
        store=store,
        llm=llm,
        mesh=MeshClients(
            channels=channels,
            agent_timeout_s=settings.agent_timeout_s,
            guard_timeout_s=settings.guard_timeout_s,
            agent_timeouts=catalog.timeouts(settings.agent_timeout_s),
        ),
        agents=catalog.descriptions(),
        health=GatewayHealth(settings.gateway_admin_addr, ttl_s=settings.agent_health_ttl_s),
        budgets=budgets,
        observer=observer,
        holds=holds,
    )
    runs = RunManager(settings=settings, executor=executor, store=store, holds=holds)
    servicer = SupervisorServicer(runs=runs, store=store)
    # Listens for other supervisors' events and cancels, and takes over runs whose supervisor stopped.
    await runs.start(settings.database_url.get_secret_value())
    keys = KeyStore(pool=pool)
    auth = AuthInterceptor(
        tenant_of=keys.tenant_of,
        # Only clients call the supervisor: no internal token, so nobody can assert a tenant here.
        internal_token=None,
        cache_ttl_s=settings.key_cache_ttl_s,
        negative_ttl_s=settings.key_negative_cache_ttl_s,
        rate=key_rate(settings),
    )
    binding = ServiceBinding(
        supervisor_pb2_grpc.add_SupervisorServiceServicer_to_server, servicer, "agentmesh.v1.SupervisorService"
    )
    # The A2A facade over the same runs, behind the same interceptors (keys, tenants, errors).
    facade = A2AServicer(runs=runs, store=store, validator=RequestValidator(text_limits=settings_text_limits(settings)))
    a2a_binding = ServiceBinding(a2a_pb2_grpc.add_A2AServiceServicer_to_server, facade, A2A_SERVICE)
    await serve_bindings(
        "supervisor",
        settings,
        [binding, a2a_binding],
        port=port,
        interceptors=[auth],
        telemetry=telemetry,
        reflect_also=PUBLIC_PEERS,
        # SIGTERM: runs finish their current step, then their leases are released for another supervisor.
        on_drain=runs.drain,
        on_shutdown=[runs.close, channels.close, llm.close, pool.close],
    )
