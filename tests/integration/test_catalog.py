"""Agents from a catalog file joining a real mesh with no code change: a Python gRPC server this test starts on a
port it chose (an address entry), the Node agent of examples/node-agent launched by `agentmesh up` (a command
entry), and an address entry nobody serves. The router sends each fitting conversation to its agent, skips the
agent that is down, and `agentmesh agents list` shows them all as the gateway sees them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health, health_pb2_grpc

from agentmesh.v1 import agent_pb2, agent_pb2_grpc, supervisor_pb2, supervisor_pb2_grpc, usage_pb2
from tests.mesh import Mesh, free_port, start_mesh, stop_mesh, wait_until

ROOT = Path(__file__).resolve().parents[2]
NODE_AGENT = ROOT / "examples" / "node-agent"
NPM, NODE = shutil.which("npm"), shutil.which("node")
TRANSLATED = "Bonjour, ceci est la traduction."


class Translator(agent_pb2_grpc.AgentServiceServicer):
    """Not part of agentmesh: a plain grpcio server, as another team would write it."""

    def __init__(self) -> None:
        self.tasks: list[str] = []

    def Act(self, request: agent_pb2.ActRequest, context: grpc.ServicerContext) -> agent_pb2.ActResponse:
        self.tasks.append(request.task)
        return agent_pb2.ActResponse(
            agent="translator",
            output=f"{TRANSLATED} (French)",
            usage=usage_pb2.Usage(input_tokens=0, output_tokens=0, llm_calls=0),
            model="dictionary",
        )


@pytest.fixture(scope="module")
def translator() -> Iterator[tuple[Translator, int]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer = Translator()
    agent_pb2_grpc.add_AgentServiceServicer_to_server(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield servicer, port
    finally:
        server.stop(1)


@pytest.fixture(scope="module")
def node_ready() -> bool:
    if NPM is None or NODE is None:
        return False
    subprocess.run(
        [NPM, "ci", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"],
        cwd=NODE_AGENT,
        check=True,
        timeout=180,
        capture_output=True,
    )
    return True


@pytest.fixture(scope="module")
def catalog_mesh(
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    translator: tuple[Translator, int],
    node_ready: bool,
) -> Iterator[Mesh]:
    tmp = tmp_path_factory.mktemp("catalog")
    entries = [
        {
            "name": "translator",
            "description": "Translates text between languages; give it the text and the target language.",
            "address": f"127.0.0.1:{translator[1]}",
            "timeout_s": 20,
        },
        # Nobody listens here: the gateway's health checks fail, so the router must never pick it.
        {
            "name": "forecaster",
            "description": "Forecasts the weather for a city.",
            "address": f"127.0.0.1:{free_port()}",
        },
    ]
    if node_ready:
        entries.append(
            {
                "name": "summarizer",
                "description": "Summarises long texts into a few sentences.",
                "command": ["node", str(NODE_AGENT / "agent.mjs")],
                "replicas": 2,
            }
        )
    catalog = tmp / "agents.yaml"
    catalog.write_text(json.dumps({"agents": entries}))  # JSON is YAML
    mesh = start_mesh(tmp / "data", database_url, up_args=["--agents", str(catalog)])
    try:
        yield mesh
    finally:
        assert stop_mesh(mesh.proc) == 0, "\n".join(mesh.lines[-20:])


def run(mesh: Mesh, message: str) -> list[supervisor_pb2.RunEvent]:
    with grpc.insecure_channel(mesh.gateway) as channel:
        stub = supervisor_pb2_grpc.SupervisorServiceStub(channel)
        return list(stub.Run(supervisor_pb2.RunRequest(message=message), metadata=mesh.auth(), timeout=60))


def acted(events: list[supervisor_pb2.RunEvent]) -> list[str]:
    return [
        e.step_finished.agent
        for e in events
        if e.WhichOneof("event") == "step_finished" and e.step_finished.kind == supervisor_pb2.STEP_KIND_AGENT
    ]


def agents_list(mesh: Mesh, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentmesh", "agents", "list", *args],
        env={k: v for k, v in mesh.env.items() if k != "AGENTMESH_AGENTS_FILE"},  # found through up's data dir
        capture_output=True,
        text=True,
        timeout=30,
    )


async def route_steps(mesh: Mesh, run_id: str) -> list[dict[str, object]]:
    conn = await asyncpg.connect(mesh.env["DATABASE_URL"])
    try:
        rows = await conn.fetch("SELECT result FROM steps WHERE run_id = $1 AND kind = 'route' ORDER BY idx", run_id)
    finally:
        await conn.close()
    return [json.loads(r["result"]) for r in rows]


def test_a_python_agent_joins_by_address_and_gets_the_conversation_that_fits_it(
    catalog_mesh: Mesh, translator: tuple[Translator, int]
) -> None:
    events = run(catalog_mesh, "Translate 'good morning, this is the translation' into French")
    assert acted(events) == ["translator"]
    assert translator[0].tasks and "good morning" in translator[0].tasks[-1]
    final = events[-1].final
    assert final.reason == supervisor_pb2.FINISH_REASON_COMPLETED and TRANSLATED in final.answer


def test_the_node_agent_launched_from_a_command_entry_answers(catalog_mesh: Mesh, node_ready: bool) -> None:
    if not node_ready:
        pytest.skip("npm/node not installed: the Node agent cannot run")
    text = "Summarise this text: Envoy routes every call. The supervisor never talks to agents directly. More follows."
    events = run(catalog_mesh, text)
    assert acted(events) == ["summarizer"]
    answer = events[-1].final.answer
    assert answer.startswith("Summary (summarizer):") and "Envoy routes every call." in answer
    assert "More follows" not in answer  # two sentences, from the Node agent's own logic


async def test_an_agent_that_is_down_is_skipped_and_the_run_finishes(catalog_mesh: Mesh) -> None:
    events = run(catalog_mesh, "What weather is forecast for the city of Paris this weekend?")
    assert events[-1].WhichOneof("event") == "final"
    assert "forecaster" not in acted(events) and acted(events) == ["researcher", "analyst"]
    routes = await route_steps(catalog_mesh, events[-1].run_id)
    assert all(r.get("skipped") == ["forecaster"] for r in routes)
    assert all("no healthy host" in str(r.get("note")) and "forecaster" in str(r.get("note")) for r in routes)


def test_agents_list_shows_every_catalog_agent_as_the_gateway_sees_it(catalog_mesh: Mesh, node_ready: bool) -> None:
    run(catalog_mesh, "Translate 'thank you' into French")

    def listed() -> dict[str, dict[str, object]]:
        out = agents_list(catalog_mesh, "--json")
        assert out.returncode == 0, out.stdout + out.stderr
        return {a["name"]: a for a in json.loads(out.stdout)["agents"]}

    # `up` samples the gateway's counters every 5 s: the call above shows within one sample.
    assert wait_until(lambda: (listed()["translator"]["calls"] or 0) >= 1, 20, 1)
    agents = listed()
    expected = {"researcher", "analyst", "executor", "translator", "forecaster"} | (
        {"summarizer"} if node_ready else set()
    )
    assert set(agents) == expected
    assert agents["translator"]["health"] == "healthy" and agents["forecaster"]["health"] == "down"
    assert agents["translator"]["errors"] == 0
    card = agents["translator"]["card"]
    assert card["name"] == "translator" and "Translates" in card["skills"][0]["description"]
    if node_ready:
        assert agents["summarizer"]["replicas"] == 2 and agents["summarizer"]["hosts"] == 2
    table = agents_list(catalog_mesh).stdout
    assert all(name in table for name in expected)
    assert [line.split()[1] for line in table.splitlines() if line.startswith("forecaster")] == ["down"]


def test_a_bad_catalog_stops_up_before_anything_starts(tmp_path: Path) -> None:
    catalog = tmp_path / "agents.yaml"
    catalog.write_text("agents:\n  - {name: tr, description: d, address: '127.0.0.1:1', command: [x]}\n")
    out = subprocess.run(
        [sys.executable, "-m", "agentmesh", "up", "--agents", str(catalog)],
        env={"PATH": "/usr/bin:/bin", "AGENTMESH_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": ":".join(sys.path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "agents[0] (tr)" in out.stdout and "exactly one of address" in out.stdout
    assert not (tmp_path / "data" / "logs").exists()  # nothing was started
