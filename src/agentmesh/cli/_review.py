"""`agentmesh review list|get|resolve`: the guard's review queue, through the public gateway with an API key
(a key sees its own tenant's queue only)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the parser is built for every command: gRPC, rich and the stubs load only when this one runs
    from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
    from rich.console import Console

    from agentmesh.v1 import review_pb2

# Enum value names (a message's constructor takes them as they are): the stubs load only when a command runs.
_STATUS = {"pending": "REVIEW_STATUS_PENDING", "resolved": "REVIEW_STATUS_RESOLVED", "all": "REVIEW_STATUS_UNSPECIFIED"}
_DECISION = {"confirmed": "REVIEW_DECISION_CONFIRMED", "dismissed": "REVIEW_DECISION_DISMISSED"}


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    review = sub.add_parser("review", help="list and resolve the guard's review queue")
    rsub = review.add_subparsers(dest="review_cmd", required=True)
    ls = rsub.add_parser("list", help="list flagged items, newest first")
    ls.add_argument("--status", choices=sorted(_STATUS), default="pending")
    ls.add_argument("--limit", type=int, default=20, help="items per page (1-500)")
    ls.add_argument("--page-token", default="", help="next_page_token printed by the previous page")
    get = rsub.add_parser("get", help="show one item: redacted text and findings")
    get.add_argument("review_id")
    res = rsub.add_parser("resolve", help="record a decision on a pending item")
    res.add_argument("review_id")
    res.add_argument(
        "--decision",
        choices=sorted(_DECISION),
        required=True,
        help="confirmed: the guard was right; dismissed: a false alarm",
    )
    res.add_argument("--reviewer", required=True, help="who decides")
    res.add_argument("--note", default="")
    for p in (ls, get, res):
        p.add_argument("--key", default=None, help="API key (default: AGENTMESH_API_KEY, else the dev key of `up`)")
        p.add_argument("--json", action="store_true", help="print the response as JSON")
        p.add_argument("--timeout", type=float, default=30.0)


def _name(enum: EnumTypeWrapper, value: int, prefix: str) -> str:
    name: str = enum.Name(value)
    return name.removeprefix(prefix).lower()


def _print_review(console: Console, r: review_pb2.Review) -> None:
    from rich.table import Table

    from agentmesh.v1 import guard_pb2, review_pb2

    console.print(
        f"[bold]{r.review_id}[/]  {_name(review_pb2.ReviewStatus, r.status, 'REVIEW_STATUS_')}  "
        f"{_name(guard_pb2.Direction, r.direction, 'DIRECTION_')}  {_name(guard_pb2.Action, r.action, 'ACTION_')}  "
        f"{r.create_time.ToDatetime():%Y-%m-%d %H:%M:%S}Z  ({r.text_chars} chars)"
    )
    if r.decision:
        console.print(
            f"decision: {_name(review_pb2.ReviewDecision, r.decision, 'REVIEW_DECISION_')} by {r.reviewer}"
            + (f" — {r.note}" if r.note else ""),
            markup=False,
        )
    table = Table("type", "confidence", "action", "tier two", "text")
    for f in r.findings:
        verdict = _name(guard_pb2.LlmVerdict, f.llm_verdict, "LLM_VERDICT_") if f.llm_verdict else ""
        table.add_row(
            f.type,
            f"{f.confidence:.2f}",
            _name(guard_pb2.Action, f.action, "ACTION_"),
            verdict,
            r.redacted_text[f.start : f.end],
        )
    console.print(table)
    console.print(r.redacted_text, markup=False, highlight=False)


async def run(args: argparse.Namespace) -> int:
    import grpc
    from google.protobuf import json_format
    from rich.console import Console
    from rich.table import Table

    from agentmesh.cli._common import api_key
    from agentmesh.settings import Settings
    from agentmesh.v1 import guard_pb2, review_pb2, review_pb2_grpc

    settings = Settings()
    key = api_key(settings, args.key)
    if not key:
        print("no API key: pass --key, set AGENTMESH_API_KEY, or start the mesh with `agentmesh up`", file=sys.stderr)
        return 2
    console = Console(highlight=False)
    md = (("authorization", f"Bearer {key}"),)
    async with grpc.aio.insecure_channel(settings.gateway_addr) as channel:
        stub = review_pb2_grpc.ReviewServiceStub(channel)
        try:
            if args.review_cmd == "list":
                request = review_pb2.ListReviewsRequest(
                    status=_STATUS[args.status],
                    page_size=args.limit,
                    page_token=args.page_token,
                )
                resp = await stub.ListReviews(request, metadata=md, timeout=args.timeout)
            elif args.review_cmd == "get":
                resp = await stub.GetReview(
                    review_pb2.GetReviewRequest(review_id=args.review_id), metadata=md, timeout=args.timeout
                )
            else:
                resp = await stub.ResolveReview(
                    review_pb2.ResolveReviewRequest(
                        review_id=args.review_id,
                        decision=_DECISION[args.decision],
                        reviewer=args.reviewer,
                        note=args.note,
                    ),
                    metadata=md,
                    timeout=args.timeout,
                )
        except grpc.aio.AioRpcError as exc:
            print(f"{exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(json_format.MessageToDict(resp), indent=2))
        return 0
    if args.review_cmd == "list":
        table = Table("id", "status", "direction", "action", "findings", "flagged at", "text")
        for r in resp.reviews:
            table.add_row(
                r.review_id,
                _name(review_pb2.ReviewStatus, r.status, "REVIEW_STATUS_"),
                _name(guard_pb2.Direction, r.direction, "DIRECTION_"),
                _name(guard_pb2.Action, r.action, "ACTION_"),
                ", ".join(sorted({f.type for f in r.findings})),
                f"{r.create_time.ToDatetime():%Y-%m-%d %H:%M}",
                r.redacted_text[:60].replace("\n", " "),
            )
        console.print(table)
        if resp.next_page_token:
            console.print(f"more: --page-token {resp.next_page_token}")
    else:
        _print_review(console, resp.review)
    return 0
