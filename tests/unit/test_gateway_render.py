"""The gateway template renders, for every target, a config that Envoy itself accepts and that keeps the
routing contract: path-only public routes, header routes first on the internal listener."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import agentmesh.gateway as gateway
from agentmesh.cli._up import egress_base_url
from agentmesh.gateway import (
    ClusterLimits,
    GatewaySpec,
    LLMEgress,
    Upstream,
    cluster_limits,
    compose_spec,
    k8s_spec,
    llm_egress,
    local_spec,
    render_envoy_config,
)
from agentmesh.settings import Settings

ENVOY = Path(sys.executable).parent / "envoy"
REPO = Path(__file__).resolve().parents[2]
SERVICES = {"supervisor", "researcher", "analyst", "executor", "guard"}
AGENTS = {"researcher", "analyst", "executor"}
PUBLIC_PREFIXES = {
    "/agentmesh.v1.SupervisorService/": "supervisor",
    "/agentmesh.v1.GuardService/": "guard",
    "/agentmesh.v1.ReviewService/": "guard",
    "/lf.a2a.v1.A2AService/": "supervisor",
    # Health and reflection need no key: clusters of their own (the supervisor's hosts), apart from the runs' budget.
    "/grpc.health.v1.Health/": "supervisor-health",
    "/grpc.reflection.": "supervisor-reflection",
}
META_CLUSTERS = {"supervisor-health", "supervisor-reflection"}
LOCAL_PORTS = {
    "supervisor": [50051],
    "researcher": [50052, 50062],
    "analyst": [50053],
    "executor": [50054],
    "guard": [50055],
}

TARGETS = {
    "local": lambda: local_spec(ports=LOCAL_PORTS, limits={"analyst": ClusterLimits(max_requests=64, max_retries=5)}),
    "compose": compose_spec,
    "k8s": lambda: k8s_spec("prod"),
}


def _listener(config: dict[str, Any], name: str) -> dict[str, Any]:
    (listener,) = [li for li in config["static_resources"]["listeners"] if li["name"] == name]
    return listener


def _hcm(config: dict[str, Any], listener: str) -> dict[str, Any]:
    (chain,) = _listener(config, listener)["filter_chains"]
    (hcm,) = chain["filters"]
    return hcm["typed_config"]


def _routes(config: dict[str, Any], listener: str) -> list[dict[str, Any]]:
    (vhost,) = _hcm(config, listener)["route_config"]["virtual_hosts"]
    return vhost["routes"]


def _clusters(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in config["static_resources"]["clusters"]}


@pytest.fixture(scope="module", params=sorted(TARGETS))
def rendered(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param, render_envoy_config(TARGETS[request.param]())


def test_exports() -> None:
    assert sorted(gateway.__all__) == sorted(
        [
            "ClusterLimits",
            "GatewaySpec",
            "GatewayTLS",
            "LLMEgress",
            "Upstream",
            "cluster_limits",
            "compose_spec",
            "k8s_spec",
            "llm_egress",
            "local_spec",
            "render_envoy_config",
        ]
    )
    assert gateway.render_envoy_config is render_envoy_config


def test_envoy_accepts_config(rendered: tuple[str, str], tmp_path: Path) -> None:
    target, text = rendered
    path = tmp_path / f"envoy-{target}.yaml"
    path.write_text(text)
    result = subprocess.run(
        [str(ENVOY), "--mode", "validate", "-c", str(path), "-l", "warning"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"configuration '{path}' OK" in result.stdout + result.stderr


def test_clusters_one_per_service(rendered: tuple[str, str]) -> None:
    target, text = rendered
    clusters = _clusters(yaml.safe_load(text))
    # opentelemetry_collector: the compose target traces to Jaeger (tests/unit/test_gateway_tracing.py).
    assert set(clusters) - {"opentelemetry_collector"} == SERVICES | META_CLUSTERS | (
        {"envoy_admin"} if target != "local" else set()
    )
    for name in META_CLUSTERS:  # the supervisor's hosts, breakers of their own
        meta, supervisor = clusters[name], clusters["supervisor"]
        assert meta["load_assignment"]["endpoints"] == supervisor["load_assignment"]["endpoints"]
        assert meta["health_checks"] == supervisor["health_checks"]
        assert meta["circuit_breakers"]["thresholds"][0]["max_requests"] == 256
    for name in SERVICES:
        cluster = clusters[name]
        hosts = [
            (
                e["endpoint"]["address"]["socket_address"]["address"],
                e["endpoint"]["address"]["socket_address"]["port_value"],
            )
            for e in cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
        ]
        if target == "local":
            assert cluster["type"] == "STATIC"
            assert hosts == [("127.0.0.1", p) for p in LOCAL_PORTS[name]]
        else:
            assert cluster["type"] == "STRICT_DNS"
            (host,) = hosts
            assert host[0] == (name if target == "compose" else f"{name}-headless.prod.svc.cluster.local")
        http2 = cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
        assert "http2_protocol_options" in http2["explicit_http_config"]
        assert cluster["connect_timeout"] == "1s"
        assert cluster["lb_policy"] == "ROUND_ROBIN"
        assert cluster["common_lb_config"]["healthy_panic_threshold"] == {"value": 0.0}
        (hc,) = cluster["health_checks"]
        assert hc["grpc_health_check"] == {}
        assert (hc["interval"], hc["timeout"], hc["unhealthy_threshold"], hc["healthy_threshold"]) == ("2s", "1s", 2, 1)
        assert hc["no_traffic_interval"] == "2s"
        od = cluster["outlier_detection"]
        assert od["enforcing_consecutive_gateway_failure"] == 100
        assert od["successful_active_health_check_uneject_host"] is False
        # Measured (shared/notes/envoy.md): the 1 s default merge window let 28 calls fail before an ejection.
        assert cluster["common_lb_config"]["update_merge_window"] == "0s"
        assert od["base_ejection_time"] == "15s" and od["max_ejection_percent"] == 100
        assert cluster["circuit_breakers"]["thresholds"][0]["retry_budget"]["budget_percent"] == {"value": 20.0}


def test_limits_come_from_the_spec() -> None:
    clusters = _clusters(yaml.safe_load(render_envoy_config(TARGETS["local"]())))
    analyst = clusters["analyst"]["circuit_breakers"]["thresholds"][0]
    assert (analyst["max_requests"], analyst["retry_budget"]["min_retry_concurrency"]) == (64, 5)
    default = clusters["guard"]["circuit_breakers"]["thresholds"][0]
    assert (default["max_connections"], default["max_pending_requests"], default["max_requests"]) == (1024, 1024, 1024)
    assert default["retry_budget"]["min_retry_concurrency"] == 16


def test_limits_from_settings_per_service() -> None:
    limits = cluster_limits(Settings(gateway_max_requests_researcher=40, gateway_max_requests_guard=500))
    assert set(limits) == SERVICES
    assert (limits["researcher"].max_requests, limits["researcher"].max_pending_requests) == (40, 40)
    assert limits["guard"].max_requests == 500 and limits["analyst"].max_requests == 1024


def test_overflow_answers_resource_exhausted_naming_the_limit(rendered: tuple[str, str]) -> None:
    config = yaml.safe_load(rendered[1])
    limits = {
        c["name"]: c["circuit_breakers"]["thresholds"][0]["max_requests"]
        for c in config["static_resources"]["clusters"]
        if c["name"] in SERVICES
    }
    for listener in ("public", "internal"):
        mappers = _hcm(config, listener)["local_reply_config"]["mappers"]
        for name, limit in limits.items():
            (mapper,) = [
                m
                for m in mappers
                if "and_filter" in m["filter"] and f'xds.cluster_name == "{name}"' in str(m["filter"])
            ]
            assert mapper["headers_to_add"][0]["header"] == {"key": "grpc-status", "value": "8"}  # RESOURCE_EXHAUSTED
            assert f"{name} is at a circuit breaker limit: {limit} calls in flight" in str(
                mapper["body_format_override"]
            )
        flags = [m["filter"].get("response_flag_filter", {}).get("flags") for m in mappers]
        assert ["UH"] in flags and ["UO"] in flags  # catch-alls after the per-cluster ones


def test_public_listener_routes_by_path_only(rendered: tuple[str, str]) -> None:
    config = yaml.safe_load(rendered[1])
    routes = [r for r in _routes(config, "public") if "route" in r]
    # Envoy answers GET /openapi.json and the A2A agent card itself; no other public route stays in the gateway.
    direct = [r["match"]["path"] for r in _routes(config, "public") if "route" not in r]
    assert direct == ["/openapi.json", "/.well-known/agent-card.json"]
    # A client-sent header can never pick a cluster: no forwarding public route looks at headers at all.
    assert all(set(r["match"]) == {"prefix"} for r in routes)
    assert {r["match"]["prefix"]: r["route"]["cluster"] for r in routes} == PUBLIC_PREFIXES
    # ... and the forgeable headers are gone before routing, not only after it.
    (mutation,) = _hcm(config, "public")["early_header_mutation_extensions"]
    removed = {m["remove"] for m in mutation["typed_config"]["mutations"]}
    assert removed == {"agentmesh-upstream", "agentmesh-internal-token", "agentmesh-tenant"}
    for route in routes:  # Run is side-effecting and clients own their own retries
        assert route["route"]["retry_policy"]["retry_on"] == "connect-failure,refused-stream"


def test_internal_listener_header_routes_first(rendered: tuple[str, str]) -> None:
    routes = _routes(yaml.safe_load(rendered[1]), "internal")
    header_routes, prefix_routes = routes[: len(SERVICES)], routes[len(SERVICES) :]
    for route in header_routes:
        (header,) = route["match"]["headers"]
        assert header["name"] == "agentmesh-upstream"
        assert route["match"]["prefix"] == "/"
        assert header["string_match"] == {"exact": route["route"]["cluster"]}
    assert {r["route"]["cluster"] for r in header_routes} == SERVICES
    assert {r["match"]["prefix"]: r["route"]["cluster"] for r in prefix_routes} == PUBLIC_PREFIXES
    for route in routes:
        cluster, policy = route["route"]["cluster"], route["route"]["retry_policy"]
        expected = "connect-failure,refused-stream" + (",unavailable" if cluster == "guard" else "")
        assert policy["retry_on"] == expected
        assert policy["num_retries"] == 2
        assert policy["retry_host_predicate"][0]["name"] == "envoy.retry_host_predicates.previous_hosts"


def test_no_route_can_be_cut_by_the_default_timeout(rendered: tuple[str, str]) -> None:
    config = yaml.safe_load(rendered[1])
    expected = {"supervisor": "300s", "guard": "10s"} | {agent: "180s" for agent in AGENTS}
    for listener in ("public", "internal"):
        for route in _routes(config, listener):
            if "direct_response" in route:  # answered by Envoy, nothing to cut
                continue
            action = route["route"]
            limits = action["max_stream_duration"]
            assert limits["max_stream_duration"] == limits["grpc_timeout_header_max"]
            meta = {"supervisor-health": "300s", "supervisor-reflection": "30s"}  # a Health/Watch may stay longer
            assert limits["max_stream_duration"] == (meta.get(action["cluster"]) or expected[action["cluster"]])
    assert _hcm(config, "public")["stream_idle_timeout"] == "300s"


def test_admin_stays_on_loopback(rendered: tuple[str, str]) -> None:
    target, text = rendered
    config = yaml.safe_load(text)
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    if target != "local":  # probes and Prometheus get two read-only paths, not the admin port
        paths = {r["match"]["path"] for r in _routes(config, "metrics")}
        assert paths == {"/stats/prometheus", "/ready"}


def test_access_log_can_be_turned_off() -> None:
    spec = TARGETS["local"]()
    quiet = GatewaySpec(
        public=spec.public, internal=spec.internal, admin=spec.admin, upstreams=spec.upstreams, access_log=False
    )
    config = yaml.safe_load(render_envoy_config(quiet))
    assert "access_log" not in _hcm(config, "public")
    assert "%RESPONSE_FLAGS%" in render_envoy_config(spec)


def _up(name: str, *ports: int) -> Upstream:
    return Upstream(name, tuple(("127.0.0.1", p) for p in ports))


@pytest.mark.parametrize(
    ("upstreams", "message"),
    [
        ((_up("supervisor", 1),), "guard"),
        ((_up("supervisor", 1), _up("guard")), "no endpoints"),
        ((_up("supervisor", 1), _up("guard", 2), _up("guard", 3)), "duplicate"),
        ((_up("supervisor", 1), _up('guard"\n', 2)), "must match"),
    ],
)
def test_rejects_specs_envoy_would_reject(upstreams: tuple[Upstream, ...], message: str) -> None:
    spec = GatewaySpec(public=("127.0.0.1", 1), internal=("127.0.0.1", 2), admin=("127.0.0.1", 3), upstreams=upstreams)
    with pytest.raises(ValueError, match=message):
        render_envoy_config(spec)


def test_cli_prints_a_config() -> None:
    result = subprocess.run(
        [sys.executable, "-W", "error", "-m", "agentmesh.gateway.render", "--target", "k8s", "--namespace", "prod"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "researcher-headless.prod.svc.cluster.local" in result.stdout
    assert yaml.safe_load(result.stdout)["admin"]["address"]["socket_address"]["port_value"] == 9901


# --- the LLM egress (AGENTMESH_LLM_MESH_CONCURRENCY) ------------------------------------------------------------


def _validate(text: str, tmp_path: Path) -> None:
    path = tmp_path / "envoy.yaml"
    path.write_text(text)
    result = subprocess.run(
        [str(ENVOY), "--mode", "validate", "-c", str(path), "-l", "warning"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _egress_config(egress: LLMEgress) -> dict[str, Any]:
    return yaml.safe_load(render_envoy_config(local_spec(ports=LOCAL_PORTS, egress=egress)))


SIM_EGRESS = LLMEgress.for_url("http://127.0.0.1:8765", listen=("127.0.0.1", 8082), concurrency=20)
API_EGRESS = LLMEgress.for_url("https://api.anthropic.com", listen=("127.0.0.1", 8082), concurrency=20)


def test_no_egress_unless_configured(rendered: tuple[str, str]) -> None:
    config = yaml.safe_load(rendered[1])
    assert "egress" not in {li["name"] for li in config["static_resources"]["listeners"]}
    assert "llm_provider" not in _clusters(config)


@pytest.mark.parametrize("egress", [SIM_EGRESS, API_EGRESS], ids=["simulator", "api"])
def test_envoy_accepts_the_egress(egress: LLMEgress, tmp_path: Path) -> None:
    _validate(render_envoy_config(local_spec(ports=LOCAL_PORTS, egress=egress)), tmp_path)


@pytest.mark.parametrize("egress", [SIM_EGRESS, API_EGRESS], ids=["simulator", "api"])
def test_the_egress_route_queues_and_forwards_only(egress: LLMEgress) -> None:
    config = _egress_config(egress)
    address = _listener(config, "egress")["address"]["socket_address"]
    assert (address["address"], address["port_value"]) == ("127.0.0.1", 8082)
    (route,) = _routes(config, "egress")
    action = route["route"]
    assert route["match"] == {"prefix": "/"} and action["cluster"] == "llm_provider"
    assert action["timeout"] == "0s"  # LLM calls are long; the client's per-attempt timeout cuts them
    assert action["idle_timeout"] == "600s"
    assert "retry_policy" not in action  # the LLM client is the one layer that retries LLM calls
    assert action["host_rewrite_literal"] == ("127.0.0.1:8765" if egress is SIM_EGRESS else "api.anthropic.com")
    # The queue's overflow is the only answer Envoy makes up; its body reads like the provider's errors.
    (mapper,) = _hcm(config, "egress")["local_reply_config"]["mappers"]
    assert mapper["filter"] == {"response_flag_filter": {"flags": ["UO"]}}
    body = mapper["body_format_override"]["json_format"]
    assert body["type"] == "error" and body["error"]["type"] == "egress_overloaded"
    assert "10000 calls waiting for one of 20 provider slots" in body["error"]["message"]


def test_the_provider_cluster_is_http1_with_one_call_per_connection() -> None:
    cluster = _clusters(_egress_config(SIM_EGRESS))["llm_provider"]
    assert cluster["type"] == "STATIC" and "transport_socket" not in cluster
    options = cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert options["explicit_http_config"] == {"http_protocol_options": {}}
    assert options["common_http_protocol_options"]["idle_timeout"] == "30s"
    (limits,) = cluster["circuit_breakers"]["thresholds"]
    assert (limits["max_connections"], limits["max_requests"], limits["max_pending_requests"]) == (20, 20, 10_000)
    assert "outlier_detection" not in cluster and "health_checks" not in cluster  # the provider is not ours to eject
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert (endpoint["address"], endpoint["port_value"]) == ("127.0.0.1", 8765)


def test_the_api_is_reached_over_tls_with_its_name_checked() -> None:
    cluster = _clusters(_egress_config(API_EGRESS))["llm_provider"]
    assert cluster["type"] == "LOGICAL_DNS"
    tls = cluster["transport_socket"]["typed_config"]
    assert tls["@type"].endswith("UpstreamTlsContext") and tls["sni"] == "api.anthropic.com"
    validation = tls["common_tls_context"]["validation_context"]
    assert validation["trusted_ca"] == {"filename": "/etc/ssl/certs/ca-certificates.crt"}
    assert validation["match_typed_subject_alt_names"] == [
        {"san_type": "DNS", "matcher": {"exact": "api.anthropic.com"}}
    ]
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert (endpoint["address"], endpoint["port_value"]) == ("api.anthropic.com", 443)


def test_llm_egress_from_settings() -> None:
    assert llm_egress(Settings()) is None  # unset: no cap, the SDK talks to the provider directly
    sim = llm_egress(
        Settings(llm_mesh_concurrency=7, gateway_egress_addr="127.0.0.1:9000"), provider_url="http://0.0.0.0:8765"
    )
    assert sim is not None
    assert (sim.listen, sim.provider, sim.concurrency, sim.tls) == (("127.0.0.1", 9000), ("127.0.0.1", 8765), 7, False)
    api = llm_egress(Settings(llm_mesh_concurrency=20, anthropic_api_key="k"))
    assert api is not None and api.provider == ("api.anthropic.com", 443) and api.tls and Path(api.ca_file).is_file()
    proxied = llm_egress(Settings(llm_mesh_concurrency=20, anthropic_base_url="https://llm.internal:8443/anthropic"))
    assert (
        proxied is not None
        and proxied.provider == ("llm.internal", 8443)
        and proxied.host_header == "llm.internal:8443"
    )
    # The services keep the provider URL's path; Envoy forwards it untouched.
    assert egress_base_url(proxied, "https://llm.internal:8443/anthropic/") == "http://127.0.0.1:8082/anthropic"
    assert egress_base_url(SIM_EGRESS, "http://127.0.0.1:8765") == "http://127.0.0.1:8082"
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        Settings(llm_mesh_concurrency=-1)


@pytest.mark.parametrize(
    ("change", "message"), [({"concurrency": 0}, "at least 1"), ({"max_pending_requests": 0}, "max_pending_requests")]
)
def test_rejects_an_egress_envoy_would_reject(change: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_envoy_config(local_spec(ports=LOCAL_PORTS, egress=dataclasses.replace(SIM_EGRESS, **change)))
    with pytest.raises(ValueError, match="http"):
        LLMEgress.for_url("ftp://example.com", listen=("127.0.0.1", 1), concurrency=1)


def test_cli_renders_the_egress_for_compose_only_when_asked() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-W",
            "error",
            "-m",
            "agentmesh.gateway.render",
            "--target",
            "compose",
            "--llm-mesh-concurrency",
            "20",
            "--llm-provider",
            "http://sim:8765",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    address = _listener(config, "egress")["address"]["socket_address"]
    assert (address["address"], address["port_value"]) == ("0.0.0.0", 8082)
    cluster = _clusters(config)["llm_provider"]
    assert cluster["type"] == "LOGICAL_DNS" and cluster["circuit_breakers"]["thresholds"][0]["max_connections"] == 20
