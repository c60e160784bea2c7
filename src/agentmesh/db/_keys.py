"""API keys: random, shown once, stored as SHA-256 hashes, revocable."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from agentmesh.db._pool import db_errors

KEY_PREFIX = "am"
# What create() makes: am_<8 hex>_<32 url-safe base64>. Anything else cannot be ours and costs no query.
KEY_RE = re.compile(r"am_[0-9a-f]{8}_[A-Za-z0-9_-]{32}")

UPSERT_TENANT = "INSERT INTO tenants (id) VALUES ($1) ON CONFLICT (id) DO NOTHING"
INSERT_KEY = "INSERT INTO api_keys (id, tenant_id, key_hash, label) VALUES ($1, $2, $3, $4)"
SELECT_TENANT_BY_HASH = "SELECT tenant_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL"
REVOKE_KEY = "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL"
REVOKE_BY_LABEL = "UPDATE api_keys SET revoked_at = now() WHERE tenant_id = $1 AND label = $2 AND revoked_at IS NULL"
LIST_KEYS = "SELECT id, tenant_id, label, created_at, revoked_at FROM api_keys ORDER BY created_at"


@dataclass(frozen=True)
class KeyInfo:
    id: str
    tenant_id: str
    label: str
    created_at: datetime
    revoked_at: datetime | None


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class KeyStore:
    def __init__(self, *, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create(self, tenant: str, *, label: str = "") -> tuple[str, str]:
        """A new key for `tenant` (created if new). Returns (key id, the key): the key is never stored."""
        key_id = f"{KEY_PREFIX}_{secrets.token_hex(4)}"
        key = f"{key_id}_{secrets.token_urlsafe(24)}"
        async with db_errors("key creation"), self._pool.acquire() as conn, conn.transaction():
            await conn.execute(UPSERT_TENANT, tenant)
            await conn.execute(INSERT_KEY, key_id, tenant, hash_key(key), label)
        return key_id, key

    async def tenant_of(self, key: str) -> str | None:
        """The key's tenant; None for a key that is unknown, revoked, or not of our format (no query then)."""
        if KEY_RE.fullmatch(key) is None:
            return None
        async with db_errors("API key check"):
            tenant: str | None = await self._pool.fetchval(SELECT_TENANT_BY_HASH, hash_key(key))
            return tenant

    async def revoke(self, key_id: str) -> bool:
        async with db_errors("key revocation"):
            status: str = await self._pool.execute(REVOKE_KEY, key_id)
            return status != "UPDATE 0"

    async def revoke_labelled(self, tenant: str, label: str) -> None:
        async with db_errors("key revocation"):
            await self._pool.execute(REVOKE_BY_LABEL, tenant, label)

    async def list(self) -> list[KeyInfo]:
        async with db_errors("key listing"):
            return [KeyInfo(**dict(r)) for r in await self._pool.fetch(LIST_KEYS)]
