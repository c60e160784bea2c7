"""`agentmesh trace RUN_ID [--html FILE] [--json]`: the run as a tree, from the supervisor's checkpoints (no tracing backend
needed): each step, its agent, each LLM call (tokens in/out, ms, cost, retries), tools and guard actions. With
--html, also a self-contained waterfall page of the steps and their LLM calls."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.tree import Tree

from agentmesh.cli._common import require_database_url
from agentmesh.cli._exit import CliError, ExitCode
from agentmesh.db import create_pool
from agentmesh.settings import Settings
from agentmesh.v1 import guard_pb2

RUN = (
    "SELECT id, thread_id, tenant_id, status, iterations, input_tokens, output_tokens, llm_calls, cost_usd, "
    "created_at, updated_at FROM runs WHERE id = $1"
)
STEPS = (
    "SELECT idx, kind, agent, result, input_tokens, output_tokens, llm_calls, cost_usd, duration_ms, created_at "
    "FROM steps WHERE run_id = $1 ORDER BY idx"
)


@dataclass(frozen=True)
class CallView:
    """One LLM call as a step recorded it (steps recorded before calls were kept have none)."""

    model: str
    input_tokens: int
    output_tokens: int
    start_ms: float  # from the start of the step's work at the service that made it
    duration_ms: float
    cost_usd: float
    attempts: int
    stop_reason: str

    @property
    def retries(self) -> int:
        return max(0, self.attempts - 1)


@dataclass(frozen=True)
class StepView:
    idx: int
    kind: str
    agent: str
    start_ms: float  # from the run's creation: the step's commit time minus its duration
    duration_ms: float
    input_tokens: int
    output_tokens: int
    llm_calls: int
    cost_usd: float
    detail: str
    calls: tuple[CallView, ...] = ()
    tools: tuple[tuple[str, bool], ...] = ()


@dataclass(frozen=True)
class RunView:
    id: str
    status: str
    tenant: str
    wall_ms: float
    iterations: int
    llm_calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    steps: tuple[StepView, ...] = field(default_factory=tuple)

    @property
    def attempts(self) -> int:
        return sum(c.attempts for s in self.steps for c in s.calls)


def _detail(kind: str, result: Mapping[str, Any]) -> str:
    if kind == "route":
        return (
            f"-> {result.get('decision')}"
            + (f" ({result['reason']})" if result.get("reason") else "")
            + (f" [{result['note']}]" if result.get("note") else "")
        )
    if kind == "guard":
        action = guard_pb2.Action.Name(int(result.get("action", 0))).removeprefix("ACTION_")
        types = ", ".join(result.get("finding_types", []))
        return f"action {action}" + (f" ({types})" if types else "")
    return ""


def build_view(run: Mapping[str, Any], steps: Sequence[Mapping[str, Any]]) -> RunView:
    """Rows of `runs` and `steps` -> what both renderers show. Pure, so it is tested without a database."""
    started = run["created_at"]
    views = []
    for s in steps:
        result = json.loads(s["result"]) if isinstance(s["result"], str) else s["result"]
        end_ms = (s["created_at"] - started).total_seconds() * 1000
        calls = tuple(
            CallView(
                model=c.get("model", ""),
                input_tokens=int(c.get("input_tokens", 0)),
                output_tokens=int(c.get("output_tokens", 0)),
                start_ms=float(c.get("start_ms", 0.0)),
                duration_ms=float(c.get("duration_ms", 0.0)),
                cost_usd=float(c.get("cost_usd", 0.0)),
                attempts=int(c.get("attempts", 1)),
                stop_reason=c.get("stop_reason", ""),
            )
            for c in result.get("llm", [])
        )
        views.append(
            StepView(
                idx=s["idx"],
                kind=s["kind"],
                agent=s["agent"],
                start_ms=max(0.0, end_ms - s["duration_ms"]),
                duration_ms=float(s["duration_ms"]),
                input_tokens=s["input_tokens"],
                output_tokens=s["output_tokens"],
                llm_calls=s["llm_calls"],
                cost_usd=float(s["cost_usd"]),
                detail=_detail(s["kind"], result),
                calls=calls,
                tools=tuple((t["name"], bool(t["executed"])) for t in result.get("tools", [])),
            )
        )
    wall_ms = (run["updated_at"] - started).total_seconds() * 1000
    return RunView(
        id=str(run["id"]),
        status=run["status"],
        tenant=run["tenant_id"],
        wall_ms=wall_ms,
        iterations=run["iterations"],
        llm_calls=run["llm_calls"],
        input_tokens=run["input_tokens"],
        output_tokens=run["output_tokens"],
        cost_usd=float(run["cost_usd"]),
        steps=tuple(views),
    )


def call_line(n: int, c: CallView) -> str:
    retries = f" · {c.attempts} attempts ({c.retries} {'retry' if c.retries == 1 else 'retries'})" if c.retries else ""
    return (
        f"LLM call {n} {c.model} · tokens in {c.input_tokens} out {c.output_tokens} · {c.duration_ms:.0f} ms · "
        f"${c.cost_usd:.6f} · {c.stop_reason or '?'}{retries}"
    )


def render_tree(view: RunView) -> Tree:
    retries = view.attempts - sum(len(s.calls) for s in view.steps)
    root = Tree(
        f"[bold]run {view.id}[/] {view.status} · tenant {escape(view.tenant)} · {view.wall_ms:.0f} ms · "
        f"{view.iterations} iterations · {view.llm_calls} LLM calls"
        + (f" ({retries} retries)" if retries > 0 else "")
        + f" · tokens {view.input_tokens}/{view.output_tokens} · ${view.cost_usd:.6f}"
    )
    for s in view.steps:
        detail = f" {escape(s.detail)}" if s.detail else ""
        node = root.add(
            f"{s.idx:>2} {s.kind:<5} [bold]{escape(s.agent)}[/]{detail} · {s.duration_ms:.0f} ms"
            + (
                f" · LLM calls: {s.llm_calls} · tokens in {s.input_tokens} out {s.output_tokens} · ${s.cost_usd:.6f}"
                if s.llm_calls
                else ""
            )
        )
        for n, c in enumerate(s.calls, 1):
            node.add(escape(call_line(n, c)))
        for name, executed in s.tools:
            node.add(f"tool {escape(name)} {'ran' if executed else 'refused'}")
    return root


def view_json(view: RunView) -> dict[str, Any]:
    """The tree as `trace --json` prints it: the run, its steps, each step's LLM calls and tools."""
    out = dataclasses.asdict(view)
    out["attempts"] = view.attempts
    for step, s in zip(out["steps"], view.steps, strict=True):
        step["tools"] = [{"name": name, "executed": executed} for name, executed in s.tools]
        for call, c in zip(step["calls"], s.calls, strict=True):
            call["retries"] = c.retries
    return out


async def run(args: argparse.Namespace) -> int:
    settings = Settings()
    dsn = require_database_url(settings)
    try:
        run_id = uuid.UUID(args.run_id)
    except ValueError:
        raise CliError(f"not a run id: {args.run_id!r}", ExitCode.USAGE) from None
    pool = await create_pool(dsn, min_size=1, max_size=1)
    try:
        r = await pool.fetchrow(RUN, run_id)
        if r is None:
            raise CliError(f"run {args.run_id} not found", ExitCode.NOT_FOUND)
        steps = await pool.fetch(STEPS, run_id)
    finally:
        await pool.close()
    view = build_view(dict(r), [dict(s) for s in steps])
    if getattr(args, "json", False):
        print(json.dumps(view_json(view)))
    else:
        Console(highlight=False).print(render_tree(view))
    if getattr(args, "html", None):
        from agentmesh.cli._waterfall import render_html

        await asyncio.to_thread(Path(args.html).write_text, render_html(view), encoding="utf-8")
        # stderr: with --json, stdout holds only the JSON document
        print(f"waterfall written to {args.html}", file=sys.stderr if getattr(args, "json", False) else sys.stdout)
    return 0
