"""`agentmesh ask` and `agentmesh resume`: a client of the public gateway that streams a run's events.

With --json, stdout is NDJSON: each event as the HTTP/JSON gateway would send it (proto field names, enums by
name), then one `{"summary": ...}` line, also when the call failed, so a consumer always reads a last line."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import grpc
from google.protobuf import json_format
from rich.console import Console

from agentmesh.cli._common import api_key
from agentmesh.cli._exit import CliError, ExitCode, from_rpc_error
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
        Console(stderr=True, highlight=False).print(
            f"[red]error[/] {ev.error.message}"
            + (f" (resumable: agentmesh resume {ev.run_id})" if ev.error.resumable else "")
        )


def event_json(ev: supervisor_pb2.RunEvent) -> dict[str, Any]:
    """One event as the gateway's transcoder writes it (so `ask --json` and `curl /v1/runs` read alike)."""
    out: dict[str, Any] = json_format.MessageToDict(ev, preserving_proto_field_name=True)
    return out


def summary_json(
    last: supervisor_pb2.RunEvent | None, *, events: int, elapsed_s: float, error: CliError | None
) -> dict[str, Any]:
    """The closing NDJSON line: how the run ended and the exit code the command returns."""
    which = last.WhichOneof("event") if last is not None else None
    outcome = "error" if error is not None or which == "error" else "incomplete"
    if which == "final":
        outcome = supervisor_pb2.FinishReason.Name(last.final.reason).removeprefix("FINISH_REASON_").lower()  # type: ignore[union-attr]
    code = error.code if error is not None else ExitCode.FAILURE if outcome in ("error", "incomplete") else ExitCode.OK
    summary: dict[str, Any] = {
        "run_id": last.run_id if last is not None else "",
        "thread_id": last.thread_id if last is not None else "",
        "outcome": outcome,
        "events": events,
        "elapsed_ms": round(elapsed_s * 1000),
        "exit_code": int(code),
    }
    if error is not None:
        summary["error"] = error.message
    elif which == "error":
        summary["error"] = last.error.message  # type: ignore[union-attr]
        summary["resumable"] = last.error.resumable  # type: ignore[union-attr]
    return {"summary": summary}


async def run(args: argparse.Namespace) -> int:
    settings = Settings()
    key = api_key(settings, args.key)
    if not key:
        raise CliError(
            "no API key: pass --key, set AGENTMESH_API_KEY, or start the mesh with `agentmesh up`",
            ExitCode.UNAUTHENTICATED,
        )
    as_json = bool(getattr(args, "json", False))
    console = Console(highlight=False)
    last: supervisor_pb2.RunEvent | None = None
    events = 0
    error: CliError | None = None
    started = time.monotonic()
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
                last, events = ev, events + 1
                if as_json:
                    print(json.dumps(event_json(ev), separators=(",", ":")), flush=True)
                else:
                    _print_event(console, ev)
        except grpc.aio.AioRpcError as exc:
            error = from_rpc_error(exc)
    if as_json:
        summary = summary_json(last, events=events, elapsed_s=time.monotonic() - started, error=error)
        print(json.dumps(summary, separators=(",", ":")), flush=True)
    if error is not None:
        raise error
    if last is None or last.WhichOneof("event") != "final":
        return ExitCode.FAILURE  # an error event (printed above) says why, and whether the run can be resumed
    return ExitCode.OK
