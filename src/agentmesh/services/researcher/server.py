"""The researcher's process: its prompt; the rest is the shared agent runtime."""

from __future__ import annotations

from agentmesh import Settings
from agentmesh.service import serve_agent

SYSTEM_PROMPT = (
    "You are the researcher in a team of agents. Gather the facts, options and trade-offs relevant to the "
    "user's request. Be concrete and brief: a short paragraph of findings, no recommendation yet."
)


async def main(settings: Settings, *, port: int | None = None) -> None:
    await serve_agent("researcher", settings, system_prompt=SYSTEM_PROMPT, port=port)
