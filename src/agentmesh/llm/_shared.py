"""One LLM budget for the whole mesh: the provider's per-minute buckets kept in Redis, shared by every process
that calls it with the same key, replicas on other hosts included.

The per-process `Pacer` sees the other processes only through the provider's `remaining` count, a round trip
late, and so must keep a reserve and shrink its share of the refill when they show up. Here there is one mirror
of each bucket, in Redis, and every admission is one atomic Lua script against it (on Redis's clock, one for all
hosts): it refills the bucket, charges the call's cost (a request, its estimated input tokens, its max_tokens as
output) and says how long to wait for its turn in the refill (virtual scheduling, the level may go negative).
Each response's headers correct the shared level (what the provider said remained, minus what the mesh reserved
since), and its usage refunds the output estimate. The combined rate is the refill rate, whatever the number of
processes, so there is no share to learn.

Why Redis: the gateway's egress (Envoy) can cap concurrency but cannot read response headers into an admission
decision for the next request, nor hold a call until a bucket refills; Postgres could run the same arithmetic
with row locks, but each admission would take a pooled connection and a transaction from the checkpoints' pool,
on the hot path of every LLM call. A Redis script is one round trip (~0.1 ms on a LAN) with no locks held.

Redis is an optimisation, never a dependency: any Redis error or slowness (over `_OP_TIMEOUT_S`) falls back to
the per-process pacer, with a warning and a counter, and Redis is tried again after `_RETRY_S`. The local pacer
learns from every response meanwhile, so the fallback starts warm. An operator's requests-per-minute cap is a
bucket in Redis too: under a shared budget it caps the mesh's rate, not one process's.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from agentmesh.errors import DeadlineExceeded
from agentmesh.llm._limiter import AIMDLimiter
from agentmesh.llm._mesh_limit import MeshLimiter, redis_client
from agentmesh.llm._pacer import _RESERVE, _RESERVE_S, FAMILIES, Pacer, Reservation, _read, request_chars
from agentmesh.settings import Settings

__all__ = ["SharedBudget", "budget_prefix", "make_budget", "make_limiter"]

log = logging.getLogger(__name__)

_OPERATOR = "operator-requests"
_KEYS: tuple[str, ...] = (*FAMILIES, _OPERATOR)
_OP_TIMEOUT_S = 0.5
"""Longest one Redis call may take before this process paces on its own."""
_RETRY_S = 5.0
"""How long after a Redis failure this process paces on its own before trying Redis again."""
_TTL_MS = 300_000
"""A bucket nobody has touched for 5 minutes is forgotten (and learned again from the next answer)."""

# Bucket hash fields: limit, cap (what a full bucket holds), level (may be negative: claims queued for the
# refill), stamp (Redis TIME of the last refill), spent (all claims ever, less refunds: tells a response how much
# the mesh reserved after its request), atleast/atmost (bounds on cap, as _pacer._learn_capacity).
_LUA_COMMON = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function reserve_of(i, cap, rate)
  if i == 4 then return 0 end
  return math.max(FRACTION * cap, math.min(cap / 2, SECONDS * rate))
end
local function refill(level, cap, stamp, rate)
  if level < cap then level = math.min(cap, level + math.max(0, now - stamp) * rate) end
  return level
end
""".replace("FRACTION", repr(_RESERVE)).replace("SECONDS", repr(_RESERVE_S))

ADMIT = (
    _LUA_COMMON
    + """
-- KEYS: requests, input-tokens, output-tokens, operator-requests buckets.
-- ARGV: the four costs, the operator's cap per minute (0: none), the TTL in ms.
local wait, known, out = 0, 0, {}
for i = 1, 4 do
  local h = redis.call('HMGET', KEYS[i], 'limit', 'cap', 'level', 'stamp', 'spent')
  local limit = tonumber(h[1])
  local cap, level, stamp, spent = tonumber(h[2]), tonumber(h[3]), tonumber(h[4]), tonumber(h[5])
  if i == 4 then
    local op = tonumber(ARGV[5])
    if op <= 0 then
      limit = nil
    elseif op ~= limit then
      limit = op; cap = math.max(1, op / 60); level = cap; stamp = now; spent = spent or 0
    end
  end
  if limit then
    local rate = limit / 60
    level = refill(level, cap, stamp, rate)
    local cost = math.min(tonumber(ARGV[i]), cap)
    level = level - cost
    spent = spent + cost
    local short = math.min(reserve_of(i, cap, rate), cap - cost) - level
    if short > 0 then wait = math.max(wait, short / rate) end
    redis.call('HSET', KEYS[i], 'limit', limit, 'cap', cap, 'level', level, 'stamp', now, 'spent', spent)
    redis.call('PEXPIRE', KEYS[i], ARGV[6])
    out[i] = tostring(spent)
    if i < 4 then known = known + 1 end
  else
    out[i] = ''
  end
end
return {tostring(wait), known, out[1], out[2], out[3], out[4]}
"""
)

