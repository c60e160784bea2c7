"""deploy/k8s against the Kubernetes schemas (offline: kubernetes-validate ships them), and the deployments
(k8s manifests, docker-compose.yml, the gateway's rendered configs) naming the same services and ports."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from agentmesh.settings import SERVICES, Settings
from gateway import compose_spec, k8s_spec, render_envoy_config

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
COMPOSE = ROOT / "docker-compose.yml"
# The oldest Kubernetes the manifests promise to work on: grpc probes are GA since 1.27.
K8S_VERSION = "1.29.0"
PORTS = {name: int(Settings.model_fields[f"{name}_port"].default) for name in SERVICES}


def _docs() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":  # kustomize's own config, not a Kubernetes resource
            continue
        out.extend((path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc)
    return out


DOCS = _docs()


def _find(kind: str, name: str) -> dict[str, Any]:
    found = [d for _, d in DOCS if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


@pytest.mark.parametrize(("file", "doc"), DOCS, ids=[f"{f}:{d['kind']}/{d['metadata']['name']}" for f, d in DOCS])
def test_manifest_is_valid_against_the_kubernetes_schema(file: str, doc: dict[str, Any]) -> None:
    # strict: unknown fields (typos such as `readinesProbe`) fail too.
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


def test_the_gateway_configmap_is_what_the_template_renders() -> None:
    spec = importlib.util.spec_from_file_location("gen_gateway_config", K8S / "gen_gateway_config.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert (K8S / "gateway-envoy-config.yaml").read_text() == gen.configmap(), "stale: run `make k8s`"
    mounted = _find("ConfigMap", "gateway-envoy")["data"]["envoy.yaml"]
    assert mounted == render_envoy_config(k8s_spec("agentmesh"))


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_has_deployment_headless_service_and_hpa_on_the_gateways_port(name: str) -> None:
    port = PORTS[name]
    deployment = _find("Deployment", name)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["serve", name]
    assert [p["containerPort"] for p in container["ports"]] == [port]
    assert container["readinessProbe"]["grpc"]["port"] == port
    assert container["livenessProbe"]["grpc"]["port"] == port
    assert {"requests", "limits"} <= set(container["resources"])
    labels = deployment["spec"]["template"]["metadata"]["labels"]

    service = _find("Service", f"{name}-headless")
    assert service["spec"]["clusterIP"] == "None"
    assert [p["port"] for p in service["spec"]["ports"]] == [port]
    assert service["spec"]["selector"].items() <= labels.items()

    hpa = _find("HorizontalPodAutoscaler", name)
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}

    # The gateway's STRICT_DNS cluster for the service points at exactly this Service and port.
    upstream = next(u for u in k8s_spec("agentmesh").upstreams if u.name == name)
    assert upstream.dns and upstream.endpoints == ((f"{name}-headless.agentmesh.svc.cluster.local", port),)


def test_database_url_comes_from_a_secret_and_is_never_inline() -> None:
    for _, doc in DOCS:
        for container in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            for env in container.get("env", []):
                if env["name"] in ("DATABASE_URL", "AGENTMESH_INTERNAL_TOKEN", "ANTHROPIC_API_KEY"):
                    assert "secretKeyRef" in env.get("valueFrom", {}), f"{doc['metadata']['name']}: {env['name']}"
    assert "DATABASE_URL" not in _find("ConfigMap", "agentmesh-env")["data"]


def test_gateway_services_expose_the_listeners_the_config_binds() -> None:
    spec = k8s_spec("agentmesh")
    gateway = _find("Service", "gateway")
    internal = _find("Service", "gateway-internal")
    assert spec.public[1] in [p["port"] for p in gateway["spec"]["ports"]]
    assert spec.internal[1] in [p["port"] for p in internal["spec"]["ports"]]
    env = _find("ConfigMap", "agentmesh-env")["data"]
    assert env["AGENTMESH_GATEWAY_INTERNAL_ADDR"] == f"gateway-internal.agentmesh.svc.cluster.local:{spec.internal[1]}"
    container = _find("Deployment", "gateway")["spec"]["template"]["spec"]["containers"][0]
    assert {spec.public[1], spec.internal[1], spec.metrics[1] if spec.metrics else 0} <= {
        p["containerPort"] for p in container["ports"]}


def test_compose_names_the_same_services_and_ports_as_the_gateway() -> None:
    if not COMPOSE.exists():
        pytest.skip("docker-compose.yml is not in the repository yet")
    compose = yaml.safe_load(COMPOSE.read_text())["services"]
    for upstream in compose_spec().upstreams:
        host, port = upstream.endpoints[0]
        assert host == upstream.name and port == PORTS[upstream.name]
        assert upstream.name in compose, f"compose has no service {upstream.name}"
        assert compose[upstream.name]["command"] == ["serve", upstream.name]
        # A service that pins a port in compose must pin the one the gateway dials.
        env = compose[upstream.name].get("environment", {})
        pinned = env.get(f"AGENTMESH_{upstream.name.upper()}_PORT")
        assert pinned in (None, str(port), port)
    assert set(SERVICES) <= set(compose)
    assert "--target compose" in " ".join(compose["gateway-config"]["command"])
