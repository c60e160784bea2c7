"""The `agentmesh` command: up, serve, sim, ask, resume, trace, keys, budget, certs, db."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.metadata
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from agentmesh.cli._exit import EPILOG, ExitCode, to_cli_error
from agentmesh.settings import SERVICES

__all__ = ["main"]


def _run(coro: Coroutine[Any, Any, int | None]) -> int:
    try:
        import uvloop
    except ImportError:  # uvloop has no Windows build; the default loop works, only slower
        return asyncio.run(coro) or 0
    return uvloop.run(coro) or 0


def _version() -> str:
    """The installed distribution's version (pyproject.toml's, via `pip install -e .`)."""
    try:
        return importlib.metadata.version("agentmesh")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="agentmesh",
        description="Production infrastructure for LLM agents.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"agentmesh {_version()}")
    sub = p.add_subparsers(dest="cmd", required=True)

    up = sub.add_parser("up", help="start Postgres, the simulator, every service and the gateway")
    up.add_argument(
        "--replicas",
        action="append",
        default=[],
        metavar="NAME=N",
        help="run N replicas of a service behind its gateway cluster (repeatable)",
    )
    up.add_argument(
        "--agents",
        default=None,
        metavar="FILE",
        help="the agent catalog (YAML; sets AGENTMESH_AGENTS_FILE for every process); default: the shipped agents",
    )

    serve = sub.add_parser("serve", help="run one service")
    serve.add_argument("name", choices=SERVICES)
    serve.add_argument("--port", type=int, default=None, help="port to bind (default: from settings)")

    sim = sub.add_parser("sim", help="run the offline Anthropic-compatible simulator")
    sim.add_argument("--host", default=None)
    sim.add_argument("--port", type=int, default=None)

    ask = sub.add_parser("ask", help="run a conversation turn through the gateway and stream its events")
    ask.add_argument("text")
    ask.add_argument("--thread", default="", help="continue this thread")
    ask.add_argument("--key", default=None, help="API key (default: AGENTMESH_API_KEY, else the dev key of `up`)")
    ask.add_argument("--timeout", type=float, default=300.0)
    ask.add_argument("--json", action="store_true", help="one JSON object per event (NDJSON), then a summary line")

    resume = sub.add_parser("resume", help="continue an interrupted run")
    resume.add_argument("run_id")
    resume.add_argument("--key", default=None)
    resume.add_argument("--timeout", type=float, default=300.0)
    resume.add_argument("--json", action="store_true", help="one JSON object per event (NDJSON), then a summary line")

    trace = sub.add_parser("trace", help="print a run as a tree of its steps")
    trace.add_argument("run_id")
    trace.add_argument(
        "--html", metavar="FILE", default=None, help="also write a self-contained HTML waterfall of the steps"
    )
    trace.add_argument("--json", action="store_true", help="print the run tree as one JSON object")

    keys = sub.add_parser("keys", help="manage API keys")
    ksub = keys.add_subparsers(dest="keys_cmd", required=True)
    kc = ksub.add_parser("create", help="create a key for a tenant (printed once)")
    kc.add_argument("--tenant", required=True)
    kc.add_argument("--label", default="")
    kr = ksub.add_parser("revoke", help="revoke a key by its id (the am_xxxxxxxx prefix)")
    kr.add_argument("key_id")
    klist = ksub.add_parser("list", help="list keys (ids and tenants only)")
    klist.add_argument("--json", action="store_true", help="print a JSON array of the keys")

    certs = sub.add_parser("certs", help="create a CA and mTLS certificates for the gateway and every service")
    certs.add_argument(
        "--dir", default=None, help="where to write them (default: AGENTMESH_TLS_DIR, else DATA_DIR/tls)"
    )
    certs.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="NAME",
        help="an extra DNS name or IP for every certificate (repeatable)",
    )
    certs.add_argument("--days", type=int, default=365, help="validity in days")
    certs.add_argument("--force", action="store_true", help="replace an existing CA")

    from agentmesh.cli._agents import add_parser as add_agents
    from agentmesh.cli._bench import add_parser as add_bench
    from agentmesh.cli._health import add_parser as add_health
    from agentmesh.cli._review import add_parser as add_review
    from agentmesh.cli._services import plugins

    add_agents(sub)
    add_bench(sub)
    add_review(sub)
    add_health(sub)
    for plugin in plugins():
        for command in plugin.commands:
            command.add_arguments(sub.add_parser(command.name, help=command.help))

    db = sub.add_parser("db", help="database maintenance")
    dsub = db.add_subparsers(dest="db_cmd", required=True)
    dsub.add_parser("migrate", help="apply pending migrations")
    prune = dsub.add_parser(
        "prune", help="delete threads (with their runs, steps, messages) idle for longer than a duration"
    )
    prune.add_argument("--older-than", required=True, metavar="DURATION", help="e.g. 30d, 12h, 90m")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Each command module is imported on use, so `serve guard` doesn't load the launcher and vice versa.
    if args.cmd == "serve":
        from agentmesh.cli._services import plugin
        from agentmesh.settings import Settings

        return _run(plugin(args.name).serve(Settings(), args.port))
    handlers = {
        "up": "agentmesh.cli._up",
        "sim": "agentmesh.cli._sim",
        "ask": "agentmesh.cli._ask",
        "resume": "agentmesh.cli._ask",
        "trace": "agentmesh.cli._trace",
        "keys": "agentmesh.cli._admin",
        "db": "agentmesh.cli._admin",
        "bench": "agentmesh.cli._bench",
        "certs": "agentmesh.cli._certs",
        "review": "agentmesh.cli._review",
        "health": "agentmesh.cli._health",
        "agents": "agentmesh.cli._agents",
    }
    # A service's admin command (`budget`) works against Postgres like `keys` and `db`.
    module = importlib.import_module(handlers.get(args.cmd, "agentmesh.cli._admin"))
    try:
        return _run(module.run(args))
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except Exception as exc:
        error = to_cli_error(exc)
        if error is None:
            raise
        print(f"agentmesh {args.cmd}: {error.message}", file=sys.stderr)
        return error.code


if __name__ == "__main__":
    sys.exit(main())