STILL_SHORT = (
    _LUA_COMMON
    + """
-- A queued claim's wait by the buckets as they are now: claims queued behind it do not hold it back.
-- ARGV: the four costs, then the four `spent` values its admission returned ('' where it charged nothing).
local wait = 0
for i = 1, 4 do
  local at = tonumber(ARGV[4 + i])
  local h = redis.call('HMGET', KEYS[i], 'limit', 'cap', 'level', 'stamp', 'spent')
  local limit = tonumber(h[1])
  if at and limit then
    local cap, rate = tonumber(h[2]), limit / 60
    local level = refill(tonumber(h[3]), cap, tonumber(h[4]), rate)
    local view = level + math.max(0, tonumber(h[5]) - at)
    local short = math.min(reserve_of(i, cap, rate), cap - math.min(tonumber(ARGV[i]), cap)) - view
    if short > 1e-9 then wait = math.max(wait, short / rate) end
  end
end
return tostring(wait)
"""
)

CANCEL = (
    _LUA_COMMON
    + """
-- A claim never sent: give it back. ARGV: the four costs, then the four `spent` values of its admission.
for i = 1, 4 do
  local h = redis.call('HMGET', KEYS[i], 'limit', 'cap', 'level', 'stamp', 'spent')
  local limit = tonumber(h[1])
  if tonumber(ARGV[4 + i]) and limit then
    local cap = tonumber(h[2])
    local cost = math.min(tonumber(ARGV[i]), cap)
    local level = refill(tonumber(h[3]), cap, tonumber(h[4]), limit / 60)
    redis.call('HSET', KEYS[i], 'level', math.min(cap, level + cost), 'stamp', now, 'spent', tonumber(h[5]) - cost)
  end
end
return 1
"""
)

OBSERVE = (
    _LUA_COMMON
    + """
-- A response's headers correct the shared buckets. KEYS: the three provider buckets. ARGV, 7 per bucket:
-- limit ('' if the response lacks it), remaining, seconds to full ('' unknown), cost charged, output refund,
-- the `spent` of the claim ('' none), seconds since it was sent; then the TTL in ms.
for i = 1, 3 do
  local b = (i - 1) * 7
  local seen = tonumber(ARGV[b + 1])
  local refund = tonumber(ARGV[b + 5])
  local h = redis.call('HMGET', KEYS[i], 'limit', 'cap', 'level', 'stamp', 'spent', 'atleast', 'atmost')
  local limit = tonumber(h[1])
  if seen then
    local remaining, reset, charged = tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
    local cap, level, stamp, spent = tonumber(h[2]), tonumber(h[3]), tonumber(h[4]), tonumber(h[5]) or 0
    local atleast, atmost = tonumber(h[6]) or 1, tonumber(h[7]) or -1
    local fresh = seen ~= limit
    if fresh then
      cap = seen; level = remaining; atleast = 1; atmost = -1
    else
      level = math.min(cap, refill(level, cap, stamp, seen / 60) + refund)
    end
    atleast = math.max(atleast, math.min(seen, remaining + charged))
    if reset then
      local bound = remaining + seen * reset / 60
      if atmost < 0 or bound < atmost then atmost = bound end
    end
    local upper = seen
    if atmost >= 0 then upper = math.min(seen, atmost) end
    cap = math.max(atleast, upper)
    if not fresh then
      local at = tonumber(ARGV[b + 6])
      local since = 0
      if at then since = math.max(0, spent - at) end
      level = math.min(level, remaining + tonumber(ARGV[b + 7]) * seen / 60 - since)
    end
    level = math.min(level, cap)
    redis.call('HSET', KEYS[i], 'limit', seen, 'cap', cap, 'level', level, 'stamp', now, 'spent', spent,
      'atleast', atleast, 'atmost', atmost)
    redis.call('PEXPIRE', KEYS[i], ARGV[22])
  elseif limit and refund > 0 then
    local cap = tonumber(h[2])
    local level = refill(tonumber(h[3]), cap, tonumber(h[4]), limit / 60)
    redis.call('HSET', KEYS[i], 'level', math.min(cap, level + refund), 'stamp', now)
  end
end
return 1
"""
)


