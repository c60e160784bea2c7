"""`bench e2e --tenants R`: the issue's figure (C), fairness across tenants. A small tenant's users run alone,
then again next to a second tenant with R times as many users, against the same provider limit; the small
tenant's run p99 with the flood should stay within 2x of its p99 alone."""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import asyncpg
import grpc

from agentmesh.db import KeyStore
from agentmesh.v1 import supervisor_pb2_grpc
from bench._load import Conversation, RunOutcome, drive

GOAL_RATIO = 2.0


def _p99(samples: list[float]) -> float | None:
    if len(samples) < 2:
        return samples[0] if samples else None
    return statistics.quantiles(samples, n=100, method="inclusive")[98]


async def new_tenant_key(dsn: str, tenant: str) -> str:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        _, key = await KeyStore(pool=pool).create(tenant, label="bench")
    finally:
        await pool.close()
    return key


async def measure_tenants(
    args: argparse.Namespace, target: Any, conversation_for: Any, faults: dict[str, Any]
) -> dict[str, Any]:
    """`conversation_for(stubs, metadata)`: a Conversation for one key. `target`: the MeshTarget (with its dsn)."""
    if not target.dsn:
        raise SystemExit("--tenants needs a mesh this bench starts (it creates the small tenant's key)")
    ratio = args.tenants
    small_users = max(1, args.users // (ratio + 1))
    flood_users = small_users * ratio
    small_key = await new_tenant_key(target.dsn, "bench-small")
    channels = [grpc.aio.insecure_channel(target.gateway) for _ in range(max(1, args.channels))]
    stubs = [supervisor_pb2_grpc.SupervisorServiceStub(ch) for ch in channels]
    small = conversation_for(stubs, (("authorization", f"Bearer {small_key}"),))
    flood = conversation_for(stubs, (("authorization", f"Bearer {target.key}"),))
    latencies: dict[str, list[float]] = {"alone": [], "with_flood": [], "flood": []}

    def timed(into: str, conversation: Conversation) -> Conversation:
        async def run(user: int) -> RunOutcome:
            started = time.monotonic()
            out = await conversation(user)
            if out.status == "OK":
                latencies[into].append(time.monotonic() - started)
            return out

        return run

    alone_small = timed("alone", small)
    mixed_small, mixed_flood = timed("with_flood", small), timed("flood", flood)

    async def mixed(user: int) -> RunOutcome:
        return await (mixed_small(user) if user < small_users else mixed_flood(user))

    try:
        await target.sim.set_faults(**faults)
        common = {"sim": target.sim, "duration_s": args.duration, "drain_timeout_s": args.drain_timeout}
        alone = await drive(alone_small, users=small_users, **common)
        both = await drive(mixed, users=small_users + flood_users, **common)
    finally:
        for ch in channels:
            await ch.close()
    p_alone, p_mixed = _p99(latencies["alone"]), _p99(latencies["with_flood"])
    out_ratio = round(p_mixed / p_alone, 3) if p_alone and p_mixed else None
    return {
        "small_users": small_users,
        "flood_users": flood_users,
        "small_runs_alone": len(latencies["alone"]),
        "small_runs_with_flood": len(latencies["with_flood"]),
        "flood_runs": len(latencies["flood"]),
        "failures_alone": alone.summary(1.0)["failures"],
        "failures_with_flood": both.summary(1.0)["failures"],
        "small_p99_alone_s": None if p_alone is None else round(p_alone, 3),
        "small_p99_with_flood_s": None if p_mixed is None else round(p_mixed, 3),
        "small_p99_ratio": out_ratio,
        "goal": f"<= {GOAL_RATIO}",
        "met": out_ratio is not None and out_ratio <= GOAL_RATIO,
    }
