"""Issue 12: an unauthenticated caller cannot load Postgres. Keys that cannot be ours cost no query, an unknown
key costs one query per negative-cache period, and a caller that finds every pool connection busy fails after
the acquire timeout instead of queueing without end. Real Postgres (the session's throwaway database)."""

from __future__ import annotations

import asyncio

import pytest

from agentmesh.db import CORE_MIGRATIONS, KeyStore, MigrationSet, create_pool, db_errors, migrate
from agentmesh.errors import DatabaseUnavailable, Unauthenticated
from agentmesh.rpc._auth import AuthInterceptor


async def _keys(database_url: str, max_size: int = 2, acquire_timeout_s: float | None = 5.0) -> tuple[object, KeyStore]:
    pool = await create_pool(database_url, min_size=1, max_size=max_size, acquire_timeout_s=acquire_timeout_s)
    async with pool.acquire() as conn:
        await migrate(conn, [MigrationSet("core", CORE_MIGRATIONS)])
    return pool, KeyStore(pool=pool)


def test_a_key_of_the_wrong_format_costs_no_query(database_url: str) -> None:
    async def scenario() -> None:
        pool, keys = await _keys(database_url, max_size=1, acquire_timeout_s=0.2)
        try:
            _, good = await keys.create("tenant-format")
            assert await keys.tenant_of(good) == "tenant-format"
            async with pool.acquire():  # the only connection is taken: any query would now time out
                for wrong in ("", "x" * 5000, "sk-ant-api03-abc", good[:-1], good + "A", good.replace("am_", "AM_")):
                    assert await keys.tenant_of(wrong) is None
                with pytest.raises(DatabaseUnavailable):  # while a well-formed key does need the database
                    await keys.tenant_of(good)
        finally:
            await pool.close()

    asyncio.run(scenario())


def test_an_unknown_key_is_cached_as_unknown_for_a_while(database_url: str) -> None:
    async def scenario() -> None:
        pool, keys = await _keys(database_url)
        lookups: list[str] = []

        async def counted(key: str) -> str | None:
            lookups.append(key)
            return await keys.tenant_of(key)

        auth = AuthInterceptor(tenant_of=counted, internal_token=None, cache_ttl_s=30, negative_ttl_s=0.5)
        try:
            key_id, unknown = await keys.create("tenant-negative")
            await keys.revoke(key_id)
            md = (("authorization", f"Bearer {unknown}"),)
            for _ in range(20):
                with pytest.raises(Unauthenticated):
                    await auth._authenticate(md)
            assert len(lookups) == 1
            await asyncio.sleep(0.6)  # the negative entry expires: the key is looked up again
            with pytest.raises(Unauthenticated):
                await auth._authenticate(md)
            assert len(lookups) == 2
            _, good = await keys.create("tenant-negative")
            assert await auth._authenticate((("authorization", f"Bearer {good}"),)) == "tenant-negative"
        finally:
            await pool.close()

    asyncio.run(scenario())


def test_acquire_times_out_when_every_connection_is_busy(database_url: str) -> None:
    async def scenario() -> None:
        pool = await create_pool(database_url, min_size=1, max_size=1, acquire_timeout_s=0.3)
        try:
            async with pool.acquire():
                with pytest.raises(DatabaseUnavailable):
                    async with db_errors("probe"):
                        await pool.fetchval("SELECT 1")
            assert await pool.fetchval("SELECT 1") == 1  # free again: the pool works
        finally:
            await pool.close()

    # The acquire's own timeout ends the wait (without it this would hang until wait_for's 10 s cut it).
    asyncio.run(asyncio.wait_for(scenario(), 10))
