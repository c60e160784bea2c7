"""The breaker's state machine on a fake clock."""

from __future__ import annotations

import pytest

from agentmesh.errors import CircuitOpen
from agentmesh.llm import BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_threshold_and_half_opens_after_cool_down() -> None:
    clock = Clock()
    changes: list[tuple[BreakerState, BreakerState]] = []
    b = CircuitBreaker(
        name="t", failure_threshold=3, reset_timeout_s=10, clock=clock, on_change=lambda a, z: changes.append((a, z))
    )
    for _ in range(2):
        assert b.before_call() is False
        b.record_failure(probe=False)
    assert b.state is BreakerState.CLOSED
    b.before_call()
    b.record_failure(probe=False)
    assert b.state is BreakerState.OPEN
    with pytest.raises(CircuitOpen) as info:
        b.before_call()
    assert info.value.retry_after_s == pytest.approx(10)
    clock.now = 10.5
    assert b.before_call() is True  # the probe
    with pytest.raises(CircuitOpen):
        b.before_call()  # a second caller while the probe is out
    b.record_success(probe=True)
    assert b.state is BreakerState.CLOSED
    assert changes == [
        (BreakerState.CLOSED, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED),
    ]


def test_failed_probe_reopens_and_neutral_probe_frees_the_slot() -> None:
    clock = Clock()
    b = CircuitBreaker(name="t", failure_threshold=1, reset_timeout_s=5, clock=clock)
    b.before_call()
    b.record_failure(probe=False)
    clock.now = 6
    assert b.before_call() is True
    b.record_failure(probe=True)
    assert b.state is BreakerState.OPEN
    clock.now = 12
    assert b.before_call() is True
    b.record_neutral(probe=True)  # e.g. the probe got a 429: proves nothing either way
    assert b.before_call() is True
    b.record_success(probe=True)
    assert b.state is BreakerState.CLOSED


def test_success_resets_the_consecutive_count() -> None:
    b = CircuitBreaker(name="t", failure_threshold=2, reset_timeout_s=5, clock=Clock())
    b.record_failure(probe=False)
    b.record_success(probe=False)
    b.record_failure(probe=False)
    assert b.state is BreakerState.CLOSED
