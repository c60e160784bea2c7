"""What Postgres and the supervisors' own logs say about an unplugged supervisor's runs: which runs it held when its
link went down (lease owners name host:pid; the pids of its network namespace tell its own), who continued them
and when, and whether every run in the database completed exactly once (steps, events, the assistant message).

Clocks: Postgres' now() and this process' time.time() read the same kernel clock (namespaces share it)."""

from __future__ import annotations

import asyncio
import collections
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentmesh.v1 import supervisor_pb2
from tests.multihost import netns
from tests.multihost.topology import Mesh


def owner_pid(owner: str) -> int | None:
    """The pid in a lease owner, `host:pid:nonce/token`."""
    parts = owner.split(":")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


@dataclass
class Held:
    """A run that the cut-off supervisor held a live lease on when its link went down."""

    run_id: str
    owner: str
    lease_left_s: float
    """What was left of its lease at link-down: the earliest another supervisor may claim it."""
    steps_before: int
    claimed_by: str = ""
    """The first other lease owner seen (polled every 0.5 s; empty when claim and completion fell between polls)."""
    claimed_after_s: float | None = None
    next_event_after_s: float | None = None
    """From link-down to the run's next recorded step (or its completion, whichever came first)."""
    steps_while_out: int = 0
    """Steps recorded while the supervisor holding the run was unplugged: by another supervisor, necessarily."""
    completed_while_out: bool = False
    status: str = ""
    taken_over_logged_by: str = ""
    """The host whose supervisor logged "run taken over" for this run."""
    cut_off_logged: list[str] = field(default_factory=list)
    """What the cut-off supervisor logged about the run after link-down ("run failed ABORTED" once back: its
    execution found its lease gone), with seconds since link-up."""


class Partition:
    """Bookkeeping of one supervisor host's outage, from Postgres."""

    def __init__(self, mesh: Mesh, host: str) -> None:
        self.mesh, self.host = mesh, mesh.lab.hosts[host]
        self.pids = set(netns.netns_pids(self.host.ns))
        self.t_down = 0.0
        self.t_up = 0.0
        self.held: dict[str, Held] = {}

    async def snapshot(self) -> None:
        """Right after link-down: the runs whose live lease the cut-off supervisor holds (it can write no more)."""
        rows = await asyncio.to_thread(
            self.mesh.sql,
            "SELECT id, lease_owner, extract(epoch FROM lease_expires_at), "
            "(SELECT count(*) FROM steps s WHERE s.run_id = r.id) FROM runs r "
            "WHERE status = 'running' AND lease_owner IS NOT NULL AND lease_expires_at > now()",
        )
        for run_id, owner, expires, steps in rows:
            if owner_pid(owner) in self.pids:
                self.held[run_id] = Held(run_id, owner, round(float(expires) - self.t_down, 2), int(steps))

    async def follow(self, until: float) -> None:
        """Poll the held runs' lease owners every 0.5 s until each is completed (or `until`, monotonic)."""
        ids = ",".join(f"'{r}'" for r in self.held)
        while ids and time.monotonic() < until:
            rows = await asyncio.to_thread(
                self.mesh.sql, f"SELECT id, status, coalesce(lease_owner, '') FROM runs WHERE id IN ({ids})"
            )
            now = time.time()
            for run_id, status, owner in rows:
                h = self.held[run_id]
                h.status = status
                if owner and not h.claimed_by and owner_pid(owner) not in self.pids:
                    h.claimed_by, h.claimed_after_s = owner, round(now - self.t_down, 2)
            if all(h.status in ("completed", "cancelled", "failed") for h in self.held.values()):
                return
            await asyncio.sleep(0.5)

    def settle(self, logs: Path) -> None:
        """After the load: the held runs' recorded steps and ends, and what the supervisors logged about them."""
        if not self.held:
            return
        ids = ",".join(f"'{r}'" for r in self.held)
        down, up = f"to_timestamp({self.t_down})", f"to_timestamp({self.t_up})"
        rows = self.mesh.sql(
            f"SELECT r.id, r.status, CASE WHEN r.status = 'completed' THEN extract(epoch FROM r.updated_at) END, "
            f"(SELECT extract(epoch FROM min(s.created_at)) FROM steps s WHERE s.run_id = r.id AND s.created_at > {down}), "
            f"(SELECT count(*) FROM steps s WHERE s.run_id = r.id AND s.created_at > {down} AND s.created_at < {up}) "
            f"FROM runs r WHERE r.id IN ({ids})"
        )
        for run_id, status, done_at, first_step, while_out in rows:
            h = self.held[run_id]
            h.status, h.steps_while_out = status, int(while_out)
            h.completed_while_out = bool(done_at) and float(done_at) < self.t_up
            times = [float(t) for t in (done_at, first_step) if t]
            h.next_event_after_s = round(min(times) - self.t_down, 2) if times else None
        for path in sorted(logs.glob("supervisor-*.log")):
            for line in path.read_text(errors="replace").splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                run = self.held.get(str(rec.get("run_id", "")))
                if run is None:
                    continue
                if rec.get("event") == "run taken over":
                    run.taken_over_logged_by = path.stem
                elif path.stem == self.host.name and float(rec.get("ts", 0)) >= self.t_down:
                    what = " ".join(str(rec[k]) for k in ("event", "reason") if rec.get(k))
                    run.cut_off_logged.append(f"{what} @ {float(rec['ts']) - self.t_up:+.1f}s")

    def summary(self, lease_s: float) -> dict[str, Any]:
        held = list(self.held.values())
        progressed = [h for h in held if h.steps_while_out or h.completed_while_out]
        by_other = [h for h in progressed if h.taken_over_logged_by and h.taken_over_logged_by != self.host.name]
        lat = sorted(h.next_event_after_s for h in by_other if h.next_event_after_s is not None)
        return {
            "lease_s": lease_s,
            "sweep_every_s": lease_s / 2,
            "runs_held_at_link_down": len(held),
            "taken_over": len(by_other),
            "progressed_while_out": len(progressed),
            "completed": sum(h.status == "completed" for h in held),
            "lost": sum(h.status != "completed" for h in held),
            "cut_off_supervisor_logged": dict(
                collections.Counter(entry.split(" @ ")[0] for h in held for entry in h.cut_off_logged)
            ),
            "takeover_latency_s": {"min": lat[0], "max": lat[-1], "all": lat} if lat else None,
            "runs": [vars(h) for h in held],
        }


