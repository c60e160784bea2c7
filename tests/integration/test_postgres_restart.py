"""Postgres restarting under load: runs in flight fail with UNAVAILABLE and are resumable afterwards, no
checkpoint is half-written, and the pools reconnect by themselves. Uses an embedded Postgres of its own
(the pgserver wheel) so that the test can restart it without touching the machine's server."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import grpc
import pytest

from agentmesh.db import stop_postmaster
from agentmesh.v1 import supervisor_pb2, supervisor_pb2_grpc
from tests.integration.test_durability import resume_when_free
from tests.mesh import Mesh, start_mesh, stop_mesh

RUNS = 6


# pgserver runs in a fresh interpreter: as root it starts pg_ctl through fork() plus setuid, and forking this
# process once gRPC threads exist can crash the child before it execs (CI saw pg_ctl "die" with SIGSEGV).
_START = "import sys, pgserver; print(pgserver.get_server(sys.argv[1], cleanup_mode=None).get_uri())"


def start_postgres(pgdata: Path) -> str:
    """Start (or restart) the embedded server on pgdata with pgserver's options; returns its URI."""
    done = subprocess.run(
        [sys.executable, "-c", _START, str(pgdata)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    pgdata = (tmp_path_factory.mktemp("pg") / "data").resolve()
    uri = start_postgres(pgdata)
    try:
        yield uri, pgdata
    finally:
        stop_postmaster(pgdata)


@pytest.fixture(scope="module")
def mesh(pg: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    m = start_mesh(tmp_path_factory.mktemp("pgmesh"), pg[0], extra_env={"AGENTMESH_RUN_LEASE_S": "2"})
    try:
        yield m
    finally:
        stop_mesh(m.proc)


def restart_postgres(pgdata: Path, uri: str, down_s: float) -> None:
    """Fast shutdown (connections are terminated mid-flight), stay down a moment, start again."""
    assert stop_postmaster(pgdata), "no embedded Postgres was running"
    time.sleep(down_s)
    assert start_postgres(pgdata) == uri  # same socket directory: the mesh's DATABASE_URL still holds


def test_runs_survive_a_postgres_restart(mesh: Mesh, pg: tuple[str, Path]) -> None:
    mesh.reset_sim()
    mesh.set_faults(latency_ms=400)
    outcomes: list[tuple[str, grpc.StatusCode | None]] = [("", None)] * RUNS

    def one(i: int) -> None:
        run_id = ""
        with grpc.insecure_channel(mesh.gateway) as ch:
            stub = supervisor_pb2_grpc.SupervisorServiceStub(ch)
            try:
                for ev in stub.Run(
                    supervisor_pb2.RunRequest(message=f"Calculate {i}*17 and compare providers"),
                    metadata=mesh.auth(),
                    timeout=60,
                ):
                    run_id = ev.run_id
                outcomes[i] = (run_id, None)
            except grpc.RpcError as exc:
                outcomes[i] = (run_id, exc.code())

    threads = [threading.Thread(target=one, args=(i,)) for i in range(RUNS)]
    for t in threads:
        t.start()
        time.sleep(0.15)
    time.sleep(0.5)  # runs are mid-way (8 LLM calls of 400 ms each): some steps checkpointed, more to come
    restart_postgres(pg[1], pg[0], down_s=1.0)
    for t in threads:
        t.join(90)

    interrupted = [(rid, code) for rid, code in outcomes if code is not None]
    # Whatever failed, failed as "dependency down", never as UNKNOWN/INTERNAL.
    assert all(code == grpc.StatusCode.UNAVAILABLE for _, code in interrupted), outcomes
    assert interrupted, "the restart interrupted no run: the test did not test anything"

    # Every run that exists is finished, or resumable to the end.
    with grpc.insecure_channel(mesh.gateway) as ch:
        for rid, _ in interrupted:
            if rid:
                assert resume_when_free(mesh, ch, rid)[-1].WhichOneof("event") == "final"

    async def audit() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(pg[0])
        try:
            return await conn.fetch("""
                SELECT r.id, r.status, r.iterations, r.input_tokens, r.output_tokens,
                       count(s.idx) AS steps, coalesce(max(s.idx), -1) AS last_idx,
                       count(s.idx) FILTER (WHERE s.kind = 'agent') AS agent_steps,
                       coalesce(sum(s.input_tokens), 0) AS step_in, coalesce(sum(s.output_tokens), 0) AS step_out
                FROM runs r LEFT JOIN steps s ON s.run_id = r.id GROUP BY r.id""")
        finally:
            await conn.close()

    rows = asyncio.run(audit())
    ids = {uuid.UUID(rid) for rid, _ in outcomes if rid}
    for r in rows:
        if r["id"] not in ids:
            continue
        assert r["status"] == "completed"
        # Nothing half-written: indices contiguous, totals equal to the sum of the recorded steps.
        assert r["last_idx"] == r["steps"] - 1
        assert r["iterations"] == r["agent_steps"]
        assert (r["input_tokens"], r["output_tokens"]) == (r["step_in"], r["step_out"])
