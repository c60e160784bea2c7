"""deploy/k8s against the Kubernetes schemas (offline: kubernetes-validate ships them), and the deployments
(k8s manifests, docker-compose.yml, the gateway's rendered configs) naming the same services and ports; mTLS
between the gateway and the services on in both (certificates from `agentmesh certs`)."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any

import kubernetes_validate
import promql_parser
import pytest
import yaml
from prometheus_client import generate_latest

from agentmesh.gateway import GatewayTLS, compose_spec, k8s_spec, render_envoy_config
from agentmesh.llm import LLMClient
from agentmesh.rpc import generate_certs
from agentmesh.services.guard.server import _TIER_TWO_CONCURRENCY as TIER_TWO_CONCURRENCY
from agentmesh.settings import SERVICES, Settings
from agentmesh.telemetry import MetricsServer, setup_telemetry
from tests.composefile import COMPOSE, compose_services, interpolate
from tests.promrules import exposed_series

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
ENVOY = Path(sys.executable).parent / "envoy"
# The oldest Kubernetes the manifests promise to work on.
K8S_VERSION = "1.29.0"
PORTS = {name: int(Settings.model_fields[f"{name}_port"].default) for name in SERVICES}
METRICS_OFFSET = int(Settings.model_fields["metrics_port_offset"].default)
# Where every container (compose and Kubernetes) finds the files of `agentmesh certs`.
TLS_DIR = "/etc/agentmesh/tls"
IDENTITIES = ("gateway", *SERVICES)


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


def _gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_k8s", K8S / "gen_k8s.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = gen  # its dataclass looks its module up there
    spec.loader.exec_module(gen)
    return gen


def _envoy_validate(text: str, tmp_path: Path) -> None:
    """`envoy --mode validate` on a config whose TLS files are a real `agentmesh certs` set in tmp_path (Envoy
    loads them while validating), as every container finds them under TLS_DIR."""
    certs = tmp_path / "tls"
    generate_certs(certs, IDENTITIES)
    path = tmp_path / "envoy.yaml"
    path.write_text(text.replace(f"{TLS_DIR}/", f"{certs}/"))
    result = subprocess.run(
        [str(ENVOY), "--mode", "validate", "-c", str(path), "-l", "warning"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _assert_mtls_to_every_service(config: dict[str, Any], tls_dir: str) -> None:
    """Every service's cluster (and so its gRPC health checks) is mTLS with the gateway's certificate and accepts
    only a certificate naming the cluster; the internal listener requires a mesh certificate; the public one is
    plain (clients)."""
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    tls_files = {
        "certificate_chain": {"filename": f"{tls_dir}/gateway.crt"},
        "private_key": {"filename": f"{tls_dir}/gateway.key"},
    }
    for name in SERVICES:
        socket = clusters[name]["transport_socket"]
        assert socket["name"] == "envoy.transport_sockets.tls", name
        tls = socket["typed_config"]
        assert tls["@type"].endswith(".UpstreamTlsContext") and tls["sni"] == name
        common = tls["common_tls_context"]
        assert common["tls_certificates"] == [tls_files]
        assert common["validation_context"]["trusted_ca"] == {"filename": f"{tls_dir}/ca.crt"}
        assert common["validation_context"]["match_typed_subject_alt_names"] == [
            {"san_type": "DNS", "matcher": {"exact": name}}
        ]
    listeners = {li["name"]: li for li in config["static_resources"]["listeners"]}
    (internal,) = listeners["internal"]["filter_chains"]
    downstream = internal["transport_socket"]["typed_config"]
    assert downstream["@type"].endswith(".DownstreamTlsContext") and downstream["require_client_certificate"] is True
    assert downstream["common_tls_context"]["validation_context"]["trusted_ca"] == {"filename": f"{tls_dir}/ca.crt"}
    assert all("transport_socket" not in chain for chain in listeners["public"]["filter_chains"])


# Custom resources: not in Kubernetes' schemas; test_each_service_scales_on_its_llm_demand checks their fields.
CRD_KINDS = {"ScaledObject"}
BUILTIN = [(f, d) for f, d in DOCS if d["kind"] not in CRD_KINDS]


@pytest.mark.parametrize(("file", "doc"), BUILTIN, ids=[f"{f}:{d['kind']}/{d['metadata']['name']}" for f, d in BUILTIN])
def test_manifest_is_valid_against_the_kubernetes_schema(file: str, doc: dict[str, Any]) -> None:
    # strict: unknown fields (typos such as `readinesProbe`) fail too.
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_only_known_custom_resources_skip_the_schema() -> None:
    kinds = {d["kind"] for _, d in DOCS}
    assert CRD_KINDS <= kinds
    for _, doc in DOCS:
        if doc["kind"] in CRD_KINDS:
            assert doc["apiVersion"] == "keda.sh/v1alpha1", doc["apiVersion"]


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


def test_the_gateway_configmap_is_what_the_template_renders() -> None:
    gen = _gen()
    assert (K8S / "gateway-envoy-config.yaml").read_text() == gen.configmap(), "stale: run `make k8s`"
    assert gen.TLS_DIR == TLS_DIR
    mounted = _find("ConfigMap", "gateway-envoy")["data"]["envoy.yaml"]
    # `python -m agentmesh.gateway.render --target k8s --tls-dir /etc/agentmesh/tls`, but for whitespace-only lines,
    # which the ConfigMap keeps empty (the template leaves one before the internal listener's transport_socket).
    rendered = render_envoy_config(dataclasses.replace(k8s_spec("agentmesh"), tls=GatewayTLS.in_dir(TLS_DIR)))
    assert mounted == "".join(line if line.strip() else "\n" for line in rendered.splitlines(keepends=True))


def test_the_gateway_configmap_has_mtls_to_every_service(tmp_path: Path) -> None:
    text = _find("ConfigMap", "gateway-envoy")["data"]["envoy.yaml"]
    _assert_mtls_to_every_service(yaml.safe_load(text), TLS_DIR)
    _envoy_validate(text, tmp_path)


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_has_deployment_headless_service_and_autoscaler_on_the_gateways_port(name: str) -> None:
    port = PORTS[name]
    deployment = _find("Deployment", name)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["serve", name]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": port, "metrics": port + METRICS_OFFSET}
    # The gRPC port is mTLS only and the kubelet's `grpc:` probe presents no client certificate: the probes use
    # the plain-HTTP metrics endpoint (served once the gRPC server is up, from the same event loop).
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}, probe
        assert "grpc" not in container[probe] and "tcpSocket" not in container[probe], probe
    assert {"requests", "limits"} <= set(container["resources"])
    labels = deployment["spec"]["template"]["metadata"]["labels"]

    service = _find("Service", f"{name}-headless")
    assert service["spec"]["clusterIP"] == "None"
    assert [p["port"] for p in service["spec"]["ports"]] == [port]
    assert service["spec"]["selector"].items() <= labels.items()

    scaled = _find("ScaledObject", name)
    assert scaled["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    # One autoscaler per Deployment: KEDA makes its own HPA, and two HPAs on one target fight.
    assert not [
        d for _, d in DOCS if d["kind"] == "HorizontalPodAutoscaler" and d["spec"]["scaleTargetRef"]["name"] == name
    ]
    assert "replicas" not in deployment["spec"], "the autoscaler owns the count; a re-apply would reset it"

    # The gateway's STRICT_DNS cluster for the service points at exactly this Service and port.
    upstream = next(u for u in k8s_spec("agentmesh").upstreams if u.name == name)
    assert upstream.dns and upstream.endpoints == ((f"{name}-headless.agentmesh.svc.cluster.local", port),)


# --- scaling, disruptions, scraping, traces ------------------------------------------------------------------

# The LLM demand a service's autoscaler must see: what its pods have in flight and what waits at their limiters.
LLM_DEMAND = {"agentmesh_llm_in_flight", "agentmesh_llm_queued"}
# The services whose own work is CPU too (detectors; checkpoints and Run streams): a CPU trigger beside the LLM one.
CPU_TOO = {"supervisor", "guard"}


def _exposed_by(name: str) -> set[str]:
    """The series a service's /metrics declares, from its real registry (as `serve NAME` builds it)."""
    telemetry = setup_telemetry(name, Settings(otel_exporter_otlp_endpoint=None))
    telemetry.register_llm(LLMClient(settings=Settings(), instruments=telemetry.llm_instruments()))
    return exposed_series(generate_latest(telemetry.registry).decode())


