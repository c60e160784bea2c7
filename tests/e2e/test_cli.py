"""The mesh as a user runs it: `agentmesh up` with no DATABASE_URL (so the embedded Postgres from the
pgserver wheel), then the CLI in another process: ask, continue the thread, trace, keys."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import psutil
import pytest

from agentmesh.v1 import supervisor_pb2, supervisor_pb2_grpc
from tests.mesh import Mesh, start_mesh, stop_mesh


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    m = start_mesh(tmp_path_factory.mktemp("e2e"), None, timeout_s=180)
    try:
        yield m
    finally:
        assert stop_mesh(m.proc) == 0
        # The embedded Postgres stopped with the launcher: no server left on this data dir.
        pgdata = str(m.data_dir / "postgres")
        assert not [p for p in psutil.process_iter(["cmdline"]) if pgdata in " ".join(p.info["cmdline"] or [])]


def cli(mesh: Mesh, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**mesh.env, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "agentmesh", *args], env=env, capture_output=True, text=True, timeout=120, check=check
    )


def test_the_launcher_used_the_embedded_postgres(mesh: Mesh) -> None:
    assert any("postgres: embedded server" in line for line in mesh.lines)
    assert (Path(mesh.data_dir) / "postgres" / "PG_VERSION").read_text().strip() == "16"


def test_ask_streams_the_run_and_prints_answer_usage_and_cost(mesh: Mesh) -> None:
    out = cli(mesh, "ask", "Compare two payment providers and recommend one").stdout
    assert "step 1 agent researcher" in out and "step 3 agent analyst" in out
    assert re.search(r"completed · 2 agent steps · 5 LLM calls · tokens in \d+ out \d+ · cost \$0\.\d+", out)
    thread = re.search(r"thread ([0-9a-f-]{36})", out).group(1)  # type: ignore[union-attr]
    run_id = re.search(r"run ([0-9a-f-]{36})", out).group(1)  # type: ignore[union-attr]

    again = cli(mesh, "ask", "Which one is cheaper?", "--thread", thread).stdout
    assert f"thread {thread}" in again

    tree = cli(mesh, "trace", run_id).stdout
    assert f"run {run_id} completed" in tree
    assert "route supervisor -> researcher" in tree and "agent researcher" in tree and "LLM calls: 1" in tree


def test_keys_create_revoke_and_list(mesh: Mesh) -> None:
    created = cli(mesh, "keys", "create", "--tenant", "acme")
    key = created.stdout.strip()
    key_id = re.search(r"key id (am_[0-9a-f]+)", created.stderr).group(1)  # type: ignore[union-attr]
    assert key.startswith(key_id + "_")
    assert cli(mesh, "keys", "revoke", key_id).stdout.strip() == f"revoked {key_id}"
    listing = cli(mesh, "keys", "list").stdout
    assert key_id in listing and key not in listing  # only ids are shown, never keys
    with grpc.insecure_channel(mesh.gateway) as ch, pytest.raises(grpc.RpcError) as info:
        supervisor_pb2_grpc.SupervisorServiceStub(ch).GetThread(
            supervisor_pb2.GetThreadRequest(thread_id="00000000-0000-4000-8000-000000000000"),
            metadata=mesh.auth(key),
            timeout=10,
        )
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_ask_without_a_mesh_key_says_how_to_get_one(mesh: Mesh, tmp_path: Path) -> None:
    env_dir = {**mesh.env, "AGENTMESH_DATA_DIR": str(tmp_path)}
    r = subprocess.run(
        [sys.executable, "-m", "agentmesh", "ask", "hi"], env=env_dir, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 4 and "no API key" in r.stderr and r.stdout == ""


def test_ask_json_is_ndjson_ending_in_a_summary_and_trace_json_reads_the_run_back(mesh: Mesh) -> None:
    r = cli(mesh, "ask", "--json", "Compare two payment providers and recommend one")
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    *events, last = lines
    assert events[-1]["final"]["reason"] == "FINISH_REASON_COMPLETED"  # field and enum names as over HTTP/JSON
    assert [int(e.get("seq", 0)) for e in events] == list(range(len(events)))
    summary = last["summary"]
    assert (summary["outcome"], summary["exit_code"], summary["events"]) == ("completed", 0, len(events))
    assert summary["run_id"] == events[-1]["run_id"] and r.stderr == ""

    tree = json.loads(cli(mesh, "trace", "--json", summary["run_id"]).stdout)
    assert tree["id"] == summary["run_id"] and tree["status"] == "completed"
    assert tree["llm_calls"] == int(events[-1]["final"]["usage"]["llm_calls"]) == 5
    assert [s["agent"] for s in tree["steps"] if s["kind"] == "agent"] == ["researcher", "analyst"]
    assert sum(len(s["calls"]) for s in tree["steps"]) == 5


def test_keys_list_and_budget_show_as_json(mesh: Mesh) -> None:
    keys = json.loads(cli(mesh, "keys", "list", "--json").stdout)
    dev = [k for k in keys if k["tenant"] == "dev" and k["revoked_at"] is None]
    assert dev and all(set(k) == {"id", "tenant", "label", "created_at", "revoked_at"} for k in keys)
    assert mesh.key.startswith(dev[0]["id"] + "_") and mesh.key not in json.dumps(keys)

    cli(mesh, "budget", "set", "--tenant", "json-co", "--tokens", "5000")
    budget = json.loads(cli(mesh, "budget", "show", "--tenant", "json-co", "--json").stdout)
    assert budget["tenant"] == "json-co" and budget["token_limit"] == 5000 and budget["tokens"] == 0
    assert 0 < budget["resets_in_s"] <= 86400


def test_failures_exit_with_documented_codes_and_print_only_to_stderr(mesh: Mesh) -> None:
    refused = cli(mesh, "ask", "--key", "am_00000000_wrong", "hi", check=False)
    assert refused.returncode == 4 and "UNAUTHENTICATED" in refused.stderr and refused.stdout == ""
    missing = cli(mesh, "trace", "00000000-0000-4000-8000-000000000000", check=False)
    assert missing.returncode == 5 and "not found" in missing.stderr and missing.stdout == ""
    revoke = cli(mesh, "keys", "revoke", "am_ffffffff", check=False)
    assert revoke.returncode == 5 and "no active key" in revoke.stderr
    prune = cli(mesh, "db", "prune", "--older-than", "3650d")
    assert prune.stdout.startswith("deleted ") and prune.stderr == ""  # the spinner draws only on a terminal
