"""Pacing LLM calls to the provider's per-minute token buckets, learned from its `anthropic-ratelimit-*` headers.

Anthropic limits requests, input tokens and output tokens per minute with continuously refilled buckets and says
on every response how much each holds (`-limit`, `-remaining`, `-reset`). A 429 costs a round trip and a wait;
reading the headers costs nothing. So this process keeps a mirror of each bucket it has seen:

- the refill rate is `limit / 60` per second (an operator cap may lower the requests one);
- a call reserves its cost (1 request, its estimated input tokens, its max_tokens as output, as the provider
  charges it) and waits until the mirror, refilled, holds that plus a small reserve; reservations queue in
  order (virtual scheduling: the level may go negative, and each waits for its turn in the refill);
- each response corrects the mirror down to what the provider said remained, minus what this process sent
  since (so other processes sharing the key show up as a lower level), and the output estimate is refunded to
  the actual output;
- several processes pacing the same key each assume the refill is theirs; when the provider's level falls
  below half the reserve anyway, this process's share of the refill shrinks (x0.75, at most once per round
  trip) and it grows back (+0.01 per response) while the level holds: additive increase, multiplicative
  decrease on an early signal, so the processes converge on the rate without 429s.

Not thread-safe by design: one per event loop, like the client that owns it. Before a response has shown a
bucket's limit there is nothing to pace by: calls go at once.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agentmesh.errors import DeadlineExceeded

__all__ = ["FAMILIES", "Pacer", "Reservation", "request_chars"]

FAMILIES: tuple[str, ...] = ("requests", "input-tokens", "output-tokens")
_RESERVE = 0.05
_RESERVE_S = 0.5
"""Kept unspent in each bucket: 5% of it or half a second of its refill (at most half of it), whichever is more.
Room for the error of mirrors that learn with a round trip's delay, several processes' included. It costs no
throughput, which is the refill rate either way, only a part of the burst a full bucket allows."""
_OPERATOR = "operator-requests"
_PROBE_WAIT_S = 2.0
"""The longest the first calls wait for the first answer's headers before going without them."""
_SHARE_MIN = 0.05
_SHARE_DECREASE = 0.75
_SHARE_INCREASE = 0.01
_TOKENS_PER_CHAR = 0.25
"""First guess of input tokens per character of the request's JSON, until responses report real counts."""
_FORGET_AFTER = 20
"""Successful answers in a row without a bucket's headers after which it is forgotten: the provider (or the way
to it) no longer limits by it, and a stale mirror would pace calls to a rate nobody enforces."""


@dataclass(slots=True)
class _Bucket:
    limit: int
    capacity: float
    level: float
    stamp: float
    at_least: float = 1.0
    """The most the provider has been seen to hold (remaining plus the cost it had just charged)."""
    at_most: float = math.inf
    """The least `remaining + refill until -reset` has said it holds when full (reset has whole seconds)."""
    mirror: bool = True
    """A mirror of a provider's bucket (learned with a delay: it keeps a reserve); False: our own, exact."""
    spent: float = 0.0
    """What this process has reserved in total (less refunds): tells how much it sent after a given response."""
    unmentioned: int = 0
    """Answers in a row that said nothing of this bucket (see _FORGET_AFTER)."""

    @property
    def reserve(self) -> float:
        if not self.mirror:
            return 0.0
        return max(_RESERVE * self.capacity, min(self.capacity / 2, _RESERVE_S * self.limit / 60))


@dataclass(slots=True)
class Reservation:
    """One attempt's claim on the buckets; hand it back to `observe` (sent) or `cancel` (never sent)."""

    costs: dict[str, float]
    spent_at: dict[str, float]
    epoch: int
    wait_s: float
    chars: int
    sent_at: float | None = None
    done: bool = False
    shared: bool = False
    """Claimed in the mesh's shared budget (Redis), not in this process's mirror."""


