"""Tools over MCP against the real test server (agentmesh.testing.mcp_server, over stdio and streamable HTTP):
only allowed tools are offered and run, arguments are checked against the tool's schema, calls time out,
results are capped and screened before the model reads them; and the catalog's `mcp:` field is validated."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from agentmesh.agent import ToolOutcome
from agentmesh.catalog import CatalogError, McpServer, load_catalog
from agentmesh.mcp_tools import WITHHELD_INJECTION, CombinedToolbox, McpToolbox, Verdict
from agentmesh.testing.mcp_server import INJECTION
from tests.mesh import free_port, wait_until

SERVER = ("python", "-m", "agentmesh.testing.mcp_server")


class Screened:
    """A stand-in for the guard: blocks what reads like an injection, and remembers what it was shown."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def __call__(self, text: str) -> Verdict:
        self.seen.append(text)
        if "ignore all previous instructions" in text.lower():
            return Verdict(False, "", WITHHELD_INJECTION)
        return Verdict(True, text)


class Builtin:
    def specs(self) -> list[dict[str, object]]:
        return [{"name": "mcp_calculator", "input_schema": {}}, {"name": "calculator", "input_schema": {}}]

    async def run(self, name: str, arguments: dict[str, object]) -> ToolOutcome:
        return ToolOutcome(True, f"builtin {name}")


@pytest.fixture(scope="module")
def screen() -> Screened:
    return Screened()


@pytest.fixture(scope="module")
async def toolbox(screen: Screened) -> AsyncIterator[McpToolbox]:
    box = McpToolbox(
        [
            McpServer(
                name="tools",
                command=SERVER,
                allow=("mcp_calculator", "fetch_page", "slow", "verbose", "not_on_server"),
                timeout_s=1.0,
                max_result_chars=100,
            )
        ],
        screen,
    )
    await box.start()
    try:
        yield box
    finally:
        await box.close()


async def test_only_allowed_tools_that_the_server_lists_are_offered(toolbox: McpToolbox) -> None:
    names = [s["name"] for s in toolbox.specs()]
    assert names == ["mcp_calculator", "fetch_page", "slow", "verbose"]  # mcp_clock is not allowed
    calc = toolbox.specs()[0]
    assert calc["input_schema"]["required"] == ["expression"] and "arithmetic" in calc["description"]


async def test_a_call_end_to_end(toolbox: McpToolbox, screen: Screened) -> None:
    outcome = await toolbox.run("mcp_calculator", {"expression": "17*23"})
    assert outcome == ToolOutcome(True, "17*23 = 391")
    assert screen.seen[-1] == "17*23 = 391"


async def test_a_tool_the_catalog_does_not_allow_is_refused_without_a_call(toolbox: McpToolbox) -> None:
    outcome = await toolbox.run("mcp_clock", {})
    assert not outcome.executed and outcome.result.startswith("refused: 'mcp_clock' is not an allowed tool")
    missing = await toolbox.run("not_on_server", {})
    assert not missing.executed and "unavailable" in missing.result


async def test_arguments_are_checked_against_the_schema_before_the_call(toolbox: McpToolbox) -> None:
    wrong_type = await toolbox.run("mcp_calculator", {"expression": 17})
    assert not wrong_type.executed and "invalid arguments for mcp_calculator: expression:" in wrong_type.result
    missing = await toolbox.run("mcp_calculator", {})
    assert not missing.executed and "'expression' is a required property" in missing.result


async def test_a_slow_call_times_out_and_the_session_still_works(toolbox: McpToolbox) -> None:
    outcome = await toolbox.run("slow", {"seconds": 30})
    assert not outcome.executed and "did not answer within 1.0 s" in outcome.result
    assert (await toolbox.run("mcp_calculator", {"expression": "1+1"})).result == "1+1 = 2"


async def test_a_result_is_cut_to_the_cap_before_the_screen_sees_it(toolbox: McpToolbox, screen: Screened) -> None:
    outcome = await toolbox.run("verbose", {"chars": 5000})
    assert outcome.executed and outcome.result == "x" * 100 + "\n[cut: 4900 more characters]"
    assert screen.seen[-1] == outcome.result


async def test_a_result_carrying_an_injection_is_withheld(toolbox: McpToolbox, screen: Screened) -> None:
    outcome = await toolbox.run("fetch_page", {"url": "https://example.com/weather"})
    assert outcome == ToolOutcome(False, WITHHELD_INJECTION)
    assert screen.seen[-1] == INJECTION[:100] + f"\n[cut: {len(INJECTION) - 100} more characters]"


async def test_mcp_tools_come_first_and_hide_builtins_of_the_same_name(toolbox: McpToolbox) -> None:
    combined = CombinedToolbox(toolbox, Builtin())
    names = [s["name"] for s in combined.specs()]
    assert names[0] == "mcp_calculator" and names.count("mcp_calculator") == 1 and names[-1] == "calculator"
    assert (await combined.run("mcp_calculator", {"expression": "2*3"})).result == "2*3 = 6"
    assert (await combined.run("calculator", {})).result == "builtin calculator"
    refused = await combined.run("rm_rf", {})
    assert not refused.executed and refused.result.startswith("refused: 'rm_rf' is not an allowed tool (allowed: mcp_")


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
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


