"""Faults through the whole mesh: outage, recovery, a 429 storm, a hung provider, broken streams; and one Envoy hop.

`agentmesh bench faults` starts a mesh of its own (streaming LLM calls, so stream faults apply), injects each
fault through the simulator's control plane and fires concurrent runs through the gateway. Per scenario it
reports client failures (by status), the provider attempts the simulator saw, how fast failing runs failed,
and how long the mesh took to serve runs again once the fault was gone. Then it measures one Envoy hop:
GuardService.Check direct to the guard vs. through the gateway's public listener, interleaved in one run.
Writes bench/results/faults.json."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import grpc

from agentmesh.testing.localmesh import Mesh
from agentmesh.v1 import guard_pb2, guard_pb2_grpc, supervisor_pb2, supervisor_pb2_grpc
from bench._common import percentile, print_table, summary_ms, write_result
from bench._target import local_mesh

QUESTION = "Compare two payment providers and recommend one"
CHECK_TEXT = "Please refund order 1182 to jane.doe@example.com before Friday."
LLM_CALLS_PER_RUN = 5  # route, researcher, route, analyst, route -> FINISH (measured in the baseline)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", type=int, default=30, help="concurrent runs per scenario")
    p.add_argument("--latency-ms", type=float, default=20.0, help="simulated LLM latency in every scenario")
    p.add_argument("--storm-runs", type=int, default=100, help="concurrent runs in the 429 storm")
    p.add_argument("--storm-concurrency", type=int, default=4, help="calls the provider admits in the storm")
    p.add_argument("--retry-after-s", type=float, default=0.5, help="the provider's retry-after on a 429")
    p.add_argument("--stream-fault-rate", type=float, default=0.2, help="share of streams broken per fault kind")
    p.add_argument("--llm-timeout-s", type=float, default=2.0, help="the mesh's per-attempt LLM timeout (cuts a hang)")
    p.add_argument("--breaker-reset-s", type=float, default=2.0, help="the mesh's breaker cool-down before a probe")
    p.add_argument("--hop-calls", type=int, default=500, help="Check calls per route for the hop latency")
    p.add_argument("--run-timeout", type=float, default=60.0, help="deadline of one run (s)")
    p.add_argument("--recover-within", type=float, default=30.0, help="give up waiting for recovery after (s)")


@dataclass
class Scenario:
    name: str
    faults: dict[str, Any]
    runs: int
    ok: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    provider_attempts: int = 0
    provider_statuses: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    run_ms: dict[str, float] = field(default_factory=dict)
    fail_ms: dict[str, float] = field(default_factory=dict)
    """How fast the failing runs failed (time to fail fast)."""
    recover_s: float | None = None
    """After the fault was lifted: seconds until a run succeeded again."""
    recover_attempts: int | None = None
    """Provider attempts while recovering (the breaker's probes and the first successful run)."""
    hung: int = 0
    stream_faults: int = 0
    example_error: str = ""


@dataclass
class RunOutcome:
    code: str
    seconds: float
    details: str


async def _runs(mesh: Mesh, n: int, timeout_s: float) -> list[RunOutcome]:
    async with grpc.aio.insecure_channel(mesh.gateway) as channel:
        stub = supervisor_pb2_grpc.SupervisorServiceStub(channel)

        async def one() -> RunOutcome:
            started = time.monotonic()
            try:
                async for _event in stub.Run(
                    supervisor_pb2.RunRequest(message=QUESTION), metadata=mesh.auth(), timeout=timeout_s
                ):
                    pass
            except grpc.aio.AioRpcError as exc:
                return RunOutcome(exc.code().name, time.monotonic() - started, exc.details() or "")
            return RunOutcome("OK", time.monotonic() - started, "")

        return list(await asyncio.gather(*(one() for _ in range(n))))


async def _scenario(mesh: Mesh, name: str, faults: dict[str, Any], runs: int, timeout_s: float) -> Scenario:
    await asyncio.to_thread(mesh.reset_sim)
    await asyncio.to_thread(mesh.set_faults, **faults)
    started = time.monotonic()
    outcomes = await _runs(mesh, runs, timeout_s)
    wall = time.monotonic() - started
    stats = await asyncio.to_thread(mesh.sim_stats)
    failed = [o for o in outcomes if o.code != "OK"]
    return Scenario(
        name=name,
        faults=faults,
        runs=runs,
        ok=runs - len(failed),
        failures=dict(Counter(o.code for o in failed)),
        provider_attempts=stats["requests_total"],
        provider_statuses=stats["responses_by_status"],
        wall_s=round(wall, 3),
        run_ms=summary_ms([o.seconds for o in outcomes]),
        fail_ms=summary_ms([o.seconds for o in failed]) if failed else {},
        hung=stats.get("hung_total", 0),
        stream_faults=stats.get("stream_faults_total", 0),
        example_error=failed[0].details[:200] if failed else "",
    )


async def _recover(mesh: Mesh, scenario: Scenario, timeout_s: float, within_s: float) -> None:
    """Lift every fault, then try one run at a time until one succeeds: how long the mesh stays broken."""
    before = (await asyncio.to_thread(mesh.sim_stats))["requests_total"]
    await asyncio.to_thread(
        mesh.set_faults, outage=None, hang=False, max_concurrency=None, error_rate=0.0, stream_fault=None
    )
    started = time.monotonic()
    while time.monotonic() - started < within_s:
        (outcome,) = await _runs(mesh, 1, timeout_s)
        if outcome.code == "OK":
            scenario.recover_s = round(time.monotonic() - started, 3)
            break
        await asyncio.sleep(0.05)
    scenario.recover_attempts = (await asyncio.to_thread(mesh.sim_stats))["requests_total"] - before


async def _hop(mesh: Mesh, calls: int) -> dict[str, Any]:
    """GuardService.Check direct vs. through the public listener: same process, same request, interleaved
    call by call so both see the same machine load."""
    request = guard_pb2.CheckRequest(text=CHECK_TEXT, direction=guard_pb2.DIRECTION_INPUT)
    samples: dict[str, list[float]] = {"direct": [], "gateway": []}
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{mesh.ports['guard']}") as direct,
        grpc.aio.insecure_channel(mesh.gateway) as gateway,
    ):
        stubs = {"direct": guard_pb2_grpc.GuardServiceStub(direct), "gateway": guard_pb2_grpc.GuardServiceStub(gateway)}
        for i in range(calls + 50):
            for route, stub in stubs.items():
                started = time.perf_counter()
                await stub.Check(request, metadata=mesh.auth(), timeout=5)
                if i >= 50:  # the first 50 warm connections and the key cache
                    samples[route].append(time.perf_counter() - started)
    out: dict[str, Any] = {route: summary_ms(s) for route, s in samples.items()}
    for q in (50, 99):
        added = percentile([s * 1000 for s in samples["gateway"]], q) - percentile(
            [s * 1000 for s in samples["direct"]], q
        )
        out[f"added_p{q}_ms"] = round(added, 3)
    return out


