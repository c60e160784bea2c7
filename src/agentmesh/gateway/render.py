"""Render the gateway's Envoy config from the one template, for local, docker-compose or Kubernetes use.

The targets differ only by the `GatewaySpec` they pass in (listener addresses, upstreams and their
endpoints, limits); every Envoy policy lives in `envoy.yaml.j2`. `python -m gateway.render --target
local|compose|k8s` prints a config; `agentmesh up` calls `local_spec` and `render_envoy_config` at run time.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import ipaddress
import json
import re
import ssl
import sys
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from agentmesh.catalog import COMMAND_AGENT_DEFAULT_PORT, SHIPPED, Catalog, Entry, default_catalog, load_catalog
from agentmesh.gateway.agent_card import agent_card_json
from agentmesh.gateway.descriptors import PUBLIC_SERVICES, descriptor_set
from agentmesh.gateway.openapi import OPENAPI_PATH
from agentmesh.settings import Settings

TEMPLATE_PATH = Path(__file__).parent / "envoy.yaml.j2"

# Clusters the public routes point at: a spec without them would render a config Envoy rejects.
_REQUIRED_UPSTREAMS = ("supervisor", "guard")
# Cluster names are also header values and YAML keys: keep them to a DNS-label-like alphabet (catalog names).
_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
# The processes of the mesh itself, around the catalog's agents (cluster order: supervisor, agents, guard).
_CORE = ("supervisor", "guard")

Address = tuple[str, int]


@dataclass(frozen=True)
class ClusterLimits:
    """Circuit-breaker thresholds of one cluster, per Envoy process (shared by its workers)."""

    max_connections: int = 1024
    """Connections to all of the cluster's hosts together."""
    max_pending_requests: int = 1024
    """Requests waiting for a connection; with HTTP/2 upstreams this only matters while one is set up."""
    max_requests: int = 1024
    """Requests in flight: the real concurrency cap for HTTP/2 upstreams. Above it Envoy answers at once
    (flag UO, counted in upstream_rq_active_overflow), RESOURCE_EXHAUSTED with a message naming this limit."""
    max_retries: int = 16
    """Retries in flight that the cluster's retry budget always allows (its min_retry_concurrency);
    above that floor the budget allows 20% of active requests. Envoy ignores the plain max_retries
    breaker once a budget is set, so this is where the number goes. Envoy's default floor, 3, failed
    calls when a replica died with more of them in flight: each is retried on another host at once."""


def cluster_limits(settings: Settings, catalog: Catalog | None = None) -> dict[str, ClusterLimits]:
    """Each cluster's thresholds: AGENTMESH_GATEWAY_MAX_REQUESTS_<SERVICE> for the supervisor and the guard, the
    catalog entry's max_requests for an agent (the shipped ones default to their setting). Pending requests get
    the same number (they only queue while a connection is set up); connections keep the default, since HTTP/2
    needs few of them."""
    catalog = catalog if catalog is not None else default_catalog(settings)
    caps = {name: settings.gateway_max_requests(name) for name in _CORE}  # type: ignore[arg-type]
    caps |= {e.name: e.max_requests or ClusterLimits.max_requests for e in catalog}
    return {
        name: ClusterLimits(max_pending_requests=cap, max_requests=cap)
        for name, cap in sorted(caps.items(), key=lambda kv: _order(kv[0], catalog))
    }


def _order(name: str, catalog: Catalog) -> int:
    return 0 if name == "supervisor" else len(catalog) + 1 if name == "guard" else catalog.names.index(name) + 1


def _stream_s(entry: Entry) -> float | None:
    # The route lets a call run a little past the supervisor's own deadline for it, never shorter.
    return None if entry.timeout_s is None else entry.timeout_s + 5


