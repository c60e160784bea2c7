"""The routing prompt and the parsing of its answer. Pure functions: no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

FINISH = "FINISH"

ROUTER_SYSTEM = (
    "You are the supervisor of a team of agents. researcher: finds facts and options. analyst: weighs them "
    "and recommends. executor: runs tools (calculator, clock) when the request needs a computation or the "
    "time. Decide who acts next; choose FINISH once the work so far answers the request. "
    "Reply with exactly one word: the name of the next agent, or FINISH."
)


def one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def allowed_next(agents: Sequence[str], done: Sequence[str]) -> list[str]:
    """FINISH is offered only once some agent has acted: an empty answer is never a valid end."""
    return [*agents, FINISH] if done else list(agents)


def routing_prompt(request: str, outputs: Sequence[tuple[str, str]], allowed: Sequence[str]) -> str:
    done = [agent for agent, _ in outputs]
    lines = [f"Request: {one_line(request, 2000)}"]
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
