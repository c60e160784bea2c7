"""The gateway: one Envoy config template and its renderer (local, docker-compose, Kubernetes)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentmesh.gateway.render import (
        ClusterLimits,
        GatewaySpec,
        GatewayTLS,
        LLMEgress,
        Upstream,
        cluster_limits,
        compose_spec,
        k8s_spec,
        llm_egress,
        local_spec,
        render_envoy_config,
    )

__all__ = [
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


def __getattr__(name: str) -> object:
    # Imported on first use, not here: `python -m gateway.render` would otherwise find the module
    # already imported by this package and run it twice (runpy warns).
    if name in __all__:
        from agentmesh.gateway import render

        return getattr(render, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
