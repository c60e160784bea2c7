"""deploy/prometheus: the alert rules parse (YAML and PromQL), carry the seed's table, and name metrics that the
code exports (the registry a process builds, rendered as /metrics renders it). The integration test checks the
same names against a live mesh."""

from __future__ import annotations

from pathlib import Path

import yaml
from prometheus_client import generate_latest

from agentmesh.llm import LLMClient
from agentmesh.services.supervisor.observe import RunObserver
from agentmesh.settings import Settings
from agentmesh.telemetry import setup_telemetry
from tests.promrules import ALERTS, exposed_series, rules, selected_metrics

PROMETHEUS = ALERTS.parent / "prometheus.yml"


def test_every_rule_parses_and_has_a_severity_and_a_summary() -> None:
    found = rules()
    assert found
    for rule in found:
        assert rule["alert"] and rule["expr"]
        assert selected_metrics(rule["expr"]), f"{rule['alert']} selects no metric"
        assert rule["labels"]["severity"] in {"page", "review"}
        assert rule["annotations"]["summary"]


def test_the_seed_alert_table_is_there_with_its_severities() -> None:
    by_name = {r["alert"]: r for r in rules()}
    expected = {
        "AgentmeshErrorRateHigh": ("page", "> 0.05"),
        "AgentmeshLatencyP99High": ("page", "> 30"),
        "AgentmeshLLMCircuitBreakerOpen": ("page", "agentmesh_llm_breaker_state"),
        "AgentmeshLLMCostHigh": ("review", "> 500"),
        "AgentmeshRunsOverEightIterations": ("review", 'le="8.0"'),
    }
    for name, (severity, fragment) in expected.items():
        assert by_name[name]["labels"]["severity"] == severity
        assert fragment in " ".join(by_name[name]["expr"].split())


def test_rules_name_only_metrics_the_code_exports() -> None:
    telemetry = setup_telemetry("supervisor", Settings(otel_exporter_otlp_endpoint=None))
    telemetry.register_llm(LLMClient(settings=Settings(), instruments=telemetry.llm_instruments()))
    RunObserver(registry=telemetry.registry)
    exposed = exposed_series(generate_latest(telemetry.registry).decode())
    for rule in rules():
        missing = selected_metrics(rule["expr"]) - exposed
        assert not missing, f"{rule['alert']} names metrics nobody exports: {missing}"


def test_prometheus_config_loads_the_rules_and_scrapes_every_service() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    assert config["rule_files"] == [ALERTS.name]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    defaults = Settings.model_fields
    for name in ("supervisor", "researcher", "analyst", "executor", "guard"):
        port = int(defaults[f"{name}_port"].default) + int(defaults["metrics_port_offset"].default)
        assert jobs[name]["dns_sd_configs"][0]["port"] == port
    assert jobs["gateway"]["metrics_path"] == "/stats/prometheus"
    assert Path(ALERTS).exists()
