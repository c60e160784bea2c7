"""The CLI's exit codes: one table from gRPC statuses, documented in `--help`, and what commands exit with when
the gateway or the database is not there or the arguments are wrong (no mesh needed for any of these)."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from rich.console import Console

from agentmesh import errors
from agentmesh.cli._ask import summary_json
from agentmesh.cli._exit import EPILOG, CliError, ExitCode, exit_code_for_status, to_cli_error
from agentmesh.testing.localmesh import free_port
from agentmesh.v1 import supervisor_pb2
from bench._common import timed_progress


def test_each_status_maps_to_the_code_a_script_acts_on() -> None:
    expected = {
        grpc.StatusCode.OK: 0,
        grpc.StatusCode.INVALID_ARGUMENT: 2,
        grpc.StatusCode.UNAVAILABLE: 3,
        grpc.StatusCode.DEADLINE_EXCEEDED: 3,
        grpc.StatusCode.UNAUTHENTICATED: 4,
        grpc.StatusCode.PERMISSION_DENIED: 4,
        grpc.StatusCode.NOT_FOUND: 5,
        grpc.StatusCode.RESOURCE_EXHAUSTED: 6,
        grpc.StatusCode.INTERNAL: 1,
        grpc.StatusCode.FAILED_PRECONDITION: 1,
        grpc.StatusCode.ABORTED: 1,
    }
    assert {code: int(exit_code_for_status(code)) for code in expected} == expected


def test_help_documents_every_exit_code() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "agentmesh", "--help"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "exit codes:" in out and EPILOG.splitlines()[-1] in out
    documented = {int(line.split()[0]) for line in EPILOG.splitlines() if line.startswith("  ")}
    assert documented == {int(c) for c in ExitCode}


def test_errors_of_the_runtime_and_the_network_are_converted_and_bugs_are_not() -> None:
    cases: list[tuple[BaseException, ExitCode]] = [
        (errors.DatabaseUnavailable("cannot connect to Postgres"), ExitCode.UNAVAILABLE),
        (errors.NotFound("no such run"), ExitCode.NOT_FOUND),
        (errors.LLMRateLimited("slow down"), ExitCode.EXHAUSTED),
        (ConnectionRefusedError(111, "refused"), ExitCode.UNAVAILABLE),
        (CliError("bad", ExitCode.USAGE), ExitCode.USAGE),
    ]
    for exc, code in cases:
        converted = to_cli_error(exc)
        assert converted is not None and converted.code == code, exc
    assert to_cli_error(ValueError("a bug")) is None  # its traceback is shown, not hidden behind an exit code


def _event(run_id: str, **kwargs: object) -> supervisor_pb2.RunEvent:
    return supervisor_pb2.RunEvent(run_id=run_id, thread_id="t", **kwargs)  # type: ignore[arg-type]


def test_the_ndjson_summary_says_how_the_run_ended_and_the_exit_code() -> None:
    final = _event("r1", final=supervisor_pb2.Final(reason=supervisor_pb2.FINISH_REASON_COMPLETED))
    done = summary_json(final, events=9, elapsed_s=0.25, error=None)["summary"]
    assert done == {
        "run_id": "r1",
        "thread_id": "t",
        "outcome": "completed",
        "events": 9,
        "elapsed_ms": 250,
        "exit_code": 0,
    }
    failed = _event("r2", error=supervisor_pb2.RunError(message="agent unavailable", resumable=True))
    s = summary_json(failed, events=3, elapsed_s=1.0, error=None)["summary"]
    assert (s["outcome"], s["exit_code"], s["error"], s["resumable"]) == ("error", 1, "agent unavailable", True)
    refused = summary_json(
        None, events=0, elapsed_s=0.01, error=CliError("UNAUTHENTICATED: no", ExitCode.UNAUTHENTICATED)
    )
    assert refused["summary"]["exit_code"] == 4 and refused["summary"]["error"] == "UNAUTHENTICATED: no"
    cut = summary_json(_event("r3", step_started=supervisor_pb2.StepStarted()), events=1, elapsed_s=0, error=None)
    assert (cut["summary"]["outcome"], cut["summary"]["exit_code"]) == ("incomplete", 1)


def _cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "AGENTMESH_API_KEY")}
    return subprocess.run(
        [sys.executable, "-m", "agentmesh", *args],
        env={**base, "AGENTMESH_DATA_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "env", "code", "message"),
    [
        (("ask", "hi"), {}, 4, "no API key"),
        (("keys", "list"), {}, 3, "no database"),
        (("keys", "list", "--json"), {"DATABASE_URL": "postgresql://postgres@127.0.0.1:{port}/x"}, 3, "Postgres"),
        (("db", "prune", "--older-than", "3x"), {"DATABASE_URL": "postgresql://127.0.0.1:{port}/x"}, 2, "3x"),
        (("trace", "nope"), {"DATABASE_URL": "postgresql://127.0.0.1:{port}/x"}, 2, "not a run id"),
        (("ask", "--json", "--key", "am_x_y", "hi"), {"AGENTMESH_GATEWAY_ADDR": "127.0.0.1:{port}"}, 3, "UNAVAILABLE"),
    ],
)
def test_failures_exit_with_their_code_and_say_why_on_stderr(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], code: int, message: str
) -> None:
    port = free_port()  # nothing listens there
    r = _cli(tmp_path, *args, **{k: v.format(port=port) for k, v in env.items()})
    assert r.returncode == code, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    if "--json" in args and args[0] == "ask":  # stdout stays NDJSON: the summary line, nothing else
        assert r.stdout.count("\n") == 1 and '"exit_code":3' in r.stdout
    else:
        assert r.stdout == ""


async def test_the_bench_progress_bar_counts_what_finished() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    done = 0
    async with timed_progress("3 users", 0.6, done=lambda: done, console=console):
        for _ in range(7):
            done += 1
            await asyncio.sleep(0.15)
    assert "3 users" in out.getvalue() and "7 done" in out.getvalue()