@dataclass(frozen=True)
class Upstream:
    """One service: an Envoy cluster named after it, one endpoint per replica (or per DNS name)."""

    name: str
    """Cluster name, also the value of the `agentmesh-upstream` header that selects it."""
    endpoints: tuple[tuple[str, int], ...]
    """(host, port) pairs: IPs for STATIC clusters, DNS names when `dns` is set."""
    limits: ClusterLimits = field(default_factory=ClusterLimits)
    """Circuit-breaker thresholds."""
    dns: bool = False
    """STRICT_DNS: every address a name resolves to is a host (compose replicas, k8s headless services)."""
    max_stream_s: float | None = None
    """Longest call through this cluster's routes (a catalog agent's timeout_s); None: the template's default."""


@dataclass(frozen=True)
class GatewayTLS:
    """mTLS between the gateway and the services (files from `agentmesh certs`, as paths Envoy can read)."""

    ca: str
    """The mesh CA: services' certificates must chain to it, and so must callers of the internal listener."""
    cert: str
    """The gateway's certificate: presented to services (client) and on the internal listener (server)."""
    key: str
    """Its private key."""

    @classmethod
    def in_dir(cls, tls_dir: str | Path) -> GatewayTLS:
        d = Path(tls_dir)
        return cls(ca=str(d / "ca.crt"), cert=str(d / "gateway.crt"), key=str(d / "gateway.key"))


@dataclass(frozen=True)
class OtlpCollector:
    """An OTLP receiver (Jaeger, an OpenTelemetry Collector) for the gateway's own spans."""

    host: str
    port: int
    protocol: str = "grpc"
    """"grpc" (OTLP/gRPC, usually port 4317) or "http/protobuf" (OTLP/HTTP, usually 4318)."""
    service_name: str = "agentmesh-gateway"
    sample_percent: float = 100.0
    """Share of calls arriving without a trace that start one (a caller's sampled flag is kept)."""

    @classmethod
    def from_endpoint(
        cls,
        endpoint: str | None,
        protocol: str,
        *,
        sampler: str = "parentbased_always_on",
        sampler_arg: float | None = None,
    ) -> OtlpCollector | None:
        """From OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL and OTEL_TRACES_SAMPLER(_ARG), as the
        services read them. None when unset, or for https (the gateway's collector cluster speaks plaintext)."""
        if not endpoint:
            return None
        url = urllib.parse.urlsplit(endpoint)
        if url.scheme != "http" or not url.hostname:
            return None
        # Traces start at the gateway, so its sampling is the run's: the services follow the parent's decision.
        ratio = {"always_off": 0.0, "parentbased_always_off": 0.0}.get(sampler, 1.0)
        if sampler.endswith("traceidratio"):
            ratio = 1.0 if sampler_arg is None else min(1.0, max(0.0, sampler_arg))
        return cls(
            host=url.hostname,
            port=url.port or (4317 if protocol == "grpc" else 4318),
            protocol=protocol,
            sample_percent=round(100 * ratio, 4),
        )


# Where Envoy finds the CAs that sign the provider's certificate: the envoyproxy image's and Debian's bundle.
DEFAULT_CA_FILE = "/etc/ssl/certs/ca-certificates.crt"
# An anthropic base URL without a key (the simulator) or with one (the API).
ANTHROPIC_API_URL = "https://api.anthropic.com"


