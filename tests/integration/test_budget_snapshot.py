"""The per-process spend snapshot behind the step budget checks: this process's own steps count at once, other
writers' steps once the snapshot is older than its age limit, and a run's start always reads the database."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from agentmesh.db import CORE_MIGRATIONS, MigrationSet, create_pool, migrate
from agentmesh.errors import ResourceExhausted
from agentmesh.services.supervisor.budgets import TenantBudgets
from agentmesh.services.supervisor.migrations import MIGRATIONS
from agentmesh.services.supervisor.steps import RouteBody
from agentmesh.services.supervisor.store import CheckpointStore, StepRecord


def test_step_checks_count_own_steps_at_once_and_others_after_the_snapshot_age(database_url: str) -> None:
    async def scenario() -> None:
        pool = await create_pool(database_url)
        try:
            async with pool.acquire() as conn:
                await migrate(conn, [MigrationSet("core", CORE_MIGRATIONS), MIGRATIONS])
            tenant = f"snap-{uuid.uuid4().hex[:6]}"
            store = CheckpointStore(pool=pool, owner="test", lease_s=30)
            budgets = TenantBudgets(pool=pool, default_tokens=100, default_usd=0, snapshot_s=3600)
            run = await store.create_run(
                tenant=tenant,
                thread_id="",
                run_id=uuid.uuid4(),
                text="hi",
                history_limit=5,
                next_seq=1,
                first_event=lambda tid: (0, b""),
            )

            async def commit(idx: int, tokens: int) -> None:
                await store.commit_step(
                    run,
                    StepRecord(idx, "route", "supervisor", RouteBody("researcher"), input_tokens=tokens),
                    next_seq=idx + 3,
                    iteration=False,
                )

            await commit(0, 60)
            await budgets.check(tenant)  # 60 of 100, read from the database
            # Another replica spends 50: this process's snapshot does not know yet...
            await commit(1, 50)
            await budgets.check(tenant, fresh=False)
            # ...while a fresh read (a run's start) does.
            with pytest.raises(ResourceExhausted):
                await budgets.check(tenant)
            # This process's own step counts in its snapshot at once.
            own = TenantBudgets(pool=pool, default_tokens=200, default_usd=0, snapshot_s=3600)
            await own.check(tenant)  # 110 of 200
            await commit(2, 90)
            own.spent(tenant, tokens=90, usd=0.0)
            with pytest.raises(ResourceExhausted):
                await own.check(tenant, fresh=False)
            # A snapshot past its age is read again.
            aged = TenantBudgets(pool=pool, default_tokens=250, default_usd=0, snapshot_s=0)
            await aged.check(tenant)  # 200 of 250
            await commit(3, 60)
            with pytest.raises(ResourceExhausted):
                await aged.check(tenant, fresh=False)
        finally:
            await pool.close()

    asyncio.run(scenario())
