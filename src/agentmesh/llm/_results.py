"""What the LLM client hands back and counts: one call's result, and the per-process counters an exporter reads."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from agentmesh.llm._breaker import BreakerState

__all__ = ["LLMResult", "LLMStats", "ToolUse"]


@dataclass(frozen=True)
class ToolUse:
    id: str
    name: str
    input: dict[str, Any]


@dataclass(frozen=True)
class LLMResult:
    """What one successful call produced (after however many attempts)."""

    text: str
    tool_uses: tuple[ToolUse, ...]
    content: list[dict[str, Any]]  # the assistant blocks, to send back in a tool-use follow-up
    stop_reason: str | None
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    attempts: int
    latency_ms: float


@dataclass
class LLMStats:
    """Counters and gauges owned by one client (one per process): what the provider saw, what it cost, and
    the state of the limiter and the breaker, kept here so a metrics endpoint can export them as they are."""

    calls: int = 0
    attempts: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    """Failed attempts by kind: "429", "529", "500", "timeout", "connection", "stream_cut", ..."""
    fast_failures: Counter[str] = field(default_factory=Counter)
    """Calls this client ended without waiting for (another) provider answer, by reason: "circuit_open",
    "retry_after_above_cap", "retry_after_beyond_deadline", "deadline"."""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    in_flight: int = 0
    queued: int = 0
    concurrency_limit: float = 0.0
    """The adaptive limit now (between 1 and llm_max_concurrency)."""
    concurrency_limit_lowest: float = 0.0
    """The lowest the adaptive limit has been since start."""
    limit_decreases: int = 0
    """Multiplicative decreases of the limit (at most one per round trip of 429s)."""
    breaker_state: str = BreakerState.CLOSED.value
    """closed, open or half_open."""
    breaker_transitions: Counter[str] = field(default_factory=Counter)
    """Breaker state changes by "from->to", e.g. "closed->open"."""
    paced: int = 0
    """Attempts that waited for the provider's rate-limit buckets (learned from its headers) to refill."""
    paced_wait_s: float = 0.0
    """Total time attempts waited for the buckets."""
    pace_share: float = 1.0
    """This process's assumed share of the buckets' refill (below 1: other processes spend the same key)."""
    budget_fallbacks: int = 0
    """Calls the shared budget or the mesh-wide concurrency limit (Redis) could not serve, so this process paced
    or limited them on its own."""
