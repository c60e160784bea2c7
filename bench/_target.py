"""What the benchmarks load: a mesh of their own (a throwaway database plus `agentmesh up` on free ports) or a
running one, the simulator's control plane, and the CPU time of the mesh's processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import tempfile
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from agentmesh.testing.localmesh import Mesh, start_mesh, stop_mesh

SYSTEM_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def _with_db(dsn: str, db: str) -> str:
    base, _, query = dsn.partition("?")
    prefix, _, _old = base.rpartition("/")
    return f"{prefix}/{db}" + (f"?{query}" if query else "")


@contextlib.asynccontextmanager
async def throwaway_database() -> AsyncIterator[str]:
    """A new database on DATABASE_URL's server (else the machine's Postgres), dropped afterwards."""
    admin = os.environ.get("DATABASE_URL") or SYSTEM_PG
    name = f"agentmesh_bench_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin, timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield _with_db(admin, name)
    finally:
        conn = await asyncpg.connect(admin, timeout=10)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@contextlib.asynccontextmanager
async def local_mesh(extra_env: dict[str, str] | None = None) -> AsyncIterator[Mesh]:
    """`agentmesh up` on free ports against a throwaway database; stopped and cleaned up afterwards."""
    async with throwaway_database() as dsn:
        data_dir = Path(tempfile.mkdtemp(prefix="agentmesh-bench-"))
        mesh = await asyncio.to_thread(_start, data_dir, dsn, extra_env)
        try:
            yield mesh
        finally:
            await asyncio.to_thread(stop_mesh, mesh.proc)
            shutil.rmtree(data_dir, ignore_errors=True)


def _start(data_dir: Path, dsn: str, extra_env: dict[str, str] | None) -> Mesh:
    try:
        # Every simulated user shares the dev key, so the per-tenant and per-key limits and the daily budgets
        # (issue 12) would measure themselves, not the mesh: off unless a benchmark sets them.
        limits_off = {
            "AGENTMESH_TENANT_MAX_CONCURRENT_RUNS": "0",
            "AGENTMESH_KEY_RATE_PER_S": "0",
            # One tenant's day of tokens (2M by default) is about a minute of this load.
            "AGENTMESH_TENANT_DAILY_TOKENS": "0",
            "AGENTMESH_TENANT_DAILY_USD": "0",
        }
        return start_mesh(data_dir, dsn, extra_env={**limits_off, **(extra_env or {})})
    except StopIteration:  # a launcher that failed early printed no key or simulator line
        raise RuntimeError(
            f"agentmesh up failed before printing its dev key or simulator URL (data dir {data_dir})"
        ) from None


class SimControl:
    """The simulator's control plane (CONTRACT.md): stats, faults, reset. Blocking calls run in a thread."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.url}{path}", data=data, method=method, headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())

    async def stats(self) -> dict[str, Any]:
        return await asyncio.to_thread(self._call, "GET", "/_sim/stats")

    async def set_faults(self, **faults: Any) -> dict[str, Any]:
        return await asyncio.to_thread(self._call, "PUT", "/_sim/faults", faults)

    async def reset(self) -> None:
        await asyncio.to_thread(self._call, "POST", "/_sim/reset")


def successes(stats: dict[str, Any]) -> int:
    return int(stats.get("responses_by_status", {}).get("200", 0))


@dataclass(frozen=True)
class MeshProcess:
    role: str  # supervisor, researcher, ..., gateway
    proc: psutil.Process


def mesh_processes(mesh: Mesh) -> list[MeshProcess]:
    """The mesh's own processes under the launcher: every `serve NAME`, Envoy and the Redis it started. Not the
    simulator, not Postgres, not the launcher (it only supervises)."""
    out = []
    for child in psutil.Process(mesh.proc.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            argv = child.cmdline()
            if "serve" in argv and argv.index("serve") + 1 < len(argv):
                out.append(MeshProcess(argv[argv.index("serve") + 1], child))
            elif argv and Path(argv[0]).name == "envoy":
                out.append(MeshProcess("gateway", child))
            elif child.name() == "redis-server":  # it rewrites its argv, not its name
                out.append(MeshProcess("redis", child))  # the mesh-wide LLM budget `up` started
    return out


def cpu_seconds(procs: list[MeshProcess]) -> dict[str, float]:
    """User + system CPU seconds of each process so far (a process that died counts as 0 from then on)."""
    out: dict[str, float] = {}
    for mp in procs:
        try:
            t = mp.proc.cpu_times()
            out[mp.role] = out.get(mp.role, 0.0) + t.user + t.system
        except psutil.Error:
            out.setdefault(mp.role, 0.0)
    return out


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: round(after.get(k, 0.0) - before.get(k, 0.0), 4) for k in sorted(set(before) | set(after))}


@contextlib.contextmanager
def self_cpu() -> Iterator[dict[str, float]]:
    """CPU seconds this process spent inside the block (the load generator's own cost), in out['s']."""
    me = psutil.Process()
    t0 = me.cpu_times()
    out: dict[str, float] = {}
    try:
        yield out
    finally:
        t1 = me.cpu_times()
        out["s"] = (t1.user + t1.system) - (t0.user + t0.system)
