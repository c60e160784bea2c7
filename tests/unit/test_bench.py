"""The benchmark plumbing that turns measurements into figures: profile summaries, histograms, plots, the
e2e summary's arithmetic. The load itself is exercised by `agentmesh bench` (never in make test: too slow)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench import REGISTRY, _plots, _profile
from bench._load import LoadResult, RunOutcome, RunSample
from bench.service import histogram


def test_registry_names_the_e2e_and_service_benchmarks() -> None:
    assert REGISTRY["e2e"] == "bench.e2e" and REGISTRY["service"] == "bench.service"


def test_e2e_defaults_are_the_issues_figures() -> None:
    from bench import e2e

    parser = argparse.ArgumentParser()
    e2e.add_arguments(parser)
    args = parser.parse_args([])
    assert (args.users, args.duration, args.concurrency_limit, args.latency_ms) == (500, 60.0, 20, 200.0)
    assert not args.no_baseline
    assert not args.no_egress_cap  # the mesh runs with the egress cap at the simulator's C unless told otherwise
    # The baseline is the seed design, and (C) runs too: 10 small users, then next to 100 flooding (30 s each).
    assert (args.baseline_client, args.baseline_checkpointer) == ("seed", "postgres")
    assert (args.tenants, args.tenant_users, args.tenant_duration) == (10, 10, 30.0)
    # Both provider models by default, against one mesh with no limit settings: (A) C=20 at 500 users, then
    # (B) RPM 3,000 at 300 users.
    a, b = e2e._modes(args)
    assert (a.rpm, a.users, a.no_egress_cap) == (0, 500, True) and (b.rpm, b.users, b.no_egress_cap) == (
        3000,
        300,
        True,
    )
    # An explicit --rpm is the token-bucket mode alone, as before; --mode concurrency keeps the egress cap.
    (only,) = e2e._modes(parser.parse_args(["--rpm", "600"]))
    assert only.rpm == 600 and only.users == 500
    (conc,) = e2e._modes(parser.parse_args(["--mode", "concurrency"]))
    assert conc.rpm == 0 and not conc.no_egress_cap


def test_profile_summary_attributes_leaf_frames_to_packages(tmp_path: Path) -> None:
    raw = tmp_path / "p.txt"
    raw.write_text(
        "process 1:main;run (/x/site-packages/uvloop/__init__.py:92);"
        "commit_step (/w/services/supervisor/store.py:219);_do_execute (/x/site-packages/asyncpg/connection.py:1) 3\n"
        "process 1:main;run (/x/site-packages/uvloop/__init__.py:92);"
        "_send (/w/src/agentmesh/llm/_client.py:300);send (/x/site-packages/httpx2/_client.py:10) 1\n"
    )
    prof = _profile.summarise("supervisor", raw)
    assert prof.samples == 4
    assert prof.by_bucket == {"asyncpg": 0.75, "httpx2 (sdk transport)": 0.25}
    assert dict(prof.top_ours)["commit_step (services/supervisor/store.py)"] == 0.75


def test_latency_histogram_buckets_are_cumulative_edges() -> None:
    buckets = {b["le_ms"]: b["count"] for b in histogram([0.3, 0.7, 3.0, 3.0, 25_000.0])}
    assert buckets[0.5] == 1 and buckets[1] == 1 and buckets[5] == 2 and buckets["+Inf"] == 1


def test_summary_counts_failures_by_status_and_attempts_per_success() -> None:
    samples = [
        RunSample(0.0, 1.0, RunOutcome(llm_calls=5, steps=[("route", 200.0)])),
        RunSample(0.5, 2.5, RunOutcome(llm_calls=5)),
        RunSample(1.0, 1.5, RunOutcome(status="UNAVAILABLE")),
    ]
    result = LoadResult(
        samples=samples,
        duration_s=2.0,
        elapsed_s=2.5,
        calls_in_window=190,
        sim_before={"requests_total": 0, "responses_by_status": {}},
        sim_after={"requests_total": 210, "responses_by_status": {"200": 200, "429": 10}},
        timeline=[],
    )
    s = result.summary(limit_per_s=100.0)
    assert s["runs"] == 3 and s["failures_by_status"] == {"UNAVAILABLE": 1}
    assert s["llm_calls_per_s"] == 95.0 and s["ratio_to_limit"] == 0.95
    assert s["attempts_per_success"] == 1.05
    assert s["run_latency"]["n"] == 2 and s["steps"]["route"]["n"] == 1


def test_plots_are_written_as_png(tmp_path: Path) -> None:
    runs = [(t / 10, 1.0 + t / 100) for t in range(100)]
    for path in (
        _plots.latency_over_time(
            tmp_path / "a.png", title="t", runs=runs, rate=[(1.0, 90.0), (2.0, 95.0)], limit=100.0
        ),
        _plots.histogram(tmp_path / "b.png", title="t", series={"x": [y for _, y in runs]}, unit="s"),
        _plots.throughput_vs_users(
            tmp_path / "c.png",
            title="t",
            users=[10, 100],
            rate=[50.0, 95.0],
            p99_s=[1.0, 5.0],
            limit=100.0,
            rate_label="calls/s",
        ),
    ):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_e2e_goals_are_the_issues_cpu_per_call_in_the_concurrency_mode_only() -> None:
    from bench import e2e

    s = {"failures": 0, "ratio_to_limit": 0.96, "attempts_per_success": 1.005, "cpu_ms_per_llm_call": 5.2}
    a = e2e._goals(s, cpu=True)
    assert a["cpu_ms_per_llm_call"] == {"value": 5.2, "goal": "<= 5", "met": False}
    assert a["attempts_per_success"]["met"] and a["ratio_to_limit"]["met"]
    assert "cpu_ms_per_llm_call" not in e2e._goals(s, cpu=False)
    assert not e2e._goals({**s, "attempts_per_success": 1.02}, cpu=False)["attempts_per_success"]["met"]


async def test_llm_client_bench_measures_every_path(sim_url: str) -> None:
    from bench import llm_client

    args = argparse.Namespace(calls=30, rounds=2, concurrency=3)
    rounds = await llm_client._measure(args, sim_url)
    assert set(rounds) == {"sdk", "wire", "llm client"}
    assert all(len(v) == 2 and all(ms > 0 for ms in v) for v in rounds.values())
