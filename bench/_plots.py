"""PNG plots of benchmark results (matplotlib, Agg backend: no display needed). Inputs are plain lists, so a
plot can be redrawn from a result JSON."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: headless machines and CI have no display

import matplotlib.pyplot as plt

from bench._common import percentile


def _rolling(points: Sequence[tuple[float, float]], window_s: float, q: float) -> tuple[list[float], list[float]]:
    """q-th percentile of the y values in each window of x, at the window's end."""
    if not points:
        return [], []
    xs, ys = [], []
    end = max(x for x, _ in points)
    t = window_s
    while t <= end + window_s:
        vals = [y for x, y in points if t - window_s <= x < t]
        if vals:
            xs.append(t)
            ys.append(percentile(vals, q))
        t += window_s
    return xs, ys


def latency_over_time(
    path: Path,
    *,
    title: str,
    runs: Sequence[tuple[float, float]],
    rate: Sequence[tuple[float, float]] = (),
    limit: float | None = None,
    rate_label: str = "successful LLM calls/s",
    baseline_rate: Sequence[tuple[float, float]] = (),
    window_end: float | None = None,
) -> Path:
    """Top: each run's latency at its completion time with rolling p50/p99. Bottom: a rate over time and the
    physical limit (for e2e: successful LLM calls per second against C/L)."""
    fig, axes = plt.subplots(2 if rate else 1, 1, figsize=(10, 7 if rate else 4), sharex=True, squeeze=False)
    ax = axes[0][0]
    if runs:
        ax.scatter([x for x, _ in runs], [y for _, y in runs], s=3, alpha=0.25, color="tab:blue", label="run")
        for q, style in ((50, "-"), (99, "--")):
            xs, ys = _rolling(runs, 5.0, q)
            ax.plot(xs, ys, style, color="black", label=f"p{q} (5 s windows)")
    ax.set_ylabel("run latency (s)")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    if rate:
        ax2 = axes[1][0]
        ax2.plot([x for x, _ in rate], [y for _, y in rate], color="tab:green", label=f"mesh: {rate_label}")
        if baseline_rate:
            ax2.plot(
                [x for x, _ in baseline_rate],
                [y for _, y in baseline_rate],
                color="tab:orange",
                label=f"LangGraph baseline: {rate_label}",
            )
        if limit is not None:
            ax2.axhline(limit, color="tab:red", linestyle=":", label=f"provider limit C/L = {limit:.0f}/s")
        ax2.set_ylabel(rate_label)
        ax2.set_ylim(bottom=0)
        ax2.legend(loc="lower right", fontsize=8)
        ax2.grid(alpha=0.3)
    if window_end is not None:
        for row in axes:
            row[0].axvline(window_end, color="grey", linestyle="-.", linewidth=1)
        axes[0][0].annotate(
            "users stop starting runs",
            (window_end, 0),
            xycoords=("data", "axes fraction"),
            xytext=(4, 4),
            textcoords="offset points",
            fontsize=8,
            color="grey",
        )
    axes[-1][0].set_xlabel("seconds since start")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def histogram(path: Path, *, title: str, series: Mapping[str, Sequence[float]], unit: str = "ms") -> Path:
    """Latency histograms, one per named series, on a log x axis when they span decades."""
    fig, ax = plt.subplots(figsize=(9, 4))
    values = [v for vs in series.values() for v in vs if v > 0]
    if values:
        lo, hi = min(values), max(values)
        log = hi / max(lo, 1e-9) > 50
        bins: int | list[float] = 60
        if log:
            import math

            a, b = math.log10(lo), math.log10(hi)
            bins = [10 ** (a + (b - a) * i / 60) for i in range(61)]
            ax.set_xscale("log")
        for name, vs in series.items():
            if vs:
                p50, p99 = percentile(vs, 50), percentile(vs, 99)
                ax.hist(vs, bins=bins, alpha=0.55, label=f"{name} (p50 {p50:,.0f}, p99 {p99:,.0f} {unit})")
    ax.set_xlabel(f"latency ({unit})")
    ax.set_ylabel("count")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def throughput_vs_users(
    path: Path,
    *,
    title: str,
    users: Sequence[int],
    rate: Sequence[float],
    p99_s: Sequence[float],
    limit: float | None,
    rate_label: str,
) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(users, rate, "o-", color="tab:green", label=rate_label)
    if limit is not None:
        ax.axhline(limit, color="tab:red", linestyle=":", label=f"limit {limit:.0f}/s")
    ax.set_xlabel("concurrent users")
    ax.set_ylabel(rate_label)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    ax2.plot(users, p99_s, "s--", color="tab:blue", label="run p99 (s)")
    ax2.set_ylabel("run p99 (s)")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="lower right", fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def grouped_bars(
    path: Path,
    *,
    title: str,
    groups: Sequence[str],
    panels: Sequence[tuple[str, Mapping[str, Sequence[float | None]]]],
    reference: Mapping[int, tuple[float, str]] | None = None,
) -> Path:
    """One panel per (y label, {series: one value per group}), bars side by side in each group; a missing value
    draws no bar. `reference`: panel index -> (y, label) of a horizontal line (a goal)."""
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 3.2 * len(panels)), squeeze=False)
    for i, (ylabel, series) in enumerate(panels):
        ax = axes[i][0]
        width = 0.8 / max(1, len(series))
        for j, (name, values) in enumerate(series.items()):
            xs = [g + (j - (len(series) - 1) / 2) * width for g in range(len(groups))]
            bars = ax.bar(xs, [v or 0.0 for v in values], width, label=name)
            for bar, v in zip(bars, values, strict=True):
                if v is not None:
                    ax.annotate(
                        f"{v:,.2f}",
                        (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center",
                        va="bottom",
                        fontsize=7,
                    )
        if reference and i in reference:
            y, text = reference[i]
            ax.axhline(y, color="tab:red", linestyle=":", label=text)
        ax.set_xticks(range(len(groups)), list(groups))
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
        if i == 0 or (reference and i in reference):  # the series are the same in every panel: one legend
            ax.legend(fontsize=8)
    axes[0][0].set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
