"""Fair admission across tenants: the LLM calls of one process wait for the budget in turns, round-robin by
tenant, so one tenant's flood does not starve the others.

Without it the pacer and the concurrency limiter serve calls first come, first served: a tenant with ten times
the callers gets ten times the calls, and every other tenant's call waits behind the whole flood. Here one call
at a time holds the turn (waits for its reservation in the buckets and for a concurrency slot, then lets go);
the others wait in one queue per tenant, and the turn passes to the next tenant that has a waiter. When the budget
is not short the turn is free and taken at once (no queue, no task switch). Within a process only: each process
admits its own tenants fairly, and the shared budget (Redis) admits processes in order of arrival.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator

from agentmesh.errors import DeadlineExceeded

__all__ = ["FairTurn"]


class FairTurn:
    def __init__(self) -> None:
        self._held = False
        self._queues: dict[str, deque[asyncio.Future[None]]] = {}
        self._order: deque[str] = deque()
        """Tenants with a waiter, in the order their turns come."""

    @property
    def queued(self) -> int:
        """Calls waiting for the turn, all tenants together."""
        return sum(len(q) for q in self._queues.values())

    @property
    def waiting(self) -> dict[str, int]:
        """Calls waiting for the turn, by tenant."""
        return {tenant: len(q) for tenant, q in self._queues.items()}

    @contextlib.asynccontextmanager
    async def turn(self, tenant: str, left_s: float) -> AsyncIterator[None]:
        """Hold the turn for the body; DeadlineExceeded if it does not come within `left_s`."""
        if self._held:
            await self._wait(tenant, left_s)
        else:
            self._held = True
        try:
            yield
        finally:
            self._release()

    async def _wait(self, tenant: str, left_s: float) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._queues.get(tenant)
        if queue is None:
            queue = self._queues[tenant] = deque()
            self._order.append(tenant)
        queue.append(waiter)
        try:
            async with asyncio.timeout(max(0.0, left_s)):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self._release()  # the turn came as this call gave up: pass it on
            else:
                waiter.cancel()
                self._discard(tenant, waiter)
            if isinstance(exc, TimeoutError):
                raise DeadlineExceeded(
                    "the deadline passed while the LLM call waited for its tenant's turn at the LLM budget"
                ) from None
            raise

    def _discard(self, tenant: str, waiter: asyncio.Future[None]) -> None:
        queue = self._queues.get(tenant)
        if queue is None:
            return
        with contextlib.suppress(ValueError):
            queue.remove(waiter)
        if not queue:
            del self._queues[tenant]
            self._order.remove(tenant)

    def _release(self) -> None:
        # Hand the turn to the next tenant's oldest waiter; that tenant goes to the back of the line.
        while self._order:
            tenant = self._order.popleft()
            queue = self._queues[tenant]
            waiter = queue.popleft()
            if queue:
                self._order.append(tenant)
            else:
                del self._queues[tenant]
            if not waiter.done():
                waiter.set_result(None)
                return
        self._held = False
