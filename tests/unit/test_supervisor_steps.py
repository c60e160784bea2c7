"""Typed step bodies against the JSON the supervisor has always stored in `steps.result`: a row written before
the bodies were typed reads back into the same body, and a body writes exactly the keys such a row has, so a
run checkpointed before an upgrade resumes exactly after it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agentmesh.services.supervisor.steps import AgentBody, GuardBody, LLMCall, RouteBody, ToolRun, body_from_json

CALL = {
    "model": "claude-sonnet-4-5",
    "input_tokens": 120,
    "output_tokens": 3,
    "start_ms": 0.0,
    "duration_ms": 412.3,
    "cost_usd": 0.000405,
    "attempts": 2,
    "stop_reason": "end_turn",
}

# Rows as the untyped runner wrote them (one per shape its code could produce).
ROWS: list[tuple[str, dict[str, Any]]] = [
    ("route", {"decision": "researcher", "llm": [CALL]}),
    ("route", {"decision": "FINISH", "llm": [CALL], "reason": "COMPLETED"}),
    ("route", {"decision": "analyst", "llm": [CALL], "invalid_answer": ""}),
    ("route", {"decision": "FINISH", "llm": [CALL], "reason": "COMPLETED", "invalid_answer": "maybe FINISH?"}),
    ("route", {"decision": "FINISH", "reason": "ITERATION_LIMIT"}),
    ("route", {"decision": "FINISH", "reason": "BUDGET_EXHAUSTED"}),
    ("agent", {"output": "Provider A.", "model": "claude-sonnet-4-5", "llm": [CALL, {**CALL, "start_ms": 420.0}]}),
    ("agent", {"output": "", "model": "m", "llm": []}),
    (
        "agent",
        {
            "output": "42",
            "model": "m",
            "llm": [CALL],
            "tools": [{"name": "calculator", "executed": True}, {"name": "rm", "executed": False}],
        },
    ),
    ("guard", {"action": 1, "finding_types": [], "answer": "Provider A."}),
    ("guard", {"action": 2, "finding_types": ["email", "phone"], "answer": "Mail <EMAIL_1>."}),
    ("guard", {"action": 3, "finding_types": ["credit_card"], "answer": ""}),
]


@pytest.mark.parametrize(("kind", "row"), ROWS)
def test_a_stored_row_reads_back_and_writes_the_same_json(kind: str, row: dict[str, Any]) -> None:
    stored = json.loads(json.dumps(row))  # as it comes back from JSONB
    body = body_from_json(kind, stored)
    assert json.loads(json.dumps(body.to_json())) == stored


def test_bodies_are_typed_by_kind() -> None:
    route = body_from_json("route", {"decision": "FINISH", "llm": [CALL], "reason": "COMPLETED"})
    assert route == RouteBody("FINISH", llm=(LLMCall(**CALL),), reason="COMPLETED")
    agent = body_from_json(
        "agent", {"output": "o", "model": "m", "llm": [], "tools": [{"name": "t", "executed": True}]}
    )
    assert agent == AgentBody("o", "m", tools=(ToolRun("t", True),))
    guard = body_from_json("guard", {"action": 2, "finding_types": ["email"], "answer": "a"})
    assert guard == GuardBody(action=2, finding_types=("email",), answer="a")


def test_a_step_recorded_before_llm_calls_were_kept_still_reads() -> None:
    # The first versions stored no "llm" key (agentmesh trace shows such steps without calls).
    assert body_from_json("route", {"decision": "researcher"}) == RouteBody("researcher")
    assert body_from_json("agent", {"output": "o", "model": "m"}) == AgentBody("o", "m")
    # Missing call fields take the defaults `agentmesh trace` reads them with.
    assert body_from_json("agent", {"output": "o", "model": "m", "llm": [{"model": "x"}]}) == AgentBody(
        "o", "m", llm=(LLMCall("x", 0, 0, 0.0, 0.0, 0.0, 1, ""),)
    )


def test_a_route_without_a_call_writes_no_llm_key_and_an_agent_always_does() -> None:
    assert RouteBody("FINISH", reason="ITERATION_LIMIT").to_json() == {
        "decision": "FINISH",
        "reason": "ITERATION_LIMIT",
    }
    assert AgentBody("o", "m").to_json() == {"output": "o", "model": "m", "llm": []}


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(KeyError):
        body_from_json("summary", {})


def test_bodies_are_frozen_and_slotted() -> None:
    body = GuardBody(action=1, finding_types=(), answer="a")
    with pytest.raises(AttributeError):
        body.answer = "b"  # type: ignore[misc]
    assert not hasattr(body, "__dict__")
