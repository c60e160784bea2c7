"""Issue 8 through the real gateway: who may call, tenant isolation (also against forged identity headers),
input limits, thread and run limits, daily budgets, mTLS between the gateway and the services, secrets kept
out of output and logs, and a bounded property-based fuzz of every public RPC.

One mesh for the module, with mTLS on and small limits so each can be reached quickly; the DSN carries a
password (the test Postgres trusts local connections, so any password works) so the secrets check has one."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import grpc
import psutil
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from agentmesh.db import KeyStore, create_pool
from agentmesh.rpc import generate_certs
from agentmesh.services.supervisor.budgets import TenantBudgets
from agentmesh.v1 import guard_pb2, guard_pb2_grpc, supervisor_pb2, supervisor_pb2_grpc
from tests.integration.fuzz import fuzz_public_rpcs
from tests.mesh import Mesh, start_mesh, stop_mesh

QUESTION = "Compare two payment providers and recommend one"
UNKNOWN = "00000000-0000-4000-8000-000000000000"
DB_SECRET = "s3cretpw-issue8"
T = TypeVar("T")
LIMITS = {
    "AGENTMESH_KEY_CACHE_TTL_S": "1",  # revocation shows within a second (default 30 s)
    "AGENTMESH_MAX_THREAD_MESSAGES": "4",  # two runs fill a thread
    "AGENTMESH_MAX_MESSAGE_CHARS": "2000",  # the setting, below the proto's 32,000 ceiling
    # ~0.1-0.3 s for a whole run here; the wall-time test slows each LLM call to 1.2 s to cross it.
    "AGENTMESH_MAX_RUN_DURATION_S": "3",
    # The fuzzer makes ~130 calls a second with one key: paced at the default 20/s, most would stop at the rate
    # limit instead of reaching the validators it is there to probe (tests/unit/test_tenancy.py covers the rate).
    "AGENTMESH_KEY_RATE_PER_S": "0",
}


def _with_password(dsn: str) -> str:
    """The test DSN with a password in it (kept if it already has one)."""
    parts = urlsplit(dsn)
    if parts.password:
        return dsn
    _, _, host = parts.netloc.rpartition("@")  # also the embedded server's `postgres:@/db?host=SOCKET` form
    return urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}:{DB_SECRET}@{host}"))


@pytest.fixture(scope="module")
def mesh(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    data_dir = tmp_path_factory.mktemp("secure")
    m = start_mesh(
        data_dir, _with_password(database_url), extra_env={**LIMITS, "AGENTMESH_TLS_DIR": str(data_dir / "tls")}
    )
    m.env["CHILD_PIDS"] = " ".join(str(p.pid) for p in psutil.Process(m.proc.pid).children())
    try:
        yield m
    finally:
        code = stop_mesh(m.proc)
        assert code == 0, "agentmesh up did not stop cleanly:\n" + "\n".join(m.lines[-20:])


def _cli(mesh: Mesh, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": mesh.env["DATABASE_URL"], "AGENTMESH_DATA_DIR": str(mesh.data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "agentmesh", *args], env=env, capture_output=True, text=True, check=True, timeout=60
    )


def _db(mesh: Mesh, work: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    """Run `work(pool)` against the mesh's database. In-process: a CLI call costs a second or more of imports,
    so the CLI itself is exercised once per command and the rest goes straight to the stores."""

    async def go() -> T:
        pool = await create_pool(mesh.env["DATABASE_URL"], min_size=1, max_size=1)
        try:
            return await work(pool)
        finally:
            await pool.close()

    return asyncio.run(go())


def _new_key(mesh: Mesh, tenant: str) -> tuple[str, str]:
    """(key id, key) for a new key of `tenant`; the id is the key's public prefix."""
    return _db(mesh, lambda pool: KeyStore(pool=pool).create(tenant))


def _set_budget(mesh: Mesh, tenant: str, tokens: int) -> None:
    _db(
        mesh,
        lambda pool: TenantBudgets(pool=pool, default_tokens=0, default_usd=0).set(tenant, tokens=tokens, usd=None),
    )


