"""What a service hands the composition root (the `agentmesh` CLI): how to serve it, the tables it owns and
its admin commands. The runtime defines the shape; each service's `plugin.py` fills it in; only the CLI reads
the plugins, so the runtime never imports a service and no service imports another."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import asyncpg

from agentmesh.db import MigrationSet
from agentmesh.settings import Settings


@dataclass(frozen=True)
class AdminCommand:
    """`agentmesh NAME ...`: a command that works straight against the service's tables."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, asyncpg.Pool, Settings], Awaitable[int]]


@dataclass(frozen=True)
class ServicePlugin:
    """One service as the CLI sees it. `serve` imports the service's server on call, so that loading every
    plugin (to build the CLI's parser) stays cheap."""

    name: str
    serve: Callable[[Settings, int | None], Coroutine[Any, Any, None]]  # a coroutine: the CLI hands it to asyncio.run
    migrations: MigrationSet | None = None
    commands: tuple[AdminCommand, ...] = ()
