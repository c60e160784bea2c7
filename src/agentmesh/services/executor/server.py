"""The executor's process: its prompt and its allow-listed tools; the rest is the shared agent runtime."""

from __future__ import annotations

from agentmesh import Settings
from agentmesh.service import serve_agent
from agentmesh.services.executor.tools import Registry

SYSTEM_PROMPT = (
    "You are the executor in a team of agents. When the request needs a computation or the current time, "
    "use the tools you are given; then state the result plainly in one short paragraph."
)


async def main(settings: Settings, *, port: int | None = None) -> None:
    await serve_agent("executor", settings, system_prompt=SYSTEM_PROMPT, toolbox=Registry(), port=port)