@dataclass(frozen=True)
class LLMEgress:
    """The `egress` listener: every LLM call of the mesh goes through it to one provider cluster, `llm_provider`,
    which lets `concurrency` calls through and queues the rest (first come, first served) instead of letting the
    processes' separate limits add up past what the provider admits."""

    listen: Address
    """Where the services' SDKs send their requests (ANTHROPIC_BASE_URL points here)."""
    provider: Address
    """The provider's host (a name or an IP) and port: the simulator, or api.anthropic.com:443."""
    concurrency: int
    """Calls in flight to the provider (circuit breaker max_connections and max_requests of an HTTP/1.1 cluster:
    one call per connection). AGENTMESH_LLM_MESH_CONCURRENCY."""
    tls: bool = False
    """TLS to the provider, with SNI and its certificate checked against `ca_file` for the provider's name."""
    ca_file: str = DEFAULT_CA_FILE
    """CA bundle (PEM) that the provider's certificate must chain to, as Envoy sees it."""
    max_pending_requests: int = 10_000
    """Calls that may wait for a free connection; past it Envoy answers 503 with x-envoy-overloaded at once."""

    @classmethod
    def for_url(cls, url: str, *, listen: Address, concurrency: int, ca_file: str = DEFAULT_CA_FILE) -> LLMEgress:
        """From the provider's base URL (http://127.0.0.1:8765, https://api.anthropic.com). A path in the URL is
        the callers' business: they keep it in their base URL and Envoy forwards it untouched."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"LLM provider URL {url!r}: expected http(s)://HOST[:PORT]")
        tls = parts.scheme == "https"
        return cls(
            listen=listen,
            provider=(parts.hostname, parts.port or (443 if tls else 80)),
            concurrency=concurrency,
            tls=tls,
            ca_file=ca_file,
        )

    @property
    def host_header(self) -> str:
        """What the provider must see as Host (and, with TLS, as SNI): its own name, not the egress listener's."""
        host, port = self.provider
        return host if port == (443 if self.tls else 80) else f"{host}:{port}"

    @property
    def dns(self) -> bool:
        """A name (LOGICAL_DNS: one connection pool whatever address the name resolves to next) or an IP (STATIC)."""
        try:
            ipaddress.ip_address(self.provider[0])
        except ValueError:
            return True
        return False


def system_ca_file() -> str:
    """The CA bundle of this machine, for a local Envoy that talks TLS to the provider."""
    candidates = [
        ssl.get_default_verify_paths().cafile,
        DEFAULT_CA_FILE,
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
    ]
    for path in candidates:
        if path and Path(path).is_file():
            return path
    raise ValueError("no CA bundle found for TLS to the LLM provider (install ca-certificates)")


def llm_egress(settings: Settings, *, provider_url: str | None = None) -> LLMEgress | None:
    """The egress `agentmesh up` renders: None unless AGENTMESH_LLM_MESH_CONCURRENCY is set. The provider is
    `provider_url` (the simulator's URL), else ANTHROPIC_BASE_URL, else the Anthropic API."""
    if settings.llm_mesh_concurrency <= 0:
        return None
    url = provider_url or settings.anthropic_base_url or ANTHROPIC_API_URL
    host, port = _split_addr(settings.gateway_egress_addr)
    egress = LLMEgress.for_url(url, listen=(host, port), concurrency=settings.llm_mesh_concurrency)
    if egress.provider[0] in ("0.0.0.0", "::"):  # a bind-all address is where the simulator listens, not where to dial
        egress = dataclasses.replace(egress, provider=("127.0.0.1", egress.provider[1]))
    return dataclasses.replace(egress, ca_file=system_ca_file()) if egress.tls else egress


