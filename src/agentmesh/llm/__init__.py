"""The LLM client and its resilience parts."""

from agentmesh.llm._breaker import BreakerState, CircuitBreaker
from agentmesh.llm._client import LLMClient, LLMResult, LLMStats, ToolUse
from agentmesh.llm._limiter import AIMDLimiter, Outcome, Permit
from agentmesh.llm._pricing import PRICES, Price, cost_usd, price_of

__all__ = [
    "PRICES",
    "AIMDLimiter",
    "BreakerState",
    "CircuitBreaker",
    "LLMClient",
    "LLMResult",
    "LLMStats",
    "Outcome",
    "Permit",
    "Price",
    "ToolUse",
    "cost_usd",
    "price_of",
]
