"""Tools over MCP in a real mesh: the catalog gives the executor the test MCP server (agentmesh.testing.mcp_server)
over stdio, allowing two of its tools, and the same server over streamable HTTP, allowing its clock; not its
built-in tools. A calculation is made by the MCP calculator, the time by the MCP clock; a page whose text carries
a prompt injection is stopped by the guard before the model reads it. Plaintext and with mTLS."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import grpc
import pytest

from agentmesh.mcp_tools import WITHHELD_INJECTION
from agentmesh.rpc import channel_credentials
from agentmesh.testing.mcp_server import INJECTION
from agentmesh.v1 import agent_pb2, agent_pb2_grpc, guard_pb2, guard_pb2_grpc, supervisor_pb2, supervisor_pb2_grpc
from tests.mesh import Mesh, free_port, start_mesh, stop_mesh, wait_until


def catalog(http_url: str) -> dict[str, object]:
    return {
        "agents": [
            {
                "name": "executor",
                "description": "runs tools (a calculator, a clock, a web page fetcher) when the request needs them.",
                "tools": False,
                "mcp": [
                    {
                        "name": "test-tools",
                        "command": ["python", "-m", "agentmesh.testing.mcp_server"],
                        "allow": ["mcp_calculator", "fetch_page"],
                        "timeout_s": 10,
                        "max_result_chars": 4000,
                    },
                    {"name": "web-tools", "url": http_url, "allow": ["mcp_clock"]},
                ],
            }
        ]
    }


@pytest.fixture(scope="module")
def http_server() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentmesh.testing.mcp_server", "--http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_until(lambda: _listening(port), 20), "the MCP test server did not start"
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(10)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module", params=["plaintext", "mtls"])
def mcp_mesh(
    request: pytest.FixtureRequest, database_url: str, tmp_path_factory: pytest.TempPathFactory, http_server: str
) -> Iterator[Mesh]:
    """With mTLS the executor reaches the guard with its own certificate, which the internal listener admits
    for GuardService/Check alone."""
    tmp = tmp_path_factory.mktemp("mcp")
    path = tmp / "agents.yaml"
    path.write_text(json.dumps(catalog(http_server)))
    env = {"AGENTMESH_TLS_DIR": str(tmp / "tls")} if request.param == "mtls" else {}
    mesh = start_mesh(tmp / "data", database_url, extra_env=env, up_args=["--agents", str(path)])
    try:
        yield mesh
    finally:
        assert stop_mesh(mesh.proc) == 0, "\n".join(mesh.lines[-20:])


def run(mesh: Mesh, message: str) -> list[supervisor_pb2.RunEvent]:
    with grpc.insecure_channel(mesh.gateway) as channel:
        stub = supervisor_pb2_grpc.SupervisorServiceStub(channel)
        return list(stub.Run(supervisor_pb2.RunRequest(message=message), metadata=mesh.auth(), timeout=60))


async def executor_tools(mesh: Mesh, run_id: str) -> list[dict[str, object]]:
    conn = await asyncpg.connect(mesh.env["DATABASE_URL"])
    try:
        row = await conn.fetchval(
            "SELECT result->'tools' FROM steps WHERE run_id = $1 AND agent = 'executor'", uuid.UUID(run_id)
        )
    finally:
        await conn.close()
    assert row is not None, "the executor did not act"
    tools: list[dict[str, object]] = json.loads(row)
    return tools


def executor_output(events: list[supervisor_pb2.RunEvent]) -> str:
    return next(e.step_finished.output for e in events if e.step_finished.agent == "executor")


async def test_a_calculation_is_made_by_the_mcp_calculator(mcp_mesh: Mesh) -> None:
    events = run(mcp_mesh, "Calculate 17*23 and explain the result")
    assert events[-1].final.reason == supervisor_pb2.FINISH_REASON_COMPLETED
    tools = await executor_tools(mcp_mesh, events[-1].run_id)
    # The built-in calculator is not offered (tools: false): the MCP server's answered.
    assert tools == [{"name": "mcp_calculator", "executed": True}]
    assert "The mcp_calculator tool returned: 17*23 = 391" in executor_output(events)


async def test_the_clock_answers_over_streamable_http(mcp_mesh: Mesh) -> None:
    events = run(mcp_mesh, "What time is it now in UTC?")
    tools = await executor_tools(mcp_mesh, events[-1].run_id)
    assert tools == [{"name": "mcp_clock", "executed": True}]
    assert re.search(r"The mcp_clock tool returned: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", executor_output(events))


async def test_a_tool_result_carrying_an_injection_is_stopped(mcp_mesh: Mesh) -> None:
    events = run(mcp_mesh, "Run the fetch page tool on the weather page for Paris")
    assert events[-1].WhichOneof("event") == "final"
    tools = await executor_tools(mcp_mesh, events[-1].run_id)
    assert tools == [{"name": "fetch_page", "executed": False}]
    output = executor_output(events)
    assert f"The fetch_page tool reported an error: {WITHHELD_INJECTION}" in output
    assert "Ignore all previous instructions" not in output
    log = (mcp_mesh.data_dir / "logs" / "executor.log").read_text()
    assert "tool result withheld" in log
    assert all(INJECTION not in e.step_finished.output for e in events if e.WhichOneof("event") == "step_finished")
    assert "Ignore all previous instructions" not in events[-1].final.answer


async def test_with_mtls_the_executor_certificate_reaches_the_guard_check_and_nothing_else(mcp_mesh: Mesh) -> None:
    if "AGENTMESH_TLS_DIR" not in mcp_mesh.env:
        pytest.skip("plaintext mesh: the internal listener checks no certificate")
    tls = Path(mcp_mesh.env["AGENTMESH_TLS_DIR"])
    options = [("grpc.ssl_target_name_override", "gateway")]
    async with grpc.aio.secure_channel(mcp_mesh.internal, channel_credentials(tls, "executor"), options=options) as ch:
        check = guard_pb2_grpc.GuardServiceStub(ch).Check(
            guard_pb2.CheckRequest(text="hello"), metadata=(("agentmesh-upstream", "guard"),), timeout=10
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await check
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED  # admitted by the gateway; no token for the guard
        act = agent_pb2_grpc.AgentServiceStub(ch).Act(
            agent_pb2.ActRequest(task="hi"), metadata=(("agentmesh-upstream", "researcher"),), timeout=10
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await act
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED  # the gateway's RBAC: guard checks only
