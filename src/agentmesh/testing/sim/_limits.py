"""Per-API-key token buckets for requests, input tokens and output tokens per minute, as the real API limits.

Each bucket holds at most `limit * rate_window_s / 60` (the per-minute limit with the default 60 s window) and
refills continuously at limit/60 per second, rather than resetting at fixed intervals. A request is admitted only
if every bucket that is on holds what it costs: 1 request, its input tokens, and its max_tokens as the estimate of
its output tokens (as Anthropic documents OTPM: estimated from max_tokens at the start, adjusted at the end);
`Admission.settle` refunds what it did not use once its output is known. A request costing more than a bucket
can ever hold is charged the bucket's capacity, so it waits for a full bucket instead of failing forever.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from agentmesh.testing.sim._faults import Faults

__all__ = ["Admission", "Bucket", "RateLimits", "Refusal"]

# Header name part, the faults field, and the unit in a 429's message, in the order the API names them.
_KINDS: tuple[tuple[str, str, str], ...] = (
    ("requests", "rpm", "requests"),
    ("input-tokens", "itpm", "input tokens"),
    ("output-tokens", "otpm", "output tokens"),
)


@dataclass(slots=True)
class Bucket:
    limit: int
    """Per minute: the refill rate is limit/60 per second."""
    capacity: float
    level: float
    stamp: float

    @property
    def rate(self) -> float:
        return self.limit / 60.0

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def cost(self, amount: float) -> float:
        return min(amount, self.capacity)

    def wait_s(self, amount: float) -> float:
        """Seconds until the bucket holds `amount` (0 if it does now)."""
        return max(0.0, (self.cost(amount) - self.level) / self.rate)

    def reset_s(self) -> float:
        """Seconds until the bucket is full again (what the API's `-reset` header dates)."""
        return max(0.0, (self.capacity - self.level) / self.rate)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request no bucket would admit: which bucket, its per-minute limit, and the whole seconds to wait."""

    kind: str
    limit: int
    retry_after_s: int

    @property
    def message(self) -> str:
        unit = next(unit for kind, _, unit in _KINDS if kind == self.kind)
        return (
            f"This request would exceed your organization's rate limit of {self.limit:,} {unit} per minute "
            "(simulated). For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the "
            "response headers for current usage. Please reduce the prompt length or the maximum tokens requested, "
            "or try again later."
        )


@dataclass(slots=True)
class Admission:
    """One admitted request's output-token estimate, refunded down to the actual output by `settle`."""

    limits: RateLimits
    key: str
    estimated_output: int
    settled: bool = False

    def settle(self, output_tokens: int) -> None:
        if self.settled:
            return
        self.settled = True
        bucket = self.limits.bucket(self.key, "output-tokens")
        if bucket is not None:
            bucket.refill(self.limits.clock())
            refund = bucket.cost(self.estimated_output) - min(output_tokens, bucket.cost(self.estimated_output))
            bucket.level = min(bucket.capacity, bucket.level + refund)


@dataclass(slots=True)
class RateLimits:
    """Every API key's buckets under the current faults; a bucket is rebuilt full when its limit changes."""

    clock: Callable[[], float] = time.monotonic
    _buckets: dict[tuple[str, str], Bucket] = field(default_factory=dict)
    _faults: Faults = field(default_factory=Faults)

    @property
    def on(self) -> bool:
        f = self._faults
        return f.rpm is not None or f.itpm is not None or f.otpm is not None

    def configure(self, faults: Faults) -> None:
        self._faults = faults

    def clear(self) -> None:
        self._buckets.clear()

    def bucket(self, key: str, kind: str) -> Bucket | None:
        """The key's bucket of this kind, refilled up to now; None when that limit is off."""
        limit = getattr(self._faults, next(name for k, name, _ in _KINDS if k == kind))
        if limit is None:
            return None
        now = self.clock()
        capacity = max(1.0, limit * self._faults.rate_window_s / 60.0)
        bucket = self._buckets.get((key, kind))
        if bucket is None or bucket.limit != limit or bucket.capacity != capacity:
            bucket = self._buckets[(key, kind)] = Bucket(limit, capacity, capacity, now)
        bucket.refill(now)
        return bucket

    def admit(self, key: str, *, input_tokens: int, max_tokens: int) -> Admission | Refusal:
        """Charge every bucket that is on, or none of them if any lacks what this request costs."""
        costs = {"requests": 1, "input-tokens": input_tokens, "output-tokens": max_tokens}
        buckets = [(kind, b) for kind, _, _ in _KINDS if (b := self.bucket(key, kind)) is not None]
        short = [(kind, b) for kind, b in buckets if b.level < b.cost(costs[kind])]
        if short:
            kind, bucket = short[0]
            wait = max(b.wait_s(costs[k]) for k, b in short)
            return Refusal(kind, bucket.limit, max(1, math.ceil(wait)))
        for kind, b in buckets:
            b.level -= b.cost(costs[kind])
        return Admission(self, key, max_tokens)

    def headers(self, key: str) -> dict[str, str]:
        """`anthropic-ratelimit-*` for every bucket that is on; `tokens-*` repeat the tighter token bucket."""
        now = datetime.now(UTC)
        out: dict[str, str] = {}
        tightest: tuple[float, str] | None = None
        for kind, _, _ in _KINDS:
            bucket = self.bucket(key, kind)
            if bucket is None:
                continue
            fields = {
                "limit": str(bucket.limit),
                "remaining": str(max(0, math.floor(bucket.level))),
                "reset": _rfc3339(now + timedelta(seconds=bucket.reset_s())),
            }
            out.update({f"anthropic-ratelimit-{kind}-{name}": value for name, value in fields.items()})
            if kind != "requests":
                share = bucket.level / bucket.capacity
                if tightest is None or share < tightest[0]:
                    tightest = (share, kind)
        if tightest is not None:
            for name in ("limit", "remaining", "reset"):
                out[f"anthropic-ratelimit-tokens-{name}"] = out[f"anthropic-ratelimit-{tightest[1]}-{name}"]
        return out


def _rfc3339(moment: datetime) -> str:
    # Whole seconds, rounded up, so a client never reads a reset earlier than the true one.
    if moment.microsecond:
        moment = moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
