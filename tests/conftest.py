"""Shared fixtures: a throwaway Postgres database per session, free ports, the simulator in-process."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

SYSTEM_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def _admin_dsn() -> tuple[str, Callable[[], None] | None]:
    """DATABASE_URL if given, else the machine's Postgres on 127.0.0.1:5432, else an embedded one (with the
    function that stops it)."""
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"], None

    async def reachable() -> bool:
        try:
            conn = await asyncpg.connect(SYSTEM_PG, timeout=3)
        except (OSError, asyncpg.PostgresError):
            return False
        await conn.close()
        return True

    if asyncio.run(reachable()):
        return SYSTEM_PG, None
    from agentmesh.db import start_embedded

    return start_embedded(Path(".agentmesh-test"))


def _with_db(dsn: str, db: str) -> str:
    """The same server, another database name (works for host:port and ?host=/socket forms)."""
    base, _, query = dsn.partition("?")
    prefix, _, _old = base.rpartition("/")
    return f"{prefix}/{db}" + (f"?{query}" if query else "")


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh database for this test session, dropped afterwards: tests never touch real data."""
    admin, stop = _admin_dsn()
    name = f"agentmesh_test_{uuid.uuid4().hex[:10]}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin, timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        yield _with_db(admin, name)
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if stop is not None:
            stop()  # explicitly, by signal: pgserver's own atexit stop would fork this gRPC-threaded process


@pytest.fixture
async def sim_url() -> AsyncIterator[str]:
    """The simulator on a free port in this process, with fresh counters and no faults."""
    from agentmesh.testing.sim import start_sim

    runner, port = await start_sim("127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
