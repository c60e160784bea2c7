"""End to end through the gateway: N users against a provider limit of C calls in flight at L ms each.

Each user runs conversations back to back (closed loop) for the duration; the simulator is set to
max_concurrency C and latency L, so no design can exceed C/L successful LLM calls per second. Reports runs,
failures by status, run latency, successful LLM calls/s and its ratio to C/L, the mesh's CPU ms per run (every
`serve NAME` process and Envoy; not the simulator, Postgres or this load generator) and HTTP attempts per
successful LLM call. Then the same load on the LangGraph baseline (bench/baseline_langgraph.py), in its own
process against the same simulator, so the mesh's figures come with their ratio to it: by default the seed design
(semaphore 30 + tenacity client, AsyncPostgresSaver on a throwaway database).

With no flags: (A) the concurrency model, (B) the token-bucket model, then (C) tenants (bench/_tenants.py), each
next to the seed baseline from the same run."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import psutil

from agentmesh.v1 import supervisor_pb2, supervisor_pb2_grpc
from bench import _baseline, _plots, _tenants
from bench._common import RESULTS, phase, print_table, write_result
from bench._load import Conversation, LoadResult, RunOutcome, drive
from bench._seed_client import CHECKPOINTERS, CLIENTS
from bench._target import MeshProcess, SimControl, cpu_delta, cpu_seconds, local_mesh, mesh_processes, self_cpu

NAME = "e2e"
DEFAULT_MESSAGE = "Compare two payment providers and recommend one"
# Issue 16's: in both provider modes, and mesh CPU per successful LLM call in the concurrency mode (A).
GOALS = {"failures": 0, "ratio_to_limit": 0.95, "attempts_per_success": 1.01, "cpu_ms_per_llm_call": 5.0}
_KIND = {
    supervisor_pb2.STEP_KIND_ROUTE: "route",
    supervisor_pb2.STEP_KIND_AGENT: "agent",
    supervisor_pb2.STEP_KIND_GUARD: "guard",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--users", type=int, default=500, help="concurrent users (closed loop)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds in which users start runs")
    p.add_argument("--concurrency-limit", type=int, default=20, help="the simulator's max_concurrency C")
    p.add_argument("--latency-ms", type=float, default=200.0, help="the simulator's latency L")
    p.add_argument(
        "--mode",
        choices=("both", "concurrency", "rpm"),
        default=None,
        help="the provider's model: concurrency (C and L), rpm (token buckets), or both, one after the other against "
        "one mesh started with no limit settings, each next to its own baseline (default: both; rpm when --rpm is "
        "given)",
    )
    p.add_argument(
        "--rpm",
        type=int,
        default=None,
        help="token-bucket mode: the simulator limits requests per minute (no concurrency limit, so no egress cap "
        "either) and the limit is RPM/60 calls/s (default 3000)",
    )
    p.add_argument("--rpm-users", type=int, default=300, help="with --mode both: users of the token-bucket measurement")
    p.add_argument(
        "--rate-window-s",
        type=float,
        default=1.0,
        help="with --rpm: seconds of refill the bucket holds (the real API may enforce a per-minute limit over "
        "shorter intervals; a 60 s bucket would let a short run spend a minute's stock on top of the rate)",
    )
    p.add_argument("--message", default=DEFAULT_MESSAGE, help="what every user asks")
    p.add_argument("--gateway", default=None, help="target this running gateway instead of starting a mesh")
    p.add_argument("--sim", default=None, help="the running mesh's simulator URL (with --gateway)")
    p.add_argument("--key", default=None, help="API key for --gateway (default: env AGENTMESH_API_KEY)")
    p.add_argument("--mesh-pids", default="", help="with --gateway: comma-separated pids whose CPU to count")
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the mesh this starts (repeatable), e.g. AGENTMESH_LLM_MAX_CONCURRENCY=7",
    )
    p.add_argument(
        "--no-egress-cap",
        action="store_true",
        help="run the mesh without the gateway's LLM egress cap (by default AGENTMESH_LLM_MESH_CONCURRENCY is "
        "the simulator's C, as an operator sets the provider's known concurrency): the processes' "
        "adaptive limits alone",
    )
    p.add_argument("--channels", type=int, default=4, help="client HTTP/2 connections to the gateway")
    p.add_argument("--run-timeout", type=float, default=300.0, help="deadline of one run (s)")
    p.add_argument("--drain-timeout", type=float, default=240.0, help="wait for started runs after the duration (s)")
    p.add_argument("--warmup-runs", type=int, default=10, help="runs before measuring (connections, key cache)")
    p.add_argument(
        "--sweep", default="", help="comma-separated user counts, one measurement each (throughput vs users)"
    )
    p.add_argument("--no-baseline", action="store_true", help="skip the LangGraph baseline")
    p.add_argument(
        "--baseline-client",
        choices=sorted(CLIENTS),
        default="seed",
        help="the baseline's LLM client: seed (asyncio.Semaphore(30) + tenacity, SDK retries off) or sdk (the "
        "SDK's defaults: max_retries=2 honouring retry-after)",
    )
    p.add_argument(
        "--baseline-checkpointer",
        choices=sorted(CHECKPOINTERS),
        default="postgres",
        help="the baseline's checkpointer: postgres (AsyncPostgresSaver on a throwaway database) or memory",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="py-spy every service during the window (the figures then include its cost)",
    )
    p.add_argument("--no-plots", action="store_true", help="write no PNGs")
    p.add_argument(
        "--tenants",
        type=int,
        default=10,
        help="(C): the flood's users as a multiple R of the small tenant's (0: skip (C))",
    )
    p.add_argument("--tenant-users", type=int, default=10, help="(C): the small tenant's users N (the flood: R x N)")
    p.add_argument("--tenant-duration", type=float, default=30.0, help="(C): seconds of each phase (alone, flood)")


@dataclass
class MeshTarget:
    gateway: str
    sim: SimControl
    key: str
    processes: list[MeshProcess]
    pids: dict[str, int]
    admin: str | None = None
    """Envoy's admin address, for the egress counters; None for a mesh this did not start."""
    egress_cap: int | None = None
    """AGENTMESH_LLM_MESH_CONCURRENCY of the mesh (0: none); None when unknown (--gateway)."""
    dsn: str | None = None
    """The mesh's database, where --tenants creates a second tenant's key; None for --gateway."""


