"""`bench e2e --tenants R`: the issue's figure (C), fairness across tenants. A small tenant (--tenant-users N users)
runs alone, then next to a flooding tenant with R times its users, against the same provider limit; the small
tenant's run p99 with the flood should stay within 2x of its p99 alone. The seed baseline runs the same two
phases (it has no tenants: its small group is just N users, its flood R x N more), so the figures come side by
side from the same run.

Queueing, per group: the routing step's duration ("route"), one small LLM call whose floor is the simulator's
latency L, so what exceeds L is waiting for the provider budget (the mesh's limiter; the seed's semaphore) and
retries. For the mesh also the time to the first streamed event (admission: the input guard and the run's row)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import asyncpg
import grpc

from agentmesh.db import KeyStore
from agentmesh.v1 import supervisor_pb2_grpc
from bench import _plots
from bench._common import RESULTS, phase, print_table, write_result
from bench._load import RunOutcome, drive

GOAL_RATIO = 2.0
NAME = "e2e-tenants"
PHASES = (("alone", "small"), ("with_flood", "small"), ("with_flood", "flood"))


def split(small_users: int, ratio: int) -> tuple[range, range]:
    """User indices of the small tenant and of the flood (ratio times as many), in one closed-loop population."""
    small = max(1, small_users)
    return range(small), range(small, small + small * ratio)


def p99_ratio(figures: dict[str, Any]) -> float | None:
    """The small group's run p99 with the flood over its p99 alone (None without runs in either phase)."""
    alone = figures["alone"]["small"]["run_latency"]
    mixed = figures["with_flood"]["small"]["run_latency"]
    if not alone["n"] or not mixed["n"] or not alone["p99_ms"]:
        return None
    return round(mixed["p99_ms"] / alone["p99_ms"], 3)


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
    """The mesh's two phases. `conversation_for(stubs, metadata)`: a Conversation for one key. `target`: the
    MeshTarget (with its dsn). The flood runs on the mesh's dev key, the small tenant on a key of its own."""
    if not target.dsn:
        raise SystemExit("--tenants needs a mesh this bench starts (it creates the small tenant's key)")
    small, flood = split(args.tenant_users, args.tenants)
    small_key = await new_tenant_key(target.dsn, "bench-small")
    channels = [grpc.aio.insecure_channel(target.gateway) for _ in range(max(1, args.channels))]
    stubs = [supervisor_pb2_grpc.SupervisorServiceStub(ch) for ch in channels]
    small_run = conversation_for(stubs, (("authorization", f"Bearer {small_key}"),))
    flood_run = conversation_for(stubs, (("authorization", f"Bearer {target.key}"),))

    async def mixed(user: int) -> RunOutcome:
        out: RunOutcome = await (small_run(user) if user in small else flood_run(user))
        return out

    try:
        await target.sim.set_faults(**faults)
        common = {"sim": target.sim, "duration_s": args.tenant_duration, "drain_timeout_s": args.drain_timeout}
        phase(f"(C) mesh: small tenant alone, {len(small)} users, {args.tenant_duration:.0f} s")
        alone = await drive(small_run, users=len(small), **common)
        phase(f"(C) mesh: small tenant with the flood, {len(small)} + {len(flood)} users")
        both = await drive(mixed, users=len(small) + len(flood), **common)
    finally:
        for ch in channels:
            await ch.close()
    return {
        "alone": alone.groups({"small": small}),
        "with_flood": both.groups({"small": small, "flood": flood}),
    }


