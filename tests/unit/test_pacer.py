"""The pacer's bucket arithmetic on a clock the test moves (no sockets, no sleeping): what it learns from the
`anthropic-ratelimit-*` headers and how long each claim waits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agentmesh.llm._pacer import Pacer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def headers(family: str, limit: int, remaining: int, reset_in_s: float = 60.0) -> dict[str, str]:
    reset = (datetime.now(UTC) + timedelta(seconds=reset_in_s)).isoformat(timespec="seconds").replace("+00:00", "Z")
    prefix = f"anthropic-ratelimit-{family}-"
    return {prefix + "limit": str(limit), prefix + "remaining": str(remaining), prefix + "reset": reset}


def learned(clock: Clock, family: str, limit: int, remaining: int, **kwargs: float) -> Pacer:
    pacer = Pacer(clock=clock)
    first = pacer.reserve(chars=0, max_tokens=0)
    pacer.sent(first)
    pacer.observe(first, headers(family, limit, remaining, **kwargs), input_tokens=0, output_tokens=0)
    return pacer


def test_nothing_is_paced_before_a_header_was_seen() -> None:
    pacer = Pacer(clock=Clock())
    assert all(pacer.reserve(chars=100, max_tokens=500).wait_s == 0 for _ in range(100))
    assert pacer.limits() == {}


def test_claims_queue_for_the_refill_beyond_the_reserve() -> None:
    clock = Clock()
    # 60 RPM, 10 left: the reserve is half a second of refill (0.5 request) or 5% of 60 (3), so 7 go at once.
    pacer = learned(clock, "requests", 60, 10)
    waits = [pacer.reserve(chars=0, max_tokens=0).wait_s for _ in range(9)]
    assert waits[:7] == [0.0] * 7
    assert waits[7:] == pytest.approx([1.0, 2.0])  # then one a second, each behind the one before
    clock.now += 5
    assert pacer.reserve(chars=0, max_tokens=0).wait_s == pytest.approx(0.0)  # 5 refilled, 2 were owed: 3 left


def test_a_lower_remaining_than_expected_lowers_the_mirror() -> None:
    clock = Clock()
    pacer = learned(clock, "requests", 60, 50)
    sent = pacer.reserve(chars=0, max_tokens=0)
    pacer.sent(sent)
    # Another process spent the key: the provider says 5 remain where this process counted 49.
    pacer.observe(sent, headers("requests", 60, 5), output_tokens=1)
    waits = [pacer.reserve(chars=0, max_tokens=0).wait_s for _ in range(3)]
    assert waits[0] == 0.0 and waits[2] == pytest.approx(1.0)  # 5 - reserve 3: two at once, then the refill


def test_the_output_estimate_is_refunded_to_the_actual_output() -> None:
    clock = Clock()
    pacer = learned(clock, "output-tokens", 6000, 6000)  # full: 6,000 tokens, 100 a second, reserve 300
    claim = pacer.reserve(chars=0, max_tokens=5000)
    assert claim.wait_s == 0.0
    pacer.sent(claim)
    pacer.observe(claim, {}, output_tokens=100)  # 4,900 of the 5,000 come back: 5,900 left
    assert pacer.reserve(chars=0, max_tokens=5000).wait_s == 0.0  # 900 left, above the reserve
    assert pacer.reserve(chars=0, max_tokens=1000).wait_s == pytest.approx((300 + 100) / 100)


def test_a_refusal_says_the_bucket_was_short_and_shrinks_the_share() -> None:
    clock = Clock()
    pacer = learned(clock, "requests", 60, 30)
    claim = pacer.reserve(chars=0, max_tokens=0)
    pacer.sent(claim)
    assert pacer.observe(claim, headers("requests", 60, 0)) is True
    assert pacer.share == pytest.approx(0.75) and pacer.decreases == 1
    healthy = pacer.reserve(chars=0, max_tokens=0)
    pacer.sent(healthy)
    assert pacer.observe(healthy, headers("requests", 60, 40), output_tokens=1) is False
    assert pacer.share == pytest.approx(0.76)  # grows back while the level holds


def test_a_short_window_is_learned_from_the_reset_date() -> None:
    clock = Clock()
    # 6,000 RPM enforced as 100 a second: 60 remain and the bucket is full again within a second.
    pacer = learned(clock, "requests", 6000, 60, reset_in_s=0.8)
    assert pacer.reserve(chars=0, max_tokens=0).wait_s == 0.0
    clock.now += 60  # a minute idle: the mirror refills to what the bucket can hold, not to 6,000
    waits = [pacer.reserve(chars=0, max_tokens=0).wait_s for _ in range(200)]
    assert 0 < waits.index(next(w for w in waits if w > 0)) <= 110


def test_an_operator_cap_paces_without_any_header() -> None:
    pacer = Pacer(clock=Clock(), max_requests_per_minute=120)  # 2 a second, 2 at once
    waits = [pacer.reserve(chars=0, max_tokens=0).wait_s for _ in range(4)]
    assert waits[0] == 0.0 and waits[-1] == pytest.approx(1.0, abs=0.3)


def test_a_bucket_the_answers_stop_mentioning_is_forgotten() -> None:
    # The provider (or the way to it) stops sending one bucket's headers: after 20 successful answers in a row
    # without them the mirror is dropped, rather than pacing calls to a rate nobody enforces any more.
    clock = Clock()
    pacer = learned(clock, "requests", 600, 599)
    for _ in range(19):
        r = pacer.reserve(chars=0, max_tokens=0)
        pacer.sent(r)
        pacer.observe(r, {}, input_tokens=10, output_tokens=5)
    assert pacer.limits() == {"requests": 600}
    # A mention resets the count; a failed attempt (no usage) is no evidence either way.
    r = pacer.reserve(chars=0, max_tokens=0)
    pacer.observe(r, headers("requests", 600, 590), input_tokens=10, output_tokens=5)
    for _ in range(19):
        r = pacer.reserve(chars=0, max_tokens=0)
        pacer.observe(r, {}, input_tokens=10, output_tokens=5)
        pacer.observe(pacer.reserve(chars=0, max_tokens=0), {})
    assert pacer.limits() == {"requests": 600}
    r = pacer.reserve(chars=0, max_tokens=0)
    pacer.observe(r, {}, input_tokens=10, output_tokens=5)
    assert pacer.limits() == {}
    assert pacer.reserve(chars=0, max_tokens=0).wait_s == 0