def integrity(mesh: Mesh) -> dict[str, Any]:
    """Every run in the database, checked: a completed run has exactly one assistant message, its steps are 0..n-1,
    its events 0..next_seq-1 with exactly one final event, the last; no run that did not complete has an answer.

    One gap in a run's events is by design: a step's started event goes to the live client before the step is
    recorded (it is recorded with the step), so a step that failed leaves its seq unrecorded, just before the
    recorded error event; a Resume then continues after that. Any other gap is counted as unexplained."""
    checks = {
        "completed_without_exactly_one_answer": "SELECT count(*) FROM runs r WHERE status = 'completed' AND "
        "(SELECT count(*) FROM messages m WHERE m.run_id = r.id AND m.role = 'assistant') <> 1",
        "answers_of_runs_not_completed": "SELECT count(*) FROM messages m JOIN runs r ON r.id = m.run_id "
        "WHERE m.role = 'assistant' AND r.status <> 'completed'",
        "runs_with_gaps_in_steps": "SELECT count(*) FROM (SELECT run_id FROM steps GROUP BY run_id "
        "HAVING min(idx) <> 0 OR max(idx) + 1 <> count(*)) g",
    }
    out: dict[str, Any] = {name: int(mesh.sql(q)[0][0]) for name, q in checks.items()}
    kinds: dict[str, dict[int, str]] = {}
    next_seq: dict[str, int] = {}
    rows = mesh.sql(
        "SELECT r.id, r.next_seq, e.seq, encode(e.body, 'hex') FROM runs r "
        "LEFT JOIN run_events e ON e.run_id = r.id WHERE r.status = 'completed'"
    )
    for run_id, end, seq, body in rows:
        next_seq[run_id] = int(end)
        events = kinds.setdefault(run_id, {})
        if seq:
            events[int(seq)] = supervisor_pb2.RunEvent.FromString(bytes.fromhex(body)).WhichOneof("event") or ""
    unexplained = beyond = finals_wrong = errors = 0
    for run_id, events in kinds.items():
        n = next_seq[run_id]
        beyond += any(seq >= n for seq in events)
        missing = [seq for seq in range(n) if seq not in events]
        unexplained += any(events.get(seq + 1) != "error" for seq in missing)
        finals = [seq for seq, kind in events.items() if kind == "final"]
        finals_wrong += finals != [n - 1]
        errors += "error" in events.values()
    out["completed_runs_checked"] = len(kinds)
    out["completed_with_unexplained_gaps_in_events"] = unexplained
    out["completed_with_events_past_next_seq"] = beyond
    out["completed_without_one_final_event_last"] = finals_wrong
    # Not a defect of the run: WatchRun(after_seq=-1) of such a run stops at that recorded error event.
    out["completed_with_a_recorded_error_event"] = errors
    return out


def runs_by_input(mesh: Mesh) -> dict[str, list[tuple[str, str]]]:
    """Each message the load sent (unique per conversation and start) -> the runs Postgres has for it."""
    out: dict[str, list[tuple[str, str]]] = {}
    for run_id, status, text in mesh.sql("SELECT id, status, input FROM runs"):
        out.setdefault(text, []).append((run_id, status))
    return out
