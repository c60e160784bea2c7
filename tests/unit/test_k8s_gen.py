"""deploy/k8s/gen_k8s.py (`make k8s`): the shipped agents' manifests and kustomization.yaml are what it generates
for the default catalog, and a catalog file's agents get manifests (or, with a message, none) that agree with the
gateway's clusters and pass the Kubernetes schemas."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import kubernetes_validate
import pytest
import yaml

from agentmesh.catalog import SHIPPED, default_catalog, load_catalog
from agentmesh.cli import _certs as certs
from agentmesh.gateway import k8s_spec
from agentmesh.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
K8S_VERSION = "1.29.0"  # as tests/unit/test_deploy.py


def _gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_k8s", K8S / "gen_k8s.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = gen  # its dataclass looks its module up there
    spec.loader.exec_module(gen)
    return gen


GEN = _gen()
CATALOG = """
agents:
  - {name: translator, description: Translates text., address: "10.0.0.7:50070"}
  - name: sum_mer
    description: Summarises long texts.
    command: [node, agent.mjs, --port, "{port}"]
    image: registry.example.com:5000/team/summarizer:1.2
    port: 50071
  - {name: local_only, description: Runs on a laptop., command: [node, agent.mjs]}
"""


def _catalog(tmp_path: Path) -> Path:
    path = tmp_path / "agents.yaml"
    path.write_text(CATALOG)
    return path


def _docs(text: str) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in yaml.safe_load_all(text) if d}


def test_the_shipped_agents_and_kustomization_are_what_make_k8s_generates() -> None:
    files, skipped = GEN.generate(default_catalog(Settings.model_construct()))
    assert skipped == []
    assert set(files) == {"gateway-envoy-config.yaml", "kustomization.yaml", *(f"{n}.yaml" for n in SHIPPED)}
    for name, text in files.items():
        assert (K8S / name).read_text() == text, f"{name} is stale: run `make k8s`"
    assert GEN.stale(K8S, files) == []
    assert GEN.main(["--check", "--out", str(K8S), "--agents", ""]) == 0


def test_a_catalog_file_gets_manifests_for_the_agents_the_mesh_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "k8s"
    assert GEN.main(["--agents", str(_catalog(tmp_path)), "--out", str(out)]) == 0
    # The address agent is someone else's: a gateway cluster, no manifest. The command agent without an image is
    # left out, and said so.
    assert "local_only: not deployed" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["gateway-envoy-config.yaml", "kustomization.yaml", "sum-mer.yaml", *(f"{n}.yaml" for n in SHIPPED)]
    )
    resources = yaml.safe_load((out / "kustomization.yaml").read_text())["resources"]
    assert resources == [*GEN.BEFORE, "researcher.yaml", "analyst.yaml", "executor.yaml", "sum-mer.yaml", *GEN.AFTER]
    clusters = {c["name"] for c in _config_clusters(out)}
    assert {"translator", "sum_mer", "local_only"} <= clusters

    docs = _docs((out / "sum-mer.yaml").read_text())
    for kind in ("Deployment", "Service", "PodDisruptionBudget"):
        kubernetes_validate.validate(docs[kind], K8S_VERSION, strict=True)
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "registry.example.com:5000/team/summarizer:1.2"
    assert container["command"] == ["node", "agent.mjs", "--port", "50071"] and "args" not in container
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["AGENTMESH_AGENT_PORT"] == "50071" and env["AGENTMESH_TLS_DIR"] == "/etc/agentmesh/tls"
    assert container["readinessProbe"]["tcpSocket"] == {"port": "grpc"}  # no /healthz assumed of a foreign image
    (tls,) = [v for v in pod["volumes"] if v["name"] == "agentmesh-tls"]
    assert {i["key"] for i in tls["secret"]["items"]} == {"ca.crt", "sum_mer.crt", "sum_mer.key"}  # the cluster's SAN
    # The gateway dials exactly this Service and port.
    (upstream,) = [u for u in k8s_spec("agentmesh", load_catalog(_catalog(tmp_path))).upstreams if u.name == "sum_mer"]
    service = docs["Service"]
    assert upstream.endpoints == ((f"{service['metadata']['name']}.agentmesh.svc.cluster.local", 50071),)
    assert service["spec"]["ports"][0]["port"] == 50071
    scaled = docs["ScaledObject"]["spec"]
    assert scaled["scaleTargetRef"]["name"] == docs["Deployment"]["metadata"]["name"] == "sum-mer"
    assert scaled["triggers"] == [{"type": "cpu", "metricType": "Utilization", "metadata": {"value": "70"}}]
    assert "fallback" not in scaled  # KEDA refuses fallback on CPU-only triggers


def _config_clusters(out: Path) -> list[dict[str, Any]]:
    configmap = yaml.safe_load((out / "gateway-envoy-config.yaml").read_text())
    clusters: list[dict[str, Any]] = yaml.safe_load(configmap["data"]["envoy.yaml"])["static_resources"]["clusters"]
    return clusters


def test_a_shipped_agent_on_its_own_image_keeps_the_gateways_port(tmp_path: Path) -> None:
    path = tmp_path / "agents.yaml"
    path.write_text(
        "agents:\n  - {name: researcher, description: d, command: [./research, '{port}'], image: me/research:2}\n"
    )
    files, _ = GEN.generate(load_catalog(path, Settings.model_construct()))
    docs = _docs(files["researcher.yaml"])
    (container,) = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    port = int(Settings.model_fields["researcher_port"].default)
    assert container["command"] == ["./research", str(port)] and container["image"] == "me/research:2"
    assert docs["Service"]["spec"]["ports"][0]["port"] == port


def test_an_agent_replaced_by_an_address_loses_its_manifest(tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    assert GEN.main(["--agents", "", "--out", str(out)]) == 0
    (out / "notes.yaml").write_text("# someone's own file\n")
    path = tmp_path / "agents.yaml"
    path.write_text("agents:\n  - {name: analyst, description: d, address: 'analyst.elsewhere:443'}\n")
    assert GEN.main(["--check", "--agents", str(path), "--out", str(out)]) == 1
    assert GEN.main(["--agents", str(path), "--out", str(out)]) == 0
    assert not (out / "analyst.yaml").exists() and (out / "notes.yaml").exists()  # only what it generated goes
    assert "analyst.yaml" not in yaml.safe_load((out / "kustomization.yaml").read_text())["resources"]
    assert GEN.main(["--check", "--agents", str(path), "--out", str(out)]) == 0


def test_agentmesh_certs_issues_the_certificate_each_generated_pod_mounts(tmp_path: Path) -> None:
    """A pod does not start without every Secret item it projects: `agentmesh certs --agents FILE` writes them."""
    catalog = _catalog(tmp_path)
    tls = tmp_path / "tls"
    args = argparse.Namespace(dir=str(tls), host=[], days=1, force=False, agents=str(catalog))
    assert asyncio.run(certs.run(args)) == 0
    files, _ = GEN.generate(load_catalog(catalog, Settings.model_construct()))
    mounted = set()
    for name, text in files.items():
        if name.endswith(".yaml") and "Deployment" in _docs(text):
            (volume,) = [
                v
                for v in _docs(text)["Deployment"]["spec"]["template"]["spec"]["volumes"]
                if v["name"] == "agentmesh-tls"
            ]
            mounted |= {i["key"] for i in volume["secret"]["items"]}
    assert "sum_mer.key" in mounted and "local_only.key" not in mounted
    assert mounted <= {p.name for p in tls.iterdir()}
