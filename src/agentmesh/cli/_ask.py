"""`agentmesh ask` and `agentmesh resume`: a client of the public gateway that streams a run's events."""

from __future__ import annotations

import argparse
import sys

import grpc
from rich.console import Console

from agentmesh.cli._common import api_key
from agentmesh.settings import Settings
from agentmesh.v1 import guard_pb2, supervisor_pb2, supervisor_pb2_grpc

_KIND = {
    supervisor_pb2.STEP_KIND_ROUTE: "route",
    supervisor_pb2.STEP_KIND_AGENT: "agent",
    supervisor_pb2.STEP_KIND_GUARD: "guard",
}


def _print_event(console: Console, ev: supervisor_pb2.RunEvent) -> None:
    which = ev.WhichOneof("event")
    if which == "step_started":
        s = ev.step_started
        console.print(f"[dim]#{ev.seq:<3}[/] step {s.step} {_KIND.get(s.kind, '?')} [bold]{s.agent}[/] …")
    elif which == "step_finished":
        done = ev.step_finished
        extra = f" -> {done.decision}" if done.decision else ""
        console.print(
            f"[dim]#{ev.seq:<3}[/] step {done.step} {_KIND.get(done.kind, '?')} [bold]{done.agent}[/]{extra} "
            f"[dim]{done.duration_ms} ms, {done.usage.input_tokens}+{done.usage.output_tokens} tokens, "
            f"${done.cost_usd:.6f}[/]"
        )
    elif which == "guard_decision":
        g = ev.guard_decision
        console.print(
            f"[dim]#{ev.seq:<3}[/] guard {guard_pb2.Direction.Name(g.direction).removeprefix('DIRECTION_').lower()}: "
            f"{guard_pb2.Action.Name(g.action).removeprefix('ACTION_')}"
            + (f" ({', '.join(g.finding_types)})" if g.finding_types else "")
        )
    elif which == "final":
        f = ev.final
        console.print()
        console.print(f.answer, markup=False, highlight=False)
        console.print()
        console.print(
            f"[bold]{supervisor_pb2.FinishReason.Name(f.reason).removeprefix('FINISH_REASON_').lower()}[/] · "
            f"{f.iterations} agent steps · {f.usage.llm_calls} LLM calls · tokens in {f.usage.input_tokens} "
            f"out {f.usage.output_tokens} · cost ${f.cost_usd:.6f}"
        )
        console.print(f"[dim]run {ev.run_id} · thread {ev.thread_id}[/]")
    elif which == "input_required":
        q = ev.input_required
        console.print(
            f"[yellow]#{ev.seq:<3} paused[/] {q.question}"
            + (f" ({', '.join(q.finding_types)})" if q.finding_types else "")
            + f" [dim]answer with SubmitInput (POST /v1/runs/{ev.run_id}:input); waiting…[/]"
        )
    elif which == "error":
        console.print(
            f"[red]error[/] {ev.error.message}"
            + (f" (resumable: agentmesh resume {ev.run_id})" if ev.error.resumable else "")
        )


async def run(args: argparse.Namespace) -> int:
    settings = Settings()
    key = api_key(settings, args.key)
    if not key:
        print("no API key: pass --key, set AGENTMESH_API_KEY, or start the mesh with `agentmesh up`", file=sys.stderr)
        return 2
    console = Console(highlight=False)
    async with grpc.aio.insecure_channel(settings.gateway_addr) as channel:
        stub = supervisor_pb2_grpc.SupervisorServiceStub(channel)
        md = (("authorization", f"Bearer {key}"),)
        if args.cmd == "resume":
            call = stub.Resume(supervisor_pb2.ResumeRequest(run_id=args.run_id), metadata=md, timeout=args.timeout)
        else:
            call = stub.Run(
                supervisor_pb2.RunRequest(message=args.text, thread_id=args.thread), metadata=md, timeout=args.timeout
            )
        try:
            async for ev in call:
                _print_event(console, ev)
        except grpc.aio.AioRpcError as exc:
            console.print(f"[red]{exc.code().name}[/]: {exc.details()}")
            return 1
    return 0
