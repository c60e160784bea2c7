"""The agent catalog: the shipped agents by default, file entries merged over them, bad files refused with a
message naming the entry (index and name) and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentmesh.catalog import CatalogError, agent_card, default_catalog, load_catalog, parse_address
from agentmesh.settings import Settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agents.yaml"
    path.write_text(text)
    return path


def refused(tmp_path: Path, text: str) -> str:
    with pytest.raises(CatalogError) as caught:
        load_catalog(write(tmp_path, text))
    return caught.value.message


def test_default_catalog_is_the_shipped_three_on_their_settings_ports() -> None:
    settings = Settings(researcher_port=41000)
    catalog = load_catalog(None, settings)
    assert catalog.names == ("researcher", "analyst", "executor")
    researcher = catalog.get("researcher")
    assert researcher is not None and researcher.launched and researcher.port == 41000
    assert researcher.command is not None and "{port}" in researcher.command
    assert all(e.description for e in catalog)


def test_file_entries_add_agents_and_replace_shipped_ones_in_place(tmp_path: Path) -> None:
    catalog = load_catalog(
        write(
            tmp_path,
            """
agents:
  - name: translator
    description: Translates text between languages.
    address: 127.0.0.1:50070
    timeout_s: 30
  - name: analyst
    description: Our own analyst, run by another team.
    address: analyst.internal:9000
  - name: summarizer
    description: Summarises long texts.
    command: [node, agent.mjs]
    replicas: 2
    max_requests: 8
""",
        )
    )
    assert catalog.names == ("researcher", "analyst", "executor", "translator", "summarizer")
    analyst = catalog.get("analyst")
    assert analyst is not None and not analyst.launched and analyst.host_port == ("analyst.internal", 9000)
    summarizer = catalog.get("summarizer")
    assert summarizer is not None and summarizer.replicas == 2 and summarizer.command == ("node", "agent.mjs")
    assert catalog.timeouts(120.0) == {
        "researcher": 120.0,
        "analyst": 120.0,
        "executor": 120.0,
        "translator": 30.0,
        "summarizer": 120.0,
    }


def test_duplicate_name_is_refused_naming_both_entries(tmp_path: Path) -> None:
    message = refused(
        tmp_path,
        """
agents:
  - {name: translator, description: one, address: "127.0.0.1:1"}
  - {name: translator, description: two, address: "127.0.0.1:2"}
""",
    )
    assert "agents[1] (translator)" in message and "name: duplicate of agents[0]" in message


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "host:port", "::1:5", ":80"])
def test_address_that_does_not_parse_is_refused(tmp_path: Path, address: str) -> None:
    message = refused(tmp_path, f'agents:\n  - {{name: tr, description: d, address: "{address}"}}\n')
    assert "agents[0] (tr)" in message and "address:" in message and "HOST:PORT" in message


@pytest.mark.parametrize(
    "fields",
    ['address: "127.0.0.1:5000", command: [node, a.mjs]', ""],
    ids=["both", "neither"],
)
def test_exactly_one_of_address_and_command(tmp_path: Path, fields: str) -> None:
    sep = ", " if fields else ""
    message = refused(tmp_path, f"agents:\n  - {{name: tr, description: d{sep}{fields}}}\n")
    assert "agents[0] (tr)" in message and "exactly one of address" in message


def test_unknown_key_is_refused_naming_it(tmp_path: Path) -> None:
    message = refused(tmp_path, "agents:\n  - {name: tr, description: d, command: [x], replica: 2}\n")
    assert "agents[0] (tr)" in message and "replica: unknown key" in message


def test_other_field_errors_name_the_field(tmp_path: Path) -> None:
    assert "name:" in refused(tmp_path, "agents:\n  - {name: Bad Name, description: d, command: [x]}\n")
    assert "agents[0] (tr)" in refused(
        tmp_path, "agents:\n  - {name: tr, description: d, address: 'a:1', replicas: 2}\n"
    )
    assert "description:" in refused(tmp_path, "agents:\n  - {name: tr, command: [x]}\n")
    assert "agents[1]" in refused(tmp_path, "agents:\n  - {name: a, description: d, command: [x]}\n  - just text\n")
    assert "expected a mapping" in refused(tmp_path, "- {name: tr}\n")
    assert "not valid YAML" in refused(tmp_path, "agents: [\n")
    with pytest.raises(CatalogError, match="agents file"):
        load_catalog(tmp_path / "missing.yaml")


def test_parse_address_accepts_names_and_ipv6() -> None:
    assert parse_address("translator:50070") == ("translator", 50070)
    assert parse_address("[::1]:50070") == ("::1", 50070)


def test_agent_card_derives_from_the_entry() -> None:
    entry = default_catalog().entries[2]
    card = agent_card(entry, url="127.0.0.1:8081")
    assert card["name"] == "executor" and card["description"] == entry.description
    assert card["skills"][0]["description"] == entry.description and "calculator" in card["skills"][0]["tags"]


def test_the_gateway_renders_one_cluster_per_entry_on_every_target(tmp_path: Path) -> None:
    import yaml

    from agentmesh.gateway import render_envoy_config
    from agentmesh.gateway.render import compose_spec, k8s_spec, local_spec

    catalog = load_catalog(
        write(
            tmp_path,
            """
agents:
  - {name: translator, description: d, address: "10.0.0.7:50070", timeout_s: 20}
  - {name: far_away, description: d, address: "agents.example:9000"}
  - {name: sum_mer, description: d, command: [node, a.mjs], max_requests: 7}
""",
        )
    )
    wanted = ["supervisor", "researcher", "analyst", "executor", "translator", "far_away", "sum_mer", "guard"]
    specs = {
        "local": local_spec(
            ports={"supervisor": [1], "guard": [2], **{e.name: [e.port or 3] for e in catalog if e.launched}},
            addresses={e.name: e.host_port for e in catalog if e.address},
            catalog=catalog,
        ),
        "compose": compose_spec(catalog),
        "k8s": k8s_spec("ns", catalog),
    }
    for target, spec in specs.items():
        config = yaml.safe_load(render_envoy_config(spec))
        clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
        assert [n for n in clusters if n in wanted] == wanted, target
        assert clusters["translator"]["type"] == "STATIC" and clusters["far_away"]["type"] == "STRICT_DNS"
        internal = next(x for x in config["static_resources"]["listeners"] if x["name"] == "internal")
        hcm = internal["filter_chains"][0]["filters"][0]["typed_config"]
        routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
        translator = next(
            r for r in routes if r["match"].get("headers", [{}])[0].get("string_match") == {"exact": "translator"}
        )
        assert translator["route"]["max_stream_duration"]["max_stream_duration"] == "25s"  # timeout_s + 5
    k8s = {c["name"]: c for c in yaml.safe_load(render_envoy_config(specs["k8s"]))["static_resources"]["clusters"]}
    host = k8s["sum_mer"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert host["socket_address"] == {"address": "sum-mer-headless.ns.svc.cluster.local", "port_value": 50060}
    assert k8s["sum_mer"]["circuit_breakers"]["thresholds"][0]["max_requests"] == 7