@dataclass(slots=True)
class Pacer:
    clock: Callable[[], float]
    max_requests_per_minute: int = 0
    """An operator's cap on the requests bucket's refill (0: whatever the provider says)."""
    share: float = 1.0
    """This process's assumed part of each bucket's refill (see the module docstring)."""
    epoch: int = 0
    decreases: int = 0
    tokens_per_char: float = _TOKENS_PER_CHAR
    """Input tokens per request character, learned from the usage of answered calls."""
    paced: int = 0
    """Attempts that had to wait for a refill."""
    paced_wait_s: float = 0.0
    _buckets: dict[str, _Bucket] = field(default_factory=dict)
    _answered: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the first attempt has an answer (or gave up): until then one attempt at a time, so the
    headers are learned before a burst that could empty a bucket."""
    _probing: bool = False
    _char_samples: int = 0

    def __post_init__(self) -> None:
        if self.max_requests_per_minute > 0:
            # The operator's cap is a bucket of our own (a second's worth), checked with the provider's.
            cap = self.max_requests_per_minute
            self._buckets[_OPERATOR] = _Bucket(cap, max(1.0, cap / 60), max(1.0, cap / 60), self.clock(), mirror=False)

    def limits(self) -> dict[str, int]:
        """The per-minute limits learned so far (and the operator's cap), by family."""
        return {name: b.limit for name, b in self._buckets.items()}

    def _rate(self, name: str, bucket: _Bucket) -> float:
        if name == _OPERATOR:
            return bucket.limit / 60.0
        return self.share * bucket.limit / 60.0

    def _refill(self, name: str, bucket: _Bucket, now: float) -> None:
        if bucket.level < bucket.capacity:
            bucket.level = min(bucket.capacity, bucket.level + (now - bucket.stamp) * self._rate(name, bucket))
        bucket.stamp = now

    @property
    def counts_input(self) -> bool:
        """Whether an input-tokens bucket is paced (only then is the request's size worth measuring)."""
        return "input-tokens" in self._buckets

    def reserve(self, *, chars: int, max_tokens: int) -> Reservation:
        """Claim this attempt's cost now (`chars`: the request's size, for its input tokens); `wait_s` says how
        long to wait before sending it."""
        now = self.clock()
        costs = {
            "requests": 1.0,
            "input-tokens": chars * self.tokens_per_char,
            "output-tokens": float(max_tokens),
            _OPERATOR: 1.0,
        }
        wait = 0.0
        spent_at: dict[str, float] = {}
        for name, bucket in self._buckets.items():
            self._refill(name, bucket, now)
            cost = min(costs[name], bucket.capacity)
            bucket.level -= cost
            bucket.spent += cost
            spent_at[name] = bucket.spent
            # Send once the refill has paid this claim and everything queued before it, reserve left over (or,
            # for a claim too big for that, once the bucket would be full).
            short = min(bucket.reserve, bucket.capacity - cost) - bucket.level
            if short > 0:
                wait = max(wait, short / self._rate(name, bucket))
        return Reservation(costs=costs, spent_at=spent_at, epoch=self.epoch, wait_s=wait, chars=chars)

    async def acquire(self, request: Mapping[str, Any], left_s: float) -> Reservation:
        """Reserve a Messages request's cost and wait for its turn in the refill; DeadlineExceeded (with the
        claim given back) when that turn comes after `left_s`."""
        if not self._answered.is_set():
            if self._probing:
                try:
                    async with asyncio.timeout(max(0.0, min(left_s, _PROBE_WAIT_S))):
                        await self._answered.wait()
                except TimeoutError:
                    if left_s <= _PROBE_WAIT_S:
                        raise DeadlineExceeded(
                            "the deadline passed while the LLM call waited for the provider's first answer "
                            "(its rate-limit headers)"
                        ) from None
                    # A slow first answer (a hung provider) must not hold every call: go without.
            else:
                self._probing = True
        chars = request_chars(request) if self.counts_input else 0
        reservation = self.reserve(chars=chars, max_tokens=request["max_tokens"])
        wait = reservation.wait_s
        if wait <= 0:
            return reservation
        end = self.clock() + left_s
        self.paced += 1
        try:
            while wait > 0:
                # Checked again after each sleep: answers that came meanwhile may show the bucket lower (other
                # processes spending it, a smaller share), and a claim made earlier must not go out regardless.
                if self.clock() + wait > end:
                    raise DeadlineExceeded(
                        f"the provider's rate limits (per minute: {self.limits()}, learned from its headers) leave "
                        f"no room for this LLM call before its deadline ({wait:.1f}s to wait)"
                    )
                self.paced_wait_s += wait
                await asyncio.sleep(wait)
                wait = self._still_short_s(reservation)
        except BaseException:
            self.cancel(reservation)
            raise
        return reservation

    def _still_short_s(self, reservation: Reservation) -> float:
        """How much longer this queued claim must wait, by the buckets as they are now known."""
        now = self.clock()
        wait = 0.0
        for name, bucket in self._buckets.items():
            if name not in reservation.spent_at:
                continue
            self._refill(name, bucket, now)
            cost = min(reservation.costs[name], bucket.capacity)
            # The level as this claim sees it: claims queued behind it do not hold it back.
            level = bucket.level + (bucket.spent - reservation.spent_at[name])
            short = min(bucket.reserve, bucket.capacity - cost) - level
            if short > 1e-9:
                wait = max(wait, short / self._rate(name, bucket))
        return wait

    def sent(self, reservation: Reservation) -> None:
        reservation.sent_at = self.clock()

    def cancel(self, reservation: Reservation) -> None:
        """The attempt was never sent (deadline, cancellation): give its claim back."""
        if reservation.done:
            return
        reservation.done = True
        self._answered.set()
        for name, bucket in self._buckets.items():
            if name in reservation.spent_at:
                cost = min(reservation.costs[name], bucket.capacity)
                bucket.level = min(bucket.capacity, bucket.level + cost)
                bucket.spent -= cost

    def observe(
        self,
        reservation: Reservation,
        headers: Mapping[str, str],
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
    ) -> bool:
        """Correct the mirror from a sent attempt's response headers (any status; empty if there was no
        response). `input_tokens`, `output_tokens`: a success's usage, to learn the input estimate and refund
        the max_tokens one. Returns True when a bucket had less than this attempt cost (a 429 of that bucket:
        the pacer owns the wait, not a concurrency limit)."""
        if reservation.done:
            return False
        reservation.done = True
        self._answered.set()
        if input_tokens and reservation.chars:
            measured = input_tokens / reservation.chars
            # The first measurement replaces the guess outright; later ones smooth it.
            self._char_samples += 1
            weight = 1.0 if self._char_samples == 1 else 0.2
            self.tokens_per_char += weight * (measured - self.tokens_per_char)
        now = self.clock()
        short = False
        low = False
        seen_any = False
        for name in FAMILIES:
            seen = _read(headers, name)
            cost = reservation.costs[name]
            bucket = self._buckets.get(name)
            if name == "output-tokens" and output_tokens is not None and bucket is not None:
                # The provider settled the estimate to the actual output: so does the mirror.
                refund = max(0.0, min(cost, bucket.capacity) - output_tokens)
                bucket.level = min(bucket.capacity, bucket.level + refund)
            if seen is None:
                if bucket is not None and output_tokens is not None:
                    bucket.unmentioned += 1
                    if bucket.unmentioned >= _FORGET_AFTER:
                        del self._buckets[name]
                continue
            seen_any = True
            limit, remaining, reset_s = seen
            charged = cost if output_tokens is not None else 0.0  # a refused or failed call may not have been
            short = short or remaining < min(cost, limit)
            if bucket is None or bucket.limit != limit:
                # First sight (or a new limit): a full bucket holds `limit`; the reset date, when the provider
                # fills it again, bounds it tighter when it enforces the limit over a shorter window.
                bucket = self._buckets[name] = _Bucket(limit, float(limit), float(remaining), now)
                _learn_capacity(bucket, remaining, charged, reset_s)
                continue
            bucket.unmentioned = 0
            self._refill(name, bucket, now)
            _learn_capacity(bucket, remaining, charged, reset_s)
            sent_since = bucket.spent - reservation.spent_at.get(name, bucket.spent)
            elapsed = 0.0 if reservation.sent_at is None else max(0.0, now - reservation.sent_at)
            estimate = remaining + elapsed * self._rate(name, bucket) - sent_since
            bucket.level = min(bucket.level, estimate)
            low = low or remaining < bucket.reserve / 2
        if low or short:
            self._decrease(reservation)
        elif seen_any:
            self.share = min(1.0, self.share + _SHARE_INCREASE)
        return short

    def _decrease(self, reservation: Reservation) -> None:
        # Once per round trip: a burst of low readings from calls sent under the old share is one signal.
        if reservation.epoch != self.epoch:
            return
        self.share = max(_SHARE_MIN, self.share * _SHARE_DECREASE)
        self.epoch += 1
        self.decreases += 1


def request_chars(request: Mapping[str, Any]) -> int:
    """The size of a Messages request, for its input-token estimate."""
    chars = len(request.get("system") or "") + len(json.dumps(request["messages"], default=str))
    if request.get("tools"):
        chars += len(json.dumps(request["tools"], default=str))
    return chars


def _learn_capacity(bucket: _Bucket, remaining: float, cost: float, reset_s: float | None) -> None:
    # A full bucket holds `limit` unless the provider enforces it over a shorter window: then the reset date
    # (when the bucket is full again) bounds it from above, and what it has held bounds it from below.
    bucket.at_least = max(bucket.at_least, min(float(bucket.limit), remaining + cost))
    if reset_s is not None:
        bucket.at_most = min(bucket.at_most, remaining + bucket.limit * reset_s / 60)
    bucket.capacity = max(bucket.at_least, min(float(bucket.limit), bucket.at_most))
    bucket.level = min(bucket.level, bucket.capacity)


def _read(headers: Mapping[str, str], name: str) -> tuple[int, float, float | None] | None:
    """(limit, remaining, seconds until full) of one family, or None if the response does not carry it whole."""
    prefix = f"anthropic-ratelimit-{name}-"
    raw_limit = headers.get(prefix + "limit")
    raw_remaining = headers.get(prefix + "remaining")
    if raw_limit is None or raw_remaining is None:
        return None
    try:
        limit = int(raw_limit)
        remaining = float(raw_remaining)
    except ValueError:
        return None
    if limit <= 0 or not math.isfinite(remaining):
        return None
    reset_s: float | None = None
    raw_reset = headers.get(prefix + "reset")
    if raw_reset:
        try:
            reset_at = datetime.fromisoformat(raw_reset.replace("Z", "+00:00"))
            reset_s = max(0.0, reset_at.timestamp() - time.time())
        except ValueError:
            reset_s = None
    return limit, max(0.0, remaining), reset_s
