"""The review queue in Postgres: flagged texts (redacted, with finding metadata), one queue per tenant.

SQL as named constants, rows to dataclasses here, protobuf mapping in the servicer. Every query is scoped by
tenant, so another tenant's id is indistinguishable from an unknown one."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import grpc

from agentmesh.db import db_errors
from agentmesh.errors import AgentMeshError, InvalidArgument, NotFound
from agentmesh.services.guard.policy import PolicyFinding

STATUSES = ("pending", "resolved")
DECISIONS = ("confirmed", "dismissed")
# A review holds at most this much redacted text: enough to judge, bounded for a 100,000-character check.
MAX_REVIEW_TEXT_CHARS = 20_000

_COLUMNS = (
    "id, tenant_id, status, direction, action, redacted_text, text_chars, findings, decision, reviewer, note, "
    "created_at, resolved_at"
)
INSERT_REVIEW = """
INSERT INTO guard_reviews (id, tenant_id, direction, action, redacted_text, text_chars, findings)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)
RETURNING created_at"""
SELECT_REVIEW = f"SELECT {_COLUMNS} FROM guard_reviews WHERE id = $1 AND tenant_id = $2"
# Keyset pagination, newest first: the first page starts after ('infinity', the largest uuid).
LIST_REVIEWS = f"""
SELECT {_COLUMNS} FROM guard_reviews
WHERE tenant_id = $1 AND status = ANY($2::text[]) AND (created_at, id) < ($3::timestamptz, $4::uuid)
ORDER BY created_at DESC, id DESC
LIMIT $5"""
RESOLVE_REVIEW = f"""
UPDATE guard_reviews SET status = 'resolved', decision = $3, reviewer = $4, note = $5, resolved_at = now()
WHERE id = $1 AND tenant_id = $2 AND status = 'pending'
RETURNING {_COLUMNS}"""
_FIRST_PAGE = (dt.datetime.max.replace(tzinfo=dt.UTC), uuid.UUID(int=(1 << 128) - 1))


class ReviewAlreadyResolved(AgentMeshError):
    """A reviewer decided on this item already; a second decision would overwrite theirs."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "REVIEW_ALREADY_RESOLVED"


@dataclass(frozen=True)
class ReviewRecord:
    id: uuid.UUID
    tenant_id: str
    status: str
    direction: str
    action: str
    redacted_text: str
    text_chars: int
    findings: list[dict[str, Any]]
    created_at: dt.datetime
    decision: str | None = None
    reviewer: str | None = None
    note: str | None = None
    resolved_at: dt.datetime | None = None


@dataclass(frozen=True)
class Page:
    records: list[ReviewRecord]
    next_token: str


def findings_json(findings: Sequence[PolicyFinding]) -> str:
    return json.dumps(
        [
            {
                "type": f.type,
                "start": f.start,
                "end": f.end,
                "confidence": f.confidence,
                "action": f.action.name.lower(),
                **({"llm_verdict": f.llm_verdict.value} if f.llm_verdict else {}),
            }
            for f in findings
        ]
    )


def _record(row: asyncpg.Record) -> ReviewRecord:
    findings = row["findings"]
    return ReviewRecord(
        id=row["id"],
        tenant_id=row["tenant_id"],
        status=row["status"],
        direction=row["direction"],
        action=row["action"],
        redacted_text=row["redacted_text"],
        text_chars=row["text_chars"],
        findings=json.loads(findings) if isinstance(findings, str) else list(findings),
        created_at=row["created_at"],
        decision=row["decision"],
        reviewer=row["reviewer"],
        note=row["note"],
        resolved_at=row["resolved_at"],
    )


def parse_review_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument(f"review_id: {value!r} is not a UUID", reason="INVALID_REVIEW_ID") from None


def _encode_token(record: ReviewRecord, statuses: Sequence[str]) -> str:
    body = json.dumps({"t": record.created_at.isoformat(), "i": str(record.id), "s": sorted(statuses)})
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def _decode_token(token: str, statuses: Sequence[str]) -> tuple[dt.datetime, uuid.UUID]:
    try:
        body = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        after, last_id, filtered = dt.datetime.fromisoformat(body["t"]), uuid.UUID(body["i"]), body["s"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise InvalidArgument("page_token: not a token this service issued", reason="INVALID_PAGE_TOKEN") from None
    if filtered != sorted(statuses):
        raise InvalidArgument(
            "page_token: issued for another status filter; keep the filter while paging", reason="INVALID_PAGE_TOKEN"
        )
    return after, last_id


class ReviewStore:
    """Adds, lists, gets and resolves review items, always within one tenant."""

    def __init__(self, *, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def add(
        self,
        *,
        tenant: str,
        direction: str,
        action: str,
        redacted_text: str,
        text_chars: int,
        findings: Sequence[PolicyFinding],
    ) -> uuid.UUID:
        review_id = uuid.uuid4()
        kept = [f for f in findings if f.end <= MAX_REVIEW_TEXT_CHARS]  # offsets must stay inside the stored text
        async with db_errors("adding a review item"):
            await self._pool.execute(
                INSERT_REVIEW,
                review_id,
                tenant,
                direction,
                action,
                redacted_text[:MAX_REVIEW_TEXT_CHARS],
                text_chars,
                findings_json(kept),
            )
        return review_id

    async def get(self, *, tenant: str, review_id: str) -> ReviewRecord:
        rid = parse_review_id(review_id)
        async with db_errors("reading a review item"):
            row = await self._pool.fetchrow(SELECT_REVIEW, rid, tenant)
        if row is None:
            raise NotFound(f"review {review_id} not found", reason="REVIEW_NOT_FOUND")
        return _record(row)

    async def list(self, *, tenant: str, status: str | None, page_size: int, page_token: str) -> Page:
        statuses = [status] if status else list(STATUSES)
        after, last_id = _decode_token(page_token, statuses) if page_token else _FIRST_PAGE
        async with db_errors("listing review items"):
            rows = await self._pool.fetch(LIST_REVIEWS, tenant, statuses, after, last_id, page_size + 1)
        records = [_record(r) for r in rows[:page_size]]
        more = len(rows) > page_size
        return Page(records, _encode_token(records[-1], statuses) if more and records else "")

    async def resolve(self, *, tenant: str, review_id: str, decision: str, reviewer: str, note: str) -> ReviewRecord:
        if decision not in DECISIONS:
            raise InvalidArgument(f"decision: expected one of {', '.join(DECISIONS)}", reason="INVALID_DECISION")
        rid = parse_review_id(review_id)
        async with db_errors("resolving a review item"):
            row = await self._pool.fetchrow(RESOLVE_REVIEW, rid, tenant, decision, reviewer, note or None)
            if row is None:
                existing = await self._pool.fetchrow(SELECT_REVIEW, rid, tenant)
        if row is not None:
            return _record(row)
        if existing is None:
            raise NotFound(f"review {review_id} not found", reason="REVIEW_NOT_FOUND")
        raise ReviewAlreadyResolved(f"review {review_id} was already resolved as {existing['decision']}")
