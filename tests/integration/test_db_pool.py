"""The pool's release hook skips asyncpg's reset query; a connection must still come back clean."""

from __future__ import annotations

import asyncio

from agentmesh.db import create_pool


def test_a_released_connection_holds_no_transaction(database_url: str) -> None:
    async def scenario() -> tuple[bool, int]:
        pool = await create_pool(database_url, min_size=1, max_size=1)
        try:
            async with pool.acquire() as con:
                await con.execute("CREATE TABLE IF NOT EXISTS pool_probe (n int)")
                # A transaction left open by mistake (not through `con.transaction()`): the one case asyncpg's own
                # reset step has to catch.
                await con.execute("BEGIN")
                await con.execute("INSERT INTO pool_probe VALUES (1)")
            async with pool.acquire() as con:  # max_size=1: the same connection
                in_transaction = con.is_in_transaction()
                rows = await con.fetchval("SELECT count(*) FROM pool_probe")
                await con.execute("DROP TABLE pool_probe")
            return in_transaction, rows
        finally:
            await pool.close()

    in_transaction, rows = asyncio.run(scenario())
    assert not in_transaction
    assert rows == 0  # rolled back, not committed by the next user
