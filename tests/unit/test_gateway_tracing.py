"""The gateway's tracing: with an OTLP endpoint, both listeners trace with Envoy's OpenTelemetry tracer and
export to a collector cluster, in the protocol the services use; without one, no tracing config at all.
Every rendered config is checked by `envoy --mode validate`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentmesh.gateway import compose_spec, local_spec, render_envoy_config
from agentmesh.gateway.render import OtlpCollector

ENVOY = Path(sys.executable).parent / "envoy"
PORTS = {"supervisor": [50051], "guard": [50055], "researcher": [50052]}


def _hcms(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        lst["name"]: lst["filter_chains"][0]["filters"][0]["typed_config"]
        for lst in config["static_resources"]["listeners"]
        if lst["name"] in ("public", "internal")
    }


def _validate(text: str, tmp_path: Path) -> None:
    path = tmp_path / "envoy.yaml"
    path.write_text(text)
    result = subprocess.run(
        [str(ENVOY), "--mode", "validate", "-c", str(path), "--disable-hot-restart"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("endpoint", "protocol", "port"),
    [
        ("http://127.0.0.1:4317", "grpc", 4317),
        ("http://collector.local:4318/", "http/protobuf", 4318),
        ("http://localhost", "grpc", 4317),
    ],
)
def test_both_listeners_trace_to_the_services_endpoint(endpoint: str, protocol: str, port: int, tmp_path: Path) -> None:
    otlp = OtlpCollector.from_endpoint(endpoint, protocol)
    assert otlp is not None and otlp.port == port
    text = render_envoy_config(local_spec(ports=PORTS, otlp=otlp))
    config = yaml.safe_load(text)
    for name, hcm in _hcms(config).items():
        tracer = hcm["tracing"]["provider"]
        assert tracer["name"] == "envoy.tracers.opentelemetry", name
        cfg = tracer["typed_config"]
        assert cfg["service_name"] == "agentmesh-gateway"
        if protocol == "grpc":
            assert cfg["grpc_service"]["envoy_grpc"]["cluster_name"] == "opentelemetry_collector"
        else:
            assert cfg["http_service"]["http_uri"]["uri"] == f"http://{otlp.host}:{port}/v1/traces"
    (cluster,) = [c for c in config["static_resources"]["clusters"] if c["name"] == "opentelemetry_collector"]
    address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert (address["address"], address["port_value"]) == (otlp.host, port)
    _validate(text, tmp_path)


def test_the_gateway_samples_at_the_services_ratio() -> None:
    def pct(sampler: str, arg: float | None = None) -> float:
        otlp = OtlpCollector.from_endpoint("http://127.0.0.1:4317", "grpc", sampler=sampler, sampler_arg=arg)
        assert otlp is not None
        config = yaml.safe_load(render_envoy_config(local_spec(ports=PORTS, otlp=otlp)))
        (value,) = {hcm["tracing"]["random_sampling"]["value"] for hcm in _hcms(config).values()}
        return float(value)

    assert pct("parentbased_always_on") == 100.0
    assert pct("parentbased_traceidratio", 0.1) == 10.0
    assert pct("traceidratio") == 100.0
    assert pct("always_off") == 0.0


def test_no_endpoint_no_tracing_and_https_is_not_rendered() -> None:
    assert OtlpCollector.from_endpoint(None, "grpc") is None
    assert OtlpCollector.from_endpoint("https://otlp.example.com", "grpc") is None  # the cluster speaks plaintext
    config = yaml.safe_load(render_envoy_config(local_spec(ports=PORTS)))
    assert all("tracing" not in hcm for hcm in _hcms(config).values())
    assert "opentelemetry_collector" not in {c["name"] for c in config["static_resources"]["clusters"]}


def test_compose_traces_to_jaeger(tmp_path: Path) -> None:
    text = render_envoy_config(compose_spec())
    config = yaml.safe_load(text)
    assert all("tracing" in hcm for hcm in _hcms(config).values())
    _validate(text, tmp_path)
