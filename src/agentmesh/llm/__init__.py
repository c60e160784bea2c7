"""The LLM client, its resilience parts, and the instruments it reports each call to."""

from agentmesh.llm._breaker import BreakerState, CircuitBreaker
from agentmesh.llm._client import LLMClient
from agentmesh.llm._instruments import LLMInstruments
from agentmesh.llm._limiter import AIMDLimiter, Outcome, Permit
from agentmesh.llm._pricing import PRICES, Price, cost_usd, price_of
from agentmesh.llm._results import LLMResult, LLMStats, ToolUse

__all__ = [
    "PRICES",
    "AIMDLimiter",
    "BreakerState",
    "CircuitBreaker",
    "LLMClient",
    "LLMInstruments",
    "LLMResult",
    "LLMStats",
    "Outcome",
    "Permit",
    "Price",
    "ToolUse",
    "cost_usd",
    "price_of",
]
