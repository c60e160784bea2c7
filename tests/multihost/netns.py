"""A lab of Linux network namespaces on one bridge: one "host" per namespace, each with its own address and its
own /etc/hosts (`ip netns exec` bind-mounts /etc/netns/NAME/hosts over /etc/hosts), and processes started in
them. Everything it makes carries a per-process prefix and is removed by `Lab.close()`, which is idempotent and
safe to call from finally, atexit and a signal handler; leftovers of a lab whose process died are swept at start."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

NETNS_ETC = Path("/etc/netns")
PREFIX_BASE = "amh"
WORKDIR_PREFIX = "agentmesh-multihost-"  # amh<pid>-<host>: the pid tells a live lab from a dead one's leftovers


class Unavailable(Exception):
    """Namespaces cannot be made here (not root, no `ip`, or the kernel refuses)."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=30)


def probe() -> None:
    """Raise Unavailable with the reason when this process cannot make network namespaces."""
    if os.geteuid() != 0:
        raise Unavailable("not root (network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN)")
    if shutil.which("ip") is None:
        raise Unavailable("no `ip` command (iproute2)")
    name = f"{PREFIX_BASE}{os.getpid()}-probe"
    try:
        r = _ip("netns", "add", name, check=False)
        if r.returncode != 0:
            raise Unavailable(f"`ip netns add` failed: {r.stderr.strip()}")
    finally:
        _ip("netns", "del", name, check=False)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale() -> list[str]:
    """Remove namespaces, bridges and /etc/netns dirs of labs whose process is gone (a SIGKILLed run)."""
    removed: list[str] = []
    stale = []
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.match(rf"^{PREFIX_BASE}(\d+)-", name)
        if m and not _pid_alive(int(m.group(1))):
            stale.append(name)
    _kill_netns_pids(*stale)
    for name in stale:
        _ip("netns", "del", name, check=False)
        shutil.rmtree(NETNS_ETC / name, ignore_errors=True)
        removed.append(name)
    with contextlib.suppress(OSError):
        NETNS_ETC.rmdir()  # only if empty: someone else's namespaces may keep files there
    for line in _ip("-o", "link", "show", "type", "bridge", check=False).stdout.splitlines():
        m = re.match(rf"^\d+: ({PREFIX_BASE}(\d+)br)[:@]", line)
        if m and not _pid_alive(int(m.group(2))):
            _ip("link", "del", m.group(1), check=False)
            removed.append(m.group(1))
    for d in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*"):
        m = re.match(rf"^{WORKDIR_PREFIX}(\d+)-", d.name)
        if m and not _pid_alive(int(m.group(1))) and not d.name.endswith("-logs"):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(str(d))
    return removed


def make_workdir() -> Path:
    """The lab's temp dir, named with this pid so that a later run can tell it is a dead lab's."""
    return Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-"))


def netns_pids(ns: str) -> list[int]:
    r = _ip("netns", "pids", ns, check=False)
    return [int(p) for p in r.stdout.split() if p.isdigit()]


