"""Routing over a catalog: the router's prompts carry each agent's description, the gateway's host view decides
which agents are offered, and the simulator sends a request to the catalog agent whose description fits it."""

from __future__ import annotations

import pytest

from agentmesh.catalog import SHIPPED
from agentmesh.errors import Unavailable
from agentmesh.services.supervisor.health import GatewayHealth, healthy_hosts, offered
from agentmesh.services.supervisor.router import allowed_next, router_system, routing_prompt
from agentmesh.testing.sim._responder import route
from tests.mesh import free_port

TRANSLATOR = "Translates text between languages; give it the text and the target language."
AGENTS = dict(SHIPPED) | {"translator": TRANSLATOR}


def test_the_router_is_told_each_catalog_agent_and_its_description() -> None:
    system = router_system(AGENTS)
    assert all(f"- {name}: " in system for name in AGENTS) and TRANSLATOR in system
    prompt = routing_prompt("Translate hello into German", [], allowed_next(list(AGENTS), []), AGENTS)
    assert (
        f"Agent translator: {TRANSLATOR}" in prompt and "Allowed: researcher, analyst, executor, translator" in prompt
    )


def test_a_host_counts_as_healthy_only_without_failure_flags() -> None:
    # The shape of Envoy's /clusters?format=json, as seen from a mesh with one agent nobody serves.
    doc = {
        "cluster_statuses": [
            {"name": "researcher", "host_statuses": [{"health_status": {"eds_health_status": "HEALTHY"}}]},
            {
                "name": "translator",
                "host_statuses": [
                    {"health_status": {"failed_active_health_check": True, "eds_health_status": "HEALTHY"}},
                    {"health_status": {"failed_outlier_check": True, "eds_health_status": "HEALTHY"}},
                ],
            },
            {"name": "summarizer", "host_statuses": []},
        ]
    }
    assert healthy_hosts(doc) == {"researcher": (1, 1), "translator": (0, 2), "summarizer": (0, 0)}


async def test_an_unreadable_gateway_admin_offers_every_agent() -> None:
    health = GatewayHealth(f"127.0.0.1:{free_port()}", ttl_s=60)  # nothing listens there
    agents = tuple(AGENTS)
    assert await offered(health, agents, done=[], run_id="r") == (agents, (), "")


class _Down(GatewayHealth):
    def __init__(self, down: tuple[str, ...]) -> None:
        super().__init__("unused:1")
        self.down = down

    async def unhealthy(self, names: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(n for n in names if n in self.down)


async def test_agents_without_a_healthy_host_are_left_out_with_a_note() -> None:
    agents, down, note = await offered(_Down(("translator",)), tuple(AGENTS), done=[], run_id="r")
    assert agents == tuple(SHIPPED) and down == ("translator",) and "translator" in note
    everyone = tuple(AGENTS)
    with pytest.raises(Unavailable):  # nothing done and nobody to ask: Resume later
        await offered(_Down(everyone), everyone, done=[], run_id="r")
    assert (await offered(_Down(everyone), everyone, done=["researcher"], run_id="r"))[0] == ()


@pytest.mark.parametrize(
    ("request_text", "done", "expected"),
    [
        ("Translate 'good morning' into French", [], "translator"),
        ("Translate 'good morning' into French", ["translator"], "FINISH"),
        ("Compare two payment providers", [], "researcher"),
        ("Compare two payment providers", ["researcher"], "analyst"),
        ("Compare two payment providers", ["researcher", "analyst"], "FINISH"),
    ],
)
def test_the_simulator_routes_a_fitting_request_to_the_catalog_agent(
    request_text: str, done: list[str], expected: str
) -> None:
    outputs = [(a, "work") for a in done]
    assert route(routing_prompt(request_text, outputs, allowed_next(list(AGENTS), done), AGENTS)) == expected
