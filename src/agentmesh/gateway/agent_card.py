"""The mesh's A2A agent card, served by the gateway at GET /.well-known/agent-card.json (no key needed). The card
itself is built in the runtime (agentmesh.agentcard), so the catalog's per-agent cards have the same shape."""

from __future__ import annotations

from collections.abc import Sequence

from a2a.types import a2a_pb2

from agentmesh.agentcard import CARD_PATH, SECURITY_SCHEME, card_json, mesh_card

__all__ = ["CARD_PATH", "SECURITY_SCHEME", "agent_card", "agent_card_json"]


def agent_card(url: str, skills: Sequence[tuple[str, str]]) -> a2a_pb2.AgentCard:
    """The card for a gateway that A2A clients reach at `url` (HOST:PORT); `skills`: (name, description) of each
    agent of the catalog, the agents the supervisor routes to."""
    return mesh_card(url, skills)


def agent_card_json(url: str, skills: Sequence[tuple[str, str]]) -> str:
    """The card as served: compact proto3 JSON."""
    return card_json(mesh_card(url, skills))
