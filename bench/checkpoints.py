"""Checkpoint writes: our per-step commit vs LangGraph's AsyncPostgresSaver, same server, same run.

Each simulated run writes one checkpoint per step, back to back, like a supervisor does: ours is
`CheckpointStore.commit_step` (one statement: the step's delta plus the run's totals and lease);
LangGraph's is `aput` (the checkpoint, with the grown `messages` channel) plus `aput_writes` (the
step's pending write), as its Pregel loop does per super-step. Both get an equivalent state: the same
step outputs (~400 characters each), the same pool size, a fresh database of their own on one server."""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from bench._common import print_table, summary_ms, timed_progress, write_result
from bench._target import throwaway_database

OUTPUT = (
    "Findings: provider A charges 2.9% + 30c per card payment, provider B 2.5% flat with a monthly "
    "fee; both support 135+ currencies, payouts in 2 days, and PCI-DSS level 1. Support differs: "
    "A has 24/7 chat, B business hours only. Integration effort is similar (REST + webhooks). "
) * 1
# A recorded event the size of a step_started/step_finished RunEvent as the supervisor serializes it.
EVENT = b"\n$" + b"r" * 36 + b"\x12$" + b"t" * 36 + b'\x18\x03"\x0c\x08\x80\x80\x80\x80\x06' + b"s" * 40


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--concurrency", default="1,10,100", help="concurrent runs, comma-separated levels")
    p.add_argument("--seconds", type=float, default=5.0, help="measuring time per level and implementation")
    p.add_argument("--steps", type=int, default=8, help="steps per run before a new run starts")
    p.add_argument("--pool", type=int, default=20, help="connections in each implementation's pool")


async def _drive(
    concurrency: int,
    seconds: float,
    new_run: Callable[[], Awaitable[Any]],
    write: Callable[[Any, int], Awaitable[None]],
    steps: int,
) -> dict[str, Any]:
    latencies: list[float] = []
    stop_at = time.monotonic() + seconds

    async def worker() -> None:
        while time.monotonic() < stop_at:
            run = await new_run()
            for i in range(steps):
                started = time.perf_counter()
                await write(run, i)
                latencies.append(time.perf_counter() - started)
                if time.monotonic() >= stop_at:
                    return

    started = time.monotonic()
    async with timed_progress(f"{concurrency} concurrent runs", seconds, done=lambda: len(latencies)):
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    return {"writes": len(latencies), "writes_per_s": round(len(latencies) / elapsed, 1), **summary_ms(latencies)}


async def _ours(dsn: str, levels: list[int], seconds: float, steps: int, pool_size: int) -> dict[int, dict[str, Any]]:
    from agentmesh.db import CORE_MIGRATIONS, MigrationSet, create_pool, migrate
    from agentmesh.services.supervisor.migrations import MIGRATIONS
    from agentmesh.services.supervisor.steps import AgentBody, RouteBody
    from agentmesh.services.supervisor.store import CheckpointStore, StepRecord

    pool = await create_pool(dsn, min_size=pool_size, max_size=pool_size)
    try:
        async with pool.acquire() as conn:
            await migrate(conn, [MigrationSet("core", CORE_MIGRATIONS), MIGRATIONS])
        store = CheckpointStore(pool=pool, owner="bench", lease_s=60)

        async def new_run() -> Any:
            return await store.create_run(
                tenant="bench",
                thread_id="",
                run_id=uuid.uuid4(),
                text="Compare providers",
                history_limit=20,
                next_seq=1,
                first_event=lambda tid: (0, b""),
            )

        async def write(run: Any, i: int) -> None:
            kind = "agent" if i % 2 else "route"
            result = AgentBody(output=OUTPUT, model="claude-haiku-4-5") if kind == "agent" else RouteBody("analyst")
            # As the run loop writes a step: with its started and finished events (recorded for WatchRun).
            events = [(2 * i + 1, EVENT), (2 * i + 2, EVENT)]
            await store.commit_step(
                run,
                StepRecord(i, kind, "analyst", result, 300, 90, 1, 0.0007, 180),
                next_seq=2 * i + 3,
                iteration=kind == "agent",
                events=events,
            )

        return {c: await _drive(c, seconds, new_run, write, steps) for c in levels}
    finally:
        await pool.close()


async def _langgraph(
    dsn: str, levels: list[int], seconds: float, steps: int, pool_size: int
) -> dict[int, dict[str, Any]]:
    from langgraph.checkpoint.base import empty_checkpoint

    from bench.baseline_langgraph import open_checkpointer

    async with open_checkpointer("postgres", dsn, pool_size) as saver:

        async def new_run() -> dict[str, Any]:
            return {
                "config": {"configurable": {"thread_id": str(uuid.uuid4()), "checkpoint_ns": ""}},
                "checkpoint": empty_checkpoint(),
                "messages": [{"role": "user", "content": "Compare providers"}],
            }

        async def write(run: dict[str, Any], i: int) -> None:
            cp = dict(run["checkpoint"])
            kind = "agent" if i % 2 else "route"
            update = (
                {"role": "agent", "content": OUTPUT} if kind == "agent" else {"role": "route", "content": "analyst"}
            )
            run["messages"] = [*run["messages"], update]
            versions = dict(cp["channel_versions"])
            new_versions = {"messages": i + 1, "next": i + 1}
            versions.update(new_versions)
            cp.update(
                id=str(uuid.uuid4()),
                channel_values={"messages": run["messages"], "next": "analyst"},
                channel_versions=versions,
            )
            run["config"] = await saver.aput(
                run["config"], cp, {"source": "loop", "step": i, "parents": {}}, new_versions
            )
            await saver.aput_writes(run["config"], [("messages", update)], task_id=str(uuid.uuid4()))
            run["checkpoint"] = cp

        return {c: await _drive(c, seconds, new_run, write, steps) for c in levels}


async def run(args: argparse.Namespace) -> int:
    levels = [int(x) for x in args.concurrency.split(",")]
    async with throwaway_database() as ours_dsn, throwaway_database() as lg_dsn:
        ours = await _ours(ours_dsn, levels, args.seconds, args.steps, args.pool)
        langgraph = await _langgraph(lg_dsn, levels, args.seconds, args.steps, args.pool)
    rows = []
    results: dict[str, Any] = {"levels": {}}
    for c in levels:
        ratio = ours[c]["writes_per_s"] / max(langgraph[c]["writes_per_s"], 1e-9)
        results["levels"][str(c)] = {
            "agentmesh": ours[c],
            "langgraph": langgraph[c],
            "throughput_ratio": round(ratio, 2),
        }
        rows.append(
            (
                c,
                ours[c]["writes_per_s"],
                ours[c]["p50_ms"],
                ours[c]["p99_ms"],
                langgraph[c]["writes_per_s"],
                langgraph[c]["p50_ms"],
                langgraph[c]["p99_ms"],
                round(ratio, 2),
            )
        )
    results["goal"] = "agentmesh >= 2x LangGraph writes/s at 100 concurrent runs"
    path = write_result(
        "checkpoints",
        {
            "concurrency": levels,
            "seconds": args.seconds,
            "steps_per_run": args.steps,
            "pool_size": args.pool,
            "server": "one Postgres, fresh database per side",
        },
        results,
    )
    print_table(
        "checkpoint writes (one step each)",
        ["runs", "ours w/s", "ours p50 ms", "ours p99 ms", "LangGraph w/s", "LG p50 ms", "LG p99 ms", "ratio"],
        rows,
    )
    print(f"wrote {path}")
    return 0
