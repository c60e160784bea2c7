"""Runs that wait, through the real gateway: double texting (a new message on a thread whose run is still going:
reject, enqueue, interrupt) and human in the loop (a run paused for approval, in Postgres, surviving a SIGKILL of
the only supervisor; approve continues it, reject ends it with FINISH_REASON_REJECTED, CancelRun ends a pause)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator

import asyncpg
import grpc
import psutil
import pytest
from google.rpc import error_details_pb2, status_pb2

from agentmesh.v1 import supervisor_pb2, supervisor_pb2_grpc
from tests.mesh import Mesh, start_mesh, stop_mesh, wait_until

QUESTION = "Compare two payment providers and recommend one"  # routes to researcher and analyst only
ACTION = "Calculate 17 * 23 and recommend a payment provider"  # the simulator's router also picks the executor
FLAGGED = "Compare payment providers for order 4111111111111111"  # a card number the input policy flags
LEASE_S = 2.0
REJECT, ENQUEUE, INTERRUPT = (
    supervisor_pb2.ON_BUSY_THREAD_REJECT,
    supervisor_pb2.ON_BUSY_THREAD_ENQUEUE,
    supervisor_pb2.ON_BUSY_THREAD_INTERRUPT,
)


@pytest.fixture(scope="module")
def mesh(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    m = start_mesh(
        tmp_path_factory.mktemp("waiting"),
        database_url,
        extra_env={
            "AGENTMESH_RUN_LEASE_S": str(LEASE_S),
            "AGENTMESH_APPROVAL_AGENTS": "executor",
            "AGENTMESH_PAUSE_ON_FLAG": "true",
        },
    )
    try:
        yield m
    finally:
        stop_mesh(m.proc)


@pytest.fixture
def stub(mesh: Mesh) -> Iterator[supervisor_pb2_grpc.SupervisorServiceStub]:
    with grpc.insecure_channel(mesh.gateway) as ch:
        yield supervisor_pb2_grpc.SupervisorServiceStub(ch)


def db(mesh: Mesh, sql: str, *args: object) -> list[asyncpg.Record]:
    async def read() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(mesh.env["DATABASE_URL"])
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(read())


def supervisor_pids(mesh: Mesh) -> list[int]:
    pids = []
    for child in psutil.Process(mesh.proc.pid).children():
        with contextlib.suppress(psutil.Error):  # a killed child is a zombie until the launcher reaps it
            if "serve supervisor" in " ".join(child.cmdline()):
                pids.append(child.pid)
    return pids


def status(mesh: Mesh, run_id: str) -> str:
    return str(db(mesh, "SELECT status FROM runs WHERE id = $1", uuid.UUID(run_id))[0]["status"])


def agents_run(mesh: Mesh, run_id: str) -> list[str]:
    rows = db(mesh, "SELECT agent FROM steps WHERE run_id = $1 AND kind = 'agent' ORDER BY idx", uuid.UUID(run_id))
    return [r["agent"] for r in rows]


def watch(mesh: Mesh, stub: supervisor_pb2_grpc.SupervisorServiceStub, run_id: str, after: int = -1) -> list:
    req = supervisor_pb2.WatchRunRequest(run_id=run_id, after_seq=after)
    return list(stub.WatchRun(req, metadata=mesh.auth(), timeout=60))


def detached(
    mesh: Mesh,
    stub: supervisor_pb2_grpc.SupervisorServiceStub,
    message: str,
    thread: str = "",
    on_busy: supervisor_pb2.OnBusyThread = REJECT,
) -> str:
    req = supervisor_pb2.RunRequest(message=message, thread_id=thread, detach=True, on_busy_thread=on_busy)
    [first] = list(stub.Run(req, metadata=mesh.auth(), timeout=30))
    return first.run_id


def new_thread(mesh: Mesh, stub: supervisor_pb2_grpc.SupervisorServiceStub) -> str:
    mesh.set_faults(latency_ms=0)
    events = list(stub.Run(supervisor_pb2.RunRequest(message=QUESTION), metadata=mesh.auth(), timeout=60))
    assert events[-1].WhichOneof("event") == "final"
    return events[-1].thread_id


def error_reason(err: grpc.RpcError) -> str:
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            st = status_pb2.Status.FromString(value)
            info = error_details_pb2.ErrorInfo()
            for d in st.details:
                if d.Unpack(info):
                    return info.reason
    return ""


def until_paused(call: Iterator[supervisor_pb2.RunEvent]) -> supervisor_pb2.RunEvent:
    for ev in call:
        if ev.WhichOneof("event") == "input_required":
            return ev
        assert ev.WhichOneof("event") not in ("final", "error"), ev
    raise AssertionError("the run ended without pausing")


# --- double texting ------------------------------------------------------------------------------


def test_a_busy_thread_rejects_a_new_run_by_default_naming_the_running_one(
    mesh: Mesh, stub: supervisor_pb2_grpc.SupervisorServiceStub
) -> None:
    thread = new_thread(mesh, stub)
    mesh.set_faults(latency_ms=700)
    running = detached(mesh, stub, QUESTION, thread)
    for on_busy in (supervisor_pb2.ON_BUSY_THREAD_UNSPECIFIED, REJECT):
        with pytest.raises(grpc.RpcError) as caught:
            list(
                stub.Run(
                    supervisor_pb2.RunRequest(message="And the cheaper one?", thread_id=thread, on_busy_thread=on_busy),
                    metadata=mesh.auth(),
                    timeout=30,
                )
            )
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert running in (caught.value.details() or "") and error_reason(caught.value) == "THREAD_BUSY"
    assert watch(mesh, stub, running)[-1].final.reason == supervisor_pb2.FINISH_REASON_COMPLETED
    assert len(db(mesh, "SELECT id FROM runs WHERE thread_id = $1", uuid.UUID(thread))) == 2  # nothing created


def test_enqueue_waits_for_the_running_run_and_a_queued_run_can_be_watched_and_cancelled(
    mesh: Mesh, stub: supervisor_pb2_grpc.SupervisorServiceStub
) -> None:
    thread = new_thread(mesh, stub)
    mesh.set_faults(latency_ms=600)
    first = detached(mesh, stub, QUESTION, thread)
    # The second run's client follows it through the wait: its stream ends with the second run's final event.
    call = stub.Run(
        supervisor_pb2.RunRequest(message="And which one is cheaper?", thread_id=thread, on_busy_thread=ENQUEUE),
        metadata=mesh.auth(),
        timeout=90,
    )
    head = next(call)
    second = head.run_id
    assert status(mesh, second) == "queued" and status(mesh, first) == "running"
    third = detached(mesh, stub, "And which one is faster?", thread, on_busy=ENQUEUE)
    view = stub.GetThread(supervisor_pb2.GetThreadRequest(thread_id=thread), metadata=mesh.auth(), timeout=10)
    assert [r.status for r in view.runs][-3:] == [
        supervisor_pb2.RUN_STATUS_RUNNING,
        supervisor_pb2.RUN_STATUS_QUEUED,
        supervisor_pb2.RUN_STATUS_QUEUED,
    ]
    watched: list = []
    watcher = threading.Thread(target=lambda: watched.extend(watch(mesh, stub, second)))
    watcher.start()
    # A queued run is cancelled at once; it never executes.
    reply = stub.CancelRun(supervisor_pb2.CancelRunRequest(run_id=third), metadata=mesh.auth(), timeout=10)
    assert reply.status == supervisor_pb2.RUN_STATUS_CANCELLED
    assert watch(mesh, stub, third)[-1].final.reason == supervisor_pb2.FINISH_REASON_CANCELLED
    rest = [head, *call]
    watcher.join(60)
    mesh.set_faults(latency_ms=0)
    assert rest[-1].WhichOneof("event") == "final" and rest[-1].final.reason == supervisor_pb2.FINISH_REASON_COMPLETED
    assert [e.seq for e in rest] == list(range(len(rest))) and watched == rest
    assert agents_run(mesh, third) == []
    # The second run started only once the first had ended, and it saw the first one's answer.
    [row] = db(mesh, "SELECT history FROM runs WHERE id = $1", uuid.UUID(second))
    [answer] = db(mesh, "SELECT content FROM messages WHERE run_id = $1 AND role = 'assistant'", uuid.UUID(first))
    assert answer["content"] in [m["content"] for m in json.loads(row["history"])]
    steps = db(
        mesh,
        "SELECT run_id, min(created_at) AS began, max(created_at) AS ended FROM steps "
        "WHERE run_id = ANY($1::uuid[]) GROUP BY run_id",
        [uuid.UUID(first), uuid.UUID(second)],
    )
    by_run = {str(r["run_id"]): r for r in steps}
    assert by_run[second]["began"] > by_run[first]["ended"]


def test_interrupt_cancels_the_running_run_then_starts_the_new_one(
    mesh: Mesh, stub: supervisor_pb2_grpc.SupervisorServiceStub
) -> None:
    thread = new_thread(mesh, stub)
    mesh.set_faults(latency_ms=1500)
    running = detached(mesh, stub, QUESTION, thread)
    time.sleep(0.5)
    mesh.set_faults(latency_ms=0)
    events = list(
        stub.Run(
            supervisor_pb2.RunRequest(message="Actually, just one line", thread_id=thread, on_busy_thread=INTERRUPT),
            metadata=mesh.auth(),
            timeout=60,
        )
    )
    assert events[-1].WhichOneof("event") == "final"
    assert events[-1].final.reason == supervisor_pb2.FINISH_REASON_COMPLETED
    assert watch(mesh, stub, running)[-1].final.reason == supervisor_pb2.FINISH_REASON_CANCELLED
    assert status(mesh, running) == "cancelled" and status(mesh, events[0].run_id) == "completed"


# --- human in the loop ---------------------------------------------------------------------------


def test_an_approval_pause_survives_a_supervisor_restart_and_approve_continues_it(
    mesh: Mesh, stub: supervisor_pb2_grpc.SupervisorServiceStub
) -> None:
    mesh.set_faults(latency_ms=0)
    call = stub.Run(supervisor_pb2.RunRequest(message=ACTION), metadata=mesh.auth(), timeout=60)
    ask = until_paused(call)
    call.cancel()
    run_id = ask.run_id
    assert ask.input_required.reason == supervisor_pb2.INPUT_REASON_AGENT_APPROVAL
    assert ask.input_required.agent == "executor" and "17 * 23" in ask.input_required.arguments
    assert status(mesh, run_id) == "paused" and "executor" not in agents_run(mesh, run_id)
    with pytest.raises(grpc.RpcError) as resumed:
        list(stub.Resume(supervisor_pb2.ResumeRequest(run_id=run_id), metadata=mesh.auth(), timeout=10))
    assert resumed.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    # SIGKILL the only supervisor; the launcher restarts it. Its sweep (every half lease) must not continue
    # the pause: after three lease periods the run is still paused and the executor has not acted.
    [victim] = supervisor_pids(mesh)
    os.kill(victim, signal.SIGKILL)
    assert wait_until(lambda: supervisor_pids(mesh) not in ([], [victim]), 60)
    time.sleep(3 * LEASE_S)
    assert status(mesh, run_id) == "paused" and "executor" not in agents_run(mesh, run_id)

    deadline = time.monotonic() + 60
    while True:  # the restarted supervisor answers once Envoy sees it healthy again
        try:
            reply = stub.SubmitInput(
                supervisor_pb2.SubmitInputRequest(run_id=run_id, approve=True, note="ok"),
                metadata=mesh.auth(),
                timeout=10,
            )
            break
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE and time.monotonic() < deadline, exc
            time.sleep(0.3)
    assert reply.status == supervisor_pb2.RUN_STATUS_RUNNING
    events = watch(mesh, stub, run_id)
    assert [e.seq for e in events] == list(range(len(events)))
    assert events[-1].final.reason == supervisor_pb2.FINISH_REASON_COMPLETED and events[-1].final.answer
    assert agents_run(mesh, run_id).count("executor") == 1
    # Answered once: a second answer finds nothing to answer.
    with pytest.raises(grpc.RpcError) as again:
        stub.SubmitInput(supervisor_pb2.SubmitInputRequest(run_id=run_id, approve=True), metadata=mesh.auth())
    assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_reject_ends_the_paused_run_with_a_clear_reason(
    mesh: Mesh, stub: supervisor_pb2_grpc.SupervisorServiceStub
) -> None:
    mesh.set_faults(latency_ms=0)
    call = stub.Run(supervisor_pb2.RunRequest(message=ACTION), metadata=mesh.auth(), timeout=60)
    ask = until_paused(call)
    # Answered over HTTP/JSON (POST /v1/runs/{run_id}:input, through Envoy's transcoder), as a review UI would.
    req = urllib.request.Request(
        f"http://{mesh.gateway}/v1/runs/{ask.run_id}:input",
        data=json.dumps({"approve": False, "note": "no payments today"}).encode(),
        method="POST",
        headers={"content-type": "application/json", "authorization": f"Bearer {mesh.key}"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200 and json.loads(resp.read())["status"] == "RUN_STATUS_CANCELLED"
    rest = list(call)  # the starting client's stream follows the pause to the run's end
    assert rest[-1].final.reason == supervisor_pb2.FINISH_REASON_REJECTED
    assert "rejected by a reviewer: no payments today" in rest[-1].final.answer
    assert rest[-1].seq == ask.seq + 1
    assert "executor" not in agents_run(mesh, ask.run_id) and status(mesh, ask.run_id) == "cancelled"


def test_cancel_during_a_pause_ends_the_run(mesh: Mesh, stub: supervisor_pb2_grpc.SupervisorServiceStub) -> None:
    mesh.set_faults(latency_ms=0)
    call = stub.Run(supervisor_pb2.RunRequest(message=ACTION), metadata=mesh.auth(), timeout=60)
    ask = until_paused(call)
    started = time.monotonic()
    reply = stub.CancelRun(supervisor_pb2.CancelRunRequest(run_id=ask.run_id), metadata=mesh.auth(), timeout=10)
    took = time.monotonic() - started
    rest = list(call)
    assert reply.status == supervisor_pb2.RUN_STATUS_CANCELLED and took < 2.5, took
    assert rest[-1].final.reason == supervisor_pb2.FINISH_REASON_CANCELLED
    with pytest.raises(grpc.RpcError) as answered:
        stub.SubmitInput(supervisor_pb2.SubmitInputRequest(run_id=ask.run_id, approve=True), metadata=mesh.auth())
    assert answered.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(answered.value) == "RUN_NOT_PAUSED"


def test_a_guard_flag_on_the_input_pauses_the_run_for_review(
    mesh: Mesh, stub: supervisor_pb2_grpc.SupervisorServiceStub
) -> None:
    mesh.set_faults(latency_ms=0)
    call = stub.Run(supervisor_pb2.RunRequest(message=FLAGGED), metadata=mesh.auth(), timeout=60)
    ask = until_paused(call)
    assert ask.input_required.reason == supervisor_pb2.INPUT_REASON_GUARD_FLAG
    assert list(ask.input_required.finding_types) == ["credit_card"] and ask.input_required.step == 0
    assert "4111111111111111" not in str(ask)  # values are never echoed
    assert agents_run(mesh, ask.run_id) == []  # nothing ran before the review
    stub.SubmitInput(supervisor_pb2.SubmitInputRequest(run_id=ask.run_id, approve=True), metadata=mesh.auth())
    rest = list(call)
    assert rest[-1].final.reason == supervisor_pb2.FINISH_REASON_COMPLETED


def test_submit_input_of_an_unknown_run_is_not_found(
    mesh: Mesh, stub: supervisor_pb2_grpc.SupervisorServiceStub
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.SubmitInput(
            supervisor_pb2.SubmitInputRequest(run_id=str(uuid.uuid4()), approve=True), metadata=mesh.auth()
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
