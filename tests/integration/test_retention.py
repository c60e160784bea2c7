"""`agentmesh db prune --older-than` deletes idle threads with everything under them, and nothing else."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid

import asyncpg

from agentmesh.db import CORE_MIGRATIONS, MigrationSet, create_pool, migrate
from agentmesh.services.supervisor.migrations import MIGRATIONS
from agentmesh.services.supervisor.steps import RouteBody
from agentmesh.services.supervisor.store import CheckpointStore, StepRecord


async def _seed(dsn: str) -> tuple[uuid.UUID, uuid.UUID]:
    pool = await create_pool(dsn)
    try:
        async with pool.acquire() as conn:
            await migrate(conn, [MigrationSet("core", CORE_MIGRATIONS), MIGRATIONS])
        store = CheckpointStore(pool=pool, owner="test", lease_s=30)
        ids = []
        for _ in range(2):
            run = await store.create_run(
                tenant="t",
                thread_id="",
                run_id=uuid.uuid4(),
                text="hi",
                history_limit=5,
                next_seq=1,
                first_event=lambda tid: (0, b""),
            )
            await store.commit_step(
                run,
                StepRecord(0, "route", "supervisor", RouteBody("FINISH", reason="COMPLETED")),
                next_seq=3,
                iteration=False,
            )
            await store.finish(run, final_event={}, next_seq=4, answer="bye", events=[(3, b"")])
            ids.append(run.thread_id)
        old, recent = ids
        # Age the first thread by 40 days, as if it had been idle since then.
        async with pool.acquire() as conn:
            await conn.execute("UPDATE threads SET created_at = now() - interval '40 days' WHERE id = $1", old)
            await conn.execute(
                "UPDATE runs SET created_at = now() - interval '40 days', "
                "updated_at = now() - interval '40 days' WHERE thread_id = $1",
                old,
            )
            await conn.execute("UPDATE messages SET created_at = now() - interval '40 days' WHERE thread_id = $1", old)
        return old, recent
    finally:
        await pool.close()


async def _count(dsn: str, thread: uuid.UUID) -> tuple[int, int, int, int]:
    conn = await asyncpg.connect(dsn)
    try:
        return (
            await conn.fetchval("SELECT count(*) FROM threads WHERE id = $1", thread),
            await conn.fetchval("SELECT count(*) FROM runs WHERE thread_id = $1", thread),
            await conn.fetchval(
                "SELECT count(*) FROM steps s JOIN runs r ON r.id = s.run_id WHERE r.thread_id = $1", thread
            ),
            await conn.fetchval("SELECT count(*) FROM messages WHERE thread_id = $1", thread),
        )
    finally:
        await conn.close()


def test_prune_removes_only_idle_threads(database_url: str) -> None:
    old, recent = asyncio.run(_seed(database_url))
    out = subprocess.run(
        [sys.executable, "-m", "agentmesh", "db", "prune", "--older-than", "30d"],
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.startswith("deleted ")
    assert asyncio.run(_count(database_url, old)) == (0, 0, 0, 0)
    assert asyncio.run(_count(database_url, recent)) == (1, 1, 1, 2)


def test_prune_rejects_a_bad_duration(database_url: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "agentmesh", "db", "prune", "--older-than", "soon"],
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0 and "expected a positive number" in out.stderr
