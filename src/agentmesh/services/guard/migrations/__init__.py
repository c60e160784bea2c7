"""The review queue's tables, applied by `agentmesh db migrate`, `agentmesh up` and the guard at start."""

from pathlib import Path

from agentmesh.db import MigrationSet

MIGRATIONS = MigrationSet("guard", Path(__file__).parent)
