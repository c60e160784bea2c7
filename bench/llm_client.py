"""The LLM client's CPU per call, side by side: the anthropic SDK against our direct wire, same request, same process.

Issue 16 asked to keep the SDK unless it could be shown to be the floor. This measures it: the simulator runs as
a process of its own (its CPU is not counted), and this process makes the same non-streaming Messages call
(`max_tokens` 8, as a routing step does) through each path in turn, in alternating rounds, with `--concurrency`
calls in flight, under uvloop as the services run:

- `sdk`: `AsyncAnthropic.messages.with_raw_response.create` on the SDK's aiohttp transport, the body read as JSON
  (how `LLMClient` called the provider before `llm/_wire.py`);
- `wire`: `MessagesWire.create`, the same headers on the same aiohttp, the SDK's exceptions for failures;
- `llm client`: the whole `LLMClient.complete` (retries, breaker, limiter, pacer, accounting, metrics) on the wire,
  with no Redis: what a service pays per call beside its gRPC work.

CPU is this process's (`time.process_time`) over each round's calls; the table gives each path's median round."""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench._common import print_table, timed_progress, write_result

NAME = "llm-client"
BODY: dict[str, Any] = {
    "model": "claude-haiku-4-5",
    "system": "You route a request to the next agent. Answer with one word.",
    "messages": [{"role": "user", "content": "Compare two payment providers and recommend one. Next: researcher?"}],
    "max_tokens": 8,
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--calls", type=int, default=3000, help="calls per round and path")
    p.add_argument("--rounds", type=int, default=3, help="rounds per path, alternating")
    p.add_argument("--concurrency", type=int, default=20, help="calls in flight")


async def _start_sim() -> tuple[asyncio.subprocess.Process, str]:
    from agentmesh.testing.localmesh import free_port

    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agentmesh",
        "sim",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        env={**os.environ, "AGENTMESH_LOG_LEVEL": "WARNING"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    if b"ready" not in line:
        proc.kill()
        raise RuntimeError(f"the simulator did not start: {line!r}")
    return proc, f"http://127.0.0.1:{port}"


async def _round(call: Callable[[], Awaitable[Any]], calls: int, concurrency: int) -> float:
    """CPU ms per call over `calls` calls with `concurrency` in flight."""
    left = calls

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await call()

    cpu = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (time.process_time() - cpu) * 1000 / calls


async def _measure(args: argparse.Namespace, sim: str) -> dict[str, list[float]]:
    import anthropic

    from agentmesh.deadline import Deadline
    from agentmesh.llm import LLMClient
    from agentmesh.llm._wire import MessagesWire
    from agentmesh.settings import Settings

    sdk = anthropic.AsyncAnthropic(
        api_key="bench",
        base_url=sim,
        max_retries=0,
        http_client=anthropic.DefaultAioHttpClient(),
        open_telemetry=False,
    )
    wire = MessagesWire(sdk, connect_timeout_s=5, read_timeout_s=60)
    llm = LLMClient(settings=Settings(anthropic_base_url=sim, redis_url=None, llm_jitter_ms=0))

    async def via_sdk() -> None:
        raw = await sdk.messages.with_raw_response.create(**BODY)
        await raw.json()

    async def via_wire() -> None:
        await wire.create(BODY)

    async def via_client() -> None:
        await llm.complete(
            system=BODY["system"], messages=BODY["messages"], max_tokens=BODY["max_tokens"], deadline=Deadline.after(60)
        )

    paths = {"sdk": via_sdk, "wire": via_wire, "llm client": via_client}
    out: dict[str, list[float]] = {name: [] for name in paths}
    try:
        for call in paths.values():  # warm-up: connections, caches, the first requests' imports
            await _round(call, 200, args.concurrency)
        done = 0
        total = args.rounds * len(paths)
        async with timed_progress("rounds", float(total), done=lambda: done):
            for _ in range(args.rounds):
                for name, call in paths.items():
                    out[name].append(round(await _round(call, args.calls, args.concurrency), 4))
                    done += 1
    finally:
        await wire.aclose()
        await sdk.close()
        await llm.close()
    return out


async def run(args: argparse.Namespace) -> int:
    import uvloop

    sim_proc, sim = await _start_sim()
    try:
        # The services run on uvloop: measure on it too (a loop of its own, in a thread, as this one is asyncio's).
        rounds = await asyncio.to_thread(uvloop.run, _measure(args, sim))
    finally:
        sim_proc.terminate()
        await sim_proc.wait()
    medians = {name: statistics.median(v) for name, v in rounds.items()}
    results = {
        "cpu_ms_per_call": medians,
        "rounds_cpu_ms_per_call": rounds,
        "sdk_over_wire": round(medians["sdk"] / medians["wire"], 2) if medians["wire"] else None,
    }
    path = write_result(NAME, vars(args), results)
    print_table(
        f"LLM client CPU per call: {args.calls} calls x {args.rounds} rounds, {args.concurrency} in flight",
        ["path", "CPU ms/call (median)", "rounds"],
        [[name, medians[name], ", ".join(f"{v:.3f}" for v in rounds[name])] for name in rounds],
    )
    print(f"the SDK costs x{results['sdk_over_wire']} the wire's CPU per call")
    print(f"wrote {path}")
    return 0
