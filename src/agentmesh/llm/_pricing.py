"""Per-model prices (USD per million tokens) and the cost of one call."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Price:
    input_per_mtok: float
    output_per_mtok: float


# Anthropic list prices. Dated snapshots ("claude-haiku-4-5-20251001") match by longest prefix.
PRICES: dict[str, Price] = {
    "claude-haiku-4-5": Price(1.00, 5.00),
    "claude-sonnet-4-5": Price(3.00, 15.00),
    "claude-sonnet-4": Price(3.00, 15.00),
    "claude-opus-4-5": Price(5.00, 25.00),
    "claude-opus-4-1": Price(15.00, 75.00),
    "claude-opus-4": Price(15.00, 75.00),
    "claude-3-5-haiku": Price(0.80, 4.00),
    "claude-3-haiku": Price(0.25, 1.25),
}
# An unknown model is priced like a mid-tier one rather than as free: cost reports must not under-count.
FALLBACK_PRICE = Price(3.00, 15.00)


def price_of(model: str) -> Price:
    best = max((k for k in PRICES if model.startswith(k)), key=len, default=None)
    return PRICES[best] if best else FALLBACK_PRICE


def cost_usd(model: str, input_tokens: int, output_tokens: int) -> float:
    p = price_of(model)
    return (input_tokens * p.input_per_mtok + output_tokens * p.output_per_mtok) / 1_000_000
