"""One concurrency limit for the whole mesh, learned from the provider's 429s and kept in Redis.

A provider that caps calls in flight (Anthropic publishes no such number) answers 429 to each call above the
cap. Every process guessing its own share of it (the per-process `AIMDLimiter`) oscillates: each halves on its
429s and grows back without seeing the others, so together they sit near 3/4 of the cap and draw a 429 per
process per sawtooth. Here every process that calls the provider with the same key holds one lease per call in
flight in one Redis sorted set, under one learned limit:

- **slow start:** the limit starts at `_INITIAL` and grows by a quarter per round trip while every slot is in
  use, until the first 429;
- **a 429 removes one slot:** a call the provider refused was the one above its cap, so the limit drops by
  exactly one (a burst of k refusals by k), with no halving to win back;
- **probing:** the limit grows again (about one per round trip, while every slot is in use) only after a quiet
  spell with no 429, `_QUIET_RTTS` round trips of the calls' own latency: at the provider's cap, one probe
  costs one 429 per quiet spell (about 1 call in 1,000 at C=20, L=200 ms) and a raised cap is found within it.

Each admission, release and outcome is one atomic Lua script on Redis's clock; a release that has callers
waiting here takes a new lease in the same script, so a freed slot passes on within one round trip. A process
whose callers found no slot is registered as waiting, and blocks on a wake list of its own (BLPOP): the script
that frees a slot pushes a wake to the longest-waiting other process, so nobody polls. Leases expire (the call's
timeout and a margin), so a process killed mid-call frees its slots. As with the shared budget (`_shared.py`), Redis is an
optimisation, never a dependency: on any Redis error this process falls back to its own `AIMDLimiter` for
`_RETRY_S` and says so once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import math
import secrets
from collections import deque
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from agentmesh.llm._limiter import AIMDLimiter, Outcome, Permit

__all__ = ["MeshLimiter", "redis_client"]

log = logging.getLogger(__name__)

_INITIAL = 4.0
_SLOW_START_STEP = 0.25
"""Added per successful call while every slot is in use, before the first 429: x1.25 per round trip (the
overshoot when the cap is found is then a quarter of it, at most)."""
_QUIET_RTTS = 50.0
_QUIET_MIN_S = 5.0
_QUIET_MAX_S = 120.0
"""The quiet spell before probing: a probe costs the call it refuses a retry-after wait (a second, often), so
at 5 calls a run 1 run in ~70 met one at 15 round trips and a small tenant's p99 grew by it; at 50, ~1 in 200."""
_WAIT_S = 0.5
"""Longest a waiting process blocks for a wake before it asks again (a lost wake costs this, at most)."""
_SPARE_S = 0.05
"""How long a slot kept for a caller on its way waits for it before it is given back."""
_WAITING_TTL_S = 1.0
"""How long a registration as waiting lasts in Redis; a waiting process renews it each time it asks."""
_HEADS = 8
"""How many of its waiting callers a process registers (with how long each has waited): slots are handed to it
for each in turn, so it asks again only after _HEADS hand-overs, not after each."""
_LINGER_S = 2.0
"""How long the wake listener stays after the last wait here: under load it runs on instead of ending and
starting again (each end costs a round trip to take back whatever was handed meanwhile)."""
_OP_TIMEOUT_S = 0.5
_RETRY_S = 5.0
_KEY_TTL_MS = 300_000
"""A limit nobody has used for 5 minutes is forgotten (and learned again, from slow start)."""
_LEASE_MARGIN_S = 30.0

_OUTCOME = {Outcome.SUCCESS: "ok", Outcome.RATE_LIMITED: "limited", Outcome.AT_CAPACITY: "", Outcome.NEUTRAL: ""}

