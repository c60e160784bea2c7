"""The asyncpg pool, with connection failures mapped into our error tree."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

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


class _Pool(asyncpg.Pool):  # type: ignore[misc]  # asyncpg ships no stubs (asyncpg-stubs is not in the lock yet)
    """asyncpg's pool whose acquire() waits at most `acquire_timeout_s` unless told otherwise: a caller that finds
    every connection busy fails (DatabaseUnavailable, through db_errors) instead of queueing without end behind
    a flood of requests."""

    __slots__ = ("_acquire_timeout_s",)

    def __init__(self, *args: Any, acquire_timeout_s: float | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._acquire_timeout_s = acquire_timeout_s

    def acquire(self, *, timeout: float | None = None) -> Any:
        return super().acquire(timeout=self._acquire_timeout_s if timeout is None else timeout)


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    timeout_s: float = 10.0,
    acquire_timeout_s: float | None = 5.0,
) -> asyncpg.Pool:
    """A pool that reconnects by itself: asyncpg replaces broken connections on the next acquire.
    `acquire_timeout_s`: the longest a caller waits for a free connection (None: no limit)."""
    try:
        pool = await _Pool(
            dsn,
            acquire_timeout_s=acquire_timeout_s,
            min_size=min_size,
            max_size=max_size,
            max_queries=50_000,
            max_inactive_connection_lifetime=300,
            reset=_keep_session,
            loop=None,
            connection_class=asyncpg.Connection,
            record_class=asyncpg.Record,
            timeout=timeout_s,
            command_timeout=30,
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
