"""Postgres access shared by services: the pool, migrations, API keys, the embedded server."""

from agentmesh.db._embedded import start_embedded, stop_postmaster
from agentmesh.db._keys import KeyInfo, KeyStore, hash_key
from agentmesh.db._migrate import CORE_MIGRATIONS, MigrationSet, migrate
from agentmesh.db._pool import CONNECTION_ERRORS, create_pool, db_errors

__all__ = [
    "CONNECTION_ERRORS",
    "CORE_MIGRATIONS",
    "KeyInfo",
    "KeyStore",
    "MigrationSet",
    "create_pool",
    "db_errors",
    "hash_key",
    "migrate",
    "start_embedded",
    "stop_postmaster",
]
