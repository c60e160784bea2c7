"""The LLM client and its resilience parts."""

from agentmesh.llm._breaker import BreakerState, CircuitBreaker
from agentmesh.llm._client import LLMClient, LLMResult, LLMStats, ToolUse
from agentmesh.llm._pricing import PRICES, Price, cost_usd, price_of

__all__ = [
    "PRICES",
    "BreakerState",
    "CircuitBreaker",
    "LLMClient",
    "LLMResult",
    "LLMStats",
    "Price",
    "ToolUse",
    "cost_usd",
    "price_of",
]
