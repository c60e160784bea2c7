"""The peer baseline: the seed article's in-process design, a LangGraph `StateGraph` supervisor.

One Python process holds everything: the router node and the researcher, analyst and executor nodes, with
the mesh's own prompts (imported from services/*) and the executor's tools, each node calling
`anthropic.AsyncAnthropic` directly with the SDK's default settings (max_retries=2, i.e. up to 3 attempts
honouring retry-after; 600 s timeout), LangGraph's in-memory checkpointer (one thread per conversation), and
the users as asyncio tasks in the same process. No guard, no Postgres, no gateway: it does less per run than
the mesh. Run by `agentmesh bench e2e` in a process of its own, so the CPU it reports is all its own:

    python -m bench.baseline_langgraph --sim http://127.0.0.1:8765 --users 500 --duration 60 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import operator
import sys
import uuid
from pathlib import Path
from typing import Annotated, Any, TypedDict

import anthropic
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph

from agentmesh.services.analyst.server import SYSTEM_PROMPT as ANALYST_PROMPT
from agentmesh.services.executor.server import SYSTEM_PROMPT as EXECUTOR_PROMPT
from agentmesh.services.executor.tools import Registry
from agentmesh.services.researcher.server import SYSTEM_PROMPT as RESEARCHER_PROMPT
from agentmesh.services.supervisor.router import FINISH, ROUTER_SYSTEM, allowed_next, parse_route, routing_prompt
from bench._load import RunOutcome, drive
from bench._target import SimControl, self_cpu

MODEL = "claude-haiku-4-5"
AGENTS = ("researcher", "analyst", "executor")
MAX_TOKENS = 512
MAX_TOOL_ROUNDS = 3


class TeamState(TypedDict):
    request: str
    outputs: Annotated[list[tuple[str, str]], operator.add]
    next: str
    llm_calls: Annotated[int, operator.add]


def build_graph(client: anthropic.AsyncAnthropic) -> Any:
    """The supervisor graph: START -> supervisor -> (agent -> supervisor)* -> END."""
    tools = Registry()

    async def supervisor(state: TeamState) -> dict[str, Any]:
        done = [a for a, _ in state["outputs"]]
        allowed = allowed_next(AGENTS, done)
        msg = await client.messages.create(
            model=MODEL,
            max_tokens=8,
            system=ROUTER_SYSTEM,
            messages=[{"role": "user", "content": routing_prompt(state["request"], state["outputs"], allowed)}],
        )
        text = "".join(b.text for b in msg.content if b.type == "text")
        return {"next": parse_route(text, allowed, AGENTS, done).decision, "llm_calls": 1}

    def agent(name: str, system: str, toolbox: Registry | None = None) -> Any:
        async def node(state: TeamState) -> dict[str, Any]:
            transcript = "".join(f"[{a}] {o}\n" for a, o in state["outputs"])
            prompt = (f"Conversation so far:\n{transcript}\n" if transcript else "") + f"Task: {state['request']}"
            messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
            calls = 0
            text = ""
            for round_ in range(MAX_TOOL_ROUNDS + 1):
                kwargs: dict[str, Any] = {}
                if toolbox is not None and round_ < MAX_TOOL_ROUNDS:
                    kwargs["tools"] = toolbox.specs()
                msg = await client.messages.create(
                    model=MODEL, max_tokens=MAX_TOKENS, system=system, messages=messages, **kwargs
                )
                calls += 1
                text = "".join(b.text for b in msg.content if b.type == "text")
                uses = [b for b in msg.content if b.type == "tool_use"]
                if not uses or toolbox is None:
                    break
                messages.append({"role": "assistant", "content": [b.model_dump() for b in msg.content]})
                results = []
                for use in uses:
                    outcome = await toolbox.run(use.name, use.input if isinstance(use.input, dict) else {})
                    results.append({"type": "tool_result", "tool_use_id": use.id, "content": outcome.result})
                messages.append({"role": "user", "content": results})
            return {"outputs": [(name, text)], "llm_calls": calls}

        return node

    graph = StateGraph(TeamState)
    graph.add_node("supervisor", supervisor)
    graph.add_node("researcher", agent("researcher", RESEARCHER_PROMPT))
    graph.add_node("analyst", agent("analyst", ANALYST_PROMPT))
    graph.add_node("executor", agent("executor", EXECUTOR_PROMPT, tools))
    graph.add_edge(START, "supervisor")
    graph.add_conditional_edges("supervisor", lambda s: s["next"], {**{a: a for a in AGENTS}, FINISH: END})
    for a in AGENTS:
        graph.add_edge(a, "supervisor")
    return graph.compile(checkpointer=InMemorySaver())


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    sim = SimControl(args.sim)
    limit = args.concurrency_limit / (args.latency_ms / 1000)
    faults: dict[str, Any] = {"latency_ms": args.latency_ms, "max_concurrency": args.concurrency_limit}
    if args.rpm > 0:  # token-bucket mode (bench e2e --rpm)
        limit = args.rpm / 60
        faults = {"latency_ms": args.latency_ms, "max_concurrency": None, "rpm": args.rpm}
        faults["rate_window_s"] = args.rate_window_s
    await sim.set_faults(**faults)
    client = anthropic.AsyncAnthropic(api_key="offline-simulator", base_url=args.sim)  # SDK defaults otherwise
    graph = build_graph(client)

    async def conversation(_user: int) -> RunOutcome:
        try:
            state = await graph.ainvoke(
                {"request": args.message, "outputs": [], "next": "", "llm_calls": 0},
                {"configurable": {"thread_id": str(uuid.uuid4())}},
            )
        except anthropic.APIStatusError as exc:
            return RunOutcome(status=f"HTTP_{exc.status_code}")
        except anthropic.APIConnectionError as exc:
            return RunOutcome(status=type(exc).__name__)
        return RunOutcome(llm_calls=state["llm_calls"])

    try:
        if args.warmup_runs:
            await asyncio.gather(*(conversation(i) for i in range(args.warmup_runs)))
        with self_cpu() as cpu:
            result = await drive(
                conversation, sim=sim, users=args.users, duration_s=args.duration, drain_timeout_s=args.drain_timeout
            )
    finally:
        await client.close()
    summary = result.summary(limit)
    summary["users"] = args.users
    summary["process_cpu_s"] = round(cpu["s"], 3)
    summary["cpu_ms_per_run"] = round(cpu["s"] * 1000 / summary["runs_ok"], 3) if summary["runs_ok"] else None
    summary["cpu_ms_per_llm_call"] = (
        round(cpu["s"] * 1000 / summary["llm_successes"], 3) if summary["llm_successes"] else None
    )
    summary["client"] = "anthropic.AsyncAnthropic defaults (max_retries=2, timeout 600 s)"
    summary["checkpointer"] = "langgraph InMemorySaver"
    return {
        "summary": summary,
        "series": {
            "timeline": result.timeline,
            "run_latency_s": [[round(a, 3), round(b, 3)] for a, b in result.latency_points()],
        },
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.baseline_langgraph", description=__doc__.splitlines()[0])
    p.add_argument("--sim", required=True, help="simulator URL")
    p.add_argument("--users", type=int, default=500)
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--concurrency-limit", type=int, default=20)
    p.add_argument("--latency-ms", type=float, default=200.0)
    p.add_argument("--rpm", type=int, default=0, help="token-bucket mode: requests per minute (0: concurrency mode)")
    p.add_argument("--rate-window-s", type=float, default=1.0)
    p.add_argument("--message", default="Compare two payment providers and recommend one")
    p.add_argument("--drain-timeout", type=float, default=240.0)
    p.add_argument("--warmup-runs", type=int, default=10)
    p.add_argument("--json", type=Path, default=None, help="write the result here (else stdout)")
    args = p.parse_args(argv)
    # The stock asyncio loop, as the article's design runs (the mesh's services run uvloop).
    body = asyncio.run(measure(args))
    text = json.dumps(body, indent=2)
    if args.json:
        args.json.write_text(text)
    else:
        sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