async def test_streamable_http_server(http_server: str) -> None:
    box = McpToolbox([McpServer(name="web", url=http_server, allow=("mcp_calculator",))], Screened())
    await box.start()
    try:
        assert [s["name"] for s in box.specs()] == ["mcp_calculator"]
        assert (await box.run("mcp_calculator", {"expression": "6*7"})).result == "6*7 = 42"
        assert not (await box.run("verbose", {"chars": 1})).executed
    finally:
        await box.close()


# --- the catalog's mcp field ---------------------------------------------------------------------------------------


def refused(tmp_path: Path, text: str) -> str:
    path = tmp_path / "agents.yaml"
    path.write_text(text)
    with pytest.raises(CatalogError) as caught:
        load_catalog(path)
    return caught.value.message


def test_a_shipped_agent_gets_mcp_servers_and_keeps_its_command(tmp_path: Path) -> None:
    path = tmp_path / "agents.yaml"
    path.write_text(
        "agents:\n  - name: executor\n    tools: false\n    mcp:\n"
        "      - {name: tools, command: [python, -m, x], allow: [mcp_calculator], timeout_s: 3}\n"
    )
    executor = load_catalog(path).get("executor")
    assert executor is not None and executor.command is not None and "serve" in executor.command
    assert not executor.tools and executor.mcp[0].allow == ("mcp_calculator",) and executor.mcp[0].timeout_s == 3
    assert executor.mcp[0].max_result_chars == 8000 and "calculator" in executor.description


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        ("{name: t, allow: [a]}", "exactly one of command"),
        ("{name: t, command: [x], url: 'http://h/mcp', allow: [a]}", "exactly one of command"),
        ("{name: t, command: [x]}", "mcp.0.allow: Field required"),
        ("{name: t, command: [x], allow: []}", "mcp.0.allow:"),
        ("{name: t, url: 'ftp://h', allow: [a]}", "mcp.0.url:"),
        ("{name: t, command: [x], allow: [a], timeout: 3}", "mcp.0.timeout: unknown key"),
        ("{name: t, command: [x], allow: [a], max_result_chars: 0}", "mcp.0.max_result_chars:"),
    ],
)
def test_bad_mcp_servers_are_refused_naming_entry_and_field(tmp_path: Path, server: str, expected: str) -> None:
    message = refused(tmp_path, f"agents:\n  - {{name: tr, description: d, command: [x], mcp: [{server}]}}\n")
    assert "agents[0] (tr)" in message and expected in message


def test_mcp_is_refused_on_an_address_agent_and_for_clashing_tools(tmp_path: Path) -> None:
    message = refused(
        tmp_path,
        "agents:\n  - {name: tr, description: d, address: 'h:1', mcp: [{name: t, command: [x], allow: [a]}]}\n",
    )
    assert "agents[0] (tr)" in message and "mcp is for agents agentmesh serves" in message
    two = "[{name: t, command: [x], allow: [a]}, {name: u, command: [y], allow: [a]}]"
    message = refused(tmp_path, f"agents:\n  - {{name: tr, description: d, command: [x], mcp: {two}}}\n")
    assert "allow a tool of the same name" in message


# --- mTLS: an agent with MCP tools reaches the guard, and only the guard ------------------------------------------


def test_with_mtls_the_internal_listener_admits_mcp_agents_for_the_guard_check_only(tmp_path: Path) -> None:
    import yaml

    from agentmesh.gateway import render_envoy_config
    from agentmesh.gateway.render import GatewayTLS, guard_callers, local_spec
    from agentmesh.rpc import generate_certs

    path = tmp_path / "agents.yaml"
    path.write_text("agents:\n  - name: executor\n    mcp: [{name: t, command: [x], allow: [a]}]\n")
    catalog = load_catalog(path)
    assert guard_callers(catalog) == ("executor",) and guard_callers(load_catalog(None)) == ()
    generate_certs(tmp_path / "tls", ["gateway", "supervisor", "executor"])
    ports = {"supervisor": [1], "researcher": [2], "analyst": [3], "executor": [4], "guard": [5]}
    text = render_envoy_config(local_spec(ports=ports, catalog=catalog, tls=GatewayTLS.in_dir(tmp_path / "tls")))
    internal = next(x for x in yaml.safe_load(text)["static_resources"]["listeners"] if x["name"] == "internal")
    chain = internal["filter_chains"][0]
    sans = chain["transport_socket"]["typed_config"]["common_tls_context"]["validation_context"]
    assert [m["matcher"]["exact"] for m in sans["match_typed_subject_alt_names"]] == ["supervisor", "executor"]
    filters = chain["filters"][0]["typed_config"]["http_filters"]
    policies = next(f for f in filters if f["name"] == "envoy.filters.http.rbac")["typed_config"]["rules"]["policies"]
    assert policies["supervisor"]["permissions"] == [{"any": True}]
    tool_results = policies["tool-results"]
    assert tool_results["principals"] == [{"authenticated": {"principal_name": {"exact": "executor"}}}]
    rules = tool_results["permissions"][0]["and_rules"]["rules"]
    assert rules[0] == {"url_path": {"path": {"exact": "/agentmesh.v1.GuardService/Check"}}}
    envoy = Path(sys.executable).parent / "envoy"
    (tmp_path / "envoy.yaml").write_text(text)
    result = subprocess.run(
        [str(envoy), "--mode", "validate", "-c", str(tmp_path / "envoy.yaml"), "-l", "warning"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
