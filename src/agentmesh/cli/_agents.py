"""`agentmesh agents list`: each catalog agent with the gateway's view of it: healthy hosts, replicas, and
calls and errors over the last minute (Envoy's per-cluster gRPC counters, sampled by `agentmesh up`), plus its
A2A-style agent card with `--json`."""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import time
import urllib.request
from pathlib import Path
from typing import Any

from agentmesh.catalog import Catalog, CatalogError, agent_card, load_catalog
from agentmesh.cli._exit import CliError, ExitCode
from agentmesh.services.supervisor.health import read_clusters
from agentmesh.settings import Settings

WINDOW_S = 60.0
SAMPLE_EVERY_S = 5.0
WINDOW_FILE = "agent-calls.json"
"""Under the data dir: `agentmesh up`'s last-minute counts per agent, rewritten every SAMPLE_EVERY_S."""
CATALOG_FILE = "agents-file"
"""Under the data dir: the catalog `agentmesh up --agents` was started with, so `agents list` finds it."""

Counts = dict[str, tuple[int, int]]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("agents", help="the agent catalog and the gateway's view of each agent")
    asub = p.add_subparsers(dest="agents_cmd", required=True)
    ls = asub.add_parser(
        "list", help="each catalog agent: health at the gateway, replicas, calls and errors over the last minute"
    )
    ls.add_argument(
        "--agents", default=None, metavar="FILE", help="the catalog (default: AGENTMESH_AGENTS_FILE, else up's)"
    )
    ls.add_argument("--json", action="store_true", help="one JSON document, with each agent's card")


def read_counters(admin_addr: str, timeout_s: float = 2.0) -> Counts:
    """Cluster -> (gRPC calls, gRPC failures) since the gateway started; Envoy's own refusals (no healthy host,
    circuit breaker) count as failures too."""
    url = f"http://{admin_addr}/stats?format=json&filter=" + r"^cluster\.[^.]+\.grpc\.(total|failure)$"
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        stats = json.loads(resp.read())["stats"]
    out: dict[str, list[int]] = {}
    for s in stats:
        if "value" not in s:
            continue
        _, cluster, _, which = s["name"].split(".")
        out.setdefault(cluster, [0, 0])[which == "failure"] = int(s["value"])
    return {k: (v[0], v[1]) for k, v in out.items()}


class CallWindow:
    """Samples the counters every SAMPLE_EVERY_S and writes the last minute's difference to the data dir
    (Envoy counts from its start; a rate over a window needs two samples a window apart)."""

    def __init__(self, admin_addr: str, data_dir: Path) -> None:
        self._admin = admin_addr
        self._path = data_dir / WINDOW_FILE
        self._samples: collections.deque[tuple[float, Counts]] = collections.deque()

    def sample(self) -> None:
        now = time.time()
        counts = read_counters(self._admin)
        self._samples.append((now, counts))
        while len(self._samples) > 1 and now - self._samples[1][0] >= WINDOW_S:
            self._samples.popleft()
        then, old = self._samples[0]
        agents = {
            name: {"calls": calls - old.get(name, (0, 0))[0], "errors": errors - old.get(name, (0, 0))[1]}
            for name, (calls, errors) in counts.items()
        }
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"at": now, "window_s": round(now - then, 1), "agents": agents}))
        os.replace(tmp, self._path)  # readers never see half a file

    async def run(self) -> None:
        while True:
            with contextlib.suppress(OSError, ValueError):
                await asyncio.to_thread(self.sample)
            await asyncio.sleep(SAMPLE_EVERY_S)


def _window(settings: Settings) -> dict[str, Any] | None:
    """`up`'s last-minute counts if they are current (the launcher is running), else None."""
    try:
        data: dict[str, Any] = json.loads((settings.data_dir / WINDOW_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if time.time() - float(data.get("at", 0)) < 3 * SAMPLE_EVERY_S else None


def _catalog(args: argparse.Namespace, settings: Settings) -> Catalog:
    path = args.agents or settings.agents_file
    if path is None:
        with contextlib.suppress(OSError):
            path = (settings.data_dir / CATALOG_FILE).read_text().strip() or None
    return load_catalog(path, settings)


def rows(catalog: Catalog, settings: Settings) -> tuple[list[dict[str, Any]], str]:
    """One row per agent, and where the call counts come from."""
    try:
        health: dict[str, tuple[int, int]] | None = read_clusters(settings.gateway_admin_addr)
    except (OSError, ValueError):
        health = None
    window = _window(settings)
    since = f"no gateway admin at {settings.gateway_admin_addr}"
    counts: dict[str, dict[str, int]] = {}
    if window is not None:
        counts = window["agents"]
        since = f"last {window['window_s']:g} s"
    else:
        with contextlib.suppress(OSError, ValueError):
            counts = {k: {"calls": c, "errors": e} for k, (c, e) in read_counters(settings.gateway_admin_addr).items()}
            since = "since the gateway started"
    out = []
    for entry in catalog:
        healthy, hosts = health.get(entry.name, (0, 0)) if health is not None else (None, None)
        calls = counts.get(entry.name, {})
        out.append(
            {
                "name": entry.name,
                "description": entry.description,
                "kind": "command" if entry.launched else "address",
                "address": entry.address,
                "command": list(entry.command) if entry.command else None,
                "replicas": entry.replicas if entry.launched else None,
                "healthy_hosts": healthy,
                "hosts": hosts,
                "health": "unknown" if healthy is None else "healthy" if healthy else "down",
                "calls": calls.get("calls"),
                "errors": calls.get("errors"),
                "card": agent_card(entry, url=entry.address or ""),
            }
        )
    return out, since


async def run(args: argparse.Namespace) -> int:
    settings = Settings()
    try:
        catalog = _catalog(args, settings)
    except CatalogError as exc:
        raise CliError(exc.message, ExitCode.USAGE) from None
    table, since = await asyncio.to_thread(rows, catalog, settings)
    if args.json:
        print(json.dumps({"gateway_admin": settings.gateway_admin_addr, "counted": since, "agents": table}, indent=2))
        return 0
    print(f"{'NAME':<16} {'HEALTH':<8} {'HOSTS':<6} {'REPLICAS':<9} {'CALLS':>6} {'ERRORS':>7}  WHERE  ({since})")
    for r in table:
        hosts = "-" if r["hosts"] is None else f"{r['healthy_hosts']}/{r['hosts']}"
        where = r["address"] or " ".join(r["command"] or ())
        calls = "-" if r["calls"] is None else r["calls"]
        errors = "-" if r["errors"] is None else r["errors"]
        print(
            f"{r['name']:<16} {r['health']:<8} {hosts:<6} {r['replicas'] or '-'!s:<9} {calls:>6} {errors:>7}  {where}"
        )
    return 0
