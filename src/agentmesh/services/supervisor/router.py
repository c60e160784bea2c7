"""The routing prompt and the parsing of its answer. Pure functions: no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agentmesh.catalog import SHIPPED

FINISH = "FINISH"


def router_system(agents: Mapping[str, str]) -> str:
    """The routing call's system prompt: the catalog's agents, one line each with its description. The same for
    every run of a catalog, so a provider can cache it."""
    team = "\n".join(f"- {name}: {one_line(description, 300)}" for name, description in agents.items())
    return (
        "You are the supervisor of a team of agents:\n"
        f"{team}\n"
        "Decide who acts next, from the Allowed list only; prefer the agent whose description fits the request. "
        "Choose FINISH once the work so far answers the request. "
        "Reply with exactly one word: the name of the next agent, or FINISH."
    )


def one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


ROUTER_SYSTEM = router_system(SHIPPED)  # the default catalog's


def allowed_next(agents: Sequence[str], done: Sequence[str]) -> list[str]:
    """FINISH is offered only once some agent has acted: an empty answer is never a valid end."""
    return [*agents, FINISH] if done else list(agents)


def routing_prompt(
    request: str,
    outputs: Sequence[tuple[str, str]],
    allowed: Sequence[str],
    descriptions: Mapping[str, str] | None = None,
) -> str:
    """`descriptions`: the allowed agents' catalog descriptions, one `Agent NAME:` line each, so the choice can be
    made from this message alone."""
    done = [agent for agent, _ in outputs]
    lines = [f"Request: {one_line(request, 2000)}"]
    if descriptions:
        lines.extend(f"Agent {name}: {one_line(descriptions[name], 300)}" for name in allowed if name in descriptions)
    if outputs:
        lines.append("Work so far:")
        lines.extend(f"- {agent}: {one_line(text, 400)}" for agent, text in outputs)
    lines.append(f"Allowed: {', '.join(allowed)}")
    lines.append(f"Done: {', '.join(done) if done else '(none)'}")
    return "\n".join(lines)


@dataclass(frozen=True)
class Route:
    decision: str
    valid: bool  # False: the model answered outside the allowed set and the fallback applied
    raw: str


def parse_route(answer: str, allowed: Sequence[str], agents: Sequence[str], done: Sequence[str]) -> Route:
    """The first word of the answer, matched case-insensitively to the allowed set. Anything else is handled:
    the next agent in the default order that has not acted, else FINISH."""
    words = answer.strip().strip(".!\"'`*").split()
    word = words[0].strip(".,:;!\"'`*").lower() if words else ""
    for name in allowed:
        if name.lower() == word:
            return Route(name, True, word)
    fallback = next((a for a in agents if a not in done), FINISH)
    return Route(fallback if fallback in allowed else FINISH, False, one_line(answer, 40))