# The egress's counters (Envoy admin): calls the services sent, what reached the provider, what queued or overflowed.
_EGRESS_COUNTERS = {
    "calls_received": "http.egress.downstream_rq_total",
    "sent_to_provider": "cluster.llm_provider.upstream_rq_total",
    "queued": "cluster.llm_provider.upstream_rq_pending_total",
    "overflowed": "cluster.llm_provider.upstream_rq_pending_overflow",
    "connections_opened": "cluster.llm_provider.upstream_cx_total",
}


def egress_counters(admin: str) -> dict[str, int]:
    with urllib.request.urlopen(f"http://{admin}/stats?format=json&filter=egress|llm_provider", timeout=5) as resp:
        body = json.loads(resp.read())
    values = {s["name"]: int(s.get("value", 0)) for s in body["stats"] if "value" in s}
    return {key: values.get(name, 0) for key, name in _EGRESS_COUNTERS.items()}


@contextlib.asynccontextmanager
async def _target(args: argparse.Namespace) -> AsyncIterator[MeshTarget]:
    if args.gateway:
        if not args.sim:
            raise SystemExit("--gateway needs --sim (the simulator's URL) to set the provider limit")
        key = args.key or os.environ.get("AGENTMESH_API_KEY", "")
        pids = [int(x) for x in args.mesh_pids.split(",") if x.strip()]
        procs = [MeshProcess(f"pid{pid}", psutil.Process(pid)) for pid in pids]
        yield MeshTarget(args.gateway, SimControl(args.sim), key, procs, {m.role: m.proc.pid for m in procs})
        return
    extra = dict(item.split("=", 1) for item in args.env)
    # The egress cap an operator would set: the provider's concurrency, here the simulator's C. AIMD stays
    # underneath for the 429s a provider may still send. "0" rather than unset with --no-egress-cap: the shell's
    # value must not leak in.
    no_cap = args.no_egress_cap or args.rpm > 0  # a rate limit has no concurrency an operator could cap at
    extra.setdefault("AGENTMESH_LLM_MESH_CONCURRENCY", "0" if no_cap else str(args.concurrency_limit))
    async with local_mesh(extra_env=extra) as mesh:
        yield MeshTarget(
            mesh.gateway,
            SimControl(mesh.sim),
            mesh.key,
            mesh_processes(mesh),
            mesh.pids(),
            admin=mesh.admin,
            egress_cap=int(extra["AGENTMESH_LLM_MESH_CONCURRENCY"]),
            dsn=mesh.env.get("DATABASE_URL"),
        )