# KEYS: the state hash (limit, slow, last429, lat), the leases' sorted set (member: lease id, score: expiry), the
# waiting processes' sorted set (member: process id, score: when its registration lapses), and a hash of when
# each waiting process's first callers began to wait (up to _HEADS of them, oldest first).
# ARGV: ceiling, initial, slow-start step, quiet rtts, quiet min s, quiet max s, lease ttl s, key ttl ms,
#       lease prefix, leases wanted, process id, wake-list prefix, waiting ttl s,
#       releases n, how long each caller waiting here has waited (s, oldest first, space-separated; up to
#       _HEADS), then per release: lease, outcome (ok|limited|''), busy, latency s.
# The wake lists (prefix .. process id) share the keys' hash tag, so they live in the same Cluster slot.
SETTLE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ceiling = tonumber(ARGV[1])
local h = redis.call('HMGET', KEYS[1], 'limit', 'slow', 'last429', 'lat')
local limit = tonumber(h[1]) or math.min(ceiling, tonumber(ARGV[2]))
local slow = tonumber(h[2]) or 1
local last429 = tonumber(h[3]) or 0
local lat = tonumber(h[4]) or 0
local decreased = 0
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
for r = 0, tonumber(ARGV[14]) - 1 do
  local b = 16 + r * 4
  redis.call('ZREM', KEYS[2], ARGV[b])
  local outcome = ARGV[b + 1]
  if outcome == 'limited' then
    limit = math.max(1, limit - 1)
    last429 = now
    slow = 0
    decreased = decreased + 1
  elseif outcome == 'ok' then
    local l = tonumber(ARGV[b + 3])
    if lat == 0 then lat = l else lat = lat * 0.9 + l * 0.1 end
    if ARGV[b + 2] == '1' then
      if slow == 1 then
        limit = limit + tonumber(ARGV[3])
      else
        local quiet = math.min(tonumber(ARGV[6]), math.max(tonumber(ARGV[5]), tonumber(ARGV[4]) * lat))
        if now - last429 >= quiet then limit = limit + 1 / limit end
      end
    end
  end