def budget_prefix(base: str, *, api_key: str, base_url: str | None) -> str:
    """The Redis key prefix of one provider key's buckets: processes share a budget exactly when they share the
    key (and endpoint). The key itself never reaches Redis, only a hash of it; `{...}` keeps a bucket set in
    one Redis Cluster slot, as a script's keys must be."""
    digest = hashlib.sha256(f"{base_url or ''}\0{api_key}".encode()).hexdigest()[:16]
    return f"{base}:llm:{{{digest}}}"


class SharedBudget:
    """The `Pacer` interface (acquire, sent, cancel, observe) over Redis, with a local `Pacer` as the fallback.

    `fallbacks`: admissions Redis could not serve (each a warning the first time in a row, and a metric)."""

    def __init__(
        self,
        *,
        client: aioredis.Redis,
        prefix: str,
        local: Pacer,
        clock: Callable[[], float],
        max_requests_per_minute: int = 0,
    ) -> None:
        self._redis = client
        self._keys = [f"{prefix}:{name}" for name in _KEYS]
        self._local = local
        self._clock = clock
        self._cap = max_requests_per_minute
        self._admit = client.register_script(ADMIT)
        self._still = client.register_script(STILL_SHORT)
        self._cancel = client.register_script(CANCEL)
        self._observe = client.register_script(OBSERVE)
        self._down_until = 0.0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._answered = asyncio.Event()
        self._probing = False
        self.fallbacks = 0
        self.paced = 0
        self.paced_wait_s = 0.0

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> SharedBudget:
        return cls(client=redis_client(url), **kwargs)

    @property
    def share(self) -> float:
        return self._local.share

    @property
    def shared(self) -> bool:
        """Whether Redis is serving admissions now (False: paced per process until it is tried again)."""
        return self._clock() >= self._down_until

    def limits(self) -> dict[str, int]:
        return self._local.limits()

    async def aclose(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._redis.aclose()

    def _failed(self, exc: BaseException) -> None:
        if self.shared:
            log.warning(
                "the shared LLM budget in Redis is unreachable; pacing per process for %.0fs",
                _RETRY_S,
                extra={"error": f"{type(exc).__name__}: {exc}"},
            )
        self._down_until = self._clock() + _RETRY_S
        self.fallbacks += 1

    async def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        async with asyncio.timeout(_OP_TIMEOUT_S):
            return await script(keys=keys, args=args)

    async def acquire(self, request: Mapping[str, Any], left_s: float) -> Reservation:
        if not self.shared or (not self._cap and not self._local.limits()):
            # Redis is away, or no answer has shown a bucket yet (every process on the key sees the same
            # provider, so its own answers would have): nothing to share, and a round trip saved per call.
            return await self._local.acquire(request, left_s)
        # Measured only where some process has learned an input-tokens bucket (each answer teaches the local one).
        chars = request_chars(request) if self._local.counts_input else 0
        costs = {
            "requests": 1.0,
            "input-tokens": chars * self._local.tokens_per_char,
            "output-tokens": float(request["max_tokens"]),
            _OPERATOR: 1.0,
        }
        end = self._clock() + left_s
        try:
            reply = await self._call(self._admit, self._keys, [*(costs[k] for k in _KEYS), self._cap, _TTL_MS])
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)
            return await self._local.acquire(request, left_s)
        wait = float(reply[0])
        spent_at = {k: float(v) for k, v in zip(_KEYS, reply[2:], strict=True) if v not in (b"", "")}
        reservation = Reservation(costs=costs, spent_at=spent_at, epoch=-1, wait_s=wait, chars=chars, shared=True)
        if int(reply[1]) == 0 and not self._answered.is_set():
            # Nothing learned yet, mesh-wide: one call first, as the local pacer does, so the headers are known
            # before a burst that could empty a bucket (a slow first answer holds the others 2 s at most).
            if self._probing:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, min(left_s, 2.0))):
                        await self._answered.wait()
            self._probing = True
        if wait <= 0:
            return reservation
        self.paced += 1
        try:
            while wait > 0:
                if self._clock() + wait > end:
                    raise DeadlineExceeded(
                        f"the mesh's shared LLM budget (per minute: {self.limits()}) leaves no room for this call "
                        f"before its deadline ({wait:.1f}s to wait)"
                    )
                self.paced_wait_s += wait
                await asyncio.sleep(wait)
                args = [*(costs[k] for k in _KEYS), *(spent_at.get(k, "") for k in _KEYS)]
                try:
                    wait = float(await self._call(self._still, self._keys, args))
                except (RedisError, OSError, TimeoutError) as exc:
                    self._failed(exc)  # its claim stays in Redis (and refills away): go now
                    wait = 0.0
        except BaseException:
            self.cancel(reservation)
            raise
        return reservation

    def sent(self, reservation: Reservation) -> None:
        reservation.sent_at = self._clock()

    def _spawn(self, script: Any, keys: list[str], args: list[Any]) -> None:
        async def run() -> None:
            try:
                await self._call(script, keys, args)
            except (RedisError, OSError, TimeoutError) as exc:
                self._failed(exc)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def cancel(self, reservation: Reservation) -> None:
        if not reservation.shared:
            self._local.cancel(reservation)
            return
        if reservation.done:
            return
        reservation.done = True
        self._answered.set()
        args = [*(reservation.costs[k] for k in _KEYS), *(reservation.spent_at.get(k, "") for k in _KEYS)]
        self._spawn(self._cancel, self._keys, args)

    def observe(
        self,
        reservation: Reservation,
        headers: Mapping[str, str],
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
    ) -> bool:
        """As `Pacer.observe`; the correction goes to Redis in the background (the caller need not wait)."""
        if not reservation.shared:
            return self._local.observe(reservation, headers, input_tokens=input_tokens, output_tokens=output_tokens)
        if reservation.done:
            return False
        reservation.done = True
        self._answered.set()
        # The local pacer learns the limits and the size estimate too: its own mirror is the fallback's start.
        shadow = Reservation(
            costs=reservation.costs, spent_at={}, epoch=-1, wait_s=0.0, chars=reservation.chars, sent_at=None
        )
        self._local.observe(shadow, headers, input_tokens=input_tokens, output_tokens=output_tokens)
        elapsed = 0.0 if reservation.sent_at is None else max(0.0, self._clock() - reservation.sent_at)
        args: list[Any] = []
        short = False
        for name in FAMILIES:
            cost = reservation.costs[name]
            refund = max(0.0, cost - output_tokens) if name == "output-tokens" and output_tokens is not None else 0.0
            seen = _read(headers, name)
            if seen is None:
                args += ["", "", "", 0, refund, "", 0]
                continue
            limit, remaining, reset_s = seen
            short = short or remaining < min(cost, limit)
            charged = cost if output_tokens is not None else 0.0
            at = reservation.spent_at.get(name, "")
            args += [limit, remaining, "" if reset_s is None else reset_s, charged, refund, at, elapsed]
        if self.shared:
            self._spawn(self._observe, self._keys[:3], [*args, _TTL_MS])
        return short