def _selectors(query: str) -> dict[str, dict[str, str]]:
    """Metric name -> its equality label matchers, for every selector of a PromQL query (raises if it does not
    parse)."""
    out: dict[str, dict[str, str]] = {}

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            out[node.name] = {m.name: m.value for m in node.matchers.matchers if m.op == promql_parser.MatchOp.Equal}

    promql_parser.walk(promql_parser.parse(query), visit)
    return out


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_scales_on_its_llm_demand(name: str) -> None:
    """The ScaledObject, field by field (no schema for it here): a Prometheus trigger whose query selects metrics
    the service really exports, per pod, below the pod's LLM concurrency ceiling, with a fallback."""
    spec = _find("ScaledObject", name)["spec"]
    assert set(spec) <= {
        "scaleTargetRef",
        "pollingInterval",
        "minReplicaCount",
        "maxReplicaCount",
        "fallback",
        "triggers",
    }
    assert 2 <= spec["minReplicaCount"] < spec["maxReplicaCount"]  # two: the PDB can evict one
    assert spec["fallback"]["failureThreshold"] >= 1
    assert spec["minReplicaCount"] <= spec["fallback"]["replicas"] <= spec["maxReplicaCount"]
    prometheus = [t for t in spec["triggers"] if t["type"] == "prometheus"]
    others = [t for t in spec["triggers"] if t["type"] != "prometheus"]
    (trigger,) = prometheus
    assert set(trigger) == {"type", "name", "metricType", "metadata"}
    assert trigger["metricType"] == "AverageValue"  # the sum over pods, divided by the replicas: a per-pod target
    meta = trigger["metadata"]
    assert set(meta) == {"serverAddress", "query", "threshold", "ignoreNullValues"}
    assert all(isinstance(v, str) for v in meta.values()), "KEDA's trigger metadata is strings only"
    assert meta["serverAddress"].startswith("http://") and meta["serverAddress"].endswith(":9090")
    assert meta["ignoreNullValues"] == "false"  # no series is a broken scrape, not zero load: fallback applies
    selectors = _selectors(meta["query"])
    missing = set(selectors) - _exposed_by(name)
    assert not missing, f"{name}'s autoscaler queries metrics the code does not export: {missing}"
    assert set(selectors) == LLM_DEMAND
    namespace = yaml.safe_load((K8S / "kustomization.yaml").read_text())["namespace"]
    for metric, labels in selectors.items():
        assert labels == {"namespace": namespace, "agent": name}, (metric, labels)
    # The per-pod target sits below the pod's ceiling of LLM calls in flight, so it scales out before calls queue.
    ceiling = int(_find("ConfigMap", "agentmesh-env")["data"]["AGENTMESH_LLM_MAX_CONCURRENCY"])
    if name == "guard":
        ceiling = min(ceiling, TIER_TWO_CONCURRENCY)  # tier two's own client: at most this many per pod
    assert 0 < float(meta["threshold"]) < ceiling
    if name in CPU_TOO:
        (cpu,) = others
        assert cpu == {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "70"}}
    else:
        assert others == [], "an agent waits on the LLM: CPU is a late signal for it"
    addresses = {
        t["metadata"]["serverAddress"]
        for _, d in DOCS
        if d["kind"] == "ScaledObject"
        for t in d["spec"]["triggers"]
        if t["type"] == "prometheus"
    }
    assert len(addresses) == 1, "one Prometheus for every service"


