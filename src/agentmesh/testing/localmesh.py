"""Start the whole mesh with `agentmesh up` as a child process on free ports, and talk to it: its
simulator's control plane, Envoy's admin stats. Tests and benchmarks share this."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentmesh.settings import REPLICA_PORT_STRIDE, SERVICES


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# Up to this many replicas of a service get ports that are known to be free (`up --replicas NAME=N`).
_REPLICAS_RESERVED = 3


def _service_ports(metrics_offset: int, taken: set[int]) -> dict[str, int]:
    """A free gRPC port per service such that its replicas' ports (port + i * the launcher's stride) and every
    metrics port (+ offset) are free too and nobody else's: a replica that cannot bind would leave its
    address to whatever process holds it, and Envoy would route calls there."""

    ports: dict[str, int] = {}
    for name in SERVICES:
        for _ in range(200):
            port = free_port()
            grpc_ports = [port + i * REPLICA_PORT_STRIDE for i in range(_REPLICAS_RESERVED)]
            wanted = grpc_ports + ([p + metrics_offset for p in grpc_ports] if metrics_offset else [])
            if all(p < 65536 and p not in taken for p in wanted) and all(_bindable(p) for p in wanted[1:]):
                break
        ports[name] = port
        taken |= set(wanted)
    return ports


def _free_ports(n: int, taken: set[int]) -> list[int]:
    out: list[int] = []
    while len(out) < n:
        port = free_port()
        if port not in taken:
            taken.add(port)
            out.append(port)
    return out


@dataclass
class Mesh:
    proc: subprocess.Popen[str]
    gateway: str
    internal: str
    admin: str
    sim: str
    key: str
    ports: dict[str, int]
    data_dir: Path
    env: dict[str, str]
    lines: list[str] = field(default_factory=list)
    egress: str = ""
    """The gateway's LLM egress listener (host:port); rendered only with AGENTMESH_LLM_MESH_CONCURRENCY set."""

    def auth(self, key: str | None = None) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {key or self.key}"),)

    # --- simulator control plane -----------------------------------------------------------------
    def sim_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = json.loads(urllib.request.urlopen(f"{self.sim}/_sim/stats", timeout=5).read())
        return stats

    def set_faults(self, **faults: Any) -> None:
        req = urllib.request.Request(
            f"{self.sim}/_sim/faults",
            data=json.dumps(faults).encode(),
            method="PUT",
            headers={"content-type": "application/json"},
        )
        urllib.request.urlopen(req, timeout=5).read()

    def reset_sim(self) -> None:
        req = urllib.request.Request(f"{self.sim}/_sim/reset?faults=1", data=b"", method="POST")
        urllib.request.urlopen(req, timeout=5).read()

    # --- Envoy admin -------------------------------------------------------------------------------
    def envoy_stats(self) -> dict[str, int]:
        body = json.loads(urllib.request.urlopen(f"http://{self.admin}/stats?format=json", timeout=5).read())
        return {s["name"]: s.get("value", 0) for s in body["stats"] if "value" in s}

    def replica_pids(self) -> dict[str, int]:
        """Process label -> pid, replicas included ("researcher-1", "researcher-2" under --replicas)."""
        out = {}
        for line in self.lines:
            m = re.match(r"^([a-z]+(?:-\d+)?)\s+\S+:(\d+)\s+pid (\d+)", line)
            if m and m.group(1).split("-")[0] in SERVICES:
                out[m.group(1)] = int(m.group(3))
        return out

    def metrics_urls(self) -> dict[str, str]:
        """Process label -> its Prometheus /metrics URL, from the launcher's output."""
        out = {}
        for line in self.lines:
            m = re.match(r"^([a-z]+(?:-\d+)?)\s+\S+:\d+\s+pid \d+.*\smetrics (\S+)", line)
            if m:
                out[m.group(1)] = m.group(2)
        return out

    def pids(self) -> dict[str, int]:
        """Service name -> pid of its `serve NAME` process, from the launcher's output."""
        out = {}
        for line in self.lines:
            m = re.match(r"^(\w+)\s+\S+:(\d+)\s+pid (\d+)", line)
            if m and m.group(1) in SERVICES:
                out[m.group(1)] = int(m.group(3))
        return out


def start_mesh(
    data_dir: Path,
    database_url: str | None,
    *,
    extra_env: dict[str, str] | None = None,
    up_args: Sequence[str] = (),
    timeout_s: float = 120,
) -> Mesh:
    """`agentmesh up [up_args]` (e.g. ["--replicas", "researcher=2"]) on free ports; returns once it is ready."""
    offset = int((extra_env or {}).get("AGENTMESH_METRICS_PORT_OFFSET", 1000))
    taken: set[int] = set()
    ports = _service_ports(offset, taken)
    gateway, internal, admin, sim, egress = _free_ports(5, taken)
    env = {
        **os.environ,
        "AGENTMESH_DATA_DIR": str(data_dir),
        "AGENTMESH_GATEWAY_ADDR": f"127.0.0.1:{gateway}",
        "AGENTMESH_GATEWAY_INTERNAL_ADDR": f"127.0.0.1:{internal}",
        "AGENTMESH_GATEWAY_ADMIN_ADDR": f"127.0.0.1:{admin}",
        "AGENTMESH_GATEWAY_EGRESS_ADDR": f"127.0.0.1:{egress}",
        "AGENTMESH_SIM_PORT": str(sim),
        **{f"AGENTMESH_{name.upper()}_PORT": str(port) for name, port in ports.items()},
        **(extra_env or {}),
    }
    env.pop("ANTHROPIC_API_KEY", None)
    env.pop("DATABASE_URL", None)
    if database_url is not None:  # None: the launcher starts its embedded Postgres under data_dir
        env["DATABASE_URL"] = database_url
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentmesh", "up", *up_args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("gateway ready on"):
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    # The event is also set when `up` closes its output: only a "gateway ready" line means it is ready.
    became_ready = ready.wait(timeout_s) and any(line.startswith("gateway ready on") for line in lines)
    if not became_ready or proc.poll() is not None:
        stop_mesh(proc)
        raise RuntimeError("agentmesh up did not become ready:\n" + "\n".join(lines[-30:]))
    key = next(line.split("dev api key:", 1)[1].strip() for line in lines if "dev api key:" in line)
    sim_url = next(line.split("simulator ready on", 1)[1].strip() for line in lines if "simulator ready on" in line)
    return Mesh(
        proc,
        f"127.0.0.1:{gateway}",
        f"127.0.0.1:{internal}",
        f"127.0.0.1:{admin}",
        sim_url,
        key,
        ports,
        data_dir,
        env,
        lines,
        egress=env["AGENTMESH_GATEWAY_EGRESS_ADDR"],
    )


def stop_mesh(proc: subprocess.Popen[str], timeout_s: float = 30) -> int | None:
    """SIGTERM the launcher (it stops its children); kill its process group only if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    return proc.returncode


def wait_until(predicate: Callable[[], object], timeout_s: float, interval_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())
