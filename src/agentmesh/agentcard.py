"""A2A agent cards, one shape for every card agentmesh writes: a2a-sdk's own `AgentCard` message, so a card that
does not fit the A2A v1 schema fails when it is built, printed in its proto3 JSON form (camelCase names), which is
what A2A clients parse.

Two cards use it: the mesh's, served by the gateway at GET /.well-known/agent-card.json (agentmesh.gateway renders
it), whose skills are the catalog's agents; and one agent's (`agentmesh agents list --json`, via the catalog), the
same card narrowed to that agent's skill. Both name the one interface the mesh speaks A2A on: the A2A v1 gRPC
binding on the gateway's public port (the supervisor serves it behind the gateway; an agent itself speaks
agentmesh.v1.AgentService, not A2A), with the mesh's API keys as an HTTP bearer scheme. Runtime code: it imports no
gateway, so the catalog can use it."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from typing import Any

from a2a.types import a2a_pb2
from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH, PROTOCOL_VERSION_CURRENT, TransportProtocol
from google.protobuf import json_format

__all__ = ["CARD_PATH", "SECURITY_SCHEME", "agent_card", "card_dict", "card_json", "mesh_card", "skill"]

CARD_PATH = AGENT_CARD_WELL_KNOWN_PATH
SECURITY_SCHEME = "apiKey"
MESH_DESCRIPTION = (
    "A supervisor routes each message to the agents below until the request is answered; a guard checks "
    "the input and the answer. A message starts a task (a run), its context is a thread: send the same "
    "context_id to continue a conversation."
)


def _version() -> str:
    try:
        return importlib.metadata.version("agentmesh")
    except importlib.metadata.PackageNotFoundError:  # a source checkout run without installing
        return "0.0.0"


def _alone(description: str) -> str:
    # The shipped descriptions complete "researcher: ..." in the routing prompt; a card says them alone, capitalised.
    return description[:1].upper() + description[1:]


def skill(name: str, description: str) -> a2a_pb2.AgentSkill:
    """A catalog agent as a skill."""
    return a2a_pb2.AgentSkill(id=name, name=name, description=_alone(description), tags=["agentmesh", name])


def agent_card(name: str, description: str, url: str, skills: Sequence[tuple[str, str]]) -> a2a_pb2.AgentCard:
    """A card reached at `url` (the gateway's public address, gRPC target form HOST:PORT); `skills`: (name,
    description) of the catalog agents it offers."""
    return a2a_pb2.AgentCard(
        name=name,
        description=_alone(description),
        supported_interfaces=[
            a2a_pb2.AgentInterface(
                url=url, protocol_binding=TransportProtocol.GRPC.value, protocol_version=PROTOCOL_VERSION_CURRENT
            )
        ],
        version=_version(),
        capabilities=a2a_pb2.AgentCapabilities(streaming=True, push_notifications=False, extended_agent_card=False),
        security_schemes={
            SECURITY_SCHEME: a2a_pb2.SecurityScheme(
                http_auth_security_scheme=a2a_pb2.HTTPAuthSecurityScheme(
                    scheme="Bearer",
                    description="An agentmesh API key (`agentmesh keys create --tenant NAME`), sent as gRPC "
                    "metadata `authorization: Bearer KEY`; the key's tenant owns the tasks.",
                )
            )
        },
        security_requirements=[a2a_pb2.SecurityRequirement(schemes={SECURITY_SCHEME: a2a_pb2.StringList()})],
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[skill(n, d) for n, d in skills],
    )


def mesh_card(url: str, skills: Sequence[tuple[str, str]]) -> a2a_pb2.AgentCard:
    """The mesh's card, as the gateway serves it: every catalog agent a skill."""
    return agent_card("agentmesh", MESH_DESCRIPTION, url, skills)


def card_dict(card: a2a_pb2.AgentCard) -> dict[str, Any]:
    """The card as A2A JSON (camelCase names), as a dict."""
    return dict(json_format.MessageToDict(card))


def card_json(card: a2a_pb2.AgentCard) -> str:
    """The card as served: compact proto3 JSON."""
    return str(json_format.MessageToJson(card, indent=None, sort_keys=True))