def mesh_conversation(
    stubs: list[supervisor_pb2_grpc.SupervisorServiceStub],
    metadata: tuple[tuple[str, str], ...],
    message: str,
    timeout_s: float,
) -> Conversation:
    """One Run through the gateway, reading the stream to the final event."""

    async def run(user: int) -> RunOutcome:
        out = RunOutcome()
        started = time.monotonic()
        final = False
        step_seen_at = last_at = started
        try:
            call = stubs[user % len(stubs)].Run(
                supervisor_pb2.RunRequest(message=message), metadata=metadata, timeout=timeout_s
            )
            async for ev in call:
                now = time.monotonic()
                kind = ev.WhichOneof("event")
                if out.first_event_s is None:
                    out.first_event_s = now - started
                    # The first event comes after the input guard check and the run's row are written.
                    out.steps.append(("before first event (input guard, run row)", out.first_event_s * 1000))
                if kind == "step_started":
                    step_seen_at = now
                elif kind == "step_finished":
                    sf = ev.step_finished
                    label = _KIND.get(sf.kind, "step")
                    label = f"{label} {sf.agent}" if label == "agent" else label
                    out.steps.append((label, float(sf.duration_ms)))
                    # Between the two events and not in the step's own duration: its checkpoint write.
                    out.steps.append(("checkpoint write", (now - step_seen_at) * 1000 - sf.duration_ms))
                elif kind == "final":
                    final = True
                    out.llm_calls = ev.final.usage.llm_calls
                    out.steps.append(("run completion write", (now - last_at) * 1000))
                elif kind == "error":
                    out.status = f"ERROR_EVENT_{ev.error.code}"
                last_at = now
        except grpc.aio.AioRpcError as exc:
            out.status = exc.code().name
        if out.status == "OK" and not final:
            out.status = "NO_FINAL_EVENT"
        return out

    return run


def provider_limit(args: argparse.Namespace) -> tuple[float, dict[str, Any]]:
    """The most successful LLM calls per second the simulator admits, and the faults that set that limit."""
    if args.rpm > 0:
        return args.rpm / 60, {
            "latency_ms": args.latency_ms,
            "max_concurrency": None,
            "rpm": args.rpm,
            "rate_window_s": args.rate_window_s,
        }
    return args.concurrency_limit / (args.latency_ms / 1000), {
        "latency_ms": args.latency_ms,
        "max_concurrency": args.concurrency_limit,
        "rpm": None,
    }


async def measure_mesh(args: argparse.Namespace, target: MeshTarget, users: int) -> tuple[LoadResult, dict[str, Any]]:
    limit, faults = provider_limit(args)
    channels = [grpc.aio.insecure_channel(target.gateway) for _ in range(max(1, args.channels))]
    stubs = [supervisor_pb2_grpc.SupervisorServiceStub(ch) for ch in channels]
    metadata = (("authorization", f"Bearer {target.key}"),)
    conversation = mesh_conversation(stubs, metadata, args.message, args.run_timeout)
    try:
        await target.sim.set_faults(**faults)
        if args.warmup_runs:
            warm = await asyncio.gather(*(conversation(i) for i in range(args.warmup_runs)))
            bad = [w.status for w in warm if w.status != "OK"]
            if bad:
                raise SystemExit(f"warm-up runs failed: {bad[:5]}")
        cpu: dict[str, dict[str, float]] = {}
        profiling: asyncio.Task[list[Any]] | None = None
        if args.profile:
            from bench import _profile

            profiling = asyncio.create_task(_profile.record(target.pids, args.duration, RESULTS, rate=100))

        egress_cap = target.egress_cap or 0
        egress: dict[str, dict[str, int]] = {}

        def start() -> None:
            cpu["before"] = cpu_seconds(target.processes)
            if egress_cap and target.admin:
                egress["before"] = egress_counters(target.admin)  # one local admin call, a few ms

        with self_cpu() as driver_cpu:
            result = await drive(
                conversation,
                sim=target.sim,
                users=users,
                duration_s=args.duration,
                drain_timeout_s=args.drain_timeout,
                on_window_start=start,
            )
        cpu["after"] = cpu_seconds(target.processes)
        summary = result.summary(limit)
        summary["llm_mesh_concurrency"] = target.egress_cap
        if "before" in egress and target.admin:
            after = await asyncio.to_thread(egress_counters, target.admin)
            counts = {k: after[k] - egress["before"][k] for k in after}
            summary["egress"] = {"cap": egress_cap, **counts}
            # Every HTTP request the services made, including those the egress answered itself (overflow).
            summary["client_attempts_per_success"] = (
                round(counts["calls_received"] / summary["llm_successes"], 4) if summary["llm_successes"] else None
            )
        by_role = cpu_delta(cpu["before"], cpu["after"])
        total = sum(by_role.values())
        summary["mesh_cpu_s"] = round(total, 3)
        summary["mesh_cpu_s_by_process"] = by_role
        summary["cpu_ms_per_run"] = round(total * 1000 / summary["runs_ok"], 3) if summary["runs_ok"] else None
        summary["cpu_ms_per_run_by_process"] = (
            {k: round(v * 1000 / summary["runs_ok"], 3) for k, v in by_role.items()} if summary["runs_ok"] else {}
        )
        summary["cpu_ms_per_llm_call"] = (
            round(total * 1000 / summary["llm_successes"], 3) if summary["llm_successes"] else None
        )
        summary["load_generator_cpu_s"] = round(driver_cpu["s"], 3)
        summary["users"] = users
        if profiling is not None:
            summary["profile"] = [pr.to_json() for pr in await profiling]
        return result, summary
    finally:
        for ch in channels:
            await ch.close()


