"""Runs as durable background tasks. A run executes in a task of its own, not in the RPC that started it, so it
goes on to its end when the client disconnects; its events are recorded with its checkpoints, so any client of
the tenant can follow it (WatchRun) from any seq, on any supervisor; a run whose supervisor stopped renewing its
lease is taken over by a live one; CancelRun stops a run wherever it executes. A tenant may have at most
AGENTMESH_TENANT_MAX_CONCURRENT_RUNS executing at once, counted over every supervisor. On SIGTERM a supervisor
drains: it refuses new runs, lets each run finish the step it is in, then hands the run on (its lease released,
the other supervisors told at once) and relays what the run's new executor records to the client that started it.
A run can also wait (holds.py): queued behind the run going on its thread, started by the supervisor that ends
that run (or by the sweep); or paused for a person, continued by the supervisor that receives SubmitInput's
approval.

Supervisors tell each other through Postgres: LISTEN agentmesh_run_events (an event was recorded) and
agentmesh_run_cancel (stop this run) and agentmesh_run_orphans (runs were released: sweep now). A watcher also polls
once a second, so a lost notification only delays."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from google.protobuf import json_format

from agentmesh.deadline import Deadline
from agentmesh.errors import AgentMeshError, FailedPrecondition, ResourceExhausted, Unavailable
from agentmesh.services.supervisor.holds import RunHolds
from agentmesh.services.supervisor.runner import RunExecutor, recorded
from agentmesh.services.supervisor.store import CancelledRun, CheckpointStore, Event, RunRecord, parse_uuid
from agentmesh.settings import Settings
from agentmesh.v1 import supervisor_pb2, usage_pb2

log = logging.getLogger(__name__)

EVENTS_CHANNEL = "agentmesh_run_events"
CANCEL_CHANNEL = "agentmesh_run_cancel"
ORPHANS_CHANNEL = "agentmesh_run_orphans"
_TERMINAL = ("final", "error")
_ENDED = ("completed", "failed", "cancelled")  # statuses after which nothing more is recorded (until a Resume)
_POLL_S = 1.0  # a watcher re-reads at least this often, whatever the notifications do
_CANCEL_WAIT_S = 3.0  # how long CancelRun waits for the executing supervisor before it cancels the run itself
_DONE = object()  # end of a run's local stream
_CONCURRENCY_RETRY_S = 5.0  # RetryInfo of a start over the tenant's concurrency: about one step's time


@dataclass(frozen=True)
class _Handoff:
    """The run stopped here at a step boundary (drain) and continues on another supervisor: follow its record."""

    run_id: str
    after_seq: int


Item = supervisor_pb2.RunEvent | BaseException | object


class RunManager:
    def __init__(self, *, settings: Settings, executor: RunExecutor, store: CheckpointStore, holds: RunHolds) -> None:
        self._s = settings
        self._executor = executor
        self._store = store
        self._holds = holds
        self._tasks: dict[str, asyncio.Task[None]] = {}  # runs executing in this process, by run id
        self._cancelling: set[str] = set()  # of those, the ones CancelRun stopped
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._listener: asyncpg.Connection | None = None
        self._background: list[asyncio.Task[None]] = []
        self._drivers: set[asyncio.Task[None]] = set()
        self._draining = False
        self._sweep_now = asyncio.Event()  # set by an orphans notification

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self, dsn: str) -> None:
        """Listen for other supervisors' events and cancels, and take over orphaned runs."""
        self._background.append(asyncio.create_task(self._listen(dsn)))
        self._background.append(asyncio.create_task(self._sweep()))

    async def close(self) -> None:
        """Stop listening and sweeping, stop the runs executing here (they stay `running`: their leases are
        released next, so another supervisor continues each from its last checkpoint at once)."""
        tasks = [*self._background, *self._drivers]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()

    async def drain(self, grace_s: float) -> None:
        """SIGTERM: refuse new runs, stop sweeping, let each run here finish its current step (at most `grace_s`),
        then stop what still runs and release every lease here, so other supervisors continue at once."""
        self._draining = True
        for task in self._background:
            task.cancel()  # no takeover by a supervisor that is leaving (of its own released runs least of all)
        drivers = list(self._drivers)
        if drivers:
            _, pending = await asyncio.wait(drivers, timeout=grace_s)
            log.info("drained", extra={"runs": len(drivers), "stopped_mid_step": len(pending)})
        await self.close()
        with contextlib.suppress(AgentMeshError):
            await self.release_leases()

    # --- the RPCs --------------------------------------------------------------------------------

    async def _admit(self, tenant: str) -> None:
        """Refuse a new execution while draining, or past the tenant's concurrent runs (over every supervisor)."""
        if self._draining:
            raise Unavailable(
                "this supervisor is shutting down; try again", reason="SUPERVISOR_DRAINING", retry_after_s=1.0
            )
        limit = self._s.tenant_max_concurrent_runs
        if limit and (running := await self._store.running_runs(tenant)) >= limit:
            raise ResourceExhausted(
                f"this tenant has {running} runs executing, its limit is {limit}; try again when one ends",
                reason="TENANT_CONCURRENCY_LIMIT",
                retry_after_s=_CONCURRENCY_RETRY_S,
                metadata={"limit": str(limit), "running": str(running)},
            )

    async def run(
        self,
        *,
        tenant: str,
        message: str,
        thread_id: str,
        deadline: Deadline,
        detach: bool,
        on_busy: int = supervisor_pb2.ON_BUSY_THREAD_REJECT,
    ) -> AsyncIterator[supervisor_pb2.RunEvent]:
        await self._admit(tenant)
        if thread_id and on_busy == supervisor_pb2.ON_BUSY_THREAD_INTERRUPT:
            # Newest first: the queued runs go before the running one, whose end would start them.
            for going, _ in await self._holds.going(thread_id, tenant):
                with contextlib.suppress(FailedPrecondition):  # it ended meanwhile
                    await self.cancel(tenant=tenant, run_id=going)
        # After an interrupt, a run that another client started in between is waited for, not refused.
        enqueue = on_busy in (supervisor_pb2.ON_BUSY_THREAD_ENQUEUE, supervisor_pb2.ON_BUSY_THREAD_INTERRUPT)
        queue = self._spawn(
            self._executor.start(
                tenant=tenant, message=message, thread_id=thread_id, deadline=deadline, enqueue=enqueue
            )
        )
        async for ev in self._follow(queue, tenant, detach=detach):
            yield ev

    async def resume(self, *, tenant: str, run_id: str, deadline: Deadline) -> AsyncIterator[supervisor_pb2.RunEvent]:
        await self._admit(tenant)
        queue = self._spawn(self._executor.resume(tenant=tenant, run_id=run_id, deadline=deadline))
        async for ev in self._follow(queue, tenant):
            yield ev

    async def _follow(
        self, queue: asyncio.Queue[Item], tenant: str, *, detach: bool = False
    ) -> AsyncIterator[supervisor_pb2.RunEvent]:
        """The local execution's events; after a drain handed the run on, what its new executor records; when the
        execution stops short of the run's end (the run is queued or paused), the run's later events wherever it
        continues, so the stream still ends with the run's final event."""
        last: supervisor_pb2.RunEvent | None = None
        while True:
            item = await queue.get()
            if item is _DONE:
                break
            if isinstance(item, _Handoff):
                async for ev in self.watch(tenant=tenant, run_id=item.run_id, after_seq=item.after_seq):
                    yield ev
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, supervisor_pb2.RunEvent)
            last = item
            yield item
            if detach:
                return
        if last is not None and last.WhichOneof("event") not in _TERMINAL:
            async for ev in self.watch(tenant=tenant, run_id=last.run_id, after_seq=last.seq):
                yield ev

    async def submit_input(self, *, tenant: str, run_id: str, approve: bool, note: str) -> str:
        """Answer a paused run: approved, it continues here in the background; rejected, it ends. Its new status."""
        answer = f"rejected by a reviewer: {note}" if note else "rejected by a reviewer"
        final_for = _final_for(run_id, supervisor_pb2.FINISH_REASON_REJECTED, answer)
        run = await self._holds.submit(run_id, tenant, approve=approve, note=note, final_for=final_for)
        if run is None:
            log.info("run rejected", extra={"run_id": run_id})
            await self._advance((await self._store.get_run(run_id, tenant)).thread_id)
            return "cancelled"
        log.info("run approved", extra={"run_id": run_id})
        self._spawn(self._executor.take_over(run))
        return "running"

    async def watch(self, *, tenant: str, run_id: str, after_seq: int) -> AsyncIterator[supervisor_pb2.RunEvent]:
        """Recorded events above `after_seq`, then live ones, until the run's final or error event."""
        run = await self._store.get_run(run_id, tenant)  # NOT_FOUND for another tenant's run
        last, checked = after_seq, time.monotonic()
        while True:
            waiter = asyncio.Event()
            self._waiters[run_id].add(waiter)  # before the read: a notification in between is not lost
            try:
                batch = await self._store.events(run.id, last)
                for seq, body in batch:
                    ev = supervisor_pb2.RunEvent.FromString(body)
                    last = seq
                    yield ev
                    if ev.WhichOneof("event") in _TERMINAL:
                        return
                if batch:
                    continue
                if time.monotonic() - checked >= 5 * _POLL_S:
                    # A run that ended with nothing more recorded (older than recorded events) ends the watch.
                    checked = time.monotonic()
                    if (await self._store.get_run(run_id, tenant)).status in _ENDED and not await self._store.events(
                        run.id, last
                    ):
                        return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter.wait(), timeout=_POLL_S)
            finally:
                self._waiters[run_id].discard(waiter)
                if not self._waiters[run_id]:
                    del self._waiters[run_id]

    async def cancel(self, *, tenant: str, run_id: str) -> None:
        """Stop the run wherever it executes; FAILED_PRECONDITION when it already ended."""
        await self._cancel(tenant, run_id)
        # A queued run behind it may start now (the executing supervisor also does so when its task ends).
        await self._advance((await self._store.get_run(run_id, tenant)).thread_id)

    async def _cancel(self, tenant: str, run_id: str) -> None:
        status, live = await self._store.request_cancel(run_id, tenant)
        if status in ("completed", "cancelled"):
            raise FailedPrecondition(f"run {run_id} already {status}; nothing to cancel", reason="RUN_FINISHED")
        rid = parse_uuid(run_id, "run_id")
        cancelled = _final_for(run_id, supervisor_pb2.FINISH_REASON_CANCELLED)
        if self._cancel_local(run_id) or live:
            # This process or the supervisor executing it (it hears the notification) stops it; if that does not
            # happen in time (it hangs, or lost its network with its lease still running), it is ended here.
            if await self._wait_cancelled(run_id, tenant):
                return
            await self._store.end_cancelled(rid, force=True, final_for=cancelled)
            return
        # Queued and paused runs have no execution: they end here at once.
        if not await self._store.end_cancelled(rid, force=False, final_for=cancelled):
            # It started executing in between (a takeover claimed it): that execution hears the notification.
            await self._wait_cancelled(run_id, tenant)

    # --- execution -------------------------------------------------------------------------------

    def _spawn(self, events: AsyncIterator[supervisor_pb2.RunEvent]) -> asyncio.Queue[Item]:
        queue: asyncio.Queue[Item] = asyncio.Queue()
        task = asyncio.create_task(self._drive(events, queue))
        self._drivers.add(task)  # a reference, so the loop does not collect a running run
        task.add_done_callback(self._drivers.discard)
        return queue

    async def _drive(self, events: AsyncIterator[supervisor_pb2.RunEvent], queue: asyncio.Queue[Item]) -> None:
        """Runs the executor to the run's end, whoever listens; the queue feeds the RPC that started it."""
        run_id, thread_id, last_seq, ended = "", "", -1, True
        recent: collections.deque[supervisor_pb2.RunEvent] = collections.deque(maxlen=4)
        try:
            async for ev in events:
                if not run_id:
                    run_id, thread_id = ev.run_id, ev.thread_id
                    self._tasks[run_id] = asyncio.current_task()  # type: ignore[assignment]
                if self._draining and ev.WhichOneof("event") == "step_started":
                    # A step boundary: everything sent so far is recorded, the next step has not begun. Stop here;
                    # the lease is released by drain() and another supervisor runs the step.
                    await events.aclose()  # type: ignore[attr-defined]
                    queue.put_nowait(_Handoff(run_id, last_seq))
                    return
                last_seq = ev.seq
                recent.append(ev)
                queue.put_nowait(ev)
            queue.put_nowait(_DONE)
        except asyncio.CancelledError:
            if run_id not in self._cancelling:
                ended = False
                if self._draining and run_id:  # past the drain's grace: stopped mid-step, continued elsewhere
                    queue.put_nowait(_Handoff(run_id, last_seq))
                raise  # shutdown: the lease runs out (or is released) and another supervisor continues
            wrote = await self._store.end_cancelled(
                uuid.UUID(run_id),
                force=True,
                seen=[recorded(e) for e in recent],
                final_for=_final_for(run_id, supervisor_pb2.FINISH_REASON_CANCELLED),
            )
            log.info("run cancelled", extra={"run_id": run_id, "recorded": wrote})
            # The starting client's stream ends with the cancelled final event, as recorded.
            for _, body in await self._store.events(uuid.UUID(run_id), last_seq):
                queue.put_nowait(supervisor_pb2.RunEvent.FromString(body))
            queue.put_nowait(_DONE)
        except AgentMeshError as exc:
            queue.put_nowait(exc)
        except Exception as exc:  # a bug: the RPC still gets an answer
            log.exception("run execution failed", extra={"run_id": run_id})
            queue.put_nowait(exc)
        finally:
            self._tasks.pop(run_id, None)
            self._cancelling.discard(run_id)
            if ended and thread_id:
                # The run ended (or paused: then nothing starts): the thread's next queued run may start.
                self._advance_soon(uuid.UUID(thread_id))

    def _advance_soon(self, thread_id: uuid.UUID) -> None:
        task = asyncio.create_task(self._advance(thread_id))
        self._drivers.add(task)
        task.add_done_callback(self._drivers.discard)

    async def _advance(self, thread_id: uuid.UUID) -> None:
        """Start the thread's oldest queued run if nothing before it is going (else the sweep tries again)."""
        try:
            run = await self._holds.claim_next(
                thread_id, history_limit=self._s.history_messages, history_chars=self._s.history_chars
            )
        except AgentMeshError:
            log.warning("queued run not started: database unavailable", extra={"thread_id": str(thread_id)})
            return
        if run is not None:
            log.info("queued run started", extra={"run_id": str(run.id), "thread_id": str(thread_id)})
            self._spawn(self._executor.take_over(run))

    def _cancel_local(self, run_id: str) -> bool:
        task = self._tasks.get(run_id)
        if task is None or task.done():
            return False
        if run_id not in self._cancelling:
            # Once: CancelRun's own notification comes back here, and a second cancel would cut the cancelled
            # run's clean-up (recording its cancelled end), leaving it running with nobody executing it.
            self._cancelling.add(run_id)
            task.cancel()
        return True

    async def _wait_cancelled(self, run_id: str, tenant: str) -> bool:
        until = time.monotonic() + _CANCEL_WAIT_S
        while time.monotonic() < until:
            if (await self._store.get_run(run_id, tenant)).status == "cancelled":
                return True
            await asyncio.sleep(0.05)
        return False

    async def _sweep(self) -> None:
        """Every half lease, and at once when another supervisor released its runs: take over (or, with
        AGENTMESH_ORPHANED_RUNS=fail, fail) runs whose lease ran out."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._sweep_now.wait(), timeout=self._s.run_lease_s / 2)
            self._sweep_now.clear()
            try:
                for thread_id in await self._holds.queued_threads(limit=50):
                    await self._advance(thread_id)
                if self._s.orphaned_runs == "fail":
                    if n := await self._store.mark_abandoned():
                        log.warning("marked abandoned runs resumable", extra={"runs": n})
                    continue
                for run in await self._store.claim_orphans(limit=50):
                    self._spawn(self._executor.take_over(run))
            except AgentMeshError:
                log.warning("orphaned-run sweep skipped: database unavailable")

    # --- notifications ---------------------------------------------------------------------------

    async def _listen(self, dsn: str) -> None:
        """One connection per process LISTENs; reconnects after a database restart."""
        while True:
            try:
                conn = await asyncpg.connect(dsn, timeout=10)
                self._listener = conn
                closed = asyncio.Event()
                conn.add_termination_listener(lambda _conn, ended=closed: ended.set())
                await conn.add_listener(EVENTS_CHANNEL, self._on_event)
                await conn.add_listener(CANCEL_CHANNEL, self._on_cancel)
                await conn.add_listener(ORPHANS_CHANNEL, self._on_orphans)
                await closed.wait()
            except (OSError, asyncpg.PostgresError, TimeoutError):
                pass  # watchers poll meanwhile
            await asyncio.sleep(2.0)

    def _on_event(self, _conn: Any, _pid: int, _channel: str, run_id: str) -> None:
        for waiter in self._waiters.get(run_id, ()):
            waiter.set()

    def _on_cancel(self, _conn: Any, _pid: int, _channel: str, run_id: str) -> None:
        self._cancel_local(run_id)

    def _on_orphans(self, _conn: Any, _pid: int, _channel: str, _payload: str) -> None:
        self._sweep_now.set()

    async def release_leases(self) -> None:
        """On shutdown: runs this process executes become orphans at once, for another supervisor to continue."""
        await self._store.release_leases()


def _final_for(
    run_id: str, reason: supervisor_pb2.FinishReason, answer: str = ""
) -> Callable[[CancelledRun], tuple[dict[str, Any], Event]]:
    """The final event of a run cancelled (or rejected), as the store numbers it."""

    def make(c: CancelledRun) -> tuple[dict[str, Any], Event]:
        t = c.totals
        ev = supervisor_pb2.RunEvent(
            run_id=run_id,
            thread_id=c.thread_id,
            seq=c.seq,
            final=supervisor_pb2.Final(
                answer=answer,
                reason=reason,
                usage=usage_pb2.Usage(
                    input_tokens=t["input_tokens"], output_tokens=t["output_tokens"], llm_calls=t["llm_calls"]
                ),
                cost_usd=t["cost_usd"],
                iterations=t["iterations"],
            ),
        )
        ev.time.GetCurrentTime()
        return json_format.MessageToDict(ev), recorded(ev)

    return make


__all__ = ["RunManager", "RunRecord"]
