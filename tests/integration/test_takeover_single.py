"""Takeover with a single supervisor: SIGKILLed mid-run, restarted by the launcher, it continues the run by
itself (nobody calls Resume), with the same answer and at most one extra LLM call. Its own module: a mesh's
`agentmesh up` mints a new dev key and revokes the earlier ones, so two meshes on one database cannot overlap."""

from __future__ import annotations

import os
import signal
import time

import grpc
import pytest

from agentmesh.v1 import supervisor_pb2, supervisor_pb2_grpc
from tests.integration.test_background_runs import LATENCY_MS, LEASE_S, QUESTION, supervisor_pids
from tests.mesh import start_mesh, stop_mesh


def test_the_only_supervisor_killed_mid_run_finishes_it_with_at_most_one_extra_llm_call(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    m = start_mesh(
        tmp_path_factory.mktemp("takeover-one"), database_url, extra_env={"AGENTMESH_RUN_LEASE_S": str(LEASE_S)}
    )
    try:
        with grpc.insecure_channel(m.gateway) as ch:
            s = supervisor_pb2_grpc.SupervisorServiceStub(ch)
            reference = list(s.Run(supervisor_pb2.RunRequest(message=QUESTION), metadata=m.auth(), timeout=60))
            calls = m.sim_stats()["requests_total"]
            m.reset_sim()
            m.set_faults(latency_ms=LATENCY_MS)
            call = s.Run(supervisor_pb2.RunRequest(message=QUESTION), metadata=m.auth(), timeout=60)
            for ev in call:
                if ev.WhichOneof("event") == "step_started" and ev.step_started.kind == supervisor_pb2.STEP_KIND_AGENT:
                    time.sleep(0.2)
                    os.kill(supervisor_pids(m)[0], signal.SIGKILL)
                    break
            call.cancel()
            deadline = time.monotonic() + 60
            while True:  # the launcher restarts it; its sweep takes the run over, nobody calls Resume
                try:
                    events = list(
                        s.WatchRun(
                            supervisor_pb2.WatchRunRequest(run_id=ev.run_id, after_seq=-1),
                            metadata=m.auth(),
                            timeout=60,
                        )
                    )
                    break
                except grpc.RpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAVAILABLE and time.monotonic() < deadline, exc
                    time.sleep(0.3)
        assert events[-1].WhichOneof("event") == "final"
        assert events[-1].final.answer == reference[-1].final.answer
        assert m.sim_stats()["requests_total"] <= calls + 1
        assert [e.seq for e in events] == list(range(len(events)))
    finally:
        stop_mesh(m.proc)