def _kill_netns_pids(*namespaces: str, grace_s: float = 3.0) -> None:
    """SIGTERM, then SIGKILL after `grace_s`, each process living in these namespaces (all started by this lab);
    every namespace at once, so tearing down a lab takes one grace period, not one per host."""
    pids = [pid for ns in namespaces for pid in netns_pids(ns)]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while pids and time.monotonic() < deadline:
        time.sleep(0.1)
        pids = [p for p in pids if _pid_alive(p) and not _zombie(p)]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def pick_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.77-10.79.x.0 that no route or address of this machine overlaps (another lab included)."""
    used = []
    for line in _ip("-4", "route", "show", "table", "all", check=False).stdout.splitlines():
        word = line.split()[0] if line.split() else ""
        with contextlib.suppress(ValueError):
            used.append(ipaddress.ip_network(word if "/" in word or word == "default" else f"{word}/32", strict=False))
    used = [u for u in used if u.prefixlen > 0]
    start = os.getpid() % 250
    for second in (77, 78, 79):
        for i in range(250):
            net = ipaddress.IPv4Network(f"10.{second}.{(start + i) % 250 + 1}.0/24")
            if not any(net.overlaps(u) for u in used):
                return net
    raise Unavailable("no free /24 in 10.77-79.x.0")


@dataclass
class Host:
    name: str
    ns: str
    ip: str
    veth: str  # the bridge-side end, in the root namespace
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)


class Lab:
    def __init__(self, workdir: Path) -> None:
        self.prefix = f"{PREFIX_BASE}{os.getpid()}"
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.net = pick_subnet()
        self.bridge = f"{self.prefix}br"
        self.bridge_ip = str(self.net.network_address + 1)
        self.hosts: dict[str, Host] = {}
        self._closed = False
        self._made_netns_etc = not NETNS_ETC.exists()
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.bridge_ip}/{self.net.prefixlen}", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def add_host(self, name: str) -> Host:
        ns = f"{self.prefix}-{name}"
        ip = str(self.net.network_address + 10 + len(self.hosts))
        veth = f"{self.prefix}v{len(self.hosts)}"
        host = Host(name, ns, ip, veth)
        self.hosts[name] = host  # registered first, so close() removes a half-made host too
        _ip("netns", "add", ns)
        _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip("link", "set", veth, "master", self.bridge, "up")
        _ip("-n", ns, "addr", "add", f"{ip}/{self.net.prefixlen}", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        return host

    def write_etc(self, nameserver: str) -> None:
        """Each namespace's /etc/hosts (localhost and every host by its name) and /etc/resolv.conf (`nameserver`,
        which answers the service names with every replica, as compose's DNS does)."""
        lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback"]
        lines += [f"{h.ip} {h.name}" for h in self.hosts.values()]
        for host in self.hosts.values():
            d = NETNS_ETC / host.ns
            d.mkdir(parents=True, exist_ok=True)
            (d / "hosts").write_text("\n".join(lines) + "\n")
            (d / "resolv.conf").write_text(f"nameserver {nameserver}\noptions timeout:1 attempts:2\n")

    def spawn(
        self, host: Host, argv: Sequence[str], env: Mapping[str, str], log: str, *, user: str | None = None
    ) -> subprocess.Popen[bytes]:
        """Start argv inside the host's namespace (`ip netns exec` execs it, so the pid is the program's)."""
        prefix = ["ip", "netns", "exec", host.ns] + (["runuser", "-u", user, "--"] if user else [])
        with open(self.logs / f"{log}.log", "ab") as out:
            proc = subprocess.Popen(
                [*prefix, *argv],
                env=dict(env),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        host.procs.append(proc)
        return proc

    def run(
        self, host: Host, argv: Sequence[str], env: Mapping[str, str], *, user: str | None = None, timeout: float = 120
    ) -> str:
        """Run a one-shot job inside the host's namespace; its stdout, or RuntimeError with its output."""
        prefix = ["ip", "netns", "exec", host.ns] + (["runuser", "-u", user, "--"] if user else [])
        r = subprocess.run([*prefix, *argv], env=dict(env), capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:4])} on {host.name} failed ({r.returncode}): {r.stdout}{r.stderr}")
        return r.stdout

    def kill_host(self, host: Host) -> list[int]:
        """SIGKILL every process in the host's namespace (a host crash); returns their pids."""
        pids = netns_pids(host.ns)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in host.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        return pids

    def link(self, host: Host, up: bool) -> None:
        """Plug or unplug the host's cable: the bridge-side end of its veth (the host sees NO-CARRIER)."""
        _ip("link", "set", host.veth, "up" if up else "down")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        _kill_netns_pids(*(host.ns for host in self.hosts.values()))
        for host in self.hosts.values():
            for proc in host.procs:
                with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
                    if proc.poll() is None:
                        proc.kill()
                    proc.wait(5)
        for host in self.hosts.values():
            _ip("netns", "del", host.ns, check=False)  # deletes its veth pair too
            _ip("link", "del", host.veth, check=False)
            shutil.rmtree(NETNS_ETC / host.ns, ignore_errors=True)
        _ip("link", "del", self.bridge, check=False)
        if self._made_netns_etc:
            with contextlib.suppress(OSError):
                NETNS_ETC.rmdir()
