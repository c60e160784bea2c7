"""Runs as durable background tasks, through the real gateway: a run outlives its client, any client of the
tenant can follow it with WatchRun from any seq, a run whose supervisor was SIGKILLed is continued by a live
supervisor with nobody calling Resume (exactly once, also with three supervisors and 50 runs in flight), and
CancelRun stops a run."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator

import asyncpg
import grpc
import psutil
import pytest

from agentmesh.v1 import supervisor_pb2, supervisor_pb2_grpc
from tests.mesh import Mesh, start_mesh, stop_mesh

QUESTION = "Compare two payment providers and recommend one"
LATENCY_MS = 500  # each LLM call takes this long: a kill or a cancel lands inside a step
LEASE_S = 2.0


@pytest.fixture(scope="module")
def mesh(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    m = start_mesh(
        tmp_path_factory.mktemp("background"),
        database_url,
        # 50 runs and 50 watches from one key in a few seconds: per-key rate limits are tested elsewhere.
        extra_env={"AGENTMESH_RUN_LEASE_S": str(LEASE_S), "AGENTMESH_KEY_RATE_PER_S": "0"},
        up_args=["--replicas", "supervisor=3"],
    )
    try:
        yield m
    finally:
        stop_mesh(m.proc)


@pytest.fixture
def stub(mesh: Mesh) -> Iterator[supervisor_pb2_grpc.SupervisorServiceStub]:
    with grpc.insecure_channel(mesh.gateway) as ch:
        yield supervisor_pb2_grpc.SupervisorServiceStub(ch)


def supervisor_pids(mesh: Mesh) -> list[int]:
    return [c.pid for c in psutil.Process(mesh.proc.pid).children() if "serve supervisor" in " ".join(c.cmdline())]


def db(mesh: Mesh, sql: str, *args: object) -> list[asyncpg.Record]:
    async def read() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(mesh.env["DATABASE_URL"])
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(read())


def watch(mesh: Mesh, stub: supervisor_pb2_grpc.SupervisorServiceStub, run_id: str, after: int) -> list:
    req = supervisor_pb2.WatchRunRequest(run_id=run_id, after_seq=after)
    return list(stub.WatchRun(req, metadata=mesh.auth(), timeout=60))


def start_detached(mesh: Mesh, stub: supervisor_pb2_grpc.SupervisorServiceStub, message: str = QUESTION) -> str:
    [first] = list(stub.Run(supervisor_pb2.RunRequest(message=message, detach=True), metadata=mesh.auth(), timeout=30))
    return first.run_id


def test_a_run_outlives_its_client_and_another_client_watches_it_to_the_end(
    mesh: Mesh, stub: supervisor_pb2_grpc.SupervisorServiceStub
) -> None:
    mesh.reset_sim()
    mesh.set_faults(latency_ms=LATENCY_MS)
    call = stub.Run(supervisor_pb2.RunRequest(message=QUESTION), metadata=mesh.auth(), timeout=60)
    seen = [next(call), next(call)]
    call.cancel()  # the client reads two events and goes away
    run_id = seen[0].run_id
    events = watch(mesh, stub, run_id, after=1)
    assert [e.seq for e in events] == list(range(2, 2 + len(events)))  # every later event, exactly once
    assert events[-1].WhichOneof("event") == "final" and events[-1].final.answer
    assert {e.run_id for e in events} == {run_id}
    # From the start, the replay is the whole run as the live client would have seen it.
    full = watch(mesh, stub, run_id, after=-1)
    assert [e.seq for e in full] == list(range(len(full))) and full[2:] == events


def test_watch_of_another_tenants_run_is_not_found(mesh: Mesh, stub: supervisor_pb2_grpc.SupervisorServiceStub) -> None:
    mesh.set_faults(latency_ms=0)
    run_id = start_detached(mesh, stub)
    key = subprocess.run(
        [sys.executable, "-m", "agentmesh", "keys", "create", "--tenant", "watcher-other"],
        env=mesh.env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.WatchRun(supervisor_pb2.WatchRunRequest(run_id=run_id), metadata=mesh.auth(key), timeout=10))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_killed_supervisors_runs_are_taken_over_exactly_once(
    mesh: Mesh, stub: supervisor_pb2_grpc.SupervisorServiceStub
) -> None:
    mesh.reset_sim()
    mesh.set_faults(latency_ms=LATENCY_MS)
    runs = [start_detached(mesh, stub) for _ in range(50)]
    time.sleep(1.0)  # every run is inside a step
    victim = supervisor_pids(mesh)[0]
    # The lease owner names the process (host:pid:...): the runs the victim executes when it dies.
    held = db(
        mesh,
        "SELECT id FROM runs WHERE id = ANY($1::uuid[]) AND lease_owner LIKE $2",
        [uuid.UUID(r) for r in runs],
        f"%:{victim}:%",
    )
    os.kill(victim, signal.SIGKILL)  # nobody calls Resume: the other supervisors continue its runs

    finals: dict[str, supervisor_pb2.RunEvent] = {}
    errors: dict[str, object] = {}

    def follow(run_id: str) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                events = watch(mesh, stub, run_id, after=-1)
                break
            except grpc.RpcError as exc:  # the watch landed on the killed supervisor before Envoy ejected it
                # Back-pressure while Envoy ejects the dead host (its retry budget) is retried like UNAVAILABLE.
                retryable = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)
                if exc.code() not in retryable or time.monotonic() > deadline:
                    errors[run_id] = exc
                    return
                time.sleep(0.3)
        if [e.seq for e in events] != list(range(len(events))):  # no gap, no duplicate
            errors[run_id] = [e.seq for e in events]
        finals[run_id] = events[-1]

    threads = [threading.Thread(target=follow, args=(r,)) for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not errors, errors
    assert len(finals) == 50 and all(f.WhichOneof("event") == "final" for f in finals.values())
    # Each step of each run recorded once, in order; each run has one answer.
    steps = db(
        mesh,
        "SELECT run_id, array_agg(idx ORDER BY idx) AS idx FROM steps WHERE run_id = ANY($1::uuid[]) GROUP BY run_id",
        [uuid.UUID(r) for r in runs],
    )
    assert all(list(r["idx"]) == list(range(len(r["idx"]))) for r in steps)
    answers = db(
        mesh,
        "SELECT run_id, count(*) FROM messages WHERE role = 'assistant' AND run_id = ANY($1::uuid[]) GROUP BY run_id",
        [uuid.UUID(r) for r in runs],
    )
    assert len(answers) == 50 and all(r["count"] == 1 for r in answers)
    # The victim held some of them; those finished too, taken over, since nobody resumed them.
    assert held, "the killed supervisor executed none of the 50 runs"


def test_cancel_during_an_agent_call_stops_the_run_within_a_second(
    mesh: Mesh, stub: supervisor_pb2_grpc.SupervisorServiceStub
) -> None:
    mesh.set_faults(latency_ms=3000)  # an agent call in flight for 3 s
    call = stub.Run(supervisor_pb2.RunRequest(message=QUESTION), metadata=mesh.auth(), timeout=60)
    for ev in call:
        if ev.WhichOneof("event") == "step_started" and ev.step_started.kind == supervisor_pb2.STEP_KIND_AGENT:
            break
    started = time.monotonic()
    reply = stub.CancelRun(supervisor_pb2.CancelRunRequest(run_id=ev.run_id), metadata=mesh.auth(), timeout=10)
    took = time.monotonic() - started
    rest = list(call)  # the starting client's stream ends with the cancelled final event
    mesh.set_faults(latency_ms=0)
    assert reply.status == supervisor_pb2.RUN_STATUS_CANCELLED
    assert took < 2.5, took  # within a second, with room for a busy 2-core box
    assert rest[-1].WhichOneof("event") == "final"
    assert rest[-1].final.reason == supervisor_pb2.FINISH_REASON_CANCELLED
    replay = watch(mesh, stub, ev.run_id, after=-1)
    assert replay[-1].final.reason == supervisor_pb2.FINISH_REASON_CANCELLED
    assert [e.seq for e in replay] == list(range(len(replay)))
    with pytest.raises(grpc.RpcError) as resumed:
        list(stub.Resume(supervisor_pb2.ResumeRequest(run_id=ev.run_id), metadata=mesh.auth(), timeout=10))
    assert resumed.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_cancel_of_a_finished_run_is_a_failed_precondition(
    mesh: Mesh, stub: supervisor_pb2_grpc.SupervisorServiceStub
) -> None:
    mesh.set_faults(latency_ms=0)
    events = list(stub.Run(supervisor_pb2.RunRequest(message=QUESTION), metadata=mesh.auth(), timeout=60))
    with pytest.raises(grpc.RpcError) as caught:
        stub.CancelRun(supervisor_pb2.CancelRunRequest(run_id=events[0].run_id), metadata=mesh.auth(), timeout=10)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "already completed" in (caught.value.details() or "")
