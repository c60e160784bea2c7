"""The closed-loop driver both e2e designs share: N users, each running conversations back to back until the
duration ends (runs already started are finished), while the simulator's counters are sampled. The mesh and
the LangGraph baseline are measured by the same code, so their figures compare."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bench._common import summary_ms, timed_progress
from bench._target import SimControl, successes


@dataclass
class RunOutcome:
    """What one conversation turn produced, as the user saw it."""

    status: str = "OK"  # OK, or the gRPC status / error name that ended it
    llm_calls: int = 0
    steps: list[tuple[str, float]] = field(default_factory=list)  # (step label, ms) as the server reported
    first_event_s: float | None = None  # time to the first streamed event


@dataclass
class RunSample:
    start_s: float
    end_s: float
    outcome: RunOutcome
    user: int = -1  # the closed-loop user that ran it (tenants: which group it belongs to)

    @property
    def latency_s(self) -> float:
        return self.end_s - self.start_s


Conversation = Callable[[int], Awaitable[RunOutcome]]  # user index -> one run


@dataclass
class LoadResult:
    samples: list[RunSample]
    duration_s: float  # the window in which users started runs
    elapsed_s: float  # until the last run finished
    calls_in_window: int  # successful LLM calls the simulator answered inside the window
    sim_before: dict[str, Any]
    sim_after: dict[str, Any]
    timeline: list[dict[str, float]]  # every second: t, successful calls/s, attempts/s, in-flight

    def summary(self, limit_per_s: float) -> dict[str, Any]:
        ok = [s for s in self.samples if s.outcome.status == "OK"]
        failures = Counter(s.outcome.status for s in self.samples if s.outcome.status != "OK")
        succ = successes(self.sim_after) - successes(self.sim_before)
        attempts = int(self.sim_after.get("requests_total", 0)) - int(self.sim_before.get("requests_total", 0))
        statuses = Counter(self.sim_after.get("responses_by_status", {}))
        statuses.subtract(self.sim_before.get("responses_by_status", {}))
        calls_per_s = self.calls_in_window / self.duration_s if self.duration_s else 0.0
        steps: dict[str, list[float]] = {}
        for s in ok:
            for label, ms in s.outcome.steps:
                steps.setdefault(label, []).append(ms / 1000)
        return {
            "runs": len(self.samples),
            "runs_ok": len(ok),
            "failures": len(self.samples) - len(ok),
            "failures_by_status": dict(failures),
            "runs_per_s": round(len(ok) / self.elapsed_s, 3) if self.elapsed_s else 0.0,
            "run_latency": summary_ms([s.latency_s for s in ok]),
            "first_event": summary_ms([s.outcome.first_event_s for s in ok if s.outcome.first_event_s is not None]),
            "llm_calls_per_run": round(sum(s.outcome.llm_calls for s in ok) / len(ok), 3) if ok else 0.0,
            "llm_calls_per_s": round(calls_per_s, 3),
            "limit_per_s": limit_per_s,
            "ratio_to_limit": round(calls_per_s / limit_per_s, 4) if limit_per_s else None,
            "http_attempts": attempts,
            "llm_successes": succ,
            "attempts_per_success": round(attempts / succ, 4) if succ else None,
            "sim_responses_by_status": {k: v for k, v in statuses.items() if v},
            "sim_in_flight_max": self.sim_after.get("in_flight_max"),
            "steps": {k: summary_ms(v) for k, v in sorted(steps.items())},
            "duration_s": self.duration_s,
            "elapsed_s": round(self.elapsed_s, 3),
        }

    def group_summary(self, users: range) -> dict[str, Any]:
        """The figures of one group of users (a tenant, or the baseline's small group).

        Rates count the runs that finished inside the window, a run's LLM calls at its end: after the window
        only the slowest group is still draining, which is its tail, not its throughput. Latencies cover every
        successful run started in the window. "route" is the routing step's duration as each design reports it:
        one small LLM call whose floor is the simulator's latency, so the excess is time spent waiting for the
        provider budget (the mesh's limiter, the seed's semaphore) and in retries."""
        mine = [s for s in self.samples if s.user in users]
        ok = [s for s in mine if s.outcome.status == "OK"]
        done = [s for s in ok if s.end_s <= self.duration_s]
        window = self.duration_s or 1.0
        return {
            "users": len(users),
            "runs": len(mine),
            "runs_ok": len(ok),
            "failures_by_status": dict(Counter(s.outcome.status for s in mine if s.outcome.status != "OK")),
            "runs_per_s": round(len(done) / window, 3),
            "llm_calls_per_s": round(sum(s.outcome.llm_calls for s in done) / window, 3),
            "run_latency": summary_ms([s.latency_s for s in ok]),
            "route_step": summary_ms([ms / 1000 for s in ok for label, ms in s.outcome.steps if label == "route"]),
            "first_event": summary_ms([s.outcome.first_event_s for s in ok if s.outcome.first_event_s is not None]),
        }

    def groups(self, named: dict[str, range]) -> dict[str, dict[str, Any]]:
        """group_summary of each named group, with the phase's HTTP attempts per successful call (the simulator
        counts attempts for everyone at once: they cannot be told apart by group)."""
        attempts = self.summary(1.0)["attempts_per_success"]
        return {
            name: {**self.group_summary(users), "phase_attempts_per_success": attempts} for name, users in named.items()
        }

    def latency_points(self) -> list[tuple[float, float]]:
        return [(s.end_s, s.latency_s) for s in self.samples if s.outcome.status == "OK"]

    def rate_points(self) -> list[tuple[float, float]]:
        return [(p["t"], p["ok_per_s"]) for p in self.timeline]


async def drive(
    conversation: Conversation,
    *,
    sim: SimControl,
    users: int,
    duration_s: float,
    drain_timeout_s: float,
    on_window_start: Callable[[], None] | None = None,
) -> LoadResult:
    """Run `users` closed-loop users for `duration_s`, then wait (at most drain_timeout_s) for their last runs."""
    await sim.reset()
    sim_before = await sim.stats()
    t0 = time.monotonic()
    stop_at = t0 + duration_s
    samples: list[RunSample] = []
    timeline: list[dict[str, float]] = []

    async def user(i: int) -> None:
        # Stagger the first runs over 1 s: 500 users connecting in the same millisecond measure the
        # connect storm, not the steady state the figures are about.
        await asyncio.sleep((i % 100) / 100)
        while time.monotonic() < stop_at:
            started = time.monotonic()
            try:
                outcome = await conversation(i)
            except Exception as exc:  # a bug in a driver must not end the whole benchmark
                outcome = RunOutcome(status=type(exc).__name__)
            samples.append(RunSample(started - t0, time.monotonic() - t0, outcome, user=i))

    async def sampler() -> None:
        prev = sim_before
        prev_t = 0.0
        while True:
            await asyncio.sleep(1.0)
            now = await sim.stats()
            t = time.monotonic() - t0
            dt = max(t - prev_t, 1e-6)
            timeline.append(
                {
                    "t": round(t, 2),
                    "ok_per_s": round((successes(now) - successes(prev)) / dt, 2),
                    "attempts_per_s": round((now["requests_total"] - prev["requests_total"]) / dt, 2),
                    "in_flight": now.get("in_flight", 0),
                }
            )
            prev, prev_t = now, t

    if on_window_start is not None:
        on_window_start()
    tasks = [asyncio.create_task(user(i)) for i in range(users)]
    sampling = asyncio.create_task(sampler())
    async with timed_progress(f"{users} users", duration_s, done=lambda: len(samples)):
        await asyncio.sleep(max(0.0, stop_at - time.monotonic()))
    at_stop = await sim.stats()
    _, pending = await asyncio.wait(tasks, timeout=drain_timeout_s)
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    elapsed = time.monotonic() - t0
    sampling.cancel()
    await asyncio.gather(sampling, return_exceptions=True)
    sim_after = await sim.stats()
    return LoadResult(
        samples=samples,
        duration_s=duration_s,
        elapsed_s=elapsed,
        calls_in_window=successes(at_stop) - successes(sim_before),
        sim_before=sim_before,
        sim_after=sim_after,
        timeline=timeline,
    )
