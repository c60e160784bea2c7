"""A circuit breaker: closed -> open after N consecutive provider failures -> half-open after a cool-down,
where exactly one probe goes through; its success closes the breaker, its failure re-opens it."""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable

from agentmesh.errors import CircuitOpen

log = logging.getLogger(__name__)


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Not thread-safe by design: one per event loop, like the client that owns it."""

    def __init__(
        self,
        *,
        name: str,
        failure_threshold: int,
        reset_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[BreakerState, BreakerState], None] | None = None,
    ) -> None:
        self._name = name
        self._threshold = failure_threshold
        self._reset_timeout_s = reset_timeout_s
        self._clock = clock
        self._on_change = on_change
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False
        self.transitions = 0

    @property
    def state(self) -> BreakerState:
        return self._state

    def check(self) -> None:
        """Raise CircuitOpen if a call would be refused now; changes nothing (callers check before they queue
        for a concurrency slot, then claim with `before_call` once they have one)."""
        if self._state is BreakerState.OPEN:
            waited = self._clock() - self._opened_at
            if waited < self._reset_timeout_s:
                left = self._reset_timeout_s - waited
                raise CircuitOpen(
                    f"LLM provider outage: circuit breaker '{self._name}' is open after {self._threshold} "
                    f"consecutive provider failures; failing fast (next probe in {left:.1f}s)",
                    retry_after_s=left,
                )
        elif self._state is BreakerState.HALF_OPEN and self._probe_in_flight:
            raise CircuitOpen(
                f"LLM provider outage: circuit breaker '{self._name}' is half-open and its probe is in flight",
                retry_after_s=1.0,
            )

    def before_call(self) -> bool:
        """Admit a call or raise CircuitOpen. Returns True when the call is the half-open probe."""
        self.check()
        if self._state is BreakerState.OPEN:  # the cool-down has passed: this call probes
            self._set(BreakerState.HALF_OPEN)
        if self._state is BreakerState.HALF_OPEN:
            self._probe_in_flight = True
            return True
        return False

    def record_success(self, *, probe: bool) -> None:
        if probe:
            self._probe_in_flight = False
        self._failures = 0
        if self._state is not BreakerState.CLOSED:
            self._set(BreakerState.CLOSED)

    def record_failure(self, *, probe: bool) -> None:
        """A provider-side failure (5xx, 529, connection, timeout, broken stream)."""
        if probe:
            self._probe_in_flight = False
            self._trip()
            return
        self._failures += 1
        if self._state is BreakerState.CLOSED and self._failures >= self._threshold:
            self._trip()

    def record_neutral(self, *, probe: bool) -> None:
        """An outcome that says nothing about provider health (429, a 4xx, a cancelled call)."""
        if probe:
            # The probe did not prove anything: let the next caller probe again.
            self._probe_in_flight = False

    def _trip(self) -> None:
        self._opened_at = self._clock()
        self._set(BreakerState.OPEN)

    def _set(self, state: BreakerState) -> None:
        old, self._state = self._state, state
        if old is state:
            return
        self.transitions += 1
        log.warning(
            "circuit breaker %s: %s -> %s",
            self._name,
            old.value,
            state.value,
            extra={"breaker": self._name, "from": old.value, "to": state.value},
        )
        if self._on_change:
            self._on_change(old, state)
