"""The guard's composition root: its migrations, the reloadable policy, key check (the guard is public through
the gateway), tier two's own LLM client, the restore-token key, the review queue, and the server."""

from __future__ import annotations

import asyncio
import signal

from agentmesh import Settings
from agentmesh.db import KeyStore, create_pool, migrate
from agentmesh.errors import InvalidArgument
from agentmesh.llm import LLMClient, LLMInstruments
from agentmesh.rpc import AuthInterceptor, ServiceBinding
from agentmesh.service import key_rate, process_setup, serve_bindings
from agentmesh.services.guard.migrations import MIGRATIONS
from agentmesh.services.guard.policy import PolicySource
from agentmesh.services.guard.review import ReviewStore
from agentmesh.services.guard.servicer import GuardServicer, ReviewServicer
from agentmesh.services.guard.tier_two import TierTwo
from agentmesh.services.guard.vault import RestoreKeyError, Sealer, restore_keys
from agentmesh.v1 import guard_pb2_grpc, review_pb2_grpc

# Tier two answers within its own deadline or not at all: one retry at most, a short per-attempt timeout, and
# few calls in flight, so a slow provider costs the guard little.
_TIER_TWO_ATTEMPTS = 2
_TIER_TWO_CONCURRENCY = 8


def tier_two_llm(settings: Settings, instruments: LLMInstruments | None = None) -> LLMClient:
    """The guard's own LLM client: its own breaker, concurrency and retry budget, separate from the agents'.
    With `instruments`, each call gets a GenAI span and a latency sample, like every other LLM call."""
    own = settings.model_copy(
        update={
            "llm_max_attempts": _TIER_TWO_ATTEMPTS,
            "llm_timeout_s": settings.guard_llm_timeout_s,
            "llm_max_concurrency": _TIER_TWO_CONCURRENCY,
            "llm_stream": False,
        }
    )
    return LLMClient(settings=own, instruments=instruments)


async def main(settings: Settings, *, port: int | None = None) -> None:
    telemetry = process_setup("guard", settings)
    if settings.database_url is None:
        raise InvalidArgument("the guard needs DATABASE_URL to check API keys (agentmesh up sets it)")
    policy = PolicySource(settings.guard_policy_path)  # an invalid file stops the start here, with its reason
    try:
        keys = restore_keys(settings)  # a missing or default restore key stops the start here too
    except RestoreKeyError as exc:
        raise InvalidArgument(str(exc), reason="RESTORE_KEY_REQUIRED") from exc
    pool = await create_pool(
        settings.database_url.get_secret_value(),
        min_size=1,
        max_size=settings.db_pool_max,
        acquire_timeout_s=settings.db_acquire_timeout_s,
    )
    async with pool.acquire() as conn:
        await migrate(conn, [MIGRATIONS])
    token = settings.internal_token.get_secret_value() if settings.internal_token else None
    auth = AuthInterceptor(
        tenant_of=KeyStore(pool=pool).tenant_of,
        internal_token=token,
        cache_ttl_s=settings.key_cache_ttl_s,
        negative_ttl_s=settings.key_negative_cache_ttl_s,
        rate=key_rate(settings),
    )
    llm = tier_two_llm(settings, telemetry.llm_instruments()) if settings.guard_llm_check else None
    if llm is not None:
        telemetry.register_llm(llm)
    tier_two = (
        None
        if llm is None
        else TierTwo(
            llm=llm,
            band=(settings.guard_llm_band_low, settings.guard_llm_band_high),
            timeout_s=settings.guard_llm_timeout_s,
            calls_per_minute=settings.guard_llm_calls_per_minute,
            can_clear=settings.guard_llm_can_clear,
        )
    )
    store = ReviewStore(pool=pool)
    guard = GuardServicer(
        policy=policy,
        tier_two=tier_two,
        reviews=store,
        sealer=Sealer(keys, ttl_s=settings.guard_restore_ttl_s),
    )
    bindings = [
        ServiceBinding(guard_pb2_grpc.add_GuardServiceServicer_to_server, guard, "agentmesh.v1.GuardService"),
        ServiceBinding(
            review_pb2_grpc.add_ReviewServiceServicer_to_server,
            ReviewServicer(store=store),
            "agentmesh.v1.ReviewService",
        ),
    ]
    if hasattr(signal, "SIGHUP"):  # `kill -HUP` re-reads the policy file now rather than within a second
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, policy.reload)
    closers = [*([llm.close] if llm is not None else []), pool.close]
    await serve_bindings(
        "guard", settings, bindings, port=port, interceptors=[auth], telemetry=telemetry, on_shutdown=closers
    )
