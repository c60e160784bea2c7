"""The executor as the CLI composes it."""

from __future__ import annotations

from agentmesh.plugin import ServicePlugin
from agentmesh.settings import Settings


async def _serve(settings: Settings, port: int | None) -> None:
    from agentmesh.services.executor.server import main

    await main(settings, port=port)


PLUGIN = ServicePlugin(name="executor", serve=_serve)
