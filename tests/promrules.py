"""Reading deploy/prometheus/alerts.yml and the Grafana dashboard for tests: the rules and panel queries, the
metric names their PromQL selects, and the series names a /metrics exposition can produce (promtool is not
available: promql-parser parses the PromQL)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import promql_parser
import yaml
from prometheus_client.parser import text_string_to_metric_families

ALERTS = Path(__file__).resolve().parents[1] / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "dashboards" / "agentmesh.json"

# The series a family of each type exposes, by suffix (prometheus-client's text format).
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}


def rules(path: Path = ALERTS) -> list[dict[str, Any]]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard_queries(path: Path = DASHBOARD) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target of every panel of a Grafana dashboard."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    return [(p["title"], t["expr"]) for p in doc["panels"] if p["type"] != "row" for t in p["targets"]]


def selected_metrics(expr: str) -> set[str]:
    """Every metric name a PromQL expression selects (raises if the expression does not parse)."""
    names: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def exposed_series(text: str) -> set[str]:
    """Series names the exposition declares, including families that have no sample yet."""
    out: set[str] = set()
    for family in text_string_to_metric_families(text):
        out.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
        out.update(sample.name for sample in family.samples)
    return out