def _name(args: argparse.Namespace) -> str:
    # A run without the egress cap is the comparison, not the headline figure: its own file, e2e.json stays.
    if args.rpm > 0:
        return f"{NAME}-rpm"
    return f"{NAME}-no-egress-cap" if args.no_egress_cap else NAME


def _goals(s: dict[str, Any], *, cpu: bool) -> dict[str, dict[str, Any]]:
    """`cpu`: whether CPU per LLM call is a goal (the concurrency mode's; reported in every mode)."""
    per_call = s.get("cpu_ms_per_llm_call")
    checks = {
        "failures": (s["failures"], s["failures"] <= GOALS["failures"], "== 0"),
        "ratio_to_limit": (s["ratio_to_limit"], (s["ratio_to_limit"] or 0) >= GOALS["ratio_to_limit"], ">= 0.95"),
        "attempts_per_success": (
            s["attempts_per_success"],
            (s["attempts_per_success"] or 99) <= GOALS["attempts_per_success"],
            "<= 1.01",
        ),
    }
    if cpu:
        checks["cpu_ms_per_llm_call"] = (
            per_call,
            per_call is not None and per_call <= GOALS["cpu_ms_per_llm_call"],
            "<= 5",
        )
    return {k: {"value": v, "goal": g, "met": ok} for k, (v, ok, g) in checks.items()}


def _rows(name: str, s: dict[str, Any]) -> list[Any]:
    lat = s["run_latency"]
    return [
        name,
        s["runs"],
        s["failures"],
        json.dumps(s["failures_by_status"]) if s["failures_by_status"] else "-",
        lat["p50_ms"] / 1000,
        lat["p95_ms"] / 1000,
        lat["p99_ms"] / 1000,
        s["llm_calls_per_s"],
        s["ratio_to_limit"],
        s.get("cpu_ms_per_run"),
        s.get("cpu_ms_per_llm_call"),
        s["attempts_per_success"],
    ]


def _modes(args: argparse.Namespace) -> list[argparse.Namespace]:
    """One set of arguments per provider model to measure (rpm 0: the concurrency mode)."""
    mode = args.mode or ("rpm" if args.rpm is not None else "both")
    rpm = args.rpm if args.rpm is not None else 3000
    if mode == "concurrency":
        return [argparse.Namespace(**{**vars(args), "rpm": 0})]
    if mode == "rpm":
        return [argparse.Namespace(**{**vars(args), "rpm": rpm})]
    # Both against one mesh started with no limit settings (no egress cap): it must find each limit itself.
    common = {**vars(args), "no_egress_cap": True}
    return [
        argparse.Namespace(**{**common, "rpm": 0}),
        argparse.Namespace(**{**common, "rpm": rpm, "users": args.rpm_users, "sweep": ""}),
    ]


