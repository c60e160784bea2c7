"""The guard as the CLI composes it: its server and the review queue's table."""

from __future__ import annotations

from agentmesh.plugin import ServicePlugin
from agentmesh.services.guard.migrations import MIGRATIONS
from agentmesh.settings import Settings


async def _serve(settings: Settings, port: int | None) -> None:
    from agentmesh.services.guard.server import main

    await main(settings, port=port)


PLUGIN = ServicePlugin(name="guard", serve=_serve, migrations=MIGRATIONS)
