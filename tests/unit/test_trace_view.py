"""`agentmesh trace`: what the tree and the HTML waterfall show, from rows shaped like the steps table's."""

from __future__ import annotations

import datetime as dt
import json
import uuid

from rich.console import Console

from agentmesh.cli._trace import build_view, render_tree, view_json
from agentmesh.cli._waterfall import render_html

T0 = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)


def _at(ms: float) -> dt.datetime:
    return T0 + dt.timedelta(milliseconds=ms)


def _call(
    input_tokens: int, output_tokens: int, start_ms: float, duration_ms: float, attempts: int = 1
) -> dict[str, object]:
    return {
        "model": "claude-haiku-4-5",
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "start_ms": start_ms,
        "duration_ms": duration_ms,
        "cost_usd": 0.0001,
        "attempts": attempts,
        "stop_reason": "end_turn",
    }


RUN = {
    "id": uuid.UUID(int=1),
    "status": "completed",
    "tenant_id": "dev",
    "iterations": 1,
    "llm_calls": 3,
    "input_tokens": 300,
    "output_tokens": 60,
    "cost_usd": 0.0003,
    "created_at": T0,
    "updated_at": _at(1000),
}
STEPS = [
    {
        "idx": 0,
        "kind": "route",
        "agent": "supervisor",
        "result": json.dumps({"decision": "researcher", "llm": [_call(100, 2, 0, 90)]}),
        "input_tokens": 100,
        "output_tokens": 2,
        "llm_calls": 1,
        "cost_usd": 0.0001,
        "duration_ms": 100,
        "created_at": _at(110),
    },
    {
        "idx": 1,
        "kind": "agent",
        "agent": "<script>researcher",
        "result": {
            "output": "secret answer",
            "llm": [_call(150, 50, 5, 300, attempts=3), _call(50, 8, 320, 200)],
            "tools": [{"name": "calculator", "executed": True}],
        },
        "input_tokens": 200,
        "output_tokens": 58,
        "llm_calls": 2,
        "cost_usd": 0.0002,
        "duration_ms": 600,
        "created_at": _at(720),
    },
    {
        "idx": 2,
        "kind": "guard",
        "agent": "guard",
        "result": {"action": 3, "finding_types": ["email"], "answer": "x"},
        "input_tokens": 0,
        "output_tokens": 0,
        "llm_calls": 0,
        "cost_usd": 0.0,
        "duration_ms": 20,
        "created_at": _at(990),
    },
]


def _text() -> str:
    console = Console(record=True, width=200)
    console.print(render_tree(build_view(RUN, STEPS)))
    return console.export_text()


def test_the_tree_shows_each_llm_call_with_tokens_ms_cost_and_retries() -> None:
    text = _text()
    assert "3 LLM calls (2 retries)" in text
    assert "-> researcher" in text
    assert (
        "LLM call 1 claude-haiku-4-5 · tokens in 150 out 50 · 300 ms · $0.000100 · end_turn · 3 attempts (2 retries)"
        in text
    )
    assert "LLM call 2 claude-haiku-4-5 · tokens in 50 out 8 · 200 ms" in text
    assert "tool calculator ran" in text
    assert "guard guard action REDACT (email)" in text
    assert "secret answer" not in text


def test_steps_start_at_their_commit_time_minus_their_duration() -> None:
    view = build_view(RUN, STEPS)
    assert [s.start_ms for s in view.steps] == [10.0, 120.0, 970.0]
    assert view.attempts == 5


def test_the_waterfall_is_one_self_contained_page_with_escaped_names() -> None:
    page = render_html(build_view(RUN, STEPS))
    assert page.startswith("<!doctype html>") and "<script" not in page and "&lt;script&gt;researcher" in page
    assert "http" not in page.replace("http-equiv", "")  # nothing fetched
    assert page.count('class="bar"') == 3 + 3  # three steps, three LLM calls
    assert "left:1.0%;width:10.0%" in page  # the route step: 10 ms after the start, 100 ms of 1000
    assert "secret answer" not in page


def test_the_json_tree_has_the_run_its_steps_their_calls_retries_and_tools() -> None:
    out = json.loads(json.dumps(view_json(build_view(RUN, STEPS))))  # plain JSON types only
    assert out["id"] == str(uuid.UUID(int=1)) and out["status"] == "completed" and out["tenant"] == "dev"
    assert out["wall_ms"] == 1000 and out["attempts"] == 5  # 1 + (3 + 1), as the tree counts them
    assert [(s["idx"], s["kind"], s["agent"]) for s in out["steps"]] == [
        (0, "route", "supervisor"),
        (1, "agent", "<script>researcher"),  # as stored: JSON needs no escaping, the tree and HTML do
        (2, "guard", "guard"),
    ]
    agent = out["steps"][1]
    assert [(c["input_tokens"], c["attempts"], c["retries"]) for c in agent["calls"]] == [(150, 3, 2), (50, 1, 0)]
    assert agent["tools"] == [{"name": "calculator", "executed": True}]
    assert out["steps"][0]["detail"] == "-> researcher"