async def run(args: argparse.Namespace) -> int:
    modes = _modes(args)
    measured = []
    tenants = args.tenants > 0
    async with _target(modes[0]) as target:
        for mode in modes:
            measured.append((mode, await _measure(mode, target)))
        if tenants and not target.dsn:  # (C) creates the small tenant's key in the mesh's database
            phase("(C) skipped: it needs a mesh this bench starts, not --gateway")
            tenants = False
        if tenants:
            conc = next((m for m in modes if not m.rpm), modes[0])
            conversation = functools.partial(mesh_conversation, message=args.message, timeout_s=args.run_timeout)
            fair = await _tenants.measure_tenants(conc, target, conversation, provider_limit(conc)[1])
            fair_baseline = None
            if not args.no_baseline:
                small, flood = _tenants.split(args.tenant_users, args.tenants)
                phase(f"(C) baseline {_baseline.label(args)}: {len(small)} users alone, then with {len(flood)} more")
                fair_baseline = await _baseline.run_tenants(conc, target.sim.url, len(small), len(flood))
    for mode, out in measured:
        _report(mode, *out)
    if tenants:
        print(f"wrote {_tenants.report(conc, fair, fair_baseline)}")
    return 0


async def _measure(args: argparse.Namespace, target: MeshTarget) -> tuple[Any, ...]:
    counts = sorted({int(x) for x in args.sweep.split(",") if x.strip()}) if args.sweep else [args.users]
    sweep: list[dict[str, Any]] = []
    main: tuple[LoadResult, dict[str, Any]] | None = None
    baseline: dict[str, Any] | None = None
    baseline_series: dict[str, Any] = {}
    model = f"({'B' if args.rpm else 'A'}) {f'RPM {args.rpm}' if args.rpm else f'C={args.concurrency_limit}'}"
    for users in counts:
        phase(f"{model} mesh: {users} users, {args.duration:.0f} s")
        result, summary = await measure_mesh(args, target, users)
        sweep.append(summary)
        main = (result, summary)
    if not args.no_baseline:
        phase(f"{model} baseline {_baseline.label(args)}: {counts[-1]} users, {args.duration:.0f} s")
        baseline, baseline_series = await _baseline.run_load(args, target.sim.url, counts[-1])
    return counts, sweep, main, baseline, baseline_series


def _report(
    args: argparse.Namespace,
    counts: list[int],
    sweep: list[dict[str, Any]],
    main: tuple[LoadResult, dict[str, Any]] | None,
    baseline: dict[str, Any] | None,
    baseline_series: dict[str, Any],
) -> None:
    limit, _ = provider_limit(args)
    assert main is not None
    result, mesh = main
    mesh["goals"] = _goals(mesh, cpu=not args.rpm)
    results: dict[str, Any] = {"mesh": mesh}
    if baseline is not None:
        results["baseline_langgraph"] = baseline
        results["baseline_design"] = baseline.get("design")
        b_lat, m_lat = baseline["run_latency"]["p99_ms"], mesh["run_latency"]["p99_ms"]
        results["mesh_vs_baseline"] = {
            "llm_calls_per_s_ratio": round(mesh["llm_calls_per_s"] / baseline["llm_calls_per_s"], 3)
            if baseline["llm_calls_per_s"]
            else None,
            "runs_per_s_ratio": round(mesh["runs_per_s"] / baseline["runs_per_s"], 3)
            if baseline["runs_per_s"]
            else None,
            "p99_ratio": round(m_lat / b_lat, 3) if b_lat else None,
            "cpu_ms_per_run_ratio": round(mesh["cpu_ms_per_run"] / baseline["cpu_ms_per_run"], 3)
            if mesh.get("cpu_ms_per_run") and baseline.get("cpu_ms_per_run")
            else None,
        }
    if len(sweep) > 1:
        results["sweep"] = [
            {
                "users": s["users"],
                "llm_calls_per_s": s["llm_calls_per_s"],
                "ratio_to_limit": s["ratio_to_limit"],
                "p99_ms": s["run_latency"]["p99_ms"],
                "failures": s["failures"],
                "cpu_ms_per_run": s.get("cpu_ms_per_run"),
            }
            for s in sweep
        ]
    results["series"] = {
        "mesh_timeline": result.timeline,
        "mesh_run_latency_s": [[round(a, 3), round(b, 3)] for a, b in result.latency_points()],
        "baseline_timeline": baseline_series.get("timeline", []),
    }
    params = {k: v for k, v in vars(args).items() if k not in ("func", "key")}
    params["limit_per_s"] = limit
    params["llm_mesh_concurrency"] = mesh.get("llm_mesh_concurrency")  # the egress cap the mesh ran with (0: none)
    if not args.no_plots:
        results["plots"] = _write_plots(args, result, mesh, baseline, baseline_series, sweep, limit)
    path = write_result(_name(args), params, results)

    columns = [
        "design",
        "runs",
        "failed",
        "failures",
        "p50 s",
        "p95 s",
        "p99 s",
        "LLM calls/s",
        "of limit",
        "CPU ms/run",
        "CPU ms/call",
        "attempts/call",
    ]
    rows = [_rows("agentmesh", mesh)]
    if baseline is not None:
        rows.append(_rows(baseline.get("design", "LangGraph baseline"), baseline))
    cap = mesh.get("llm_mesh_concurrency")
    cap_note = "unknown egress cap" if cap is None else (f"egress cap {cap}" if cap else "no egress cap")
    print_table(
        f"e2e: {counts[-1]} users, {args.duration:.0f} s, limit "
        + (
            f"RPM {args.rpm} (L={args.latency_ms:.0f} ms)"
            if args.rpm
            else f"C={args.concurrency_limit} / L={args.latency_ms:.0f} ms"
        )
        + f" = {limit:.0f} calls/s; mesh with {cap_note}",
        columns,
        rows,
    )
    if "egress" in mesh:
        e = mesh["egress"]
        print(
            f"egress: {e['calls_received']} calls in, {e['sent_to_provider']} to the provider, {e['queued']} queued, "
            f"{e['overflowed']} overflowed, {e['connections_opened']} connections opened; "
            f"client attempts per success {mesh['client_attempts_per_success']}"
        )
    steps = mesh["steps"]
    print_table(
        "where a mesh run's time goes (server-reported step durations)",
        ["step", "n", "p50 ms", "p99 ms"],
        [[k, v["n"], v["p50_ms"], v["p99_ms"]] for k, v in steps.items()],
    )
    print_table(
        "mesh CPU ms per run by process",
        ["process", "ms/run"],
        [[k, v] for k, v in mesh["cpu_ms_per_run_by_process"].items()],
    )
    if "mesh_vs_baseline" in results:
        print(
            f"mesh / LangGraph: LLM calls/s x{results['mesh_vs_baseline']['llm_calls_per_s_ratio']}, "
            f"p99 x{results['mesh_vs_baseline']['p99_ratio']}"
        )
    unmet = [k for k, g in mesh["goals"].items() if not g["met"]]
    print(f"goals: {'all met' if not unmet else 'not met: ' + ', '.join(unmet)}")
    print(f"wrote {path}")