def _key_prefix(settings: Settings) -> str:
    """The Redis keys of this provider key's budget and limit: every process calling it with the key shares them."""
    api_key = settings.anthropic_api_key.get_secret_value() if settings.anthropic_api_key else "offline-simulator"
    return budget_prefix(settings.redis_key_prefix, api_key=api_key, base_url=settings.anthropic_base_url)


def make_budget(settings: Settings, *, clock: Callable[[], float]) -> Pacer | SharedBudget:
    """The shared budget when AGENTMESH_REDIS_URL is set, else this process's own pacer."""
    local = Pacer(clock=clock, max_requests_per_minute=settings.llm_max_requests_per_minute)
    if not settings.redis_url:
        return local
    return SharedBudget.from_url(
        settings.redis_url,
        prefix=_key_prefix(settings),
        local=local,
        clock=clock,
        max_requests_per_minute=settings.llm_max_requests_per_minute,
    )


_MESH_CEILING = 1024
"""The mesh-wide limit's ceiling when no operator cap is set: high enough that only the provider's 429s bound it."""


def make_limiter(
    settings: Settings, local: AIMDLimiter, *, clock: Callable[[], float], queued: Callable[[], int] = lambda: 0
) -> AIMDLimiter | MeshLimiter:
    """The mesh-wide concurrency limit when AGENTMESH_REDIS_URL is set, else `local` (this process's own).
    `queued`: callers in line before the limiter (see MeshLimiter)."""
    if not settings.redis_url:
        return local
    return MeshLimiter.from_url(
        settings.redis_url,
        prefix=_key_prefix(settings),
        local=local,
        per_process=settings.llm_max_concurrency,
        ceiling=settings.llm_mesh_concurrency or _MESH_CEILING,
        lease_ttl_s=settings.llm_timeout_s,
        clock=clock,
        queued=queued,
    )
