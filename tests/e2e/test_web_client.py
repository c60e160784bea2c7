"""gRPC-Web through the gateway with a real gRPC-Web client: clients/web (@connectrpc/connect-web over fetch, what
a browser page would use) run by Node against a live mesh. Envoy's grpc_web filter turns its calls into gRPC on
the same public port; CORS lets a page on another origin make them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from agentmesh.gateway.descriptors import descriptor_set
from agentmesh.v1 import supervisor_pb2, supervisor_pb2_grpc
from tests.mesh import Mesh, start_mesh, stop_mesh

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "web"
NPM = shutil.which("npm")
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(NPM is None or NODE is None, reason="npm/node not installed: the client cannot run")


@pytest.fixture(scope="module")
def descriptors(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # npm ci: exactly the committed package-lock.json; from the npm cache after the first time.
    assert NPM is not None
    subprocess.run(
        [NPM, "ci", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"],
        cwd=CLIENT,
        check=True,
        timeout=120,
        capture_output=True,
    )
    path = tmp_path_factory.mktemp("web") / "agentmesh.binpb"
    path.write_bytes(descriptor_set())
    return path


@pytest.fixture(scope="module")
def mesh(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    m = start_mesh(tmp_path_factory.mktemp("webmesh"), database_url)
    try:
        yield m
    finally:
        assert stop_mesh(m.proc) == 0


def web_client(mesh: Mesh, descriptors: Path, *args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AGENTMESH_API_KEY": key if key is not None else mesh.key,
        "AGENTMESH_GATEWAY_ADDR": mesh.gateway,
        "AGENTMESH_DESCRIPTORS": str(descriptors),
    }
    assert NODE is not None
    return subprocess.run([NODE, "run.mjs", *args], cwd=CLIENT, env=env, capture_output=True, text=True, timeout=90)


def test_grpc_web_run_streams_every_event_and_ends_with_the_final_answer(mesh: Mesh, descriptors: Path) -> None:
    out = web_client(mesh, descriptors, "ask", "Compare two payment providers and recommend one")
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines()]
    assert [int(e.get("seq", 0)) for e in events] == list(range(len(events)))
    assert "final" in events[-1] and not any("final" in e for e in events[:-1])
    assert events[-1]["final"]["reason"] == "FINISH_REASON_COMPLETED"
    # The same run, seen over native gRPC: the answer the client printed is the one stored for its thread.
    with grpc.insecure_channel(mesh.gateway) as ch:
        thread = supervisor_pb2_grpc.SupervisorServiceStub(ch).GetThread(
            supervisor_pb2.GetThreadRequest(thread_id=events[0]["thread_id"]), metadata=mesh.auth(), timeout=10
        )
    assert thread.messages[-1].content == events[-1]["final"]["answer"]


def test_grpc_web_guard_check(mesh: Mesh, descriptors: Path) -> None:
    out = web_client(mesh, descriptors, "guard", "write to bob@example.com")
    assert out.returncode == 0, out.stderr
    reply = json.loads(out.stdout)
    assert (reply["action"], reply["redacted_text"]) == ("ACTION_REDACT", "write to <EMAIL_1>")


def test_grpc_web_bad_key_is_unauthenticated_with_the_reason(mesh: Mesh, descriptors: Path) -> None:
    out = web_client(mesh, descriptors, "ask", "hello", key="am_deadbeef_not-a-real-key")
    assert out.returncode == 1
    assert out.stderr.strip() == "error: Unauthenticated: invalid or revoked API key (reason UNAUTHENTICATED)"


def test_cors_preflight_lets_a_page_on_another_origin_call(mesh: Mesh) -> None:
    req = urllib.request.Request(
        f"http://{mesh.gateway}/agentmesh.v1.SupervisorService/Run",
        method="OPTIONS",
        headers={
            "origin": "https://app.example",
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization,content-type,x-grpc-web",
        },
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["access-control-allow-origin"] == "https://app.example"
        assert "authorization" in resp.headers["access-control-allow-headers"]
        assert resp.headers.get("access-control-allow-credentials") is None  # a key, never a cookie
