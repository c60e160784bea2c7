"""Durable runs, proven by killing processes: SIGKILL the supervisor in the middle of each kind of step,
let the launcher restart it, Resume, and check against the simulator's counters and the checkpoint tables
that no finished step ran again and that the thread holds each step exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import asyncpg
import grpc
import psutil
import pytest

from agentmesh.v1 import supervisor_pb2, supervisor_pb2_grpc
from tests.mesh import Mesh, start_mesh, stop_mesh

QUESTION = "Compare two payment providers and recommend one"
LATENCY_MS = 700  # every LLM call takes this long, so a kill lands inside a step, not between steps
ROUTE, AGENT, GUARD = supervisor_pb2.STEP_KIND_ROUTE, supervisor_pb2.STEP_KIND_AGENT, supervisor_pb2.STEP_KIND_GUARD


@pytest.fixture(scope="module")
def mesh(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    # A short lease, so a killed supervisor's run frees up in seconds rather than the default 30; runs whose
    # supervisor died wait for a client's Resume here (the takeover default is tested in test_background_runs.py).
    m = start_mesh(
        tmp_path_factory.mktemp("durable"),
        database_url,
        extra_env={"AGENTMESH_RUN_LEASE_S": "2", "AGENTMESH_ORPHANED_RUNS": "fail"},
    )
    try:
        yield m
    finally:
        stop_mesh(m.proc)


def service_pid(mesh: Mesh, name: str) -> int:
    """The current pid of `serve NAME` under this mesh's launcher (it changes when a child is restarted)."""
    for child in psutil.Process(mesh.proc.pid).children():
        if f"serve {name}" in " ".join(child.cmdline()):
            return child.pid
    raise LookupError(name)


def stub(channel: grpc.Channel) -> supervisor_pb2_grpc.SupervisorServiceStub:
    return supervisor_pb2_grpc.SupervisorServiceStub(channel)


def run_until(mesh: Mesh, channel: grpc.Channel, on_event: Callable[[supervisor_pb2.RunEvent], bool]) -> str:
    """Start a run and call on_event for each event until it returns True; returns the run id."""
    call = stub(channel).Run(supervisor_pb2.RunRequest(message=QUESTION), metadata=mesh.auth(), timeout=60)
    run_id = ""
    try:
        for ev in call:
            run_id = ev.run_id
            if on_event(ev):
                break
    except grpc.RpcError:
        pass
    call.cancel()
    return run_id