def _split_addr(addr: str) -> Address:
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class GatewaySpec:
    """Everything that differs between targets; the template holds the rest."""

    public: Address
    """Listener for clients: SupervisorService, GuardService, ReviewService, the A2A binding (lf.a2a.v1), health,
    reflection, /openapi.json and the A2A agent card."""
    internal: Address
    """Listener for service-to-service calls, routed by the `agentmesh-upstream` header."""
    admin: Address
    """Envoy's admin interface; keep it on loopback (it can stop Envoy and change log levels)."""
    upstreams: tuple[Upstream, ...]
    """One per service; must include supervisor and guard."""
    access_log: bool = True
    """One compact line per call on stdout (path, HTTP and gRPC status, response flags, host, ms)."""
    metrics: Address | None = None
    """Optional listener that exposes only GET /stats/prometheus and /ready from admin, for
    Prometheus and readiness probes when admin must stay on loopback (compose, Kubernetes)."""
    tls: GatewayTLS | None = None
    """mTLS to every upstream (whose certificate must name the cluster) and on the internal listener;
    None: plaintext (the local default, everything on loopback)."""
    otlp: OtlpCollector | None = None
    """Where Envoy's OpenTelemetry tracer sends the gateway's spans (the services' OTLP endpoint); None: the
    gateway makes no spans (it still forwards the traceparent header untouched)."""
    egress: LLMEgress | None = None
    """The LLM egress listener and its provider cluster; None: services call the provider directly."""
    meta_limits: ClusterLimits = ClusterLimits(max_connections=64, max_pending_requests=256, max_requests=256)
    """Circuit breaker of each of the supervisor's two meta clusters, `supervisor-health` and `supervisor-reflection`:
    health checks and reflection streams need no key, so they get budgets of their own, apart from the runs'."""
    a2a_url: str = ""
    """Where A2A clients reach the public listener (HOST:PORT), as the agent card says; empty: the public
    listener's own address (a bind-all address as 127.0.0.1)."""
    skills: tuple[tuple[str, str], ...] = tuple(SHIPPED.items())
    """(name, description) of each agent of the catalog: the agent card's skills."""
    guard_callers: tuple[str, ...] = ()
    """Agents with MCP tools (catalog `mcp:`): with mTLS, the internal listener also admits their certificates,
    for GuardService/Check alone (they screen tool results with the guard)."""

    @property
    def card_url(self) -> str:
        host, port = self.public
        return self.a2a_url or f"{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"


def render_envoy_config(spec: GatewaySpec) -> str:
    """The Envoy bootstrap YAML for `spec`; raises ValueError for a spec Envoy would reject."""
    _check(spec)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_PATH.parent),
        undefined=jinja2.StrictUndefined,  # a typo in the template fails here, not in Envoy
        autoescape=False,  # YAML, not HTML; strings are quoted with `tojson`
        keep_trailing_newline=True,
    )
    public_api = {
        "services": PUBLIC_SERVICES,
        "descriptor_b64": base64.b64encode(descriptor_set()).decode(),
        # Compact: the checked-in file is indented for review, the served copy need not be.
        "openapi": json.dumps(json.loads(OPENAPI_PATH.read_text()), separators=(",", ":"), ensure_ascii=False),
        "agent_card": agent_card_json(spec.card_url, spec.skills),
    }
    return env.get_template(TEMPLATE_PATH.name).render(spec=spec, public_api=public_api)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def local_spec(
    *,
    ports: Mapping[str, Sequence[int]],
    addresses: Mapping[str, Address] | None = None,
    catalog: Catalog | None = None,
    public: Address = ("127.0.0.1", 8080),
    internal: Address = ("127.0.0.1", 8081),
    admin: Address = ("127.0.0.1", 9901),
    limits: Mapping[str, ClusterLimits] | None = None,
    host: str = "127.0.0.1",
    tls: GatewayTLS | None = None,
    otlp: OtlpCollector | None = None,
    egress: LLMEgress | None = None,
) -> GatewaySpec:
    """Processes on one machine: STATIC endpoints `host:PORT`, one port per replica of each service; `addresses`:
    agents someone else runs (the catalog's address entries), a name resolved by DNS. `catalog` gives agents'
    call limits (timeout_s)."""
    limits = limits or {}
    streams = {e.name: _stream_s(e) for e in catalog or ()}
    upstreams = tuple(
        Upstream(
            name=name,
            endpoints=tuple((host, int(port)) for port in replica_ports),
            limits=limits.get(name, ClusterLimits()),
            max_stream_s=streams.get(name),
        )
        for name, replica_ports in ports.items()
    ) + tuple(
        Upstream(
            name=name,
            endpoints=(addr,),
            limits=limits.get(name, ClusterLimits()),
            dns=not _is_ip(addr[0]),
            max_stream_s=streams.get(name),
        )
        for name, addr in (addresses or {}).items()
    )
    # The supervisor first and the guard last, as the catalog orders the agents between them.
    if catalog is not None:
        upstreams = tuple(sorted(upstreams, key=lambda u: _order(u.name, catalog)))
    return GatewaySpec(
        public=public,
        internal=internal,
        admin=admin,
        upstreams=upstreams,
        tls=tls,
        otlp=otlp,
        egress=egress,
        skills=_skills(catalog),
        guard_callers=guard_callers(catalog),
    )