def _md(key: str | None, *extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    return ((("authorization", f"Bearer {key}"),) if key else ()) + extra


def _run(
    channel: grpc.Channel, key: str, message: str = QUESTION, thread_id: str = "", *, resume: str = ""
) -> tuple[list[supervisor_pb2.RunEvent], grpc.RpcError | None]:
    """Every event of a Run (or Resume) stream, and the error that ended it, if any."""
    stub = supervisor_pb2_grpc.SupervisorServiceStub(channel)
    call = (
        stub.Resume(supervisor_pb2.ResumeRequest(run_id=resume), metadata=_md(key), timeout=30)
        if resume
        else stub.Run(supervisor_pb2.RunRequest(message=message, thread_id=thread_id), metadata=_md(key), timeout=30)
    )
    events: list[supervisor_pb2.RunEvent] = []
    try:
        for ev in call:
            events.append(ev)
    except grpc.RpcError as exc:
        return events, exc
    return events, None


def _error_info(err: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert any(d.Unpack(info) for d in status.details)
    return info


def _get_thread(channel: grpc.Channel, md: tuple[tuple[str, str], ...], thread_id: str = UNKNOWN) -> grpc.StatusCode:
    try:
        supervisor_pb2_grpc.SupervisorServiceStub(channel).GetThread(
            supervisor_pb2.GetThreadRequest(thread_id=thread_id), metadata=md, timeout=10
        )
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


# --- who may call ---------------------------------------------------------------------------------------


def test_no_key_wrong_key_and_revoked_keys_are_unauthenticated(mesh: Mesh, channel: grpc.Channel) -> None:
    guard = guard_pb2_grpc.GuardServiceStub(channel)
    for md, words in [
        ((), "missing API key"),
        (_md("am_00000000_not-a-real-key"), "invalid or revoked"),
        ((("authorization", "Basic dXNlcjpwdw=="),), "malformed"),
    ]:
        with pytest.raises(grpc.RpcError) as info:
            guard.Check(guard_pb2.CheckRequest(text="hi"), metadata=md, timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED and words in info.value.details()
        assert _get_thread(channel, md) == grpc.StatusCode.UNAUTHENTICATED
    # A key revoked before its first use is refused at once (nothing cached).
    unused_id, unused = _new_key(mesh, "revoked-early")
    assert "revoked" in _cli(mesh, "keys", "revoke", unused_id).stdout
    assert _get_thread(channel, _md(unused)) == grpc.StatusCode.UNAUTHENTICATED
    # A key in use is cached for AGENTMESH_KEY_CACHE_TTL_S (1 s here, 30 s by default), then refused.
    used_id, used = _new_key(mesh, "revoked-late")
    assert _get_thread(channel, _md(used)) == grpc.StatusCode.NOT_FOUND  # authenticated: the id is unknown
    assert _db(mesh, lambda pool: KeyStore(pool=pool).revoke(used_id))
    time.sleep(1.2)
    assert _get_thread(channel, _md(used)) == grpc.StatusCode.UNAUTHENTICATED


def test_forged_identity_headers_do_not_cross_tenants(mesh: Mesh, channel: grpc.Channel) -> None:
    events, err = _run(channel, mesh.key)
    assert err is None
    thread, run_id = events[-1].thread_id, events[-1].run_id
    _, other = _new_key(mesh, "mallory")
    # Even the real internal token (read from a service's environment) is stripped on the public listener.
    token = psutil.Process(mesh.pids()["supervisor"]).environ()["AGENTMESH_INTERNAL_TOKEN"]
    forged = (("agentmesh-tenant", "dev"), ("agentmesh-internal-token", token))
    assert _get_thread(channel, _md(None, *forged), thread) == grpc.StatusCode.UNAUTHENTICATED
    assert _get_thread(channel, _md(other, *forged), thread) == grpc.StatusCode.NOT_FOUND
    assert _get_thread(channel, _md(other, ("agentmesh-tenant", "dev")), thread) == grpc.StatusCode.NOT_FOUND
    _, err = _run(channel, other, "And which one is cheaper?", thread)
    assert err is not None and err.code() == grpc.StatusCode.NOT_FOUND
    _, err = _run(channel, other, resume=run_id)
    assert err is not None and err.code() == grpc.StatusCode.NOT_FOUND
    # The owner still sees it; and no header lets a client reach an internal service through the public listener.
    assert _get_thread(channel, _md(mesh.key), thread) == grpc.StatusCode.OK
    act = channel.unary_unary("/agentmesh.v1.AgentService/Act")
    with pytest.raises(grpc.RpcError) as info:
        act(b"", metadata=_md(mesh.key, ("agentmesh-upstream", "researcher"), *forged), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED  # no route for it on the public listener


# --- input limits ---------------------------------------------------------------------------------------

RAW_RUN = "/agentmesh.v1.SupervisorService/Run"


@pytest.mark.parametrize(
    ("case", "code", "words"),
    [
        ("blank", grpc.StatusCode.INVALID_ARGUMENT, "RunRequest.message: must contain a non-whitespace character"),
        ("nul", grpc.StatusCode.INVALID_ARGUMENT, "RunRequest.message: must not contain NUL characters"),
        ("over_setting", grpc.StatusCode.INVALID_ARGUMENT, "over the limit of 2000 (AGENTMESH_MAX_MESSAGE_CHARS)"),
        ("over_proto", grpc.StatusCode.INVALID_ARGUMENT, "must be at most 32000 characters [string.max_len]"),
        ("thread_id", grpc.StatusCode.INVALID_ARGUMENT, "RunRequest.thread_id: must be a valid UUID"),
        ("run_id", grpc.StatusCode.INVALID_ARGUMENT, "ResumeRequest.run_id: must be a valid UUID"),
        ("utf8", grpc.StatusCode.INVALID_ARGUMENT, "RunRequest.message: not valid UTF-8"),
        ("garbage", grpc.StatusCode.INVALID_ARGUMENT, "not a valid RunRequest"),
        ("guard_text", grpc.StatusCode.INVALID_ARGUMENT, "CheckRequest.text: must be at most 100000 characters"),
        ("over_4mib", grpc.StatusCode.RESOURCE_EXHAUSTED, "larger than max"),
    ],
)
def test_each_input_limit_answers_with_its_name(
    mesh: Mesh, channel: grpc.Channel, case: str, code: grpc.StatusCode, words: str
) -> None:
    sup = supervisor_pb2_grpc.SupervisorServiceStub(channel)
    md = _md(mesh.key)

    def run(**fields: str) -> Callable[[], object]:
        return lambda: list(sup.Run(supervisor_pb2.RunRequest(**fields), metadata=md, timeout=10))

    def raw(data: bytes) -> Callable[[], object]:
        return lambda: list(channel.unary_stream(RAW_RUN)(data, metadata=md, timeout=10))

    calls: dict[str, Callable[[], object]] = {
        "blank": run(message=" \n "),
        "nul": run(message="hello\x00world"),
        "over_setting": run(message="x" * 2001),
        "over_proto": run(message="x" * 32_001),
        "thread_id": run(message="hi", thread_id="../../etc/passwd"),
        "run_id": lambda: list(
            sup.Resume(supervisor_pb2.ResumeRequest(run_id="1; DROP TABLE runs"), metadata=md, timeout=10)
        ),
        "utf8": raw(b"\x0a\x04ab\xff\xfe"),  # field 1, four bytes that are not UTF-8
        "garbage": raw(b"\xff" * 16),
        "guard_text": lambda: guard_pb2_grpc.GuardServiceStub(channel).Check(
            guard_pb2.CheckRequest(text="a" * 100_001), metadata=md, timeout=10
        ),
        "over_4mib": run(message="x" * (5 * 1024 * 1024)),
    }
    with pytest.raises(grpc.RpcError) as info:
        calls[case]()
    assert info.value.code() == code
    assert words in info.value.details()


def test_a_full_thread_answers_resource_exhausted(mesh: Mesh, channel: grpc.Channel) -> None:
    first, _ = _run(channel, mesh.key)
    thread = first[-1].thread_id
    second, err = _run(channel, mesh.key, "And which one is cheaper?", thread)  # 4 messages: the limit
    assert err is None and second[-1].WhichOneof("event") == "final"
    _, err = _run(channel, mesh.key, "And which one is faster?", thread)
    assert err is not None and err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "AGENTMESH_MAX_THREAD_MESSAGES" in err.details() and _error_info(err).reason == "THREAD_FULL"
    stub = supervisor_pb2_grpc.SupervisorServiceStub(channel)
    assert len(stub.GetThread(supervisor_pb2.GetThreadRequest(thread_id=thread), metadata=_md(mesh.key)).messages) == 4


def test_a_run_past_its_wall_time_stops_and_resumes(mesh: Mesh, channel: grpc.Channel) -> None:
    mesh.set_faults(latency_ms=1200)  # route, researcher, route: the third call crosses the 3 s limit
    events, err = _run(channel, mesh.key)
    assert err is not None and err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "AGENTMESH_MAX_RUN_DURATION_S" in err.details() and _error_info(err).reason == "RUN_DURATION_EXCEEDED"
    assert events[-1].error.resumable
    mesh.reset_sim()
    resumed, err = _run(channel, mesh.key, resume=events[-1].run_id)
    assert err is None and resumed[-1].WhichOneof("event") == "final"


# --- budgets --------------------------------------------------------------------------------------------


def test_a_daily_budget_stops_runs_before_and_during_and_a_raise_resumes_them(
    mesh: Mesh, channel: grpc.Channel
) -> None:
    tenant = f"budget-{uuid.uuid4().hex[:6]}"
    _, key = _new_key(mesh, tenant)
    first, err = _run(channel, key)
    assert err is None
    spent = first[-1].final.usage.input_tokens + first[-1].final.usage.output_tokens
    # Spent exactly the budget: the next run is refused before it starts, and calls nothing.
    _cli(mesh, "budget", "set", "--tenant", tenant, "--tokens", str(spent))
    mesh.reset_sim()
    events, err = _run(channel, key)
    assert err is not None and err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and not events
    assert "daily token budget" in err.details() and "AGENTMESH_TENANT_DAILY_TOKENS" in err.details()
    assert _error_info(err).reason == "TENANT_TOKEN_BUDGET_EXHAUSTED"
    assert mesh.sim_stats()["requests_total"] == 0
    # Room for one routing call: the run starts, then stops before its first agent, resumable.
    _set_budget(mesh, tenant, spent + 1)
    events, err = _run(channel, key)
    assert err is not None and err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert events[-1].error.resumable and mesh.sim_stats()["requests_total"] == 1
    # Another tenant cannot resume it; its owner can, once the budget is raised (0: no limit).
    _, other_err = _run(channel, mesh.key, resume=events[-1].run_id)
    assert other_err is not None and other_err.code() == grpc.StatusCode.NOT_FOUND
    out = _cli(mesh, "budget", "set", "--tenant", tenant, "--tokens", "0").stdout
    assert "unlimited" in out
    resumed, err = _run(channel, key, resume=events[-1].run_id)
    assert err is None and resumed[-1].WhichOneof("event") == "final"


# --- mTLS between the gateway and the services -----------------------------------------------------------


def _health(addr: str, credentials: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    options = [("grpc.ssl_target_name_override", "supervisor")]
    with grpc.secure_channel(addr, credentials, options=options) if credentials else grpc.insecure_channel(addr) as ch:
        try:
            health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=3)
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def test_with_mtls_only_holders_of_a_mesh_certificate_reach_a_service(
    mesh: Mesh, channel: grpc.Channel, tmp_path: Path
) -> None:
    tls = mesh.data_dir / "tls"
    ca = (tls / "ca.crt").read_bytes()
    supervisor = f"127.0.0.1:{mesh.ports['supervisor']}"
    generate_certs(tmp_path, ["intruder"])  # a CA of its own, unknown to the mesh
    attempts = {
        "plaintext": None,
        "TLS without a client certificate": grpc.ssl_channel_credentials(root_certificates=ca),
        "a certificate from another CA": grpc.ssl_channel_credentials(
            root_certificates=ca,
            private_key=(tmp_path / "intruder.key").read_bytes(),
            certificate_chain=(tmp_path / "intruder.crt").read_bytes(),
        ),
    }
    for what, creds in attempts.items():
        assert _health(supervisor, creds) == grpc.StatusCode.UNAVAILABLE, what
    # The internal listener of the gateway is closed to plaintext callers too.
    assert _health(mesh.internal, None) == grpc.StatusCode.UNAVAILABLE
    # The port is alive: a mesh certificate gets through, and so does everything through the gateway.
    mesh_cert = grpc.ssl_channel_credentials(
        root_certificates=ca,
        private_key=(tls / "gateway.key").read_bytes(),
        certificate_chain=(tls / "gateway.crt").read_bytes(),
    )
    assert _health(supervisor, mesh_cert) == grpc.StatusCode.OK
    events, err = _run(channel, mesh.key)
    assert err is None and events[-1].WhichOneof("event") == "final"


# --- fuzz -----------------------------------------------------------------------------------------------
# Kept last but one: it must leave the mesh serving, and the secrets check reads the logs it produced.


def test_fuzzing_every_public_rpc_finds_no_unnamed_error_and_no_crash(mesh: Mesh, channel: grpc.Channel) -> None:
    before = mesh.env["CHILD_PIDS"].split()
    # 400 calls took 3 s on an idle 2-core machine; the time budget bounds a busy one.
    statuses = fuzz_public_rpcs(channel, mesh.key, budget_s=15.0, max_examples=1000)
    assert statuses, "the fuzzer made no call"
    bad = {code for code in statuses if code in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)}
    assert not bad, statuses
    # No process died or was restarted: same pids, all alive, and the launcher reported no exit.
    children = psutil.Process(mesh.proc.pid).children()
    assert sorted(str(p.pid) for p in children) == sorted(before)
    assert all(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in children)
    assert not [line for line in mesh.lines if "exited with code" in line]
    events, err = _run(channel, mesh.key)
    assert err is None and events[-1].WhichOneof("event") == "final"


# --- secrets --------------------------------------------------------------------------------------------


def test_secrets_never_reach_output_or_logs(mesh: Mesh) -> None:
    token = psutil.Process(mesh.pids()["supervisor"]).environ()["AGENTMESH_INTERNAL_TOKEN"]
    password = urlsplit(mesh.env["DATABASE_URL"]).password
    assert password
    output = "\n".join(mesh.lines)
    logs: dict[str, str] = {p.name: p.read_text(errors="replace") for p in (mesh.data_dir / "logs").glob("*")}
    assert logs, "no log files"
    for secret in (password, token):
        assert secret not in output
        assert not [name for name, text in logs.items() if secret in text]
    # The dev key: on its one line of `agentmesh up` output, nowhere else.
    assert [line for line in mesh.lines if mesh.key in line] == [f"dev api key: {mesh.key}"]
    assert not [name for name, text in logs.items() if mesh.key in text]