async def run(args: argparse.Namespace) -> int:
    env = {
        "AGENTMESH_LLM_STREAM": "true",
        "AGENTMESH_LLM_TIMEOUT_S": str(args.llm_timeout_s),
        "AGENTMESH_BREAKER_RESET_TIMEOUT_S": str(args.breaker_reset_s),
    }
    lat = {"latency_ms": args.latency_ms}
    scenarios: list[Scenario] = []
    async with local_mesh(extra_env=env) as mesh:
        scenarios.append(await _scenario(mesh, "baseline", lat, args.runs, args.run_timeout))
        hang = await _scenario(mesh, "hang", {**lat, "hang": True}, args.runs, args.run_timeout)
        await _recover(mesh, hang, args.run_timeout, args.recover_within)
        scenarios.append(hang)
        outage = await _scenario(mesh, "outage 529", {**lat, "outage": 529}, args.runs, args.run_timeout)
        # Recovery is measured from the moment the outage ends, with the breaker still open.
        await _recover(mesh, outage, args.run_timeout, args.recover_within)
        scenarios.append(outage)
        for fault in ("cut", "error_event", "truncate"):
            scenarios.append(
                await _scenario(
                    mesh,
                    f"stream {fault}",
                    {**lat, "stream_fault": fault, "stream_fault_rate": args.stream_fault_rate},
                    args.runs,
                    args.run_timeout,
                )
            )
        # Last: the storm leaves every process's adaptive limit low for a while, which would flatter the others.
        scenarios.append(
            await _scenario(
                mesh,
                "429 storm",
                {**lat, "max_concurrency": args.storm_concurrency, "retry_after_s": args.retry_after_s},
                args.storm_runs,
                args.run_timeout,
            )
        )
        await asyncio.to_thread(mesh.reset_sim)
        hop = await _hop(mesh, args.hop_calls)

    params = {**vars(args), "mesh_env": env, "llm_calls_per_run": LLM_CALLS_PER_RUN}
    results = {"scenarios": {s.name: asdict(s) for s in scenarios}, "hop": hop}
    path = write_result("faults", params, results)
    rows = []
    for s in scenarios:
        failures = ", ".join(f"{k} {v}" for k, v in sorted(s.failures.items())) or "0"
        rows.append(
            [
                s.name,
                s.runs,
                failures,
                s.provider_attempts,
                s.provider_statuses.get("429", 0),
                s.runs * LLM_CALLS_PER_RUN,
                s.run_ms.get("p50_ms", 0.0),
                s.fail_ms.get("max_ms", "-"),
                "-" if s.recover_s is None else s.recover_s,
                "-" if s.recover_attempts is None else s.recover_attempts,
            ]
        )
    print_table(
        "faults through the mesh (runs are concurrent; provider attempts as the simulator counted them)",
        [
            "scenario",
            "runs",
            "client failures",
            "provider attempts",
            "429s",
            "calls if healthy",
            "run p50 ms",
            "slowest failure ms",
            "recover s",
            "recover attempts",
        ],
        rows,
    )
    print_table(
        "one Envoy hop (GuardService.Check, interleaved)",
        ["route", "p50 ms", "p99 ms", "n"],
        [[route, hop[route]["p50_ms"], hop[route]["p99_ms"], hop[route]["n"]] for route in ("direct", "gateway")]
        + [["added by the hop", hop["added_p50_ms"], hop["added_p99_ms"], ""]],
    )
    print(f"wrote {path}")
    return 0
