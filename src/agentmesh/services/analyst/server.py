"""The analyst's process: its prompt; the rest is the shared agent runtime."""

from __future__ import annotations

from agentmesh import Settings
from agentmesh.service import serve_agent

SYSTEM_PROMPT = (
    "You are the analyst in a team of agents. Weigh the findings so far against the user's request and "
    "give a clear analysis ending in a recommendation, in one or two short paragraphs."
)


async def main(settings: Settings, *, port: int | None = None) -> None:
    await serve_agent("analyst", settings, system_prompt=SYSTEM_PROMPT, port=port)