end
limit = math.min(limit, ceiling)
local cap = math.floor(limit)
local n = redis.call('ZCARD', KEYS[2])
local me = ARGV[11]
local ttl = tonumber(ARGV[7])
-- The callers waiting in other processes, oldest first: {since, process}. Each waiting process keeps the times
-- its first callers began to wait in KEYS[4] (process -> "since since ...", oldest first).
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local line, heads = {}, {}
for _, p in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  if p ~= me then
    local list = {}
    for s in string.gmatch(redis.call('HGET', KEYS[4], p) or '', '%S+') do
      list[#list + 1] = s
      line[#line + 1] = {tonumber(s), p}
    end
    heads[p] = list
  end
end
table.sort(line, function(a, b) return a[1] < b[1] end)
-- Ours: how long each caller waiting here has waited, oldest first; demand beyond them counts as just arrived.
local mine = {}
for s in string.gmatch(ARGV[15], '%S+') do mine[#mine + 1] = now - tonumber(s) end
local ids, busy, served, order = {}, {}, {}, {}
local want = tonumber(ARGV[10])
local k, handed = 1, 0
-- Each free slot goes to the caller that has waited longest, here or in another process (handed to it
-- directly: a lease id pushed onto its wake list).
while n < cap do
  local other = line[k]
  if other and other[1] < (mine[#ids + 1] or now) then
    handed = handed + 1
    local id = ARGV[9] .. ':h' .. handed
    redis.call('ZADD', KEYS[2], now + ttl, id)
    local wake = ARGV[12] .. other[2]
    redis.call('RPUSH', wake, id)
    redis.call('PEXPIRE', wake, 10000)
    if not served[other[2]] then order[#order + 1] = other[2] end
    served[other[2]] = (served[other[2]] or 0) + 1
    k = k + 1
    n = n + 1
  elseif #ids < want then
    local id = ARGV[9] .. ':' .. (#ids + 1)
    redis.call('ZADD', KEYS[2], now + ttl, id)
    n = n + 1
    ids[#ids + 1] = id
    busy[#busy + 1] = (n >= cap) and 1 or 0
  else
    break
  end
end
-- A process handed slots stays registered for its callers not served yet.
for _, p in ipairs(order) do
  local list, h = heads[p], served[p]
  if h >= #list then
    redis.call('ZREM', KEYS[3], p)
    redis.call('HDEL', KEYS[4], p)
  else
    redis.call('HSET', KEYS[4], p, table.concat(list, ' ', h + 1))
  end
end
-- Registered as waiting (a freed slot may be handed here) when callers of ours go without, or when the last
-- slot went to us (a caller arriving next would find none): under its callers' own times, or now.
local registered = 0
if #ids < want or (want > 0 and n >= cap) then
  local rest = {}
  for j = #ids + 1, #mine do rest[#rest + 1] = tostring(mine[j]) end
  if #rest == 0 then rest[1] = tostring(now) end
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[13]), me)
  redis.call('HSET', KEYS[4], me, table.concat(rest, ' '))
  registered = #rest
else
  redis.call('ZREM', KEYS[3], me)
  redis.call('HDEL', KEYS[4], me)
end
redis.call('HSET', KEYS[1], 'limit', limit, 'slow', slow, 'last429', last429, 'lat', lat)
redis.call('PEXPIRE', KEYS[1], ARGV[8])
redis.call('PEXPIRE', KEYS[2], ARGV[8])
redis.call('PEXPIRE', KEYS[3], ARGV[8])
redis.call('PEXPIRE', KEYS[4], ARGV[8])
return {tostring(limit), n, decreased, ids, busy, registered}
"""


def redis_client(url: str) -> aioredis.Redis:
    """The mesh-wide budget's client: every call bounded, so a slow Redis means a fallback, not a stall."""
    return aioredis.Redis.from_url(
        url, socket_timeout=_OP_TIMEOUT_S, socket_connect_timeout=_OP_TIMEOUT_S, health_check_interval=30
    )


class MeshLimiter:
    """The `AIMDLimiter` interface (try_acquire, acquire, release and its gauges) over one limit in Redis, for
    every process sharing the provider key (`prefix`); `local` serves while Redis cannot."""

    def __init__(
        self,
        *,
        client: aioredis.Redis,
        prefix: str,
        local: AIMDLimiter,
        per_process: int,
        ceiling: int,
        lease_ttl_s: float,
        clock: Callable[[], float],
        lease_margin_s: float = _LEASE_MARGIN_S,
        reask_s: float = _WAIT_S,
        queued: Callable[[], int] = lambda: 0,
    ) -> None:
        self._redis = client
        self._keys = [f"{prefix}:concurrency", f"{prefix}:leases", f"{prefix}:waiting", f"{prefix}:heads"]
        self._wake_prefix = f"{prefix}:wake:"
        self._local = local
        self._per_process = per_process
        self._ceiling = ceiling
        self._lease_ttl_s = lease_ttl_s + lease_margin_s
        self._reask_s = reask_s
        self._queued = queued
        """Callers queued here before they ask for a slot (their tenant's turn): demand a release should keep."""
        self._spare: deque[Permit] = deque()
        """Slots kept for callers on their way (queued for their turn when one was granted): taken at once."""
        self._clock = clock
        self._settle = client.register_script(SETTLE)
        self._waiters: deque[asyncio.Future[Permit]] = deque()
        self._since: dict[asyncio.Future[Permit], float] = {}
        """When each waiter began to wait: the head's age decides who gets a freed slot, mesh-wide."""
        self._released: list[tuple[str, str, str, str]] = []
        self._wake = asyncio.Event()
        self._full_until = 0.0
        """Until then Redis has this process registered as waiting, with no slot free: ask again only when a slot
        of ours ends or a wake comes (or after _WAIT_S), not for each new caller."""
        self._registered = 0
        """How many callers of ours Redis has registered as waiting: hand-overs still due before asking again."""
        self._listen_until = 0.0
        self._admitter: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._handing: set[asyncio.Task[Permit]] = set()
        self._batches = itertools.count()
        self._me = secrets.token_hex(6)
        self._wake_key = f"{self._wake_prefix}{self._me}"
        self._in_flight = 0
        self._limit = min(float(ceiling), _INITIAL)
        self._down_until = 0.0
        self.decreases = 0
        self.lowest = self._limit
        self.fallbacks = 0

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> MeshLimiter:
        return cls(client=redis_client(url), **kwargs)

    # --- the AIMDLimiter interface -------------------------------------------------------------

    @property
    def shared(self) -> bool:
        """Whether Redis is serving admissions now (False: this process's own limit until it is tried again)."""
        return self._clock() >= self._down_until

    @property
    def limit(self) -> float:
        return self._limit if self.shared else self._local.limit

    @property
    def capacity(self) -> int:
        return max(1, math.floor(self.limit))

    @property
    def in_flight(self) -> int:
        return self._in_flight + self._local.in_flight

    @property
    def waiting(self) -> int:
        return sum(not f.done() for f in self._waiters) + self._local.waiting

    def try_acquire(self) -> Permit | None:
        # A mesh-wide slot takes a round trip: only a spare one, or the local limiter, can answer without waiting.
        if self._spare:
            return dataclasses.replace(self._spare.popleft(), granted_at=self._clock())
        return None if self.shared else self._local.try_acquire()

    async def acquire(self) -> Permit:
        spare = self.try_acquire() if self._spare else None
        if spare is not None:
            return spare
        if not self.shared:
            return await self._local.acquire()
        waiter: asyncio.Future[Permit] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._since[waiter] = self._clock()
        self._kick()
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(waiter.result(), Outcome.NEUTRAL)  # granted in the same tick: give it back
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise
        finally:
            self._since.pop(waiter, None)

    def release(self, permit: Permit, outcome: Outcome) -> None:
        if not permit.lease:
            self._local.release(permit, outcome)
            return
        self._in_flight -= 1
        if outcome is Outcome.RATE_LIMITED:
            self.decreases += 1
        latency = max(0.0, self._clock() - permit.granted_at)
        self._released.append((permit.lease, _OUTCOME[outcome], "1" if permit.busy else "0", f"{latency:.4f}"))
        self._kick()

    async def aclose(self) -> None:
        for task in (self._admitter, self._listener):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._redis.aclose()

    # --- the admitter: the one task here that admits and releases --------------------------------

    def _kick(self) -> None:
        self._wake.set()
        if self._admitter is None or self._admitter.done():
            self._admitter = asyncio.get_running_loop().create_task(self._admit())

    async def _admit(self) -> None:
        while True:
            while self._waiters and self._waiters[0].done():  # cancelled while queued
                self._since.pop(self._waiters.popleft(), None)
            if not self._waiters and not self._released:
                if self._spare:
                    # Kept for callers on their way: if none has come for it within a moment, give it back.
                    asyncio.get_running_loop().call_later(_SPARE_S, self._drop_spares)
                return
            if self._clock() < self._full_until and not self._released:
                # A slot comes back when one of ours ends (release sets the event) or another process frees one
                # and wakes us (the listener sets it); a lost wake costs _WAIT_S.
                if self._listener is None or self._listener.done():
                    self._listener = asyncio.get_running_loop().create_task(self._listen())
                self._wake.clear()
                try:
                    async with asyncio.timeout(self._reask_s):
                        await self._wake.wait()
                except TimeoutError:
                    self._full_until = 0.0
                continue
            released, self._released = self._released, []
            # Callers still queued for their turn count too: a slot freed between two turns stays here (spare)
            # instead of going to another process while the next caller of ours is on its way.
            demand = len(self._waiters) + max(0, self._queued() - len(self._spare))
            want = min(demand, max(0, self._per_process - self._in_flight))
            try:
                reply = await self._call(released, want)
            except (RedisError, OSError, TimeoutError) as exc:
                self._failed(exc)  # the leases of `released` expire in Redis on their own
                return
            limit, ids, busy, self._registered = float(reply[0]), reply[3], reply[4], int(reply[5])
            self._limit = limit
            self.lowest = min(self.lowest, limit)
            for lease, full in zip(ids, busy, strict=True):
                self._grant(lease.decode() if isinstance(lease, bytes) else str(lease), bool(full))
            # Full, as the script registered us: not all granted, or the last grant took the last slot.
            if self._registered:
                self._full_until = self._clock() + _WAITING_TTL_S
                if self._listener is None or self._listener.done():  # registered: slots may be handed to us
                    self._listener = asyncio.get_running_loop().create_task(self._listen())
            else:
                self._full_until = 0.0

    def _ages(self) -> str:
        """How long each of the first _HEADS callers still waiting here has waited, oldest first (s)."""
        now, ages = self._clock(), []
        for waiter in self._waiters:
            if not waiter.done() and waiter in self._since:
                ages.append(f"{max(0.0, now - self._since[waiter]):.4f}")
                if len(ages) == _HEADS:
                    break
        return " ".join(ages)

    async def _listen(self) -> None:
        """While this process is registered as waiting, take the slots other processes hand it (lease ids pushed
        onto its wake list): each goes to the caller at the head here, or back if nobody waits any more."""
        try:
            while self._waiters or self._clock() < max(self._full_until, self._listen_until):
                if self._waiters or self._clock() < self._full_until:
                    self._listen_until = self._clock() + _LINGER_S
                handed = await self._redis.blpop([self._wake_key], timeout=min(self._reask_s, _WAIT_S))
                if handed:
                    self._take(handed[1])
            # Registered no longer: anything handed meanwhile goes back at once.
            for lease in await self._redis.lpop(self._wake_key, 64) or ():
                self._take(lease)
        except (RedisError, OSError, TimeoutError):
            return  # the admitter's own timeout asks again; its calls notice an outage; handed leases expire

    def _take(self, lease: object) -> None:
        self._registered = max(0, self._registered - 1)
        if not self._registered:  # the hand-overs due are done: whoever still waits asks again
            self._full_until = 0.0
        self._grant(lease.decode() if isinstance(lease, bytes) else str(lease), True)
        self._wake.set()

    def _grant(self, lease: str, busy: bool) -> None:
        permit = Permit(epoch=0, waited=True, busy=busy, lease=lease, granted_at=self._clock())
        self._in_flight += 1
        while self._waiters:
            waiter = self._waiters.popleft()
            self._since.pop(waiter, None)
            if not waiter.done():
                waiter.set_result(permit)
                return
        if self._queued() > len(self._spare):
            self._spare.append(permit)  # for a caller on its way (queued for its turn)
        else:
            self.release(permit, Outcome.NEUTRAL)  # everyone who wanted it left meanwhile

    def _drop_spares(self) -> None:
        if self._waiters or self._queued() >= len(self._spare):
            return  # still wanted (or the admitter runs again and will look)
        while self._spare and len(self._spare) > self._queued():
            self.release(self._spare.pop(), Outcome.NEUTRAL)

    async def _call(self, released: list[tuple[str, str, str, str]], want: int) -> Any:
        args: list[Any] = [
            self._ceiling,
            _INITIAL,
            _SLOW_START_STEP,
            _QUIET_RTTS,
            _QUIET_MIN_S,
            _QUIET_MAX_S,
            self._lease_ttl_s,
            _KEY_TTL_MS,
            f"{self._me}:{next(self._batches)}",
            want,
            self._me,
            self._wake_prefix,
            _WAITING_TTL_S,
            len(released),
            self._ages(),
        ]
        for item in released:
            args.extend(item)
        async with asyncio.timeout(_OP_TIMEOUT_S):
            return await self._settle(keys=self._keys, args=args)

    def _failed(self, exc: BaseException) -> None:
        if self.shared:
            log.warning(
                "the mesh-wide LLM concurrency limit in Redis is unreachable; limiting per process for %.0fs",
                _RETRY_S,
                extra={"error": f"{type(exc).__name__}: {exc}"},
            )
        self._down_until = self._clock() + _RETRY_S
        self.fallbacks += 1
        # Whoever waits here now waits for this process's own limiter instead.
        waiters, self._waiters = self._waiters, deque()
        self._since.clear()
        for waiter in waiters:
            if not waiter.done():
                task = asyncio.get_running_loop().create_task(self._local.acquire())
                self._handing.add(task)
                task.add_done_callback(self._handing.discard)
                task.add_done_callback(self._hand_local(waiter))

    def _hand_local(self, waiter: asyncio.Future[Permit]) -> Callable[[asyncio.Task[Permit]], None]:
        """Pass a local permit on to a caller who was waiting for a mesh-wide one (back, if the caller left)."""

        def hand(task: asyncio.Task[Permit]) -> None:
            if task.cancelled() or task.exception() is not None:
                if not waiter.done():
                    waiter.cancel()
                return
            if waiter.done():
                self._local.release(task.result(), Outcome.NEUTRAL)
            else:
                waiter.set_result(task.result())

        return hand
