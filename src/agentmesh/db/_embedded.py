"""The embedded Postgres (the pgserver wheel) that `agentmesh up` starts when DATABASE_URL is unset."""

from __future__ import annotations

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
            import pgserver  # imported here: it registers atexit handlers and only the launcher needs it
        except ImportError as exc:
            raise RuntimeError("no DATABASE_URL and no embedded Postgres: set DATABASE_URL or pip install "
                               "'agentmesh[local]'") from exc
        server = pgserver.get_server(pgdata, cleanup_mode="stop")
    return server.get_uri(), server.cleanup