def _write_plots(
    args: argparse.Namespace,
    result: LoadResult,
    mesh: dict[str, Any],
    baseline: dict[str, Any] | None,
    baseline_series: dict[str, Any],
    sweep: list[dict[str, Any]],
    limit: float,
) -> list[str]:
    cap = mesh.get("llm_mesh_concurrency")
    title = (
        f"agentmesh e2e: {mesh['users']} users, "
        + (f"RPM {args.rpm}" if args.rpm else f"C={args.concurrency_limit}")
        + f", L={args.latency_ms:.0f} ms, "
        f"{f'egress cap {cap}' if cap else 'no egress cap'} "
        f"({mesh['ratio_to_limit']:.2f} of the limit, {mesh['failures']} failed)"
    )
    paths = [
        _plots.latency_over_time(
            RESULTS / f"{_name(args)}-latency.png",
            title=title,
            runs=result.latency_points(),
            rate=result.rate_points(),
            limit=limit,
            baseline_rate=[(p["t"], p["ok_per_s"]) for p in baseline_series.get("timeline", [])],
            window_end=args.duration,
        )
    ]
    series = {"agentmesh": [b for _, b in result.latency_points()]}
    if baseline_series.get("run_latency_s"):
        name = baseline.get("design", "LangGraph baseline") if baseline else "LangGraph baseline"
        series[f"{name} (successful runs)"] = [b for _, b in baseline_series["run_latency_s"]]
    paths.append(
        _plots.histogram(RESULTS / f"{_name(args)}-histogram.png", title="run latency", series=series, unit="s")
    )
    if len(sweep) > 1:
        paths.append(
            _plots.throughput_vs_users(
                RESULTS / f"{_name(args)}-sweep.png",
                title="agentmesh: successful LLM calls/s vs users",
                users=[s["users"] for s in sweep],
                rate=[s["llm_calls_per_s"] for s in sweep],
                p99_s=[s["run_latency"]["p99_ms"] / 1000 for s in sweep],
                limit=limit,
                rate_label="LLM calls/s",
            )
        )
    return [str(Path(p).relative_to(RESULTS.parent.parent)) for p in paths]
