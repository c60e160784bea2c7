"""stop_postmaster signals only the postmaster of its own data directory: a stale postmaster.pid whose pid
now belongs to another process is left alone."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from agentmesh.db import stop_postmaster


def test_a_stale_pid_file_naming_another_process_is_not_signalled(tmp_path: Path) -> None:
    other = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / "postmaster.pid").write_text(f"{other.pid}\n{tmp_path}\n")
        assert stop_postmaster(tmp_path, timeout_s=1) is False
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_no_pid_file_means_nothing_was_running(tmp_path: Path) -> None:
    assert stop_postmaster(tmp_path) is False


def test_the_process_serving_the_data_directory_is_stopped(tmp_path: Path) -> None:
    # A stand-in whose command line names the data directory, as `postgres -D <pgdata>` does.
    marker, ready = tmp_path / "signal", tmp_path / "ready"
    script = f'trap "echo INT > {marker}; exit 0" INT; touch {ready}; while :; do sleep 0.05; done'
    # A shell cannot trap a signal it was started with ignored, and a test run in the background of a
    # non-interactive shell (as CI may be) ignores SIGINT: the stand-in starts with the default, as Postgres,
    # which sets its own handlers, does not need.
    proc = subprocess.Popen(
        ["sh", "-c", script, "postgres", "-D", str(tmp_path)],
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 10
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        (tmp_path / "postmaster.pid").write_text(f"{proc.pid}\n{tmp_path}\n")
        assert stop_postmaster(tmp_path, timeout_s=5) is True
        assert proc.poll() is not None
        assert marker.read_text().strip() == "INT"  # Postgres' fast shutdown, not a kill
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
