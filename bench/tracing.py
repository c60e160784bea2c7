"""Tracing overhead: runs/s, run latency and the mesh's CPU per run with tracing off vs. every service and the
gateway exporting every span (OTLP/gRPC) to a receiver in this process.

Two meshes run side by side, one per mode, and take the same closed-loop load in alternating windows (off, on,
on, off, ...), so a neighbour's CPU use or a warm-up drift hits both modes alike. Each window counts the CPU of
the loaded mesh's processes only. The receiver only counts spans; its cost is in this process, not the mesh's."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from typing import Any

import grpc

from agentmesh.testing.otlpsink import OtlpSink
from agentmesh.v1 import supervisor_pb2, supervisor_pb2_grpc
from bench._common import print_table, summary_ms, write_result
from bench._load import Conversation, RunOutcome, RunSample, drive
from bench._target import SimControl, cpu_delta, cpu_seconds, local_mesh, mesh_processes

NAME = "tracing"
MODES = ("off", "otlp")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--users", type=int, default=16, help="concurrent closed-loop users")
    p.add_argument("--rounds", type=int, default=3, help="load windows per mode, alternating between the modes")
    p.add_argument("--window", type=float, default=6.0, help="seconds of load per window")
    p.add_argument("--latency-ms", type=float, default=20.0, help="the simulator's latency per LLM call")
    p.add_argument("--warmup-runs", type=int, default=5, help="runs per mesh before measuring")
    p.add_argument("--message", default="Compare two payment providers and recommend one")
    p.add_argument(
        "--span-flush-s",
        type=float,
        default=6.0,
        help="wait after the load for batched spans (Envoy flushes every 5 s) before counting them",
    )


def _conversation(stub: supervisor_pb2_grpc.SupervisorServiceStub, auth: Any, message: str) -> Conversation:
    async def conversation(_user: int) -> RunOutcome:
        out = RunOutcome()
        try:
            async for ev in stub.Run(supervisor_pb2.RunRequest(message=message), metadata=auth, timeout=120):
                if ev.WhichOneof("event") == "final":
                    out.llm_calls = ev.final.usage.llm_calls
        except grpc.aio.AioRpcError as exc:
            out.status = exc.code().name
        return out

    return conversation


async def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    sink = OtlpSink(keep=False).start()
    envs = {"off": {}, "otlp": {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}}
    samples: dict[str, list[RunSample]] = {m: [] for m in MODES}
    elapsed = dict.fromkeys(MODES, 0.0)
    cpu: dict[str, dict[str, float]] = {m: {} for m in MODES}
    runs_through = dict.fromkeys(MODES, 0)
    try:
        async with contextlib.AsyncExitStack() as stack:
            target = {}
            for mode in MODES:
                mesh = await stack.enter_async_context(local_mesh(extra_env=envs[mode]))
                sim = SimControl(mesh.sim)
                await sim.set_faults(latency_ms=args.latency_ms)
                channel = await stack.enter_async_context(grpc.aio.insecure_channel(mesh.gateway))
                conversation = _conversation(
                    supervisor_pb2_grpc.SupervisorServiceStub(channel), mesh.auth(), args.message
                )
                for i in range(args.warmup_runs):
                    await conversation(i)
                runs_through[mode] += args.warmup_runs
                target[mode] = (sim, conversation, mesh_processes(mesh))
            for r in range(args.rounds):
                for mode in MODES if r % 2 == 0 else MODES[::-1]:
                    sim, conversation, procs = target[mode]
                    before = cpu_seconds(procs)
                    load = await drive(
                        conversation, sim=sim, users=args.users, duration_s=args.window, drain_timeout_s=120
                    )
                    for proc, s in cpu_delta(before, cpu_seconds(procs)).items():
                        cpu[mode][proc] = round(cpu[mode].get(proc, 0.0) + s, 4)
                    samples[mode] += load.samples
                    elapsed[mode] += load.elapsed_s
                    runs_through[mode] += len(load.samples)
            await asyncio.sleep(args.span_flush_s)
            spans = sink.count
    finally:
        sink.stop()

    results: dict[str, Any] = {}
    for mode in MODES:
        ok = [s for s in samples[mode] if s.outcome.status == "OK"]
        cpu_s = sum(cpu[mode].values())
        results[mode] = {
            "runs": len(samples[mode]),
            "runs_ok": len(ok),
            "runs_per_s": round(len(ok) / elapsed[mode], 3),
            "run_latency": summary_ms([s.latency_s for s in ok]),
            "cpu_s_by_process": cpu[mode],
            "cpu_ms_per_run": round(cpu_s * 1000 / len(ok), 2) if ok else None,
            "spans_per_run": round(spans / runs_through[mode], 2) if mode == "otlp" and runs_through[mode] else 0.0,
        }
    off, on = results["off"], results["otlp"]
    results["overhead"] = {
        "runs_per_s_change_pct": round(100 * (on["runs_per_s"] / off["runs_per_s"] - 1), 2),
        "p50_latency_change_ms": round(on["run_latency"]["p50_ms"] - off["run_latency"]["p50_ms"], 3),
        "cpu_ms_per_run_added": round((on["cpu_ms_per_run"] or 0) - (off["cpu_ms_per_run"] or 0), 2),
        "cpu_change_pct": round(100 * ((on["cpu_ms_per_run"] or 0) / (off["cpu_ms_per_run"] or 1) - 1), 1),
    }
    params = {k: getattr(args, k) for k in ("users", "rounds", "window", "latency_ms", "warmup_runs", "message")}
    params["wall_s"] = round(time.monotonic() - started, 1)
    path = write_result(NAME, params, results)
    print_table(
        f"tracing off vs. OTLP export ({args.users} users, {args.rounds} x {args.window:g} s per mode, "
        f"LLM latency {args.latency_ms:g} ms)",
        ["mode", "runs ok", "failures", "runs/s", "p50 ms", "p99 ms", "mesh CPU ms/run", "spans/run"],
        [
            [
                mode,
                r["runs_ok"],
                r["runs"] - r["runs_ok"],
                r["runs_per_s"],
                r["run_latency"]["p50_ms"],
                r["run_latency"]["p99_ms"],
                r["cpu_ms_per_run"],
                r["spans_per_run"],
            ]
            for mode, r in (("off", off), ("otlp", on))
        ],
    )
    o = results["overhead"]
    print(
        f"overhead of tracing: runs/s {o['runs_per_s_change_pct']:+}%, p50 {o['p50_latency_change_ms']:+} ms, "
        f"mesh CPU {o['cpu_ms_per_run_added']:+} ms per run ({o['cpu_change_pct']:+}%); results in {path}"
    )
    return 0 if off["runs_ok"] and on["runs_ok"] else 1
