"""The supervisor as the CLI composes it: its server, its tables and `agentmesh budget`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import asyncpg

from agentmesh.plugin import AdminCommand, ServicePlugin
from agentmesh.services.supervisor.migrations import MIGRATIONS
from agentmesh.settings import Settings


async def _serve(settings: Settings, port: int | None) -> None:
    from agentmesh.services.supervisor.server import main

    await main(settings, port=port)


def _budget_arguments(budget: argparse.ArgumentParser) -> None:
    bsub = budget.add_subparsers(dest="budget_cmd", required=True)
    bset = bsub.add_parser(
        "set", help="override a tenant's daily budgets (unset: the AGENTMESH_TENANT_DAILY_* defaults)"
    )
    bset.add_argument("--tenant", required=True)
    bset.add_argument("--tokens", type=int, default=None, help="tokens per UTC day (0: no limit)")
    bset.add_argument("--usd", type=float, default=None, help="USD per UTC day (0: no limit)")
    bshow = bsub.add_parser("show", help="a tenant's budgets and what it spent today")
    bshow.add_argument("--tenant", required=True)
    for p in (bset, bshow):
        p.add_argument("--json", action="store_true", help="print the budgets and today's spend as one JSON object")


async def _budget(args: argparse.Namespace, pool: asyncpg.Pool, settings: Settings) -> int:
    """`agentmesh budget set|show`: per-tenant overrides of the daily budgets, and today's spend."""
    from agentmesh.services.supervisor.budgets import TenantBudgets

    budgets = TenantBudgets(
        pool=pool, default_tokens=settings.tenant_daily_tokens, default_usd=settings.tenant_daily_usd
    )
    if args.budget_cmd == "set":
        if args.tokens is None and args.usd is None:
            print("nothing to set: give --tokens and/or --usd", file=sys.stderr)
            return 2
        if (args.tokens or 0) < 0 or (args.usd or 0) < 0:
            print("budgets are >= 0 (0: no limit)", file=sys.stderr)
            return 2
        await budgets.set(args.tenant, tokens=args.tokens, usd=args.usd)
    spend = await budgets.spend(args.tenant)
    if args.json:  # limits of 0 mean no limit, as in `budget set`
        print(json.dumps(dataclasses.asdict(spend)))
        return 0
    print(
        f"tenant {args.tenant}: today {spend.tokens} of {spend.token_limit or 'unlimited'} tokens, "
        f"${spend.usd:.4f} of {f'${spend.usd_limit:.2f}' if spend.usd_limit else 'unlimited'} "
        f"(resets in {spend.resets_in_s / 3600:.1f} h)"
    )
    return 0


PLUGIN = ServicePlugin(
    name="supervisor",
    serve=_serve,
    migrations=MIGRATIONS,
    commands=(AdminCommand("budget", "per-tenant daily token and USD budgets", _budget_arguments, _budget),),
)