def resume_when_free(
    mesh: Mesh, channel: grpc.Channel, run_id: str, timeout_s: float = 30
) -> list[supervisor_pb2.RunEvent]:
    """Resume, retrying while the dead supervisor's lease lasts (ABORTED) or the new one starts (UNAVAILABLE)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return list(
                stub(channel).Resume(supervisor_pb2.ResumeRequest(run_id=run_id), metadata=mesh.auth(), timeout=60)
            )
        except grpc.RpcError as exc:
            if exc.code() not in (grpc.StatusCode.ABORTED, grpc.StatusCode.UNAVAILABLE) or time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def checkpoint(mesh: Mesh, run_id: str) -> tuple[list[tuple[int, str, str]], list[str], asyncpg.Record]:
    async def read() -> tuple[list[tuple[int, str, str]], list[str], asyncpg.Record]:
        conn = await asyncpg.connect(mesh.env["DATABASE_URL"])
        try:
            rid = uuid.UUID(run_id)
            steps = [
                (r["idx"], r["kind"], r["agent"])
                for r in await conn.fetch("SELECT idx, kind, agent FROM steps WHERE run_id = $1 ORDER BY idx", rid)
            ]
            roles = [
                r["role"] for r in await conn.fetch("SELECT role FROM messages WHERE run_id = $1 ORDER BY id", rid)
            ]
            run = await conn.fetchrow("SELECT * FROM runs WHERE id = $1", rid)
        finally:
            await conn.close()
        return steps, roles, run

    return asyncio.run(read())


@pytest.fixture(scope="module")
def reference(mesh: Mesh) -> tuple[list[supervisor_pb2.RunEvent], int]:
    """An uninterrupted run of the same request: its events and how many LLM calls it took."""
    mesh.reset_sim()
    with grpc.insecure_channel(mesh.gateway) as ch:
        events = list(stub(ch).Run(supervisor_pb2.RunRequest(message=QUESTION), metadata=mesh.auth(), timeout=60))
    return events, mesh.sim_stats()["requests_total"]


def kill_supervisor_at(
    mesh: Mesh, when: Callable[[supervisor_pb2.RunEvent], bool]
) -> Callable[[supervisor_pb2.RunEvent], bool]:
    """An on_event for run_until: SIGKILL the supervisor shortly after `when` matches (inside the step)."""

    def on_event(ev: supervisor_pb2.RunEvent) -> bool:
        if when(ev):
            time.sleep(0.2)  # well inside the step: LLM calls take LATENCY_MS
            os.kill(service_pid(mesh, "supervisor"), signal.SIGKILL)
            return True
        return False

    return on_event


def started(kind: int, step: int | None = None) -> Callable[[supervisor_pb2.RunEvent], bool]:
    def match(ev: supervisor_pb2.RunEvent) -> bool:
        s = ev.step_started
        return ev.WhichOneof("event") == "step_started" and s.kind == kind and (step is None or s.step == step)

    return match


@pytest.mark.parametrize("kind", ["route", "agent", "guard"])
def test_killed_mid_step_resumes_without_redoing_finished_steps(
    mesh: Mesh, reference: tuple[list[supervisor_pb2.RunEvent], int], kind: str
) -> None:
    ref_events, ref_calls = reference
    mesh.reset_sim()
    mesh.set_faults(latency_ms=LATENCY_MS)
    guard_pid = service_pid(mesh, "guard")
    with grpc.insecure_channel(mesh.gateway) as ch:

        def kill_on(ev: supervisor_pb2.RunEvent) -> bool:
            if kind == "guard" and started(ROUTE, 4)(ev):
                # Freeze the guard so the answer check is still in flight when the kill lands.
                os.kill(guard_pid, signal.SIGSTOP)
            target = {"route": started(ROUTE, 2), "agent": started(AGENT, 1), "guard": started(GUARD)}[kind]
            if target(ev):
                time.sleep(0.2)  # well inside the step: LLM calls take 700 ms
                os.kill(service_pid(mesh, "supervisor"), signal.SIGKILL)
                if kind == "guard":
                    os.kill(guard_pid, signal.SIGCONT)
                return True
            return False

        try:
            run_id = run_until(mesh, ch, kill_on)
        finally:
            os.kill(guard_pid, signal.SIGCONT)
        resumed = resume_when_free(mesh, ch, run_id)

    assert resumed[-1].WhichOneof("event") == "final"
    assert resumed[-1].final.answer == ref_events[-1].final.answer  # the simulator is deterministic
    # No finished step ran again: at most the one that was in flight is paid twice.
    assert mesh.sim_stats()["requests_total"] <= ref_calls + 1
    steps, roles, run = checkpoint(mesh, run_id)
    expected = [
        (e.step_finished.step, kind_name(e.step_finished.kind), e.step_finished.agent)
        for e in ref_events
        if e.WhichOneof("event") == "step_finished"
    ]
    assert steps == expected  # each step exactly once, in order
    assert roles == ["user", "assistant"]
    assert run["status"] == "completed" and run["iterations"] == 2
    # The resumed stream continues the numbering where the checkpoint left it.
    seqs = [e.seq for e in resumed]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) and seqs[0] > 0


def kind_name(kind: int) -> str:
    return {ROUTE: "route", AGENT: "agent", GUARD: "guard"}[kind]


def test_two_concurrent_resumes_do_not_both_execute_the_run(mesh: Mesh) -> None:
    mesh.reset_sim()
    mesh.set_faults(latency_ms=LATENCY_MS)
    with grpc.insecure_channel(mesh.gateway) as ch:
        run_id = run_until(mesh, ch, kill_supervisor_at(mesh, started(AGENT, 1)))
        time.sleep(2.5)  # the dead supervisor's 2 s lease runs out
        outcomes: list[object] = [None, None]

        def attempt(i: int) -> None:
            try:
                outcomes[i] = list(
                    stub(ch).Resume(supervisor_pb2.ResumeRequest(run_id=run_id), metadata=mesh.auth(), timeout=60)
                )
            except grpc.RpcError as exc:
                outcomes[i] = exc.code()

        deadline = time.monotonic() + 30
        while True:  # wait for the restarted supervisor to answer at all
            try:
                stub(ch).GetThread(
                    supervisor_pb2.GetThreadRequest(thread_id=str(uuid.uuid4())), metadata=mesh.auth(), timeout=2
                )
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND or time.monotonic() > deadline:
                    break
            time.sleep(0.2)
        threads = [threading.Thread(target=attempt, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)

    executed = [o for o in outcomes if isinstance(o, list) and any(e.WhichOneof("event") == "step_started" for e in o)]
    assert len(executed) == 1, (outcomes, dict(checkpoint(mesh, run_id)[2]))
    other = next(o for o in outcomes if o is not executed[0])
    # The loser was refused (ABORTED) or, if it came after the winner finished, got the final event replayed.
    assert other == grpc.StatusCode.ABORTED or (
        isinstance(other, list) and [e.WhichOneof("event") for e in other] == ["final"]
    )
    steps, roles, _ = checkpoint(mesh, run_id)
    assert [s[0] for s in steps] == list(range(len(steps))) and roles == ["user", "assistant"]


def test_an_abandoned_run_shows_as_resumable(mesh: Mesh) -> None:
    mesh.reset_sim()
    mesh.set_faults(latency_ms=LATENCY_MS)
    with grpc.insecure_channel(mesh.gateway) as ch:
        run_id = run_until(mesh, ch, kill_supervisor_at(mesh, started(AGENT, 1)))
        thread_id = str(checkpoint(mesh, run_id)[2]["thread_id"])
        deadline = time.monotonic() + 30
        status = None
        while time.monotonic() < deadline:
            try:
                view = stub(ch).GetThread(
                    supervisor_pb2.GetThreadRequest(thread_id=thread_id), metadata=mesh.auth(), timeout=5
                )
                status = view.runs[-1].status
                if status == supervisor_pb2.RUN_STATUS_FAILED:
                    break
            except grpc.RpcError:
                pass
            time.sleep(0.3)
        assert status == supervisor_pb2.RUN_STATUS_FAILED  # marked by the restarted supervisor's sweep
        assert resume_when_free(mesh, ch, run_id)[-1].WhichOneof("event") == "final"
