"""The run's iteration cap and token budget each end the run with a clear final event (own mesh each,
since both are process settings of the supervisor)."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from agentmesh.v1 import supervisor_pb2, supervisor_pb2_grpc
from tests.mesh import Mesh, start_mesh, stop_mesh

CASES = {
    # One agent step allowed: researcher acts, the next routing step ends the run.
    "iterations": ({"AGENTMESH_MAX_ITERATIONS": "1"}, supervisor_pb2.FINISH_REASON_ITERATION_LIMIT),
    # ~120 tokens for the first routing call + ~150 for the researcher: over 200 after one agent step.
    "budget": ({"AGENTMESH_RUN_TOKEN_BUDGET": "200"}, supervisor_pb2.FINISH_REASON_BUDGET_EXHAUSTED),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def limited(
    request: pytest.FixtureRequest, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Mesh, int]]:
    env, reason = CASES[request.param]
    m = start_mesh(tmp_path_factory.mktemp(request.param), database_url, extra_env=env)
    try:
        yield m, reason
    finally:
        stop_mesh(m.proc)


def test_a_limit_ends_the_run_with_its_reason(limited: tuple[Mesh, int]) -> None:
    mesh, reason = limited
    with grpc.insecure_channel(mesh.gateway) as ch:
        stub = supervisor_pb2_grpc.SupervisorServiceStub(ch)
        events = list(
            stub.Run(
                supervisor_pb2.RunRequest(message="Compare two payment providers and recommend one"),
                metadata=mesh.auth(),
                timeout=60,
            )
        )
    final = events[-1].final
    assert events[-1].WhichOneof("event") == "final"
    assert final.reason == reason
    assert final.iterations == 1
    researcher = next(e.step_finished for e in events if e.step_finished.agent == "researcher")
    assert final.answer == researcher.output  # the work done so far is still returned
    # The limit ended the run without another LLM call: 2 routing-or-agent calls, not 3.
    assert mesh.sim_stats()["requests_total"] == final.usage.llm_calls == 2
