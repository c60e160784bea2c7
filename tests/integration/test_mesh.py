"""Conversations through the real gateway: Envoy in front of the five services, the simulator as the LLM,
Postgres for checkpoints. Every call below is a real gRPC call from outside the mesh."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid

import asyncpg
import grpc
import pytest

from agentmesh.v1 import guard_pb2, guard_pb2_grpc, supervisor_pb2, supervisor_pb2_grpc
from tests.mesh import Mesh, wait_until

QUESTION = "Compare two payment providers and recommend one"


def run(
    channel: grpc.Channel,
    mesh: Mesh,
    message: str,
    thread_id: str = "",
    key: str | None = None,
) -> list[supervisor_pb2.RunEvent]:
    stub = supervisor_pb2_grpc.SupervisorServiceStub(channel)
    return list(
        stub.Run(supervisor_pb2.RunRequest(message=message, thread_id=thread_id), metadata=mesh.auth(key), timeout=60)
    )


def kinds(events: list[supervisor_pb2.RunEvent]) -> list[str]:
    return [e.WhichOneof("event") for e in events]


def agents_that_acted(events: list[supervisor_pb2.RunEvent]) -> list[str]:
    return [
        e.step_finished.agent
        for e in events
        if e.WhichOneof("event") == "step_finished" and e.step_finished.kind == supervisor_pb2.STEP_KIND_AGENT
    ]


def test_a_conversation_runs_end_to_end_through_the_gateway(mesh: Mesh, channel: grpc.Channel) -> None:
    events = run(channel, mesh, QUESTION)
    assert kinds(events)[-1] == "final"
    assert [e.seq for e in events] == list(range(len(events)))
    assert len({e.run_id for e in events}) == 1 and len({e.thread_id for e in events}) == 1
    assert agents_that_acted(events) == ["researcher", "analyst"]
    final = events[-1].final
    assert final.reason == supervisor_pb2.FINISH_REASON_COMPLETED and final.answer
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0 and final.cost_usd > 0
    # 3 routing calls (researcher, analyst, FINISH) + 2 agent calls: the provider saw exactly those.
    stats = mesh.sim_stats()
    assert final.usage.llm_calls == 5 == stats["requests_total"]
    assert stats["input_tokens_total"] == final.usage.input_tokens
    assert kinds(events)[0] == "guard_decision"  # the input was checked before anything else


def test_an_action_request_reaches_the_executor_and_its_tool(mesh: Mesh, channel: grpc.Channel) -> None:
    events = run(channel, mesh, "Calculate 17*23 and explain the result")
    assert agents_that_acted(events) == ["researcher", "analyst", "executor"]
    executor = next(e.step_finished for e in events if e.step_finished.agent == "executor")
    assert "391" in executor.output
    assert events[-1].final.answer == executor.output


def test_an_invented_tool_is_refused_not_run(mesh: Mesh, channel: grpc.Channel) -> None:
    mesh.set_faults(tool_fault="invent")
    events = run(channel, mesh, "Calculate 2+2 for me")
    assert kinds(events)[-1] == "final"

    async def tools() -> list[dict[str, object]]:
        conn = await asyncpg.connect(mesh_db(mesh))
        try:
            row = await conn.fetchval(
                "SELECT result->'tools' FROM steps WHERE run_id = $1 AND agent = 'executor'",
                uuid.UUID(events[-1].run_id),
            )
        finally:
            await conn.close()
        return json.loads(row)

    recorded = asyncio.run(tools())
    assert recorded and all(not t["executed"] for t in recorded)


def test_a_router_answer_outside_the_allowed_set_is_handled(mesh: Mesh, channel: grpc.Channel) -> None:
    mesh.set_faults(route_fault="invalid")
    events = run(channel, mesh, QUESTION)
    assert kinds(events)[-1] == "final"
    assert agents_that_acted(events) == ["researcher", "analyst", "executor"]  # the default order


def test_thread_history_and_get_thread(mesh: Mesh, channel: grpc.Channel) -> None:
    first = run(channel, mesh, QUESTION)
    thread = first[-1].thread_id
    second = run(channel, mesh, "And which one is cheaper for small shops?", thread_id=thread)
    assert second[-1].thread_id == thread
    stub = supervisor_pb2_grpc.SupervisorServiceStub(channel)
    view = stub.GetThread(supervisor_pb2.GetThreadRequest(thread_id=thread), metadata=mesh.auth(), timeout=10)
    assert [m.content for m in view.messages] == [
        QUESTION,
        first[-1].final.answer,
        "And which one is cheaper for small shops?",
        second[-1].final.answer,
    ]
    assert [r.run_id for r in view.runs] == [first[-1].run_id, second[-1].run_id]
    assert all(r.status == supervisor_pb2.RUN_STATUS_COMPLETED for r in view.runs)


def test_resuming_a_finished_run_returns_its_final_event_without_new_work(mesh: Mesh, channel: grpc.Channel) -> None:
    events = run(channel, mesh, QUESTION)
    mesh.reset_sim()
    stub = supervisor_pb2_grpc.SupervisorServiceStub(channel)
    again = list(stub.Resume(supervisor_pb2.ResumeRequest(run_id=events[-1].run_id), metadata=mesh.auth(), timeout=30))
    assert again == [events[-1]]
    assert mesh.sim_stats()["requests_total"] == 0


def test_pii_in_the_input_is_redacted_before_it_is_stored(mesh: Mesh, channel: grpc.Channel) -> None:
    events = run(channel, mesh, "Email jane.doe@example.com the comparison of two payment providers")
    decision = events[0].guard_decision
    assert decision.action == guard_pb2.ACTION_REDACT and "email" in decision.finding_types
    stub = supervisor_pb2_grpc.SupervisorServiceStub(channel)
    view = stub.GetThread(supervisor_pb2.GetThreadRequest(thread_id=events[-1].thread_id), metadata=mesh.auth())
    assert "jane.doe@example.com" not in view.messages[0].content and "<EMAIL_1>" in view.messages[0].content


def test_a_card_number_in_the_input_is_blocked(mesh: Mesh, channel: grpc.Channel) -> None:
    stub = supervisor_pb2_grpc.SupervisorServiceStub(channel)
    call = stub.Run(
        supervisor_pb2.RunRequest(message="charge my card 4111 1111 1111 1111 please"), metadata=mesh.auth(), timeout=30
    )
    seen = []
    with pytest.raises(grpc.RpcError) as info:
        for ev in call:
            seen.append(ev)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED and "guard" in info.value.details()
    assert seen[0].guard_decision.action == guard_pb2.ACTION_BLOCK
    assert mesh.sim_stats()["requests_total"] == 0  # nothing reached the LLM


def test_guard_as_a_service_through_the_gateway(mesh: Mesh, channel: grpc.Channel) -> None:
    stub = guard_pb2_grpc.GuardServiceStub(channel)
    r = stub.Check(
        guard_pb2.CheckRequest(text="my card is 4111 1111 1111 1111", direction=guard_pb2.DIRECTION_INPUT),
        metadata=mesh.auth(),
        timeout=10,
    )
    assert r.action == guard_pb2.ACTION_BLOCK and [f.type for f in r.findings] == ["credit_card"]
    ok = stub.Check(guard_pb2.CheckRequest(text="what is the weather like"), metadata=mesh.auth(), timeout=10)
    assert ok.action == guard_pb2.ACTION_ALLOW


@pytest.mark.parametrize(
    ("call", "code", "words"),
    [
        ("run_empty", grpc.StatusCode.INVALID_ARGUMENT, "must contain a non-whitespace character"),
        ("run_oversized", grpc.StatusCode.INVALID_ARGUMENT, "must be at most 32000 characters"),
        ("run_bad_thread", grpc.StatusCode.INVALID_ARGUMENT, "must be a valid UUID"),
        ("run_unknown_thread", grpc.StatusCode.NOT_FOUND, "not found"),
        ("resume_unknown", grpc.StatusCode.NOT_FOUND, "not found"),
        ("resume_empty", grpc.StatusCode.INVALID_ARGUMENT, "value is required"),
        ("thread_unknown", grpc.StatusCode.NOT_FOUND, "not found"),
        ("thread_empty", grpc.StatusCode.INVALID_ARGUMENT, "value is required"),
        ("guard_oversized", grpc.StatusCode.INVALID_ARGUMENT, "100000"),
    ],
)
def test_bad_input_gets_a_clear_status(
    mesh: Mesh, channel: grpc.Channel, call: str, code: grpc.StatusCode, words: str
) -> None:
    sup = supervisor_pb2_grpc.SupervisorServiceStub(channel)
    guard = guard_pb2_grpc.GuardServiceStub(channel)
    unknown = "00000000-0000-4000-8000-000000000000"
    md = mesh.auth()
    calls = {
        "run_empty": lambda: list(sup.Run(supervisor_pb2.RunRequest(message="   "), metadata=md, timeout=10)),
        "run_oversized": lambda: list(
            sup.Run(supervisor_pb2.RunRequest(message="x" * 40_000), metadata=md, timeout=10)
        ),
        "run_bad_thread": lambda: list(
            sup.Run(supervisor_pb2.RunRequest(message="hi", thread_id="nope"), metadata=md, timeout=10)
        ),
        "run_unknown_thread": lambda: list(
            sup.Run(supervisor_pb2.RunRequest(message="hi", thread_id=unknown), metadata=md, timeout=10)
        ),
        "resume_unknown": lambda: list(
            sup.Resume(supervisor_pb2.ResumeRequest(run_id=unknown), metadata=md, timeout=10)
        ),
        "resume_empty": lambda: list(sup.Resume(supervisor_pb2.ResumeRequest(), metadata=md, timeout=10)),
        "thread_unknown": lambda: sup.GetThread(
            supervisor_pb2.GetThreadRequest(thread_id=unknown), metadata=md, timeout=10
        ),
        "thread_empty": lambda: sup.GetThread(supervisor_pb2.GetThreadRequest(), metadata=md, timeout=10),
        "guard_oversized": lambda: guard.Check(guard_pb2.CheckRequest(text="a" * 100_001), metadata=md, timeout=10),
    }
    with pytest.raises(grpc.RpcError) as info:
        calls[call]()
    assert info.value.code() == code
    assert words in info.value.details()
    # ... and the mesh keeps serving.
    assert kinds(run(channel, mesh, QUESTION))[-1] == "final"


def test_calls_without_a_valid_key_are_unauthenticated(mesh: Mesh, channel: grpc.Channel) -> None:
    sup = supervisor_pb2_grpc.SupervisorServiceStub(channel)
    guard = guard_pb2_grpc.GuardServiceStub(channel)
    for md in [(), (("authorization", "Bearer am_nope_nope"),), (("authorization", "Basic abc"),)]:
        with pytest.raises(grpc.RpcError) as info:
            list(sup.Run(supervisor_pb2.RunRequest(message="hi"), metadata=md, timeout=10))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as info:
            guard.Check(guard_pb2.CheckRequest(text="hi"), metadata=md, timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_another_tenants_thread_is_not_found(mesh: Mesh, channel: grpc.Channel) -> None:
    env = {**os.environ, "DATABASE_URL": mesh_db(mesh)}
    out = subprocess.run(
        [sys.executable, "-m", "agentmesh", "keys", "create", "--tenant", "other"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    other = out.stdout.strip()
    mine = run(channel, mesh, QUESTION)
    sup = supervisor_pb2_grpc.SupervisorServiceStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        sup.GetThread(supervisor_pb2.GetThreadRequest(thread_id=mine[-1].thread_id), metadata=mesh.auth(other))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as info:
        list(sup.Resume(supervisor_pb2.ResumeRequest(run_id=mine[-1].run_id), metadata=mesh.auth(other), timeout=10))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as info:
        run(channel, mesh, "hi", thread_id=mine[-1].thread_id, key=other)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_dead_service_is_restarted_by_the_launcher(mesh: Mesh, channel: grpc.Channel) -> None:
    before = len(mesh.lines)
    os.kill(mesh.pids()["researcher"], signal.SIGKILL)
    assert wait_until(lambda: any("researcher exited" in line for line in mesh.lines[before:]), 10)
    # Back within the restart backoff plus start-up; Envoy's health checks let traffic in again.
    assert wait_until(lambda: _runs_ok(channel, mesh), 30, interval_s=0.5)


def _runs_ok(channel: grpc.Channel, mesh: Mesh) -> bool:
    try:
        return kinds(run(channel, mesh, QUESTION))[-1] == "final"
    except grpc.RpcError:
        return False


def mesh_db(mesh: Mesh) -> str:
    return mesh.env["DATABASE_URL"]
