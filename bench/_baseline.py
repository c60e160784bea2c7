"""How `bench e2e` runs the LangGraph baseline (bench/baseline_langgraph.py): in a process of its own (its CPU is
then all its own), against the same simulator, with a throwaway database for AsyncPostgresSaver."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench._seed_client import design_label
from bench._target import throwaway_database

ROOT = Path(__file__).resolve().parent.parent


def label(args: argparse.Namespace) -> str:
    return design_label(args.baseline_client, args.baseline_checkpointer)


@contextlib.asynccontextmanager
async def _database(args: argparse.Namespace) -> AsyncIterator[str | None]:
    if args.baseline_checkpointer != "postgres":
        yield None
        return
    async with throwaway_database() as dsn:  # a database of its own: the mesh's tables are not in its way
        yield dsn


def command(args: argparse.Namespace, sim_url: str, out: Path, dsn: str | None, extra: list[str]) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "bench.baseline_langgraph",
        "--sim",
        sim_url,
        "--client",
        args.baseline_client,
        "--checkpointer",
        args.baseline_checkpointer,
        "--concurrency-limit",
        str(args.concurrency_limit),
        "--latency-ms",
        str(args.latency_ms),
        "--rpm",
        str(args.rpm),
        "--rate-window-s",
        str(args.rate_window_s),
        "--message",
        args.message,
        "--drain-timeout",
        str(args.drain_timeout),
        "--json",
        str(out),
        *extra,
    ]
    return cmd + (["--dsn", dsn] if dsn else [])


async def run_baseline(args: argparse.Namespace, sim_url: str, extra: list[str], duration_s: float) -> dict[str, Any]:
    """Runs the baseline with `extra` arguments (users and duration, or the tenants' groups); its JSON body."""
    async with _database(args) as dsn:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "baseline.json"
            cmd = command(args, sim_url, out, dsn, extra)
            # Two phases at most (tenants), each draining: the timeout is generous, a hang still ends.
            timeout = 2 * (duration_s + args.drain_timeout) + 120
            await asyncio.to_thread(subprocess.run, cmd, check=True, timeout=timeout, cwd=ROOT)
            body: dict[str, Any] = json.loads(out.read_text())
    return body


async def run_load(args: argparse.Namespace, sim_url: str, users: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(A)/(B): `users` closed-loop users for --duration; the summary and the series."""
    body = await run_baseline(args, sim_url, ["--users", str(users), "--duration", str(args.duration)], args.duration)
    return body["summary"], body["series"]


async def run_tenants(args: argparse.Namespace, sim_url: str, small: int, flood: int) -> dict[str, Any]:
    """(C): the small group alone, then next to the flood, each phase --tenant-duration."""
    extra = ["--small-users", str(small), "--flood-users", str(flood), "--duration", str(args.tenant_duration)]
    summary: dict[str, Any] = (await run_baseline(args, sim_url, extra, args.tenant_duration))["summary"]
    return summary
