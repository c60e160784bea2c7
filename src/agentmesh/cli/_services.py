"""The services this CLI composes, by name: each service's plugin module, loaded on use."""

from __future__ import annotations

import importlib

from agentmesh.db import CORE_MIGRATIONS, MigrationSet
from agentmesh.plugin import ServicePlugin
from agentmesh.settings import SERVICES


def plugin(name: str) -> ServicePlugin:
    plugin: ServicePlugin = importlib.import_module(f"agentmesh.services.{name}.plugin").PLUGIN
    return plugin


def plugins() -> list[ServicePlugin]:
    return [plugin(name) for name in SERVICES]


def all_migrations() -> list[MigrationSet]:
    """The runtime's own tables (tenants, keys), then each service's, in service order."""
    return [MigrationSet("core", CORE_MIGRATIONS), *(p.migrations for p in plugins() if p.migrations is not None)]
