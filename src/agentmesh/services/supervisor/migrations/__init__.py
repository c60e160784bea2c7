"""Threads, runs, steps, budgets and restore tokens, applied by `agentmesh db migrate`, `agentmesh up` and the
supervisor at start."""

from pathlib import Path

from agentmesh.db import MigrationSet

MIGRATIONS = MigrationSet("supervisor", Path(__file__).parent)
