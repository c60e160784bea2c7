"""Benchmarks: `agentmesh bench NAME`. Each module in REGISTRY has `add_arguments(parser)` and
`async def run(args) -> int`, writes bench/results/NAME.json through `bench._common.write_result` and
prints a table. Numbers are measured, never typed in."""

from __future__ import annotations

# name -> module (imported on use: a benchmark's heavy dependencies load only when it runs).
REGISTRY: dict[str, str] = {
    "checkpoints": "bench.checkpoints",
    "e2e": "bench.e2e",
    "faults": "bench.faults",
    "guard": "bench.guard",
    "llm-client": "bench.llm_client",
    "service": "bench.service",
    "tracing": "bench.tracing",
}

__all__ = ["REGISTRY"]
