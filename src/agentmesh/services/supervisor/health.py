"""Which agents the gateway can reach: its view of each cluster's hosts (Envoy admin `/clusters?format=json`,
health checks and outlier ejection), read at most once per `ttl_s`, so the router never offers an agent
whose calls would fail at once with "no healthy upstream"."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from agentmesh.errors import Unavailable

log = logging.getLogger(__name__)

# Envoy's per-host failure flags (admin ClusterStatus.host_statuses[].health_status): any of them set, or an EDS
# status other than HEALTHY, keeps the host out of load balancing.
_FAILURE_FLAGS = (
    "failed_active_health_check",
    "failed_outlier_check",
    "failed_active_degraded_check",
    "pending_dynamic_removal",
    "pending_active_hc",
    "excluded_via_immediate_hc_fail",
    "active_hc_timeout",
)


def host_healthy(status: Mapping[str, Any]) -> bool:
    return status.get("eds_health_status", "HEALTHY") == "HEALTHY" and not any(status.get(f) for f in _FAILURE_FLAGS)


def healthy_hosts(clusters: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    """Cluster name -> (healthy hosts, hosts), from the admin's `/clusters?format=json` document."""
    out: dict[str, tuple[int, int]] = {}
    for cluster in clusters.get("cluster_statuses", ()):
        hosts = cluster.get("host_statuses", ())
        out[cluster["name"]] = (sum(host_healthy(h.get("health_status", {})) for h in hosts), len(hosts))
    return out


def read_clusters(admin_addr: str, timeout_s: float = 1.0) -> dict[str, tuple[int, int]]:
    """Blocking: one admin call. Raises OSError (or ValueError) when the admin cannot answer."""
    url = f"http://{admin_addr}/clusters?format=json"
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        return healthy_hosts(json.loads(resp.read()))


class GatewayHealth:
    """`await healthy(names)`: the subset with at least one healthy host. When the admin interface cannot be read
    (not reachable from this host: compose, Kubernetes), every agent counts as healthy, as before this check, and
    that is logged once."""

    def __init__(self, admin_addr: str, *, ttl_s: float = 2.0) -> None:
        self._addr = admin_addr
        self._ttl_s = ttl_s
        self._at = -1e9
        self._view: dict[str, tuple[int, int]] | None = None
        self._lock = asyncio.Lock()
        self._warned = False

    async def view(self) -> dict[str, tuple[int, int]] | None:
        async with self._lock:  # one admin call per TTL however many runs route at once
            if time.monotonic() - self._at >= self._ttl_s:
                try:
                    self._view = await asyncio.to_thread(read_clusters, self._addr)
                except (OSError, ValueError) as exc:
                    if not self._warned:
                        log.warning("gateway admin unreadable; routing to every agent", extra={"error": str(exc)})
                        self._warned = True
                    self._view = None
                self._at = time.monotonic()
            return self._view

    async def unhealthy(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """Those of `names` the gateway has no healthy host for (none when its view is unknown)."""
        view = await self.view()
        if view is None:
            return ()
        return tuple(n for n in names if view.get(n, (0, 0))[0] == 0)


async def offered(
    health: GatewayHealth | None, agents: tuple[str, ...], *, done: Sequence[str], run_id: str
) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    """(the agents to offer the router, those left out, the note the route step records about them). With every
    agent down and none done yet there is no answer to give: UNAVAILABLE, and Resume continues the run later."""
    down = await health.unhealthy(agents) if health is not None else ()
    if not down:
        return agents, (), ""
    log.warning("agents skipped by the router: no healthy host", extra={"run_id": run_id, "skipped": down})
    note = f"no healthy host at the gateway, not offered: {', '.join(down)}"
    available = tuple(a for a in agents if a not in down)
    if not available and not done:
        raise no_healthy_agent(down)
    return available, down, note


def no_healthy_agent(down: tuple[str, ...]) -> Unavailable:
    return Unavailable(
        f"no agent of the catalog has a healthy host at the gateway ({', '.join(down)}); "
        "Resume continues the run once one is back",
        reason="NO_HEALTHY_AGENT",
    )
