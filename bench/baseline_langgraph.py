"""The peer baseline: the seed article's in-process design, a LangGraph `StateGraph` supervisor.

One Python process holds everything: the router node and the researcher, analyst and executor nodes, with
the mesh's own prompts (imported from services/*) and the executor's tools, each node calling
`anthropic.AsyncAnthropic`, a LangGraph checkpointer (one thread per conversation), and the users as asyncio
tasks in the same process. No guard, no gateway: it does less per run than the mesh.

By default it is the seed design: the seed's client (every call inside `asyncio.Semaphore(30)`, tenacity retries,
the SDK's own off; bench/_seed_client.py) and `AsyncPostgresSaver` on the database `--dsn` names. `--client sdk`
is the SDK's defaults instead (max_retries=2 honouring retry-after), `--checkpointer memory` LangGraph's
InMemorySaver. Run by `agentmesh bench e2e` in a process of its own, so the CPU it reports is all its own:

    python -m bench.baseline_langgraph --sim http://127.0.0.1:8765 --dsn postgresql://... --users 500 --json out.json

With `--small-users N --flood-users M` it measures (C) instead: N users alone, then the same N next to M more.
There are no tenants in this design: the small group is just the first N users.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import operator
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
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
from bench._common import phase, summary_ms
from bench._load import Conversation, LoadResult, RunOutcome, drive
from bench._seed_client import CHECKPOINTERS, CLIENTS, SeedClient, design_label
from bench._target import SimControl, self_cpu

MODEL = "claude-haiku-4-5"
AGENTS = ("researcher", "analyst", "executor")
MAX_TOKENS = 512
MAX_TOOL_ROUNDS = 3

LLMCall = Callable[..., Awaitable[Any]]  # client.messages.create, or the seed's wrapper of it


class TeamState(TypedDict):
    request: str
    outputs: Annotated[list[tuple[str, str]], operator.add]
    next: str
    llm_calls: Annotated[int, operator.add]
    route_ms: Annotated[list[float], operator.add]  # each routing call, waiting and retries included


def build_graph(create: LLMCall, checkpointer: Any) -> Any:
    """The supervisor graph: START -> supervisor -> (agent -> supervisor)* -> END."""
    tools = Registry()

    async def supervisor(state: TeamState) -> dict[str, Any]:
        done = [a for a, _ in state["outputs"]]
        allowed = allowed_next(AGENTS, done)
        started = time.monotonic()
        msg = await create(
            model=MODEL,
            max_tokens=8,
            system=ROUTER_SYSTEM,
            messages=[{"role": "user", "content": routing_prompt(state["request"], state["outputs"], allowed)}],
        )
        took_ms = (time.monotonic() - started) * 1000
        text = "".join(b.text for b in msg.content if b.type == "text")
        return {"next": parse_route(text, allowed, AGENTS, done).decision, "llm_calls": 1, "route_ms": [took_ms]}

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
                msg = await create(model=MODEL, max_tokens=MAX_TOKENS, system=system, messages=messages, **kwargs)
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
    return graph.compile(checkpointer=checkpointer)


@contextlib.asynccontextmanager
async def open_checkpointer(kind: str, dsn: str | None, pool_size: int) -> AsyncIterator[Any]:
    """LangGraph's checkpointer: AsyncPostgresSaver on a psycopg pool (bench/checkpoints.py measures the same), or
    InMemorySaver."""
    if kind == "memory":
        yield InMemorySaver()
        return
    if not dsn:
        raise SystemExit("--checkpointer postgres needs --dsn (a database this may create tables in)")
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    pool = AsyncConnectionPool(
        dsn,
        min_size=pool_size,
        max_size=pool_size,
        open=False,
        # What AsyncPostgresSaver needs of its connections (its from_conn_string sets the same).
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
    )
    await pool.open()
    try:
        saver = AsyncPostgresSaver(pool)  # type: ignore[arg-type]
        await saver.setup()
        yield saver
    finally:
        await pool.close()


def provider(args: argparse.Namespace) -> tuple[float, dict[str, Any]]:
    """The successful calls/s the simulator admits and the faults that set it (as bench/e2e.py's provider_limit)."""
    if args.rpm > 0:  # token-bucket mode (bench e2e --rpm)
        faults = {"latency_ms": args.latency_ms, "max_concurrency": None, "rpm": args.rpm}
        return args.rpm / 60, {**faults, "rate_window_s": args.rate_window_s}
    faults = {"latency_ms": args.latency_ms, "max_concurrency": args.concurrency_limit, "rpm": None}
    return args.concurrency_limit / (args.latency_ms / 1000), faults


def conversation_of(graph: Any, message: str) -> Conversation:
    async def conversation(_user: int) -> RunOutcome:
        try:
            state = await graph.ainvoke(
                {"request": message, "outputs": [], "next": "", "llm_calls": 0, "route_ms": []},
                {"configurable": {"thread_id": str(uuid.uuid4())}},
            )
        except anthropic.APIStatusError as exc:
            return RunOutcome(status=f"HTTP_{exc.status_code}")
        except anthropic.APIConnectionError as exc:
            return RunOutcome(status=type(exc).__name__)
        return RunOutcome(llm_calls=state["llm_calls"], steps=[("route", ms) for ms in state["route_ms"]])

    return conversation


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    sim = SimControl(args.sim)
    limit, faults = provider(args)
    await sim.set_faults(**faults)
    if args.client == "seed":
        client = anthropic.AsyncAnthropic(api_key="offline-simulator", base_url=args.sim, max_retries=0)
        seed: SeedClient | None = SeedClient(client)
        create: LLMCall = seed.create
    else:
        client = anthropic.AsyncAnthropic(api_key="offline-simulator", base_url=args.sim)  # SDK defaults otherwise
        seed, create = None, client.messages.create
    design = {
        "design": design_label(args.client, args.checkpointer),
        "client": CLIENTS[args.client],
        "checkpointer": CHECKPOINTERS[args.checkpointer],
    }
    try:
        async with open_checkpointer(args.checkpointer, args.dsn, args.pg_pool_size) as saver:
            conversation = conversation_of(build_graph(create, saver), args.message)
            if args.warmup_runs:
                await asyncio.gather(*(conversation(i) for i in range(args.warmup_runs)))
            if seed is not None:
                seed.semaphore_wait_s.clear()  # the warm-up's waits are not the window's
            if args.small_users:
                return {"summary": {**design, **await _tenants(args, sim, conversation)}, "series": {}}
            with self_cpu() as cpu:
                result = await drive(
                    conversation,
                    sim=sim,
                    users=args.users,
                    duration_s=args.duration,
                    drain_timeout_s=args.drain_timeout,
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
    if seed is not None:  # queueing inside the client: each attempt's wait for one of the 30 slots
        summary["semaphore_wait"] = summary_ms(seed.semaphore_wait_s)
    summary.update(design)
    return {
        "summary": summary,
        "series": {
            "timeline": result.timeline,
            "run_latency_s": [[round(a, 3), round(b, 3)] for a, b in result.latency_points()],
        },
    }


async def _tenants(args: argparse.Namespace, sim: SimControl, conversation: Conversation) -> dict[str, Any]:
    """(C) on this design: the small group alone, then next to the flood; the figures of each group per phase."""
    small, flood = range(args.small_users), range(args.small_users, args.small_users + args.flood_users)
    common = {"sim": sim, "duration_s": args.duration, "drain_timeout_s": args.drain_timeout}
    phase(f"(C) baseline: small group alone, {len(small)} users, {args.duration:.0f} s")
    alone: LoadResult = await drive(conversation, users=len(small), **common)
    phase(f"(C) baseline: small group with the flood, {len(small)} + {len(flood)} users")
    both: LoadResult = await drive(conversation, users=len(small) + len(flood), **common)
    return {
        "small_users": len(small),
        "flood_users": len(flood),
        "alone": alone.groups({"small": small}),
        "with_flood": both.groups({"small": small, "flood": flood}),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.baseline_langgraph", description=__doc__.splitlines()[0])
    p.add_argument("--sim", required=True, help="simulator URL")
    p.add_argument("--client", choices=sorted(CLIENTS), default="seed", help="seed: semaphore 30 + tenacity")
    p.add_argument("--checkpointer", choices=sorted(CHECKPOINTERS), default="postgres")
    p.add_argument("--dsn", default=None, help="with --checkpointer postgres: the database for its tables")
    p.add_argument("--pg-pool-size", type=int, default=20, help="connections in the checkpointer's psycopg pool")
    p.add_argument("--users", type=int, default=500)
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--concurrency-limit", type=int, default=20)
    p.add_argument("--latency-ms", type=float, default=200.0)
    p.add_argument("--rpm", type=int, default=0, help="token-bucket mode: requests per minute (0: concurrency mode)")
    p.add_argument("--rate-window-s", type=float, default=1.0)
    p.add_argument("--message", default="Compare two payment providers and recommend one")
    p.add_argument("--drain-timeout", type=float, default=240.0)
    p.add_argument("--warmup-runs", type=int, default=10)
    p.add_argument("--small-users", type=int, default=0, help="(C): this many users alone, then next to the flood")
    p.add_argument("--flood-users", type=int, default=0, help="(C): the flood's users (with --small-users)")
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