def report(args: argparse.Namespace, mesh: dict[str, Any], baseline: dict[str, Any] | None) -> Path:
    """Table, JSON (bench/results/e2e-tenants.json) and plot of (C), the mesh next to the baseline."""
    small, flood = split(args.tenant_users, args.tenants)
    designs = {"agentmesh": mesh}
    if baseline is not None:
        designs[baseline.get("design", "LangGraph baseline")] = baseline
    results: dict[str, Any] = {
        "small_users": len(small),
        "flood_users": len(flood),
        "phase_s": args.tenant_duration,
        "goal": f"small tenant's run p99 with the flood <= {GOAL_RATIO}x its p99 alone",
        "queueing": "route: the routing step's duration, one LLM call of max_tokens 8 whose floor is the "
        "simulator's latency; the excess is waiting for the provider budget and retries. first_event (mesh "
        "only): time to the first streamed event",
        "attempts": "phase_attempts_per_success: the simulator's HTTP attempts per successful call over the "
        "whole phase (it cannot tell the tenants apart)",
        "rates": "runs and their LLM calls (RunOutcome.llm_calls) that finished inside the phase's window, per s",
    }
    rows = []
    for name, figures in designs.items():
        ratio = p99_ratio(figures)
        key = "mesh" if name == "agentmesh" else "baseline"
        results[key] = {**figures, "small_p99_ratio": ratio, "met": ratio is not None and ratio <= GOAL_RATIO}
        for when, group in PHASES:
            g = figures[when][group]
            fails = sum(g["failures_by_status"].values())
            rows.append(
                [
                    key,  # the full name is too wide for a column: printed under the table
                    group,
                    when.replace("_", " "),
                    g["users"],
                    g["runs"],
                    fails,
                    g["runs_per_s"],
                    g["llm_calls_per_s"],
                    g["run_latency"]["p50_ms"] / 1000,
                    g["run_latency"]["p99_ms"] / 1000,
                    g["route_step"]["p50_ms"],
                    g["route_step"]["p99_ms"],
                    g["first_event"]["p99_ms"] if g["first_event"]["n"] else "-",
                    g["phase_attempts_per_success"],
                ]
            )
    if not args.no_plots:
        results["plots"] = [str(_plot(args, designs).relative_to(RESULTS.parent.parent))]
    params = {k: v for k, v in vars(args).items() if k not in ("func", "key")}
    path = write_result(NAME, params, results)
    columns = ["design", "tenant", "phase", "users", "runs", "failed", "runs/s", "LLM calls/s", "p50 s", "p99 s"]
    columns += ["route p50 ms", "route p99 ms", "1st event p99 ms", "attempts/call (phase)"]
    print_table(
        f"(C) tenants: {len(small)} small users alone, then next to {len(flood)} flood users "
        f"({args.tenant_duration:.0f} s each)",
        columns,
        rows,
    )
    for key in ("mesh", "baseline"):
        if key in results:
            r = results[key]
            print(
                f"(C) {key} ({r.get('design', 'agentmesh')}): small p99 with the flood / alone = x{r['small_p99_ratio']} "
                f"(goal <= {GOAL_RATIO}: {'met' if r['met'] else 'not met'})"
            )
    return path


def _plot(args: argparse.Namespace, designs: dict[str, dict[str, Any]]) -> Path:
    groups = ["small, alone", "small, with the flood", "flood"]

    def values(field: str, sub: str | None = None, scale: float = 1.0) -> dict[str, list[float | None]]:
        out: dict[str, list[float | None]] = {}
        for name, figures in designs.items():
            out[name] = []
            for when, group in PHASES:
                g = figures[when][group]
                v = g[field] if sub is None else g[field][sub]
                out[name].append(None if v is None or (sub and not g[field]["n"]) else v * scale)
        return out

    return _plots.grouped_bars(
        RESULTS / f"{NAME}.png",
        title=f"(C) {args.tenant_users} small users vs {args.tenant_users * args.tenants} flood users: "
        "throughput, p99 and queueing per tenant",
        groups=groups,
        panels=[
            ("successful LLM calls/s", values("llm_calls_per_s")),
            ("run p99 (s)", values("run_latency", "p99_ms", 0.001)),
            ("route step p99 (s)", values("route_step", "p99_ms", 0.001)),
            ("HTTP attempts per successful call\n(whole phase, both tenants)", values("phase_attempts_per_success")),
        ],
    )
