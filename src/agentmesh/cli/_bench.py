"""`agentmesh bench NAME ...`: runs one benchmark of the repository's bench/ package.

The benchmarks are not part of the installed package (they drive a local mesh, read tests/data and write
bench/results/), so this command runs from a checkout. Their options are parsed by the benchmark itself,
so that building this CLI's parser never imports a benchmark or its dependencies (psutil, matplotlib...)."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path
from types import ModuleType


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = sub.add_parser(
        "bench",
        help="run a benchmark from a checkout (results in bench/results/NAME.json)",
        description="agentmesh bench NAME [options]; `agentmesh bench NAME --help` lists a "
        "benchmark's options, `agentmesh bench list` the benchmarks.",
    )
    bench.add_argument("bench_name", metavar="NAME")
    bench.add_argument("bench_args", nargs=argparse.REMAINDER, help="the benchmark's own options")


def _bench_package() -> ModuleType | None:
    """The checkout's bench/ package: importable already (python -m, pytest), else found above the cwd."""
    try:
        return importlib.import_module("bench")
    except ImportError:
        pass
    for root in (Path.cwd(), *Path.cwd().parents):
        if (root / "bench" / "__init__.py").is_file() and (root / "pyproject.toml").is_file():
            sys.path.insert(0, str(root))
            return importlib.import_module("bench")
    return None


async def run(args: argparse.Namespace) -> int:
    bench = _bench_package()
    if bench is None:
        print(
            "agentmesh bench runs from a checkout of the repository: bench/ is not part of the installed package",
            file=sys.stderr,
        )
        return 2
    registry: dict[str, str] = bench.REGISTRY
    if args.bench_name == "list" or args.bench_name not in registry:
        known = ", ".join(registry)
        if args.bench_name != "list":
            print(f"unknown benchmark {args.bench_name!r}; known: {known}", file=sys.stderr)
            return 2
        print(known)
        return 0
    module = importlib.import_module(registry[args.bench_name])
    parser = argparse.ArgumentParser(
        prog=f"agentmesh bench {args.bench_name}", description=(module.__doc__ or "").strip().splitlines()[0]
    )
    module.add_arguments(parser)
    options = parser.parse_args(args.bench_args)
    # Benchmarks run for minutes: say when one starts and how long it took, on stderr beside its progress bars.
    print(f"bench {args.bench_name}: started", file=sys.stderr, flush=True)
    started = time.monotonic()
    outcome = "failed"
    try:
        code = int(await module.run(options))
        outcome = f"exit {code}"
    finally:
        print(
            f"bench {args.bench_name}: finished in {time.monotonic() - started:.1f} s ({outcome})",
            file=sys.stderr,
            flush=True,
        )
    return code
