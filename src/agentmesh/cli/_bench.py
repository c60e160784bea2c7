"""`agentmesh bench NAME ...`: runs one benchmark from the repository's bench/ package."""

from __future__ import annotations

import argparse
import importlib
import sys


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    bench = sub.add_parser("bench", help="run a benchmark (results in bench/results/NAME.json)")
    names = bench.add_subparsers(dest="bench_name", required=True)
    try:
        from bench import REGISTRY
    except ImportError:  # installed without the repository's bench/ package
        return
    for name, module in REGISTRY.items():
        p = names.add_parser(name, help=(importlib.import_module(module).__doc__ or "").strip().splitlines()[0])
        importlib.import_module(module).add_arguments(p)


async def run(args: argparse.Namespace) -> int:
    from bench import REGISTRY

    if args.bench_name not in REGISTRY:
        print(f"unknown benchmark {args.bench_name!r}; known: {', '.join(REGISTRY)}", file=sys.stderr)
        return 2
    return int(await importlib.import_module(REGISTRY[args.bench_name]).run(args))
