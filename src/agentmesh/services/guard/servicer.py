"""GuardService and ReviewService over gRPC: validate, call the plain functions, map the result to protobuf.

Input rules that the protos declare (lengths, UUIDs, enum values) are enforced by the validation interceptor;
what is checked here depends on settings or state."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

import grpc
from google.protobuf import timestamp_pb2

from agentmesh.deadline import Deadline
from agentmesh.errors import InvalidArgument
from agentmesh.rpc import current_tenant
from agentmesh.services.guard._text import Finding
from agentmesh.services.guard.check import CheckOutcome, GuardDeps, run_check
from agentmesh.services.guard.policy import Action, Direction, LlmVerdict, Policy
from agentmesh.services.guard.review import ReviewRecord, ReviewStore
from agentmesh.services.guard.tier_two import TierTwo
from agentmesh.services.guard.vault import Sealer
from agentmesh.v1 import guard_pb2, guard_pb2_grpc, review_pb2, review_pb2_grpc

log = logging.getLogger(__name__)

_DIRECTIONS: Mapping[guard_pb2.Direction, Direction] = MappingProxyType(
    {
        guard_pb2.DIRECTION_UNSPECIFIED: Direction.INPUT,  # the proto documents UNSPECIFIED as input
        guard_pb2.DIRECTION_INPUT: Direction.INPUT,
        guard_pb2.DIRECTION_OUTPUT: Direction.OUTPUT,
    }
)
_ACTIONS: Mapping[Action, guard_pb2.Action] = MappingProxyType(
    {
        Action.ALLOW: guard_pb2.ACTION_ALLOW,
        Action.FLAG: guard_pb2.ACTION_FLAG,
        Action.REDACT: guard_pb2.ACTION_REDACT,
        Action.BLOCK: guard_pb2.ACTION_BLOCK,
    }
)
_VERDICTS: Mapping[LlmVerdict | None, guard_pb2.LlmVerdict] = MappingProxyType(
    {
        None: guard_pb2.LLM_VERDICT_UNSPECIFIED,
        LlmVerdict.INJECTION: guard_pb2.LLM_VERDICT_INJECTION,
        LlmVerdict.BENIGN: guard_pb2.LLM_VERDICT_BENIGN,
        LlmVerdict.UNAVAILABLE: guard_pb2.LLM_VERDICT_UNAVAILABLE,
    }
)
# Internal calls without a tenant header, and servers run without the auth interceptor (tests, benchmarks).
_NO_TENANT = "internal"


def _tenant() -> str:
    return current_tenant.get(None) or _NO_TENANT


class GuardServicer(guard_pb2_grpc.GuardServiceServicer):
    """Answers Check with the tier-one detectors, the configured policy and, when given, tier two, the review
    queue and restore tokens."""

    def __init__(
        self,
        *,
        policy: Policy | Callable[[], Policy],
        max_text_chars: int = 100_000,
        tier_two: TierTwo | None = None,
        reviews: ReviewStore | None = None,
        sealer: Sealer | None = None,
    ) -> None:
        current = policy if callable(policy) else (lambda: policy)
        self._deps = GuardDeps(policy=current, tier_two=tier_two, reviews=reviews, sealer=sealer)
        self._max_text_chars = max_text_chars

    async def Check(
        self,
        request: guard_pb2.CheckRequest,
        context: grpc.aio.ServicerContext[guard_pb2.CheckRequest, guard_pb2.CheckResponse] | None,
    ) -> guard_pb2.CheckResponse:
        direction = _DIRECTIONS.get(request.direction)
        if direction is None:
            raise InvalidArgument(
                f"direction: unknown value {request.direction}; expected DIRECTION_INPUT or DIRECTION_OUTPUT",
                reason="UNKNOWN_DIRECTION",
            )
        chars = len(request.text)
        if chars > self._max_text_chars:
            raise InvalidArgument(
                f"text: {chars} characters is over the limit of {self._max_text_chars}", reason="TEXT_TOO_LONG"
            )
        deadline = Deadline.from_grpc_context(context) if context is not None else None
        tenant = _tenant()
        outcome = await self._check(
            request.text, direction, tenant=tenant, restore_token=request.restore_token, deadline=deadline
        )
        response = _response(outcome)
        decision = outcome.decision
        if request.check_as_input and direction is Direction.OUTPUT and decision.action is not Action.BLOCK:
            # The text the caller passes on, checked as a separate DIRECTION_INPUT call would check it (no
            # restore token in, none out): one round trip instead of two for an agent's output.
            redacted = decision.action is Action.REDACT
            shown = decision.redacted_text if redacted else request.text
            # The same text: tier one's findings stand for the input policy too.
            detected = None if redacted else outcome.detected
            inner = await self._check(
                shown, Direction.INPUT, tenant=tenant, deadline=deadline, seal=False, detected=detected
            )
            response.input_check.CopyFrom(_response(inner))
        return response

    async def _check(
        self,
        text: str,
        direction: Direction,
        *,
        tenant: str,
        deadline: Deadline | None,
        restore_token: str = "",
        seal: bool = True,
        detected: Sequence[Finding] | None = None,
    ) -> CheckOutcome:
        started = time.perf_counter()
        outcome = await run_check(
            text,
            direction,
            self._deps,
            tenant=tenant,
            restore_token=restore_token,
            deadline=deadline,
            seal=seal,
            detected=detected,
        )
        decision = outcome.decision
        # Metadata only: the text, the matched values and the placeholder map never reach the logs.
        counts = dict(Counter(f.type for f in decision.findings))
        latency_ms = round((time.perf_counter() - started) * 1000, 3)
        log.info(
            "guard check: %s %s findings=%s in %.2f ms",
            direction.value,
            decision.action.name,
            counts,
            latency_ms,
            extra={
                "direction": direction.value,
                "action": decision.action.name,
                "finding_counts": counts,
                "text_chars": len(text),
                "latency_ms": latency_ms,
                "review_id": outcome.review_id or None,
            },
        )
        return outcome


def _response(outcome: CheckOutcome) -> guard_pb2.CheckResponse:
    decision = outcome.decision
    return guard_pb2.CheckResponse(
        action=_ACTIONS[decision.action],
        findings=[
            guard_pb2.Finding(
                type=f.type,
                start=f.start,
                end=f.end,
                confidence=f.confidence,
                action=_ACTIONS[f.action],
                llm_verdict=_VERDICTS[f.llm_verdict],
            )
            for f in decision.findings
        ],
        redacted_text=decision.redacted_text,
        restore_token=outcome.restore_token,
        restored_text=outcome.restored_text,
        review_id=outcome.review_id,
    )


_STATUS_FILTER: Mapping[review_pb2.ReviewStatus, str | None] = MappingProxyType(
    {
        review_pb2.REVIEW_STATUS_UNSPECIFIED: None,
        review_pb2.REVIEW_STATUS_PENDING: "pending",
        review_pb2.REVIEW_STATUS_RESOLVED: "resolved",
    }
)
_STATUS_OUT: Mapping[str, review_pb2.ReviewStatus] = MappingProxyType(
    {"pending": review_pb2.REVIEW_STATUS_PENDING, "resolved": review_pb2.REVIEW_STATUS_RESOLVED}
)
_DECISION_IN: Mapping[review_pb2.ReviewDecision, str] = MappingProxyType(
    {review_pb2.REVIEW_DECISION_CONFIRMED: "confirmed", review_pb2.REVIEW_DECISION_DISMISSED: "dismissed"}
)
_DECISION_OUT: Mapping[str | None, review_pb2.ReviewDecision] = MappingProxyType(
    {None: review_pb2.REVIEW_DECISION_UNSPECIFIED, **{v: k for k, v in _DECISION_IN.items()}}
)
_DEFAULT_PAGE_SIZE = 50


def _timestamp(value: dt.datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def review_message(record: ReviewRecord) -> review_pb2.Review:
    findings = [
        guard_pb2.Finding(
            type=f["type"],
            start=f["start"],
            end=f["end"],
            confidence=f["confidence"],
            action=_ACTIONS[Action[f["action"].upper()]],
            llm_verdict=_VERDICTS[LlmVerdict(f["llm_verdict"]) if f.get("llm_verdict") else None],
        )
        for f in record.findings
    ]
    return review_pb2.Review(
        review_id=str(record.id),
        status=_STATUS_OUT[record.status],
        direction=guard_pb2.DIRECTION_OUTPUT if record.direction == "output" else guard_pb2.DIRECTION_INPUT,
        action=_ACTIONS[Action[record.action.upper()]],
        redacted_text=record.redacted_text,
        findings=findings,
        text_chars=record.text_chars,
        create_time=_timestamp(record.created_at),
        decision=_DECISION_OUT[record.decision],
        reviewer=record.reviewer or "",
        note=record.note or "",
        resolve_time=_timestamp(record.resolved_at),
    )


class ReviewServicer(review_pb2_grpc.ReviewServiceServicer):
    """The review queue of the caller's tenant: list, get, resolve."""

    def __init__(self, *, store: ReviewStore) -> None:
        self._store = store

    async def ListReviews(
        self,
        request: review_pb2.ListReviewsRequest,
        context: grpc.aio.ServicerContext[review_pb2.ListReviewsRequest, review_pb2.ListReviewsResponse],
    ) -> review_pb2.ListReviewsResponse:
        if request.status not in _STATUS_FILTER:
            raise InvalidArgument(f"status: unknown value {request.status}", reason="INVALID_STATUS")
        if not 0 <= request.page_size <= 500:
            raise InvalidArgument("page_size: must be between 0 and 500", reason="INVALID_PAGE_SIZE")
        page = await self._store.list(
            tenant=_tenant(),
            status=_STATUS_FILTER[request.status],
            page_size=request.page_size or _DEFAULT_PAGE_SIZE,
            page_token=request.page_token,
        )
        return review_pb2.ListReviewsResponse(
            reviews=[review_message(r) for r in page.records], next_page_token=page.next_token
        )

    async def GetReview(
        self,
        request: review_pb2.GetReviewRequest,
        context: grpc.aio.ServicerContext[review_pb2.GetReviewRequest, review_pb2.GetReviewResponse],
    ) -> review_pb2.GetReviewResponse:
        record = await self._store.get(tenant=_tenant(), review_id=request.review_id)
        return review_pb2.GetReviewResponse(review=review_message(record))

    async def ResolveReview(
        self,
        request: review_pb2.ResolveReviewRequest,
        context: grpc.aio.ServicerContext[review_pb2.ResolveReviewRequest, review_pb2.ResolveReviewResponse],
    ) -> review_pb2.ResolveReviewResponse:
        decision = _DECISION_IN.get(request.decision)
        if decision is None:
            raise InvalidArgument(
                "decision: must be REVIEW_DECISION_CONFIRMED or REVIEW_DECISION_DISMISSED", reason="INVALID_DECISION"
            )
        if not request.reviewer.strip():
            raise InvalidArgument("reviewer: must name who decides", reason="INVALID_REVIEWER")
        record = await self._store.resolve(
            tenant=_tenant(),
            review_id=request.review_id,
            decision=decision,
            reviewer=request.reviewer.strip(),
            note=request.note,
        )
        log.info("review resolved", extra={"review_id": request.review_id, "decision": decision})
        return review_pb2.ResolveReviewResponse(review=review_message(record))
