"""The simulator's fault settings: what `PUT /_sim/faults` accepts, validated all-or-nothing."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from agentmesh.testing.sim._responder import ToolFault

__all__ = ["STREAM_FAULTS", "FaultError", "Faults", "StreamFault", "parse_faults"]

StreamFault = Literal["error_event", "cut", "truncate"]
STREAM_FAULTS: tuple[str, ...] = ("error_event", "cut", "truncate")
_TOOL_FAULTS: tuple[str, ...] = ("invent", "malformed")
_Z99 = 2.3263478740408408  # standard normal quantile at 0.99


@dataclass(frozen=True, slots=True)
class Faults:
    """The injected misbehaviour. Frozen: a PUT swaps the whole object, so a request sees one consistent set."""

    latency_ms: float | tuple[float, float] = 0.0
    """Fixed delay, or (p50, p99) of a lognormal."""
    max_concurrency: int | None = None
    retry_after_s: float = 1.0
    outage: int | None = None
    error_rate: float = 0.0
    hang: bool = False
    stream_fault: StreamFault | None = None
    stream_fault_rate: float = 1.0
    tool_fault: ToolFault | None = None
    route_fault: Literal["invalid"] | None = None
    reply_suffix: str = ""
    """Appended to every agent answer (text a provider might return: PII, planted instructions)."""
    should_retry: bool | None = None
    seed: int | None = None
    rpm: int | None = None
    """Requests per minute per API key (a token bucket); None: no such limit."""
    itpm: int | None = None
    """Input tokens per minute per API key, charged at admission."""
    otpm: int | None = None
    """Output tokens per minute per API key: max_tokens charged at admission, the unused part refunded at the end."""
    rate_window_s: float = 60.0
    """Each bucket holds this many seconds of refill (60: capacity = the per-minute limit). The real API may
    enforce a limit over shorter intervals (60 RPM as 1 request per second); a short window models that."""

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if isinstance(self.latency_ms, tuple):
            data["latency_ms"] = {"p50": self.latency_ms[0], "p99": self.latency_ms[1]}
        return data

    def sample_latency_s(self, rng: random.Random) -> float:
        if not isinstance(self.latency_ms, tuple):
            return self.latency_ms / 1000
        p50, p99 = self.latency_ms
        # Lognormal through both quantiles: median = e^mu, p99 = e^(mu + z99 * sigma).
        sigma = (math.log(p99) - math.log(p50)) / _Z99
        return rng.lognormvariate(math.log(p50), sigma) / 1000


class FaultError(ValueError):
    """A fault setting the control plane rejects (answered with 400)."""


def _number(key: str, value: Any, *, low: float = 0.0, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise FaultError(f"{key} must be a number")
    if value < low or (high is not None and value > high):
        raise FaultError(
            f"{key} must be between {low:g} and {high:g}" if high is not None else f"{key} must be >= {low:g}"
        )
    return float(value)


def _optional_int(key: str, value: Any, low: int, high: int | None = None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise FaultError(f"{key} must be an integer or null")
    if value < low or (high is not None and value > high):
        raise FaultError(f"{key} must be null or an integer in [{low}, {high}]" if high else f"{key} must be >= {low}")
    return value


def _choice(key: str, value: Any, options: tuple[str, ...]) -> str | None:
    if value is not None and value not in options:
        raise FaultError(f"{key} must be null or one of {', '.join(repr(o) for o in options)}")
    return None if value is None else str(value)


def _latency(value: Any) -> float | tuple[float, float]:
    if value is None:
        return 0.0
    if isinstance(value, dict):
        if set(value) != {"p50", "p99"}:
            raise FaultError('latency_ms as an object must be exactly {"p50": ms, "p99": ms}')
        p50 = _number("latency_ms.p50", value["p50"])
        p99 = _number("latency_ms.p99", value["p99"])
        if p50 <= 0 or p99 < p50:
            raise FaultError("latency_ms needs 0 < p50 <= p99")
        return (p50, p99) if p99 > p50 else p50
    return _number("latency_ms", value)


def _bool(key: str, value: Any, *, nullable: bool = False) -> bool | None:
    if (value is None and nullable) or isinstance(value, bool):
        return value
    raise FaultError(f"{key} must be true or false" + (" or null" if nullable else ""))


def _per_minute(key: str, value: Any) -> int | None:
    # 0 turns a limit off, as null does: both mean "no such bucket".
    return _optional_int(key, value, 0) or None


def _window(value: Any) -> float:
    window = _number("rate_window_s", value)
    if window <= 0:
        raise FaultError("rate_window_s must be > 0")
    return window


_FAULT_PARSERS: dict[str, Callable[[Any], Any]] = {
    "latency_ms": _latency,
    "max_concurrency": lambda v: _optional_int("max_concurrency", v, 0),
    "retry_after_s": lambda v: _number("retry_after_s", v),
    "outage": lambda v: _optional_int("outage", v, 400, 599),
    "error_rate": lambda v: _number("error_rate", v, high=1.0),
    "hang": lambda v: _bool("hang", v),
    "stream_fault": lambda v: _choice("stream_fault", v, STREAM_FAULTS),
    "stream_fault_rate": lambda v: _number("stream_fault_rate", v, high=1.0),
    "tool_fault": lambda v: _choice("tool_fault", v, _TOOL_FAULTS),
    "route_fault": lambda v: _choice("route_fault", v, ("invalid",)),
    "reply_suffix": lambda v: _text("reply_suffix", v, 4000),
    "should_retry": lambda v: _bool("should_retry", v, nullable=True),
    "seed": lambda v: _optional_int("seed", v, -(2**63)),
    "rpm": lambda v: _per_minute("rpm", v),
    "itpm": lambda v: _per_minute("itpm", v),
    "otpm": lambda v: _per_minute("otpm", v),
    "rate_window_s": lambda v: _window(v),
}


def _text(key: str, value: Any, max_chars: int) -> str:
    if value is None or (isinstance(value, str) and len(value) <= max_chars):
        return value or ""
    raise FaultError(f"{key} must be a string of at most {max_chars} characters")


def parse_faults(data: Any) -> dict[str, Any]:
    """Validate a PUT body into the changes it asks for; all-or-nothing."""
    if not isinstance(data, dict):
        raise FaultError("body must be a JSON object")
    unknown = sorted(set(data) - set(_FAULT_PARSERS))
    if unknown:
        raise FaultError(f"unknown fault keys: {', '.join(unknown)}; known: {', '.join(_FAULT_PARSERS)}")
    return {key: _FAULT_PARSERS[key](value) for key, value in data.items()}
