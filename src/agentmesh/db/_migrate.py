"""Append-only numbered migrations: NNNN_name.sql files, applied in order, once, under an advisory lock so
several processes starting together do not race."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from asyncpg.pool import PoolConnectionProxy

log = logging.getLogger(__name__)

CORE_MIGRATIONS = Path(__file__).parent / "migrations"
_LOCK_KEY = 0x616D6D67  # "ammg"
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    component   text NOT NULL,
    version     int  NOT NULL,
    name        text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (component, version)
)"""
SELECT_APPLIED = "SELECT version FROM schema_migrations WHERE component = $1"
INSERT_APPLIED = "INSERT INTO schema_migrations (component, version, name) VALUES ($1, $2, $3)"


@dataclass(frozen=True)
class MigrationSet:
    """The migrations of one component (core, supervisor, guard...)."""

    component: str
    directory: Path

    def files(self) -> list[tuple[int, Path]]:
        out = []
        for path in sorted(self.directory.glob("*.sql")):
            m = _NAME.match(path.name)
            if not m:
                raise ValueError(f"migration file {path} is not named NNNN_name.sql")
            out.append((int(m.group(1)), path))
        return out


async def migrate(conn: asyncpg.Connection | PoolConnectionProxy, sets: Sequence[MigrationSet]) -> list[str]:
    """Apply what is missing; returns the names applied. Each file runs in its own transaction."""
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(CREATE_TABLE)
        for ms in sets:
            done = {r["version"] for r in await conn.fetch(SELECT_APPLIED, ms.component)}
            for version, path in ms.files():
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(path.read_text(encoding="utf-8"))
                    await conn.execute(INSERT_APPLIED, ms.component, version, path.name)
                applied_now.append(f"{ms.component}/{path.name}")
                log.info("applied migration", extra={"migration": f"{ms.component}/{path.name}"})
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied_now