@pytest.mark.parametrize("name", IDENTITIES)
def test_each_deployment_has_a_disruption_budget_that_leaves_one_pod(name: str) -> None:
    pdb = _find("PodDisruptionBudget", name)["spec"]
    labels = _find("Deployment", name)["spec"]["template"]["metadata"]["labels"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    # Selects this Deployment's pods only.
    for other in IDENTITIES:
        if other != name:
            other_labels = _find("Deployment", other)["spec"]["template"]["metadata"]["labels"]
            assert not pdb["selector"]["matchLabels"].items() <= other_labels.items(), other
    assert pdb == {"maxUnavailable": 1, "selector": pdb["selector"]}  # never blocks a drain, even at one replica
    scaler = (
        _find("ScaledObject", name)["spec"]["minReplicaCount"]
        if name in SERVICES
        else _find("HorizontalPodAutoscaler", name)["spec"]["minReplicas"]
    )
    assert scaler - pdb["maxUnavailable"] >= 1, "a drain would take the last pod"


@pytest.mark.parametrize("name", SERVICES)
async def test_each_service_is_scraped_on_its_metrics_port(name: str) -> None:
    """The pod's scrape annotations name its metrics port and a path the metrics server really serves."""
    pod = _find("Deployment", name)["spec"]["template"]
    annotations = pod["metadata"]["annotations"]
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(ports["metrics"]) == str(PORTS[name] + METRICS_OFFSET)
    registry = setup_telemetry(name, Settings(otel_exporter_otlp_endpoint=None)).registry
    server = await MetricsServer.start(registry, "127.0.0.1", 0)
    assert server is not None
    try:
        url = server.url.removesuffix("/metrics") + annotations["prometheus.io/path"]
        status, body = await asyncio.to_thread(_get, url)
    finally:
        await server.stop()
    assert status == 200 and "agentmesh_grpc_server_handled" in body


def _get(url: str) -> tuple[int, str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as resp:
        return resp.status, resp.read().decode()


def test_pods_export_traces_over_otlp() -> None:
    env = _find("ConfigMap", "agentmesh-env")["data"]
    settings = Settings.model_validate({k: v for k, v in env.items() if k.startswith("OTEL_EXPORTER_OTLP")})
    endpoint = urllib.parse.urlsplit(settings.otel_exporter_otlp_endpoint or "")
    assert endpoint.scheme == "http" and endpoint.hostname
    # OTLP/HTTP listens on 4318, OTLP/gRPC on 4317: the protocol and the port agree.
    assert (settings.otel_exporter_otlp_protocol, endpoint.port) == ("http/protobuf", 4318)


@pytest.mark.parametrize("name", SERVICES)
def test_compose_checks_each_services_health_with_agentmesh_health(name: str) -> None:
    """The healthcheck's shell line, expanded as the container's shell expands it, runs `agentmesh health NAME`."""
    service = _compose()[name]
    kind, script = service["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    script = interpolate(script, {})
    assert script.startswith("agentmesh health ")
    env = {k: interpolate(str(v), {}) for k, v in service["environment"].items() if v is not None}
    result = subprocess.run(
        ["sh", "-c", "set -- " + script.removeprefix("agentmesh health ") + '; printf "%s\\n" "$@"'],
        env={**env, "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert result.returncode == 0, result.stderr
    args = result.stdout.split()
    assert args[0] == name, args  # the name the check asks for is this service's
    timeout = float(args[args.index("--timeout") + 1])
    check = service["healthcheck"]
    assert timeout < _seconds(check["timeout"]) <= _seconds(check["interval"]), check
    assert check["retries"] >= 1 and _seconds(check["start_period"]) > 0


def _seconds(duration: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", duration)
    assert m, duration
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[m.group(2)]


def _tls_volume(pod: dict[str, Any], container: dict[str, Any]) -> dict[str, Any]:
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == TLS_DIR]
    assert mount["readOnly"] is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    return volume


@pytest.mark.parametrize("name", IDENTITIES)
def test_each_deployment_mounts_its_own_certificate_from_the_tls_secret(name: str) -> None:
    pod = _find("Deployment", name)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    secret = _tls_volume(pod, container)["secret"]
    assert secret["secretName"] == "agentmesh-tls"
    assert not secret.get("optional", False), "mTLS is on by default: no pod starts without the Secret"
    # Only the CA certificate and the pod's own pair: never another identity's key, nor the CA key.
    assert {(i["key"], i["path"]) for i in secret["items"]} == {
        (f, f) for f in ("ca.crt", f"{name}.crt", f"{name}.key")
    }
    # Keys readable by the pod's group only, which owns the files (fsGroup), so the non-root user can read them.
    assert secret["defaultMode"] == 0o440
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    if name == "gateway":  # Envoy reads the paths from its config (test_the_gateway_configmap_has_mtls_...)
        (config,) = [m for m in container["volumeMounts"] if m["name"] == "config"]
        assert container["args"][:2] == ["-c", f"{config['mountPath']}/envoy.yaml"]
        assert not TLS_DIR.startswith(config["mountPath"] + "/"), "nested in the read-only ConfigMap mount"
    else:
        assert env["AGENTMESH_TLS_DIR"] == TLS_DIR


def test_kustomize_builds_the_manifests() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    result = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    # The mesh's identities, and the Redis of the mesh-wide LLM budget (no certificate: it holds no secret).
    assert {d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"} == {*IDENTITIES, "redis"}
    for doc in docs:
        if doc["kind"] == "Deployment" and doc["metadata"]["name"] != "redis":
            volumes = {v["name"]: v for v in doc["spec"]["template"]["spec"]["volumes"]}
            assert volumes["agentmesh-tls"]["secret"]["defaultMode"] == 0o440  # YAML's 0440, not decimal 440


def test_the_shutdown_grace_fits_every_pods_termination_period() -> None:
    grace = float(_find("ConfigMap", "agentmesh-env")["data"]["AGENTMESH_SHUTDOWN_GRACE_S"])
    assert grace == Settings().shutdown_grace_s  # the same as a bare `serve` uses
    deployments = [doc for _, doc in DOCS if doc["kind"] == "Deployment" and doc["metadata"]["name"] in SERVICES]
    assert len(deployments) == len(SERVICES)
    for doc in deployments:
        # Its own drain plus at least 2 s for calls in flight (rpc/_server.py) and closing pools.
        assert grace + 3 <= doc["spec"]["template"]["spec"]["terminationGracePeriodSeconds"], doc["metadata"]["name"]


def test_agents_get_no_internal_token() -> None:
    for _, doc in DOCS:
        if doc["kind"] == "Deployment" and doc["metadata"]["name"] in ("researcher", "analyst", "executor"):
            (container,) = doc["spec"]["template"]["spec"]["containers"]
            assert "AGENTMESH_INTERNAL_TOKEN" not in {e["name"] for e in container.get("env", [])}


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
        p["containerPort"] for p in container["ports"]
    }


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


# --- mTLS in docker compose ---------------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    return compose_services()


def _volumes(service: dict[str, Any]) -> set[str]:
    return set(service.get("volumes", []))


def test_compose_creates_the_certificates_once_into_a_volume() -> None:
    compose = _compose()
    certs = compose["certs"]
    assert certs["image"] == compose["supervisor"]["image"]
    script = " ".join(certs["command"])
    assert f"test -f {TLS_DIR}/ca.crt ||" in script  # a later `up` keeps the files (and the running mesh's CA)
    assert f"agentmesh certs --dir {TLS_DIR}" in script
    assert f"mesh-tls:{TLS_DIR}" in _volumes(certs)  # the one writer, and the only one to mount it
    assert [n for n, s in compose.items() if any(v.startswith("mesh-tls:") for v in _volumes(s))] == ["certs"]
    assert certs["restart"] == "no"
    declared = yaml.safe_load(COMPOSE.read_text())["volumes"]
    assert "mesh-tls" in declared and all(f"tls-{name}" in declared for name in IDENTITIES)
    # The image makes the volumes' mount points its user's, so the job (uid 10001) can write into new volumes.
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(rf"mkdir -p [^\n]*{TLS_DIR}", dockerfile) and re.search(
        rf"chown (-R )?agentmesh:agentmesh [^\n]*{TLS_DIR}", dockerfile
    )
    assert all(f"{TLS_DIR}-out/{name}" in dockerfile for name in IDENTITIES)


def test_the_certs_job_gives_each_identity_its_own_key_only(tmp_path: Path) -> None:
    """Runs the certs job's own command (paths moved into tmp_path): each identity's volume gets ca.crt and its own
    certificate and key, nothing else; the CA key is gone."""
    certs = _compose()["certs"]
    mounts = dict(reversed(v.split(":")[:2]) for v in _volumes(certs))  # container path -> volume
    assert {mounts[f"{TLS_DIR}-out/{name}"] for name in IDENTITIES} == {f"tls-{name}" for name in IDENTITIES}
    for name in IDENTITIES:
        (tmp_path / "out" / name).mkdir(parents=True)
    (script,) = certs["command"]
    script = (
        interpolate(script, {}).replace(f"{TLS_DIR}-out", str(tmp_path / "out")).replace(TLS_DIR, str(tmp_path / "ca"))
    )
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    for _ in range(2):  # a second `up` keeps the CA and copies again
        subprocess.run(
            ["sh", "-ec", script], env={**os.environ, "PATH": path}, check=True, timeout=60, capture_output=True
        )
    assert not (tmp_path / "ca" / "ca.key").exists()
    for name in IDENTITIES:
        got = sorted(p.name for p in (tmp_path / "out" / name).iterdir())
        assert got == sorted(["ca.crt", f"{name}.crt", f"{name}.key"]), name
        assert (tmp_path / "out" / name / f"{name}.key").stat().st_mode & 0o077 == 0  # still 0600


@pytest.mark.parametrize("name", [*SERVICES, "gateway"])
def test_compose_mounts_the_certificates_read_only_after_the_certs_job(name: str) -> None:
    service = _compose()[name]
    tls_mounts = [v for v in _volumes(service) if v.split(":")[1] == TLS_DIR]
    assert tls_mounts == [f"tls-{name}:{TLS_DIR}:ro"]  # its own key, no other identity's
    assert service["depends_on"]["certs"] == {"condition": "service_completed_successfully"}
    if name == "gateway":
        # The files' owner (keys are 0600); the config volume beside the TLS one, not around it.
        assert service["user"] == "10001:10001"
        (config,) = [v for v in _volumes(service) if v.startswith("gateway-config:")]
        config_dir = config.split(":")[1]
        assert service["command"][:2] == ["-c", f"{config_dir}/envoy.yaml"]
        assert not TLS_DIR.startswith(config_dir + "/")
    else:
        env = service["environment"]
        assert interpolate(env["AGENTMESH_TLS_DIR"], {}) == TLS_DIR  # on by default
        assert interpolate(env["AGENTMESH_TLS_DIR"], {"AGENTMESH_COMPOSE_TLS_DIR": ""}) == ""  # the off switch
        # Only the supervisor (sends it) and the guard (takes it) hold the internal token; agents never use it.
        assert ("AGENTMESH_INTERNAL_TOKEN" in env) == (name in ("supervisor", "guard"))


@pytest.mark.parametrize("tls", [True, False], ids=["default", "off"])
def test_compose_renders_the_gateway_with_tls_dir(tls: bool, tmp_path: Path) -> None:
    """Runs gateway-config's own command (compose's interpolation, then `sh -ec`, writing into tmp_path instead of
    its volume): by default the config is mTLS to every service and Envoy accepts it; with the variable empty,
    plaintext, as the services are then."""
    job = _compose()["gateway-config"]
    assert job["entrypoint"] == ["sh", "-ec"]
    shell_env = {} if tls else {"AGENTMESH_COMPOSE_TLS_DIR": ""}
    env = {k: interpolate(str(v), shell_env) for k, v in job["environment"].items()}
    assert env["AGENTMESH_TLS_DIR"] == (TLS_DIR if tls else "")
    (script,) = job["command"]
    script = interpolate(script, shell_env).replace("/var/lib/agentmesh/gateway", str(tmp_path))
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    result = subprocess.run(
        ["sh", "-ec", script],
        env={**os.environ, **env, "PATH": path},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "envoy.yaml").read_text()
    config = yaml.safe_load(text)
    if tls:
        _assert_mtls_to_every_service(config, TLS_DIR)
        assert text == render_envoy_config(dataclasses.replace(compose_spec(), tls=GatewayTLS.in_dir(TLS_DIR)))
        _envoy_validate(text, tmp_path)
    else:
        assert text == render_envoy_config(compose_spec())


def test_docker_compose_accepts_the_file() -> None:
    """`docker compose config` where a Compose v2 CLI is installed (this repository's CI has no Docker)."""
    candidates = [[shutil.which("docker"), "compose"], [shutil.which("docker-compose")]]
    for cmd in candidates:
        if cmd[0] is None:
            continue
        version = subprocess.run([*cmd, "version", "--short"], capture_output=True, text=True, timeout=30)
        if version.returncode == 0 and not version.stdout.lstrip("v").startswith("1."):  # v1 lacks --format
            break
    else:
        pytest.skip("no Docker Compose v2 CLI")
    result = subprocess.run(
        [*cmd, "-f", str(COMPOSE), "config", "--format", "json"], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    for name in SERVICES:
        assert services[name]["environment"]["AGENTMESH_TLS_DIR"] == TLS_DIR
