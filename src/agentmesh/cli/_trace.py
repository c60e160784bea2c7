"""`agentmesh trace RUN_ID`: the run as a tree, from the supervisor's checkpoints (no tracing backend needed)."""

from __future__ import annotations

import argparse
import json
import sys
import uuid

from rich.console import Console
from rich.tree import Tree

from agentmesh.cli._common import require_database_url
from agentmesh.db import create_pool
from agentmesh.settings import Settings

RUN = ("SELECT id, thread_id, tenant_id, status, iterations, input_tokens, output_tokens, llm_calls, cost_usd, "
       "created_at, updated_at FROM runs WHERE id = $1")
STEPS = ("SELECT idx, kind, agent, result, input_tokens, output_tokens, llm_calls, cost_usd, duration_ms "
         "FROM steps WHERE run_id = $1 ORDER BY idx")


async def run(args: argparse.Namespace) -> int:
    settings = Settings()
    dsn = require_database_url(settings)
    if dsn is None:
        return 2
    try:
        run_id = uuid.UUID(args.run_id)
    except ValueError:
        print(f"not a run id: {args.run_id!r}", file=sys.stderr)
        return 2
    pool = await create_pool(dsn, min_size=1, max_size=1)
    try:
        r = await pool.fetchrow(RUN, run_id)
        if r is None:
            print(f"run {args.run_id} not found", file=sys.stderr)
            return 1
        steps = await pool.fetch(STEPS, run_id)
    finally:
        await pool.close()


    wall_ms = (r["updated_at"] - r["created_at"]).total_seconds() * 1000
    root = Tree(f"[bold]run {r['id']}[/] {r['status']} · tenant {r['tenant_id']} · {wall_ms:.0f} ms · "
                f"{r['llm_calls']} LLM calls · tokens {r['input_tokens']}/{r['output_tokens']} · ${r['cost_usd']:.6f}")
    for s in steps:
        result = json.loads(s["result"]) if isinstance(s["result"], str) else s["result"]
        detail = ""
        if s["kind"] == "route":
            detail = f"-> {result.get('decision')}" + (f" ({result['reason']})" if result.get("reason") else "")
        elif s["kind"] == "guard":
            detail = f"action {result.get('action')} {', '.join(result.get('finding_types', []))}"
        node = root.add(f"{s['idx']:>2} {s['kind']:<5} [bold]{s['agent']}[/] {detail} · {s['duration_ms']} ms")
        if s["llm_calls"]:
            node.add(f"LLM calls: {s['llm_calls']} · tokens in {s['input_tokens']} out {s['output_tokens']} · "
                     f"${s['cost_usd']:.6f}")
        for tool in result.get("tools", []):
            node.add(f"tool {tool['name']} {'ran' if tool['executed'] else 'refused'}")
    Console(highlight=False).print(root)
    return 0
