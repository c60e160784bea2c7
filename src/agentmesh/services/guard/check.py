"""One guard check from start to end, as a plain async function the servicer calls: open the caller's restore
token, run tier one, ask tier two about grey-zone findings, queue a flagged text for review, seal the new
restore token. Nothing here logs or stores a raw value."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agentmesh.deadline import Deadline
from agentmesh.errors import Unavailable
from agentmesh.services.guard._text import Finding
from agentmesh.services.guard.policy import (
    Action,
    Decision,
    Direction,
    Policy,
    apply_policy,
    decide,
    redact_for_review,
    restore,
)
from agentmesh.services.guard.review import ReviewStore
from agentmesh.services.guard.tier_two import TierTwo
from agentmesh.services.guard.vault import Sealer

log = logging.getLogger(__name__)

# Detection costs ~0.3 ms per KB; long texts go to a worker thread so one big check does not hold up every
# other request on the event loop.
INLINE_MAX_CHARS = 8_192
# Of the caller's deadline, what tier two leaves for the answer itself.
ANSWER_RESERVE_S = 0.25


@dataclass(frozen=True)
class CheckOutcome:
    decision: Decision
    restore_token: str = ""
    restored_text: str = ""
    review_id: str = ""
    detected: tuple[Finding, ...] = ()
    """Tier one's findings on the text, before tier two changed any (see run_check's `detected`)."""


@dataclass(frozen=True)
class GuardDeps:
    """What a check needs besides the text: the current policy, and the optional parts."""

    policy: Callable[[], Policy]
    tier_two: TierTwo | None = None
    reviews: ReviewStore | None = None
    sealer: Sealer | None = None


async def run_check(
    text: str,
    direction: Direction,
    deps: GuardDeps,
    *,
    tenant: str,
    restore_token: str = "",
    deadline: Deadline | None = None,
    seal: bool = True,
    detected: Sequence[Finding] | None = None,
) -> CheckOutcome:
    """`seal=False`: no restore token is made (the caller keeps none, so sealing would be wasted work).
    `detected`: tier one's findings on this same text from an earlier check (`CheckOutcome.detected`); detection
    does not depend on the direction, the policy or the vault, so it is not run again."""
    policy = deps.policy()
    vault = deps.sealer.open(tenant, restore_token) if restore_token and deps.sealer else None
    if detected is not None:
        decision = apply_policy(text, detected, direction, policy, vault=vault)
    elif len(text) <= INLINE_MAX_CHARS:
        decision = decide(text, direction, policy, vault=vault)
    else:
        decision = await asyncio.to_thread(decide, text, direction, policy, vault=vault)
    tier_one = decision.detected
    if deps.tier_two is not None and deps.tier_two.grey(decision.detected):
        budget = None if deadline is None else Deadline(deadline.at - ANSWER_RESERVE_S)
        adjusted, verdicts = await deps.tier_two.review(text, decision.detected, deadline=budget)
        decision = apply_policy(text, adjusted, direction, policy, vault=vault, verdicts=verdicts)
    review_id = ""
    if deps.reviews is not None and any(f.action is Action.FLAG for f in decision.findings):
        review_id = await _queue(deps.reviews, decision, text, direction, tenant)
    if decision.action is Action.BLOCK:
        return CheckOutcome(decision, review_id=review_id, detected=tier_one)
    token = ""
    if seal and deps.sealer is not None and direction is Direction.INPUT:
        merged = {**(vault or {}), **decision.placeholders}
        if merged:
            token = deps.sealer.seal(tenant, merged)
    restored = restore(decision.redacted_text, vault) if vault is not None else ""
    return CheckOutcome(decision, token, restored, review_id, tier_one)


async def _queue(reviews: ReviewStore, decision: Decision, text: str, direction: Direction, tenant: str) -> str:
    redacted, findings = redact_for_review(decision, text)
    try:
        review_id = await reviews.add(
            tenant=tenant,
            direction=direction.value,
            action=decision.action.name.lower(),
            redacted_text=redacted,
            text_chars=len(text),
            findings=findings,
        )
    except Unavailable as exc:
        # The check itself must not fail with the queue: the decision stands, the lost item is logged.
        log.error("review item not stored", extra={"reason": exc.reason, "direction": direction.value})
        return ""
    return str(review_id)
