"""`agentmesh sim`: the offline Anthropic-compatible simulator as its own process."""

from __future__ import annotations

import argparse

from agentmesh.settings import Settings
from agentmesh.testing.sim import serve_sim


async def run(args: argparse.Namespace) -> int:
    settings = Settings()
    host = args.host or settings.host
    port = settings.sim_port if args.port is None else args.port
    await serve_sim(host, port, on_ready=lambda url: print(f"simulator ready on {url}", flush=True))
    return 0
