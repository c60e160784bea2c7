"""The guard's composition root: policy, key check (the guard is public through the gateway), server."""

from __future__ import annotations

from agentmesh import Settings
from agentmesh.db import KeyStore, create_pool
from agentmesh.errors import InvalidArgument
from agentmesh.rpc import AuthInterceptor, ServiceBinding
from agentmesh.service import process_setup, serve_bindings
from agentmesh.v1 import guard_pb2_grpc
from services.guard.policy import load_policy
from services.guard.servicer import GuardServicer


async def main(settings: Settings, *, port: int | None = None) -> None:
    tracing = process_setup("guard", settings)
    if settings.database_url is None:
        raise InvalidArgument("the guard needs DATABASE_URL to check API keys (agentmesh up sets it)")
    policy = load_policy(None)
    pool = await create_pool(settings.database_url.get_secret_value(), min_size=1, max_size=settings.db_pool_max)
    token = settings.internal_token.get_secret_value() if settings.internal_token else None
    auth = AuthInterceptor(tenant_of=KeyStore(pool=pool).tenant_of, internal_token=token,
                           cache_ttl_s=settings.key_cache_ttl_s)
    servicer = GuardServicer(policy=policy)
    binding = ServiceBinding(guard_pb2_grpc.add_GuardServiceServicer_to_server, servicer, "agentmesh.v1.GuardService")
    await serve_bindings("guard", settings, [binding], port=port, interceptors=[auth], tracing=tracing,
                         on_shutdown=[pool.close])