def guard_callers(catalog: Catalog | None) -> tuple[str, ...]:
    """The catalog's agents with MCP tools: they call the guard through the internal listener."""
    return tuple(e.name for e in catalog or () if e.mcp)


def _skills(catalog: Catalog | None) -> tuple[tuple[str, str], ...]:
    """The agent card's skills: the catalog's agents and their descriptions."""
    catalog = catalog if catalog is not None else default_catalog(Settings.model_construct())
    return tuple(catalog.descriptions().items())


def _catalog_upstreams(catalog: Catalog | None, host_of: Callable[[str], str]) -> tuple[Upstream, ...]:
    """supervisor, each catalog agent, guard: an agent `up` would launch is reached as `host_of(name)` on its
    declared port (a shipped agent's settings default); an address agent at its address."""
    catalog = catalog if catalog is not None else default_catalog(Settings.model_construct())
    core = {name: Upstream(name=name, endpoints=((host_of(name), _default_port(name)),), dns=True) for name in _CORE}
    agents = tuple(
        Upstream(
            name=e.name,
            endpoints=(e.host_port,)
            if e.address is not None
            else (
                (host_of(e.name), _default_port(e.name) if _shipped(e.name) else e.port or COMMAND_AGENT_DEFAULT_PORT),
            ),
            dns=e.address is None or not _is_ip(e.host_port[0]),
            limits=ClusterLimits(max_pending_requests=e.max_requests, max_requests=e.max_requests)
            if e.max_requests and not _shipped(e.name)
            else ClusterLimits(),
            max_stream_s=_stream_s(e),
        )
        for e in catalog
    )
    return (core["supervisor"], *agents, core["guard"])


def compose_spec(catalog: Catalog | None = None) -> GatewaySpec:
    """docker compose: each service reached by its compose name (all its replicas), gateway ports open."""
    return GatewaySpec(
        public=("0.0.0.0", 8080),
        internal=("0.0.0.0", 8081),
        admin=("127.0.0.1", 9901),
        metrics=("0.0.0.0", 9902),
        upstreams=_catalog_upstreams(catalog, lambda name: name),
        skills=_skills(catalog),
        guard_callers=guard_callers(catalog),
        otlp=OtlpCollector(host="jaeger", port=4317, protocol="grpc"),  # docker-compose.yml's Jaeger
    )


def k8s_spec(namespace: str = "agentmesh", catalog: Catalog | None = None) -> GatewaySpec:
    """Kubernetes: one headless Service per workload (`NAME-headless`), so DNS returns every pod."""
    return GatewaySpec(
        public=("0.0.0.0", 8080),
        internal=("0.0.0.0", 8081),
        admin=("127.0.0.1", 9901),
        metrics=("0.0.0.0", 9902),
        # The gateway Service (deploy/k8s/gateway.yaml); clients outside the cluster: render with --a2a-url.
        a2a_url=f"gateway.{namespace}.svc.cluster.local:8080",
        skills=_skills(catalog),
        guard_callers=guard_callers(catalog),
        # Kubernetes names are DNS labels: a catalog name's underscores become dashes there.
        upstreams=_catalog_upstreams(
            catalog, lambda name: f"{name.replace('_', '-')}-headless.{namespace}.svc.cluster.local"
        ),
    )


def _shipped(name: str) -> bool:
    return f"{name}_port" in Settings.model_fields


