"""`agentmesh keys ...`, `agentmesh db ...` and the services' admin commands (`budget`): administration straight
against Postgres."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from agentmesh.cli._common import require_database_url
from agentmesh.cli._exit import CliError, ExitCode
from agentmesh.cli._services import all_migrations, plugins
from agentmesh.db import KeyStore, create_pool, migrate
from agentmesh.settings import Settings

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> dt.timedelta:
    """'30d', '12h', '90m', '45s', '2w' -> timedelta; anything else is a usage error."""
    number, unit = text[:-1], text[-1:].lower()
    if unit not in _UNITS or not number.isdigit() or int(number) <= 0:
        raise CliError(
            f"--older-than {text!r}: expected a positive number followed by s, m, h, d or w (e.g. 30d)", ExitCode.USAGE
        )
    return dt.timedelta(seconds=int(number) * _UNITS[unit])


def key_json(key: Any) -> dict[str, Any]:
    """A key as `keys list --json` prints it: never the secret, which is not stored."""
    return {
        "id": key.id,
        "tenant": key.tenant_id,
        "label": key.label,
        "created_at": key.created_at.isoformat(),
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }


async def run(args: argparse.Namespace) -> int:
    settings = Settings()
    dsn = require_database_url(settings)
    older_than = parse_duration(args.older_than) if args.cmd == "db" and args.db_cmd == "prune" else None
    pool = await create_pool(dsn, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            applied = await migrate(conn, all_migrations())
        if older_than is not None:
            from agentmesh.services.supervisor.store import prune_threads

            # On stderr, and only on a terminal (rich draws nothing otherwise): stdout keeps the one result line.
            with Console(stderr=True).status(f"pruning threads idle for more than {args.older_than}…"):
                deleted = await prune_threads(pool, older_than)
            print(f"deleted {deleted} thread{'s' if deleted != 1 else ''} idle for more than {args.older_than}")
            return 0
        if args.cmd == "db":
            print("\n".join(f"applied {name}" for name in applied) or "schema is up to date")
            return 0
        commands = {c.name: c for p in plugins() for c in p.commands}
        if args.cmd in commands:
            return await commands[args.cmd].run(args, pool, settings)
        keys = KeyStore(pool=pool)
        if args.keys_cmd == "create":
            key_id, key = await keys.create(args.tenant, label=args.label)
            print(key)
            print(
                f"key id {key_id} for tenant {args.tenant}: store the key now, it is not shown again", file=sys.stderr
            )
        elif args.keys_cmd == "revoke":
            if not await keys.revoke(args.key_id):
                raise CliError(f"no active key with id {args.key_id}", ExitCode.NOT_FOUND)
            print(f"revoked {args.key_id}")
        elif getattr(args, "json", False):
            print(json.dumps([key_json(k) for k in await keys.list()]))
        else:
            table = Table("id", "tenant", "label", "created", "revoked")
            for k in await keys.list():
                table.add_row(
                    k.id,
                    k.tenant_id,
                    k.label,
                    f"{k.created_at:%Y-%m-%d %H:%M}",
                    f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "",
                )
            Console().print(table)
        return 0
    finally:
        await pool.close()
