"""What every benchmark shares: percentiles, machine facts, the JSON result file, the printed table."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

RESULTS = Path(__file__).parent / "results"


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary_ms(samples_s: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/mean/max of durations given in seconds, in milliseconds."""
    ms = [s * 1000 for s in samples_s]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 3),
        "p95_ms": round(percentile(ms, 95), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "mean_ms": round(statistics.fmean(ms), 3) if ms else 0.0,
        "max_ms": round(max(ms), 3) if ms else 0.0,
    }


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


def write_result(name: str, params: Mapping[str, Any], results: Mapping[str, Any]) -> Path:
    """bench/results/NAME.json with the parameters it ran with, the machine and the results."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    body = {
        "benchmark": name,
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "params": dict(params),
        "results": dict(results),
    }
    path.write_text(json.dumps(body, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(*columns, title=title)
    for row in rows:
        table.add_row(*(f"{v:,.3f}" if isinstance(v, float) else str(v) for v in row))
    # Wide enough for the e2e table when piped to a file or CI log (rich assumes 80 columns there).
    Console(width=max(Console().width, 160)).print(table)


@contextlib.asynccontextmanager
async def timed_progress(
    description: str, seconds: float, done: Callable[[], int] | None = None, *, console: Console | None = None
) -> AsyncIterator[None]:
    """A progress bar on stderr over a measuring window, with the count of finished operations. The benchmarks'
    loops run for a duration rather than a count, so the bar follows the clock. Transient, and drawn only on a
    terminal: results files and piped logs keep only the table."""
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[done]}"),
    )
    with Progress(*columns, console=console or Console(stderr=True), transient=True) as progress:
        task = progress.add_task(description, total=seconds, done="")
        started = time.monotonic()

        async def tick() -> None:
            while True:
                progress.update(
                    task,
                    completed=min(seconds, time.monotonic() - started),
                    done=f"{done()} done" if done is not None else "",
                )
                await asyncio.sleep(0.5)

        ticker = asyncio.create_task(tick())
        try:
            yield
        finally:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)


_STARTED = time.monotonic()


def phase(message: str) -> None:
    """One progress line per benchmark phase on stderr (kept in piped logs, unlike the transient bars), with the
    time since the benchmark started."""
    elapsed = time.monotonic() - _STARTED
    print(f"[{int(elapsed // 60):02d}:{int(elapsed % 60):02d}] {message}", file=sys.stderr, flush=True)
