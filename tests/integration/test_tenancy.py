"""Issue 12 through a real mesh (agentmesh up with mTLS, two supervisors): a tenant at its concurrency limit is
refused with RESOURCE_EXHAUSTED and RetryInfo while another tenant's runs go on; 1,500 unauthenticated reflection
streams do not stop a keyed conversation; Health/Watch through the gateway streams SERVING; nobody but the
gateway path asserts a tenant or reaches a service; a SIGTERMed supervisor hands its run on at once."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any, TypeAlias

import asyncpg
import grpc
import psutil
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from agentmesh.v1 import agent_pb2, agent_pb2_grpc, supervisor_pb2, supervisor_pb2_grpc
from tests.mesh import Mesh, start_mesh, stop_mesh, wait_until

QUESTION = "Compare two payment providers and recommend one"
MAX_RUNS = 2
# Far longer than any wait below: a run continued before its lease could run out was handed on, not orphaned.
LEASE_S = 120


@pytest.fixture(scope="module")
def mesh(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    data_dir = tmp_path_factory.mktemp("tenancy")
    m = start_mesh(
        data_dir,
        database_url,
        extra_env={
            "AGENTMESH_TLS_DIR": str(data_dir / "tls"),
            "AGENTMESH_TENANT_MAX_CONCURRENT_RUNS": str(MAX_RUNS),
            "AGENTMESH_RUN_LEASE_S": str(LEASE_S),
            "AGENTMESH_SHUTDOWN_GRACE_S": "15",
        },
        up_args=["--replicas", "supervisor=2"],
    )
    try:
        yield m
    finally:
        stop_mesh(m.proc)


@pytest.fixture
def stub(mesh: Mesh) -> Iterator[supervisor_pb2_grpc.SupervisorServiceStub]:
    with grpc.insecure_channel(mesh.gateway) as ch:
        yield supervisor_pb2_grpc.SupervisorServiceStub(ch)


def _new_key(mesh: Mesh, tenant: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "agentmesh", "keys", "create", "--tenant", tenant],
        env=mesh.env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()


def _details(err: grpc.RpcError) -> tuple[error_details_pb2.ErrorInfo, error_details_pb2.RetryInfo | None]:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
    assert any(d.Unpack(info) for d in status.details)
    return info, retry if any(d.Unpack(retry) for d in status.details) else None


def _db(mesh: Mesh, sql: str, *args: object) -> list[asyncpg.Record]:
    async def read() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(mesh.env["DATABASE_URL"])
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(read())


def _conversation(stub: supervisor_pb2_grpc.SupervisorServiceStub, key: tuple[tuple[str, str], ...]) -> None:
    first = list(stub.Run(supervisor_pb2.RunRequest(message=QUESTION), metadata=key, timeout=60))
    assert first[-1].WhichOneof("event") == "final", first[-1]
    follow_up = supervisor_pb2.RunRequest(message="And the cheaper one?", thread_id=first[-1].thread_id)
    second = list(stub.Run(follow_up, metadata=key, timeout=60))
    assert second[-1].WhichOneof("event") == "final", second[-1]


def _watch_to_end(
    mesh: Mesh, stub: supervisor_pb2_grpc.SupervisorServiceStub, run_id: str, timeout_s: float = 60
) -> list[supervisor_pb2.RunEvent]:
    req = supervisor_pb2.WatchRunRequest(run_id=run_id, after_seq=-1)
    return list(stub.WatchRun(req, metadata=mesh.auth(), timeout=timeout_s))


# --- per-tenant limits ----------------------------------------------------------------------------------------


def test_a_tenant_at_its_concurrency_limit_is_refused_while_another_tenants_runs_go_on(
    mesh: Mesh, stub: supervisor_pb2_grpc.SupervisorServiceStub
) -> None:
    mesh.set_faults(latency_ms=1500)  # each LLM call: the two runs below are still executing when the third comes
    busy = [
        next(iter(stub.Run(supervisor_pb2.RunRequest(message=QUESTION, detach=True), metadata=mesh.auth(), timeout=30)))
        for _ in range(MAX_RUNS)
    ]
    # Two supervisors behind the gateway: the count is the tenant's, over both (a lease in Postgres each).
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.Run(supervisor_pb2.RunRequest(message=QUESTION), metadata=mesh.auth(), timeout=30))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    info, retry = _details(caught.value)
    assert info.reason == "TENANT_CONCURRENCY_LIMIT" and info.metadata["limit"] == str(MAX_RUNS)
    assert retry is not None and retry.retry_delay.seconds > 0
    # Another tenant is not affected, meanwhile.
    other = (("authorization", f"Bearer {_new_key(mesh, 'tenancy-other')}"),)
    events = list(stub.Run(supervisor_pb2.RunRequest(message=QUESTION), metadata=other, timeout=90))
    assert events[-1].WhichOneof("event") == "final"
    # The busy tenant's runs end, and then it may start again.
    for ev in busy:
        assert _watch_to_end(mesh, stub, ev.run_id)[-1].WhichOneof("event") == "final"
    mesh.set_faults(latency_ms=0)
    again = list(stub.Run(supervisor_pb2.RunRequest(message=QUESTION), metadata=mesh.auth(), timeout=60))
    assert again[-1].WhichOneof("event") == "final"


# --- health and unauthenticated streams -----------------------------------------------------------------------


def test_health_watch_through_the_gateway_streams_serving(mesh: Mesh) -> None:
    with grpc.insecure_channel(mesh.gateway) as ch:
        call = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
        first = next(call)
        call.cancel()
    assert first.status == health_pb2.HealthCheckResponse.SERVING


Stream: TypeAlias = Any  # grpc.aio.StreamStreamCall of reflection requests and responses


async def _open_reflection_streams(
    channels: list[grpc.aio.Channel], n: int, per_channel: int
) -> tuple[list[Stream], list[grpc.StatusCode]]:
    """n reflection streams through the gateway (a connection carries at most 1,024), each answered once and then
    held open; and the codes that refused the rest."""
    opened: list[Stream] = []
    refused: list[grpc.StatusCode] = []

    async def one(i: int) -> None:
        call = reflection_pb2_grpc.ServerReflectionStub(channels[i // per_channel]).ServerReflectionInfo(timeout=60)
        try:
            await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
            await call.read()
            opened.append(call)
        except grpc.aio.AioRpcError as exc:
            refused.append(exc.code())

    await asyncio.gather(*(one(i) for i in range(n)))
    return opened, refused


def test_1500_reflection_streams_leave_keyed_runs_and_health_alone(
    mesh: Mesh, stub: supervisor_pb2_grpc.SupervisorServiceStub
) -> None:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)  # grpc.aio channels bind to the current loop when made
    channels = [grpc.aio.insecure_channel(mesh.gateway) for _ in range(3)]
    opened: list[Stream] = []
    try:
        opened, refused = loop.run_until_complete(_open_reflection_streams(channels, 1500, per_channel=500))
        assert len(opened) + len(refused) == 1500
        # Reflection has a circuit breaker of its own (256 in flight): the rest is refused at once, as over a limit.
        # Envoy answers those RESOURCE_EXHAUSTED (its access log says so); grpc-python's core reports a bidi stream
        # refused before its first message as INTERNAL "Internal error from Core". Envoy's counters are the proof.
        assert 0 < len(opened) <= 256 and set(refused) <= {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INTERNAL}

        def overflows(cluster: str) -> int:  # in flight, or (while a connection is set up) pending
            stats = mesh.envoy_stats()
            return sum(stats.get(f"cluster.{cluster}.upstream_rq_{k}_overflow", 0) for k in ("active", "pending"))

        assert wait_until(lambda: overflows("supervisor-reflection") == len(refused), 10), overflows(
            "supervisor-reflection"
        )
        # With reflection full, health (its own cluster) and a keyed conversation (the runs' cluster) go on.
        with grpc.insecure_channel(mesh.gateway) as ch:
            reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        _conversation(stub, mesh.auth())
        assert all(not call.done() for call in opened)  # they were still open throughout
        assert overflows("supervisor") == 0 and overflows("supervisor-health") == 0
    finally:
        for call in opened:
            call.cancel()
        for ch in channels:
            loop.run_until_complete(ch.close())
        loop.close()
        asyncio.set_event_loop(None)


# --- least privilege inside -----------------------------------------------------------------------------------


def _mtls(mesh: Mesh, addr: str, identity: str) -> grpc.Channel:
    tls = mesh.data_dir / "tls"
    creds = grpc.ssl_channel_credentials(
        root_certificates=(tls / "ca.crt").read_bytes(),
        private_key=(tls / f"{identity}.key").read_bytes(),
        certificate_chain=(tls / f"{identity}.crt").read_bytes(),
    )
    return grpc.secure_channel(addr, creds, options=[("grpc.ssl_target_name_override", "localhost")])


def _internal_token(mesh: Mesh) -> str:
    pid = mesh.replica_pids().get("supervisor-1") or mesh.replica_pids()["supervisor"]
    return str(psutil.Process(pid).environ()["AGENTMESH_INTERNAL_TOKEN"])


def test_the_internal_token_cannot_assert_a_tenant_to_the_supervisor(mesh: Mesh) -> None:
    victim = _conversation_thread(mesh)
    token = _internal_token(mesh)
    asserted = (("agentmesh-internal-token", token), ("agentmesh-tenant", "dev"))
    supervisor = f"127.0.0.1:{mesh.ports['supervisor']}"
    # Even with the gateway's own certificate (past the peer check), the token names no tenant here.
    with _mtls(mesh, supervisor, "gateway") as ch:
        with pytest.raises(grpc.RpcError) as caught:
            supervisor_pb2_grpc.SupervisorServiceStub(ch).GetThread(
                supervisor_pb2.GetThreadRequest(thread_id=victim), metadata=asserted, timeout=10
            )
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # Through the gateway the headers are dropped before anything sees them: the same answer.
    with grpc.insecure_channel(mesh.gateway) as ch:
        with pytest.raises(grpc.RpcError) as through:
            supervisor_pb2_grpc.SupervisorServiceStub(ch).GetThread(
                supervisor_pb2.GetThreadRequest(thread_id=victim), metadata=asserted, timeout=10
            )
    assert through.value.code() == grpc.StatusCode.UNAUTHENTICATED


def _conversation_thread(mesh: Mesh) -> str:
    with grpc.insecure_channel(mesh.gateway) as ch:
        stub = supervisor_pb2_grpc.SupervisorServiceStub(ch)
        events = list(stub.Run(supervisor_pb2.RunRequest(message=QUESTION), metadata=mesh.auth(), timeout=60))
    return str(events[-1].thread_id)


def test_services_admit_only_the_gateway_and_the_internal_listener_only_the_supervisor(mesh: Mesh) -> None:
    researcher = f"127.0.0.1:{mesh.ports['researcher']}"
    act = agent_pb2.ActRequest(run_id=str(uuid.uuid4()), task="hi")
    # The supervisor's certificate is of the same CA, but it must go through the gateway to reach an agent.
    with _mtls(mesh, researcher, "supervisor") as ch:
        with pytest.raises(grpc.RpcError) as caught:
            agent_pb2_grpc.AgentServiceStub(ch).Act(act, timeout=10)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert _details(caught.value)[0].reason == "PEER_NOT_ALLOWED"
    # An agent's certificate gets nothing from the supervisor either.
    with _mtls(mesh, f"127.0.0.1:{mesh.ports['supervisor']}", "researcher") as ch:
        with pytest.raises(grpc.RpcError) as sup:
            supervisor_pb2_grpc.SupervisorServiceStub(ch).GetThread(
                supervisor_pb2.GetThreadRequest(thread_id=str(uuid.uuid4())), metadata=mesh.auth(), timeout=10
            )
    assert sup.value.code() == grpc.StatusCode.PERMISSION_DENIED

    # The gateway's internal listener: an agent's certificate fails the handshake, the supervisor's passes.
    def internal_health(identity: str) -> grpc.StatusCode:
        with _mtls(mesh, mesh.internal, identity) as ch:
            try:
                health_pb2_grpc.HealthStub(ch).Check(
                    health_pb2.HealthCheckRequest(), metadata=(("agentmesh-upstream", "researcher"),), timeout=5
                )
            except grpc.RpcError as exc:
                return exc.code()
        return grpc.StatusCode.OK

    assert internal_health("researcher") == grpc.StatusCode.UNAVAILABLE
    assert internal_health("guard") == grpc.StatusCode.UNAVAILABLE
    assert internal_health("supervisor") == grpc.StatusCode.OK


# --- drain on SIGTERM (kept last: it restarts a supervisor) -----------------------------------------------------


def test_a_sigtermed_supervisor_hands_its_run_to_the_other_at_once(
    mesh: Mesh, stub: supervisor_pb2_grpc.SupervisorServiceStub
) -> None:
    mesh.set_faults(latency_ms=800)
    [first] = list(stub.Run(supervisor_pb2.RunRequest(message=QUESTION, detach=True), metadata=mesh.auth(), timeout=30))
    run_id = first.run_id
    [row] = _db(mesh, "SELECT lease_owner FROM runs WHERE id = $1", uuid.UUID(run_id))
    pid = int(row["lease_owner"].split(":")[1])  # host:pid:...: the supervisor executing it
    label = next(name for name, p in mesh.replica_pids().items() if p == pid)
    # Let it get into its first steps, then stop its supervisor as Kubernetes would.
    assert wait_until(lambda: _steps(mesh, run_id) >= 1, 30)
    os.kill(pid, signal.SIGTERM)

    # Through the gateway (the other supervisor answers). 40 s: a third of the lease, and less than the orphan
    # sweep's period (half a lease), so only a released lease and the notification can make it.
    events = _watch_to_end(mesh, stub, run_id, timeout_s=40)
    assert events[-1].WhichOneof("event") == "final", events[-1]
    assert events[-1].final.reason == supervisor_pb2.FINISH_REASON_COMPLETED
    assert [e.seq for e in events] == list(range(len(events)))  # every event exactly once, across the handover
    # The lease (120 s) was released, not waited out, and the run was continued elsewhere.
    logs = {p.name: p.read_text(errors="replace") for p in (mesh.data_dir / "logs").glob("supervisor*.log")}
    takers = [name for name, text in logs.items() if "run taken over" in text and run_id in text]
    assert takers and all(not name.startswith(label + ".") for name in takers), takers
    # It drained and exited by itself (code 0), not killed after the launcher's wait.
    assert wait_until(lambda: any(re.search(rf"\b{label} exited with code 0 ", ln) for ln in mesh.lines), 30), (
        mesh.lines[-10:]
    )


def _steps(mesh: Mesh, run_id: str) -> int:
    return int(_db(mesh, "SELECT count(*) AS n FROM steps WHERE run_id = $1", uuid.UUID(run_id))[0]["n"])
