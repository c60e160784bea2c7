"""The embedded Postgres (the pgserver wheel) that `agentmesh up` starts when DATABASE_URL is unset."""

from __future__ import annotations

import signal
import warnings
from collections.abc import Callable
from pathlib import Path


def start_embedded(data_dir: Path) -> tuple[str, Callable[[], None]]:
    """Start (or reuse) a Postgres 16 under data_dir/postgres; returns (dsn, stop)."""
    pgdata = (data_dir / "postgres").resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # platformdirs warns on machines without XDG_RUNTIME_DIR (containers, CI) and falls back to /tmp.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        try:
            # Imported here: it registers atexit handlers and only the launcher needs it.
            from pgserver import postgres_server
        except ImportError as exc:
            raise RuntimeError(
                "no DATABASE_URL and no embedded Postgres: set DATABASE_URL or pip install 'agentmesh[local]'"
            ) from exc
        server = postgres_server.get_server(pgdata, cleanup_mode="stop")

    def stop() -> None:
        stop_postmaster(pgdata)
        server.cleanup()  # pgserver's bookkeeping only: the server is down, so it runs no pg_ctl

    return server.get_uri(), stop


def stop_postmaster(pgdata: Path, timeout_s: float = 30.0) -> bool:
    """Fast shutdown of the Postgres serving pgdata by signal; False if none was running.

    Not `pg_ctl stop`: as root pgserver runs pg_ctl as its own user through fork() plus setuid, which in a
    process that already has gRPC threads can crash the child before it execs (CI saw pg_ctl "die" with
    SIGSEGV), leaving the server running. A signal needs no fork.
    """
    import psutil  # a dependency of pgserver, so present wherever an embedded server can be

    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        postmaster = psutil.Process(pid)
        # A stale pid file may name a pid that now belongs to another process: signal only our postmaster.
        if str(pgdata) not in " ".join(postmaster.cmdline()):
            return False
    except (OSError, ValueError, psutil.Error):
        return False
    # SIGINT is Postgres' "fast" shutdown: sessions end, a checkpoint is written, the server exits.
    for sig, wait_s in ((signal.SIGINT, timeout_s), (signal.SIGQUIT, 5.0)):
        try:
            postmaster.send_signal(sig)
            postmaster.wait(wait_s)
            return True
        except psutil.NoSuchProcess:
            return True
        except psutil.TimeoutExpired:
            continue
    return False
