"""The mesh's A2A agent card, served by the gateway at GET /.well-known/agent-card.json (no key needed).

Built as a2a-sdk's own `AgentCard` message, so a card that does not fit the A2A v1 schema fails at render time,
and printed in its proto3 JSON form (camelCase names), which is what A2A clients parse. It names the one
interface the mesh speaks A2A on: the A2A v1 gRPC binding on the gateway's public port (the supervisor serves
it behind the gateway), with the mesh's API keys as an HTTP bearer scheme."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence

from a2a.types import a2a_pb2
from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH, PROTOCOL_VERSION_CURRENT, TransportProtocol
from google.protobuf import json_format

CARD_PATH = AGENT_CARD_WELL_KNOWN_PATH
SECURITY_SCHEME = "apiKey"


def _version() -> str:
    try:
        return importlib.metadata.version("agentmesh")
    except importlib.metadata.PackageNotFoundError:  # a source checkout run without installing
        return "0.0.0"


def agent_card(url: str, skills: Sequence[tuple[str, str]]) -> a2a_pb2.AgentCard:
    """The card for a gateway that A2A clients reach at `url` (gRPC target form, HOST:PORT); `skills`:
    (name, description) of each agent of the catalog, the agents the supervisor routes to."""
    return a2a_pb2.AgentCard(
        name="agentmesh",
        description=(
            "A supervisor routes each message to the agents below until the request is answered; a guard checks "
            "the input and the answer. A message starts a task (a run), its context is a thread: send the same "
            "context_id to continue a conversation."
        ),
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
        skills=[
            # The shipped descriptions complete "researcher: ..." in the routing prompt; a card says them alone.
            a2a_pb2.AgentSkill(
                id=name, name=name, description=description[:1].upper() + description[1:], tags=["agentmesh", name]
            )
            for name, description in skills
        ],
    )


def agent_card_json(url: str, skills: Sequence[tuple[str, str]]) -> str:
    """The card as served: compact proto3 JSON."""
    return str(json_format.MessageToJson(agent_card(url, skills), indent=None, sort_keys=True))
