"""Per-tenant daily budgets: cost as a security property. A leaked key, or a client stuck in a loop, can spend
at most one day's budget. Spend is summed from the runs table (the tenant's runs created today, UTC), which
the checkpoints already keep current step by step, so there is no second counter to drift from the truth.

A run is checked before it starts (read from the database) and before each step that spends. The step checks
read a per-process snapshot of the tenant's spend, at most SPEND_SNAPSHOT_S old, plus what this process's own
steps spent since: exact for this replica's runs, and other replicas' spend is seen within the snapshot's age.
Under load that is one query per second per tenant instead of one per step, each summing the day's runs."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import asyncpg

from agentmesh.db import db_errors
from agentmesh.errors import ResourceExhausted

SPEND_SNAPSHOT_S = 1.0
# One index range scan (runs_tenant_day) plus a primary-key probe for the tenant's overrides.
SELECT_SPEND_TODAY = """
WITH day AS (SELECT date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS start),
spend AS (
    SELECT coalesce(sum(input_tokens + output_tokens), 0)::bigint AS tokens, coalesce(sum(cost_usd), 0) AS usd
    FROM runs, day WHERE tenant_id = $1 AND created_at >= day.start
)
SELECT spend.tokens, spend.usd, b.daily_tokens, b.daily_usd,
       extract(epoch FROM (SELECT start FROM day) + interval '1 day' - now())::float8 AS resets_in_s
FROM spend LEFT JOIN tenant_budgets b ON b.tenant_id = $1"""
UPSERT_BUDGET = """
INSERT INTO tenant_budgets (tenant_id, daily_tokens, daily_usd) VALUES ($1, $2, $3)
ON CONFLICT (tenant_id) DO UPDATE
SET daily_tokens = coalesce($2, tenant_budgets.daily_tokens), daily_usd = coalesce($3, tenant_budgets.daily_usd),
    updated_at = now()"""


@dataclass(frozen=True)
class Spend:
    """What a tenant spent today against its limits (0: no limit)."""

    tenant: str
    tokens: int
    usd: float
    token_limit: int
    usd_limit: float
    resets_in_s: float

    def exhausted(self) -> ResourceExhausted | None:
        """The error to answer with when a budget is spent, naming it; None while both have room."""
        hint = (
            f"resets at 00:00 UTC (in {self.resets_in_s / 3600:.1f} h), or raise it with "
            f"`agentmesh budget set --tenant {self.tenant}`"
        )
        if self.token_limit and self.tokens >= self.token_limit:
            return ResourceExhausted(
                f"tenant daily token budget exhausted: {self.tokens} of {self.token_limit} tokens spent today "
                f"(AGENTMESH_TENANT_DAILY_TOKENS); {hint}",
                reason="TENANT_TOKEN_BUDGET_EXHAUSTED",
                retry_after_s=self.resets_in_s,
            )
        if self.usd_limit and self.usd >= self.usd_limit:
            return ResourceExhausted(
                f"tenant daily USD budget exhausted: ${self.usd:.4f} of ${self.usd_limit:.2f} spent today "
                f"(AGENTMESH_TENANT_DAILY_USD); {hint}",
                reason="TENANT_USD_BUDGET_EXHAUSTED",
                retry_after_s=self.resets_in_s,
            )
        return None


@dataclass
class _Snapshot:
    spend: Spend
    taken: float  # time.monotonic() of the read


class TenantBudgets:
    """Checks a tenant's spend today against its daily budgets: the defaults, or its row in tenant_budgets."""

    def __init__(
        self, *, pool: asyncpg.Pool, default_tokens: int, default_usd: float, snapshot_s: float = SPEND_SNAPSHOT_S
    ) -> None:
        self._pool = pool
        self._default_tokens = default_tokens
        self._default_usd = default_usd
        self._snapshot_s = snapshot_s
        self._snapshots: dict[str, _Snapshot] = {}

    async def spend(self, tenant: str) -> Spend:
        async with db_errors("budget check"):
            row = await self._pool.fetchrow(SELECT_SPEND_TODAY, tenant)
        assert row is not None  # an aggregate: always one row
        return Spend(
            tenant=tenant,
            tokens=int(row["tokens"]),
            usd=float(row["usd"]),
            token_limit=self._default_tokens if row["daily_tokens"] is None else int(row["daily_tokens"]),
            usd_limit=self._default_usd if row["daily_usd"] is None else float(row["daily_usd"]),
            resets_in_s=max(1.0, float(row["resets_in_s"])),
        )

    async def check(self, tenant: str, *, fresh: bool = True) -> None:
        """RESOURCE_EXHAUSTED (with RetryInfo until midnight UTC) when either budget is spent. `fresh=False` may
        answer from this process's snapshot (see the module's docstring)."""
        snapshot = self._snapshots.get(tenant)
        if fresh or snapshot is None or time.monotonic() - snapshot.taken > self._snapshot_s:
            taken = time.monotonic()
            snapshot = _Snapshot(await self.spend(tenant), taken)
            self._snapshots[tenant] = snapshot
        if (err := snapshot.spend.exhausted()) is not None:
            raise err

    def spent(self, tenant: str, *, tokens: int, usd: float) -> None:
        """Count a step this process just committed into the tenant's snapshot. (A snapshot read between the
        commit and this call counts the step twice until it is replaced: the error is on the safe side.)"""
        if (snapshot := self._snapshots.get(tenant)) is not None:
            snapshot.spend = dataclasses.replace(
                snapshot.spend, tokens=snapshot.spend.tokens + tokens, usd=snapshot.spend.usd + usd
            )

    async def set(self, tenant: str, *, tokens: int | None, usd: float | None) -> None:
        """Override a tenant's budgets; None keeps the current value (or the default)."""
        async with db_errors("budget update"):
            await self._pool.execute(UPSERT_BUDGET, tenant, tokens, usd)


__all__ = ["Spend", "TenantBudgets"]
