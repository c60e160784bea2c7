"""The asyncpg pool, with connection failures mapped into our error tree."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import asyncpg

from agentmesh.errors import DatabaseUnavailable

log = logging.getLogger(__name__)

# Errors that mean "the database is not reachable right now" rather than "this query is wrong".
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ConnectionFailureError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.InterfaceError,
    # Seen when a pool connection is released while Postgres shuts down (test_postgres_restart): the
    # connection died under asyncpg, not a bug of the query.
    asyncpg.exceptions.InternalClientError,
    asyncio.TimeoutError,
)


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Release hook. asyncpg has already rolled back any open transaction; our statements leave no other session
    state (no SET, LISTEN, advisory locks or cursors), so the default reset query (four statements) would only
    add a round trip to every release: about a dozen per supervisor run."""


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10, timeout_s: float = 10.0) -> asyncpg.Pool:
    """A pool that reconnects by itself: asyncpg replaces broken connections on the next acquire."""
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout_s,
            command_timeout=30,
            max_inactive_connection_lifetime=300,
            reset=_keep_session,
        )
    except CONNECTION_ERRORS as exc:
        raise DatabaseUnavailable(f"cannot connect to Postgres: {type(exc).__name__}") from exc
    assert pool is not None
    return pool


@contextlib.asynccontextmanager
async def db_errors(what: str) -> AsyncIterator[None]:
    """Map a lost database into DatabaseUnavailable (UNAVAILABLE), naming the operation."""
    try:
        yield
    except CONNECTION_ERRORS as exc:
        raise DatabaseUnavailable(f"Postgres unavailable during {what}: {type(exc).__name__}") from exc
