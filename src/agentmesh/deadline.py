"""The one deadline type: a point on the monotonic clock, carried from a gRPC call's arrival to every call it makes
(LLM requests, agent and guard calls), each of which turns it into its own timeout with `timeout(cap)`."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Protocol

# A timeout of 0 is not "fail now" everywhere: a socket timeout of 0 means non-blocking. The least timeout handed
# out is this instead, so an expired deadline still fails the call at once, with the transport's own timeout error.
_LEAST_TIMEOUT_S = 0.001


class _HasTimeRemaining(Protocol):
    """A gRPC servicer context, sync or asyncio: all a deadline needs of it."""

    def time_remaining(self) -> float | None: ...


@dataclass(frozen=True, slots=True, order=True)
class Deadline:
    """When the work must be done, as a `time.monotonic()` value; `math.inf` when the caller set none.

    Ordered by `at`, so `min(a, b)` is the earlier of two deadlines."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        """`seconds` from now (0 or less: already expired)."""
        return cls(time.monotonic() + seconds)

    @classmethod
    def from_grpc_context(cls, context: _HasTimeRemaining, cap_s: float | None = None) -> Deadline:
        """The deadline of the call being served (none if the client set none), and at most `cap_s` from now."""
        remaining = context.time_remaining()
        deadline = cls(math.inf) if remaining is None else cls.after(remaining)
        return deadline if cap_s is None else min(deadline, cls.after(cap_s))

    def remaining(self) -> float:
        """Seconds left, never below 0; `math.inf` for no deadline."""
        return max(0.0, self.at - time.monotonic())

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.at

    def timeout(self, cap: float) -> float:
        """The timeout to give one call (gRPC, HTTP) made under this deadline: what is left of it, at most `cap`
        (never 0: see _LEAST_TIMEOUT_S)."""
        return max(_LEAST_TIMEOUT_S, min(cap, self.remaining()))


__all__ = ["Deadline"]