def _default_port(service: str) -> int:
    # The settings' declared default, not the environment: a rendered compose/k8s config must not
    # depend on the shell that rendered it.
    return int(Settings.model_fields[f"{service}_port"].default)


def _check(spec: GatewaySpec) -> None:
    names = [u.name for u in spec.upstreams]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate upstream names: {names}")
    for upstream in spec.upstreams:
        if not _NAME_RE.match(upstream.name):
            raise ValueError(f"upstream name {upstream.name!r} must match {_NAME_RE.pattern}")
        if not upstream.endpoints:
            raise ValueError(f"upstream {upstream.name!r} has no endpoints")
    missing = [name for name in _REQUIRED_UPSTREAMS if name not in names]
    if missing:
        raise ValueError(f"the public routes need upstreams {missing}")
    if spec.egress is not None:
        if spec.egress.concurrency < 1:
            raise ValueError(f"LLM egress concurrency must be at least 1, not {spec.egress.concurrency}")
        if spec.egress.max_pending_requests < 1:
            raise ValueError("LLM egress max_pending_requests must be at least 1")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.render", description="Print the gateway's Envoy config.")
    parser.add_argument("--target", choices=("local", "compose", "k8s"), required=True)
    parser.add_argument("--namespace", default="agentmesh", help="k8s only")
    parser.add_argument("--agents", default=None, help="the agent catalog (YAML); default: the shipped agents")
    parser.add_argument(
        "--tls-dir",
        default=None,
        help="mTLS to the services: the directory of `agentmesh certs` files as Envoy sees it",
    )
    parser.add_argument(
        "--llm-mesh-concurrency",
        type=int,
        default=0,
        help="add the LLM egress listener (port 8082) with this many provider calls in flight; 0 (default): none",
    )
    parser.add_argument(
        "--llm-provider",
        default=None,
        help=f"the egress's provider URL (default: local the simulator, else {ANTHROPIC_API_URL})",
    )
    parser.add_argument(
        "--a2a-url",
        default="",
        help="the gateway address the A2A agent card names (HOST:PORT; default: the public listener's, in-cluster "
        "for k8s)",
    )
    args = parser.parse_args(argv)
    catalog = load_catalog(args.agents, Settings.model_construct())  # declared defaults, not the shell's
    if args.target == "local":
        # One replica per service on the settings' default ports, the same layout `agentmesh up` uses.
        settings = Settings()
        ports = {name: [_default_port(name)] for name in _CORE}
        ports |= {e.name: [e.port or COMMAND_AGENT_DEFAULT_PORT] for e in catalog if e.address is None}
        spec = local_spec(
            ports=ports,
            addresses={e.name: e.host_port for e in catalog if e.address is not None},
            catalog=catalog,
            limits=cluster_limits(settings, load_catalog(args.agents, settings)),
        )
    elif args.target == "compose":
        spec = compose_spec(catalog)
    else:
        spec = k8s_spec(args.namespace, catalog)
    if args.tls_dir:
        spec = dataclasses.replace(spec, tls=GatewayTLS.in_dir(args.tls_dir))
    if args.a2a_url:
        spec = dataclasses.replace(spec, a2a_url=args.a2a_url)
    if args.llm_mesh_concurrency > 0:
        local = args.target == "local"
        settings = Settings()
        url = args.llm_provider or (settings.sim_url if local else ANTHROPIC_API_URL)
        # compose/k8s: the declared default port, not the shell's environment (as for the services' ports).
        listen = (
            _split_addr(settings.gateway_egress_addr)
            if local
            else ("0.0.0.0", _split_addr(str(Settings.model_fields["gateway_egress_addr"].default))[1])
        )
        egress = LLMEgress.for_url(url, listen=listen, concurrency=args.llm_mesh_concurrency)
        if egress.tls and local:
            egress = dataclasses.replace(egress, ca_file=system_ca_file())
        spec = dataclasses.replace(spec, egress=egress)
    sys.stdout.write(render_envoy_config(spec))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
