"""An adaptive limit on LLM calls in flight: additive increase, multiplicative decrease (AIMD).

A fixed semaphore sized for a quiet provider keeps hammering a throttled one: every 429 is retried into the
same wall. This limit starts at the configured ceiling, halves when the provider answers 429 and creeps back
by 1/limit per success (about +1 per round trip), so a process converges on what the provider admits.

A decrease happens at most once per round trip: each permit remembers the limiter's epoch when it was
granted, and a 429 on a permit from before the last decrease is ignored (it was sent under the old limit,
which that decrease already answered). One 429 storm of 30 calls therefore halves the limit once, not 30
times. Not thread-safe by design: one per event loop, like the client that owns it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import math
from collections import deque
from dataclasses import dataclass


class Outcome(enum.Enum):
    """What one call through a permit says about the provider's capacity."""

    SUCCESS = "success"
    """Answered: grow the limit (if it was in use)."""
    AT_CAPACITY = "at_capacity"
    """Answered, but the provider said no request is left (anthropic-ratelimit-requests-remaining: 0): hold."""
    RATE_LIMITED = "rate_limited"
    """429: shrink the limit, once per round trip."""
    NEUTRAL = "neutral"
    """Failed for a reason that says nothing about capacity (5xx, timeout, cancelled): no change."""


@dataclass(frozen=True)
class Permit:
    """One slot; hand it back to `release` exactly once."""

    epoch: int
    waited: bool
    """True when the caller had to queue for it."""
    busy: bool
    """At least half the limit was in use when it was granted (this one included): only then does its
    success say the provider can take more."""
    lease: str = ""
    """The mesh-wide slot behind it (`MeshLimiter`); empty for this process's own limiter."""
    granted_at: float = 0.0
    """When the mesh-wide slot was granted (the limiter's clock): its holding time is the call's latency."""


class AIMDLimiter:
    """Bounds calls in flight by a limit in [min_limit, max_limit] that 429s halve and successes grow."""

    def __init__(self, *, max_limit: int, min_limit: int = 1, decrease_factor: float = 0.5) -> None:
        if not 1 <= min_limit <= max_limit:
            raise ValueError(f"need 1 <= min_limit ({min_limit}) <= max_limit ({max_limit})")
        if not 0 < decrease_factor < 1:
            raise ValueError("decrease_factor must be in (0, 1)")
        self._min = min_limit
        self._max = max_limit
        self._factor = decrease_factor
        self._limit = float(max_limit)  # optimistic start: the first 429s size it down within a few round trips
        self._in_flight = 0
        self._epoch = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.decreases = 0
        self.lowest = self._limit

    @property
    def limit(self) -> float:
        """The current limit (fractional: additive increase adds 1/limit per success)."""
        return self._limit

    @property
    def capacity(self) -> int:
        """Calls allowed in flight right now."""
        return max(self._min, math.floor(self._limit))

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def waiting(self) -> int:
        return sum(not f.done() for f in self._waiters)

    def try_acquire(self) -> Permit | None:
        """A slot if one is free and nobody queues ahead; else None (never waits)."""
        if self._waiters or self._in_flight >= self.capacity:
            return None
        self._in_flight += 1
        return Permit(self._epoch, waited=False, busy=self._busy())

    async def acquire(self) -> Permit:
        """A slot, first come first served. Cancellation (e.g. the caller's deadline) leaves the queue cleanly."""
        permit = self.try_acquire()
        if permit is not None:
            return permit
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # Granted in the same tick as the cancellation: pass the slot on rather than leak it.
                self._in_flight -= 1
                self._wake()
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise
        return Permit(self._epoch, waited=True, busy=self._busy())

    def release(self, permit: Permit, outcome: Outcome) -> None:
        self._in_flight -= 1
        if outcome is Outcome.RATE_LIMITED:
            if permit.epoch == self._epoch:
                self._limit = max(float(self._min), self._limit * self._factor)
                self._epoch += 1
                self.decreases += 1
                self.lowest = min(self.lowest, self._limit)
        elif outcome is Outcome.SUCCESS and permit.busy:
            # Grow only on evidence: a limit far above what callers use says nothing about the provider.
            self._limit = min(float(self._max), self._limit + 1 / self._limit)
        self._wake()

    def _busy(self) -> bool:
        return self._in_flight * 2 >= self.capacity

    def _wake(self) -> None:
        while self._waiters and self._in_flight < self.capacity:
            waiter = self._waiters.popleft()
            if waiter.done():  # cancelled while queued
                continue
            self._in_flight += 1
            waiter.set_result(None)
