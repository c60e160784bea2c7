"""`make test-multihost`: docker-compose.yml's topology on network namespaces, a load of conversations through the
gateway's public API, and three host faults during it: every process of one researcher host killed (then
restarted), one supervisor host's link unplugged (then plugged back), and the Postgres host's server restarted.

A conversation is one SupervisorService.Run. When its stream breaks (a gRPC error, or no event for `idle_s`: a stream
through an unplugged host just goes quiet) the client follows the run with WatchRun through the gateway from the
last seq it saw, until the final event: a run whose supervisor vanished is continued by the other one once its lease
runs out (takeover), with no Resume. Only a run that failed (an error event: Postgres went away under it) is resumed.
A conversation is lost if it never completes. Postgres is asked afterwards who continued the unplugged supervisor's
runs, how soon, and whether every run completed exactly once (tests/multihost/takeover.py).

Run alone: `python -m tests.multihost.harness` (root). Writes bench/results/multihost.json."""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import shutil
import signal
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc

from agentmesh.v1 import supervisor_pb2, supervisor_pb2_grpc
from tests.multihost import netns, takeover
from tests.multihost.topology import REPLICAS, Mesh, build

RESULT = Path(__file__).resolve().parents[2] / "bench" / "results" / "multihost.json"
QUESTION = "Compare two payment providers and recommend one"


def message(n: int, start: int) -> str:
    """Unique per conversation and start, so that Postgres' runs can be told apart by their input."""
    return f"{QUESTION} (conversation {n}, start {start})"


@dataclass
class Options:
    concurrency: int = 6
    max_runs: int = 300
    latency_ms: float = 250.0
    """Simulated LLM latency, so that runs are in flight when a fault hits."""
    lease_s: float = 10.0
    """AGENTMESH_RUN_LEASE_S: how soon a vanished supervisor's runs are taken over (compose's default is 30 s)."""
    idle_s: float = 10.0
    """A stream with no event for this long is given up on by the client, which then follows the run (WatchRun)."""
    partition_s: float = 25.0
    """How long the supervisor host stays unplugged."""
    load_deadline_s: float = 150.0
    """Hard bound on the load phase (faults included); conversations still open then count as lost."""
    max_followups: int = 10
    """Per conversation: WatchRuns, Resumes and new starts after its first stream, together."""


@dataclass
class Conversation:
    n: int
    run_id: str = ""
    thread_id: str = ""
    last_seq: int = -1
    """The last event seen, error events aside: a takeover reuses the seq of an error event it never recorded."""
    completed: bool = False
    reason: str = ""
    starts: int = 1
    """Runs started: more than one when the first never sent its first event (so no run id to follow)."""
    watches: int = 0
    resumes: int = 0
    duplicate_events: int = 0
    """Events with a seq this client had already been sent (over Run, WatchRun and Resume together)."""
    seqs: set[int] = field(default_factory=set)
    breaks: list[dict[str, Any]] = field(default_factory=list)
    """Each broken stream: when (s since load start), which call, how, and what the client did next."""


@dataclass
class Fault:
    name: str
    host: str
    t_start: float
    t_end: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)


class Load:
    def __init__(self, mesh: Mesh, opts: Options, say: Any) -> None:
        self.mesh, self.opts, self.say = mesh, opts, say
        self.t0 = time.monotonic()
        self.convs: list[Conversation] = []
        self.stop_new = asyncio.Event()
        self.md = (("authorization", f"Bearer {mesh.api_key}"),)
        self.partition: takeover.Partition | None = None
        self.replays: dict[str, int] = {}

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 2)

    def _break(self, conv: Conversation, call: str, how: str, **more: Any) -> None:
        conv.breaks.append({"t": self.now(), "call": call, "how": how, **more})

    async def _follow(self, call: Any, conv: Conversation, kind: str) -> str:
        """Read one Run, WatchRun or Resume stream. Returns "final", "failed" (a resumable error event), "fatal"
        (an error event that is not), "aborted" (Resume refused: another execution holds the run) or "broken"."""
        try:
            while True:
                try:
                    ev = await asyncio.wait_for(call.read(), self.opts.idle_s)
                except TimeoutError:
                    call.cancel()
                    self._break(conv, kind, f"idle {self.opts.idle_s:.0f}s")
                    return "broken"
                if ev is grpc.aio.EOF:
                    self._break(conv, kind, "stream ended without a final event")
                    return "broken"
                conv.run_id, conv.thread_id = ev.run_id or conv.run_id, ev.thread_id or conv.thread_id
                which = ev.WhichOneof("event")
                if which == "error":  # its gRPC status follows; one break, not two
                    call.cancel()
                    self._break(conv, kind, f"error event code {ev.error.code}", message=ev.error.message[:120])
                    return "failed" if ev.error.resumable else "fatal"
                conv.duplicate_events += ev.seq in conv.seqs
                conv.seqs.add(ev.seq)
                conv.last_seq = max(conv.last_seq, ev.seq)
                if which == "final":
                    call.cancel()
                    conv.completed = True
                    conv.reason = supervisor_pb2.FinishReason.Name(ev.final.reason)
                    return "final"
        except grpc.aio.AioRpcError as exc:
            self._break(conv, kind, exc.code().name, message=(exc.details() or "")[:120])
            return "aborted" if exc.code() == grpc.StatusCode.ABORTED else "broken"

    async def conversation(self, stub: Any, n: int) -> None:
        conv = Conversation(n)
        self.convs.append(conv)
        hard = self.t0 + self.opts.load_deadline_s
        outcome = await self._follow(
            stub.Run(supervisor_pb2.RunRequest(message=message(n, 1)), metadata=self.md), conv, "run"
        )
        while outcome not in ("final", "fatal") and time.monotonic() < hard:
            if conv.starts - 1 + conv.watches + conv.resumes >= self.opts.max_followups:
                break
            await asyncio.sleep(0.5)
            if not conv.run_id:  # never sent its first event: no run to follow, start it again
                conv.breaks[-1]["then"] = "new run"
                conv.starts += 1
                call = stub.Run(supervisor_pb2.RunRequest(message=message(n, conv.starts)), metadata=self.md)
                outcome = await self._follow(call, conv, "run")
            elif outcome == "failed":  # recorded as failed (resumable): only Resume continues it
                conv.breaks[-1]["then"] = "resume"
                conv.resumes += 1
                call = stub.Resume(supervisor_pb2.ResumeRequest(run_id=conv.run_id), metadata=self.md)
                outcome = await self._follow(call, conv, "resume")
            else:  # quiet, broken, or held by another execution (e.g. being taken over): follow it
                conv.breaks[-1]["then"] = "watch"
                conv.watches += 1
                req = supervisor_pb2.WatchRunRequest(run_id=conv.run_id, after_seq=conv.last_seq)
                outcome = await self._follow(stub.WatchRun(req, metadata=self.md), conv, "watch")

    async def worker(self, stub: Any, counter: list[int]) -> None:
        while not self.stop_new.is_set() and counter[0] < self.opts.max_runs:
            counter[0] += 1
            await self.conversation(stub, counter[0])

    async def run(self, faults: Any) -> list[Fault]:
        counter = [0]
        async with grpc.aio.insecure_channel(self.mesh.public_addr) as channel:
            stub = supervisor_pb2_grpc.SupervisorServiceStub(channel)
            workers = [asyncio.create_task(self.worker(stub, counter)) for _ in range(self.opts.concurrency)]
            try:
                done = await faults(self)
            finally:
                self.stop_new.set()
            remaining = self.t0 + self.opts.load_deadline_s + 2 * self.opts.idle_s - time.monotonic()
            _, pending = await asyncio.wait(workers, timeout=max(1.0, remaining))
            for task in pending:
                task.cancel()
            self.replays = await self._replay_resumed(stub)
        return done

    async def _replay_resumed(self, stub: Any) -> dict[str, int]:
        """WatchRun(after_seq=-1) of each resumed run, after the load: which event the full replay ends with."""
        ends: Counter[str] = Counter()
        for conv in (c for c in self.convs if c.resumes and c.completed):
            req = supervisor_pb2.WatchRunRequest(run_id=conv.run_id, after_seq=-1)
            last = "none"
            try:
                async for ev in stub.WatchRun(req, metadata=self.md, timeout=10):
                    last = ev.WhichOneof("event") or "none"
            except grpc.aio.AioRpcError as exc:
                last = exc.code().name
            ends[last] += 1
        return dict(ends)


# --- the faults ----------------------------------------------------------------------------------------------


async def _wait_healthy(mesh: Mesh, cluster: str, want: int, timeout_s: float) -> float | None:
    """Seconds until the gateway counts `want` healthy hosts in `cluster` (polled every 0.1 s), None on timeout."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if await asyncio.to_thread(mesh.healthy, cluster) == want:
            return round(time.monotonic() - t0, 2)
        await asyncio.sleep(0.1)
    return None


async def _stats(mesh: Mesh) -> dict[str, float]:
    return await asyncio.to_thread(mesh.stats)


def _counters(mesh: Mesh, cluster: str, before: dict[str, float], after: dict[str, float]) -> dict[str, int]:
    names = ("outlier_detection_ejections_enforced_total", "health_check_failure", "upstream_cx_connect_fail")
    return {n: mesh.counter(n, cluster, after) - mesh.counter(n, cluster, before) for n in names}


async def kill_researcher(load: Load, service_env: dict[str, str]) -> Fault:
    mesh = load.mesh
    host = mesh.lab.hosts["researcher-1"]
    before = await _stats(mesh)
    fault = Fault("kill every process on a researcher host", host.name, load.now())
    pids = mesh.lab.kill_host(host)
    eject = await _wait_healthy(mesh, "researcher", REPLICAS["researcher"] - 1, 30)
    flags_out = await asyncio.to_thread(mesh.host_flags, "researcher")
    t_restart, t_back = time.monotonic(), load.now()
    mesh.start_service(host.name, service_env)  # compose's restart: unless-stopped
    readmit = await _wait_healthy(mesh, "researcher", REPLICAS["researcher"], 90)
    fault.t_end = load.now()
    fault.detail = {
        "killed_pids": pids,
        "t_back": t_back,
        "eject_s": eject,
        "health_flags_while_out": flags_out,
        "readmit_after_restart_s": readmit,
        "out_of_service_s": round(time.monotonic() - t_restart + (eject or 0), 2) if readmit is not None else None,
        "gateway_counters": _counters(mesh, "researcher", before, await _stats(mesh)),
    }
    return fault


async def partition_supervisor(load: Load) -> Fault:
    """Unplug supervisor-2: its runs are continued by supervisor-1 once their leases run out, with no client action;
    Postgres is polled meanwhile for who holds each of them."""
    mesh = load.mesh
    host = mesh.lab.hosts["supervisor-2"]
    before = await _stats(mesh)
    part = takeover.Partition(mesh, host.name)
    fault = Fault("supervisor host link down", host.name, load.now())
    mesh.lab.link(host, up=False)
    part.t_down = time.time()
    await part.snapshot()
    follow = asyncio.create_task(part.follow(time.monotonic() + load.opts.partition_s + 4 * load.opts.lease_s))
    eject = await _wait_healthy(mesh, "supervisor", REPLICAS["supervisor"] - 1, 30)
    await asyncio.sleep(max(0.0, load.opts.partition_s - (time.time() - part.t_down)))
    mesh.lab.link(host, up=True)
    part.t_up = time.time()
    t_back = load.now()
    readmit = await _wait_healthy(mesh, "supervisor", REPLICAS["supervisor"], 60)
    await follow
    fault.t_end = load.now()
    fault.detail = {
        "down_s": round(part.t_up - part.t_down, 2),
        "t_back": t_back,
        "eject_s": eject,
        "readmit_after_link_up_s": readmit,
        "gateway_counters": _counters(mesh, "supervisor", before, await _stats(mesh)),
    }
    load.partition = part
    return fault


async def restart_postgres(load: Load) -> Fault:
    fault = Fault("restart the Postgres server", "postgres", load.now())
    took = await asyncio.to_thread(load.mesh.pg_ctl, "restart")
    fault.t_end = load.now()
    fault.detail = {"pg_ctl_restart_s": round(took, 2)}
    return fault


async def fault_plan(load: Load, service_env: dict[str, str]) -> list[Fault]:
    faults: list[Fault] = []
    for step in (
        lambda: kill_researcher(load, service_env),
        lambda: partition_supervisor(load),
        lambda: restart_postgres(load),
    ):
        await asyncio.sleep(8)  # runs in flight on every host before each fault
        faults.append(await step())
        load.say(f"  t={faults[-1].t_start:6.1f}s {faults[-1].name} ({faults[-1].host}): {faults[-1].detail}")
    await asyncio.sleep(8)  # runs after the last fault too
    return faults


# --- the whole thing ----------------------------------------------------------------------------------------


def _summarise(mesh: Mesh, load: Load, faults: list[Fault], setup_s: float) -> dict[str, Any]:
    convs = load.convs
    completed = [c for c in convs if c.completed]
    # Each break belongs to the last fault that had begun by then.
    per_fault: dict[str, dict[str, Any]] = {
        f.name: {
            "conversations_broken": 0,
            "completed_later": 0,
            "watches": 0,
            "resumes": 0,
            "new_runs": 0,
            "how": Counter(),
            "then": Counter(),
        }
        for f in faults
    }
    for c in convs:
        hit: set[str] = set()
        for b in c.breaks:
            owner = next((f.name for f in reversed(faults) if f.t_start <= b["t"]), None)
            if owner is None:
                continue
            pf = per_fault[owner]
            pf["how"][f"{b['call']}: {b['how']}"] += 1
            then = b.get("then", "gave up" if not c.completed else "-")
            pf["then"][then] += 1
            pf["watches"] += then == "watch"
            pf["resumes"] += then == "resume"
            pf["new_runs"] += then == "new run"
            if owner not in hit:
                hit.add(owner)
                pf["conversations_broken"] += 1
                pf["completed_later"] += c.completed
    for pf in per_fault.values():
        pf["how"], pf["then"] = dict(pf["how"]), dict(pf["then"])
    unattributed = sum(1 for c in convs for b in c.breaks if not faults or b["t"] < faults[0].t_start)
    # Postgres' side: each conversation's run, and the runs of starts the client gave up on before any event.
    by_input = takeover.runs_by_input(mesh)
    db_status = {rid: st for runs in by_input.values() for rid, st in runs}
    abandoned = Counter(st for c in convs for k in range(1, c.starts) for _, st in by_input.get(message(c.n, k), []))
    part = load.partition
    if part is not None:
        part.settle(mesh.lab.logs)
    return {
        "hosts": {h.name: h.ip for h in mesh.lab.hosts.values()},
        "subnet": str(mesh.lab.net),
        "setup_s": round(setup_s, 1),
        "options": asdict(load.opts),
        "faults": [asdict(f) for f in faults],
        "per_fault": per_fault,
        "takeover": part.summary(load.opts.lease_s) if part is not None else None,
        "breaks_before_any_fault": unattributed,
        "conversations": len(convs),
        "completed": len(completed),
        "completed_first_try": sum(not c.breaks for c in completed),
        "watches": sum(c.watches for c in convs),
        "resumes": sum(c.resumes for c in convs),
        "new_runs": sum(c.starts - 1 for c in convs),
        "duplicate_events_seen_by_clients": sum(c.duplicate_events for c in convs),
        "lost": len(convs) - len(completed),
        "lost_runs": [asdict(c) | {"seqs": sorted(c.seqs)} for c in convs if not c.completed][:10],
        "finish_reasons": dict(Counter(c.reason for c in completed)),
        "dns_queries": mesh.dns.queries,
        "db_runs_by_status": mesh.runs_by_status(),
        "db_conversation_runs_completed": sum(db_status.get(c.run_id) == "completed" for c in completed),
        "db_most_runs_for_one_start": max((len(r) for r in by_input.values()), default=0),
        # A Run given up on before its first event may have reached its supervisor all the same (the unplugged
        # host got it once its link was back): it runs in the background to its end, like any run.
        "db_abandoned_starts": dict(abandoned),
        "db_integrity": takeover.integrity(mesh),
        "resumed_runs_full_replay_ends_with": load.replays,
    }


def print_summary(s: dict[str, Any], say: Any) -> None:
    say("hosts: " + ", ".join(f"{k}={v}" for k, v in s["hosts"].items()) + f" (bridge subnet {s['subnet']})")
    for f in s["faults"]:
        d, pf = f["detail"], s["per_fault"][f["name"]]
        say(f"fault: {f['name']} [{f['host']}] at t={f['t_start']}s..{f['t_end']}s")
        for k in ("eject_s", "readmit_after_restart_s", "readmit_after_link_up_s", "pg_ctl_restart_s", "down_s"):
            if k in d:
                say(f"    {k}: {d[k]}")
        if "gateway_counters" in d:
            say(f"    gateway counters: {d['gateway_counters']}")
        say(
            f"    conversations broken: {pf['conversations_broken']}, completed in the end: {pf['completed_later']}; "
            f"the client then: {pf['then']}; how the streams broke: {pf['how']}"
        )
    t = s["takeover"]
    if t is not None:
        lat = t["takeover_latency_s"]
        say(
            f"takeover (lease {t['lease_s']:g}s, sweep every {t['sweep_every_s']:g}s): supervisor-2 held "
            f"{t['runs_held_at_link_down']} runs at link-down; taken over by supervisor-1 {t['taken_over']}, "
            f"recorded progress while it was out {t['progressed_while_out']}, completed {t['completed']}, "
            f"lost {t['lost']}; supervisor-2 logged about them after link-down: {t['cut_off_supervisor_logged']}"
        )
        if lat:
            say(
                f"    link-down -> next recorded event of a taken-over run: {lat['min']}..{lat['max']} s ({lat['all']})"
            )
        for r in t["runs"]:
            say(
                f"    run {r['run_id'][:8]}: lease left at link-down {r['lease_left_s']}s, new lease owner seen at "
                f"{r['claimed_after_s'] or '-'}s, next event at {r['next_event_after_s']}s, steps before {r['steps_before']}"
                f" / while out {r['steps_while_out']}, {r['status']}, 'run taken over' logged by "
                f"{r['taken_over_logged_by'] or '-'}; supervisor-2 (s after link-up): {r['cut_off_logged']}"
            )
    say(
        f"conversations {s['conversations']}: completed {s['completed']} ({s['completed_first_try']} first try), "
        f"lost {s['lost']}; WatchRun {s['watches']}, Resume {s['resumes']}, new runs {s['new_runs']}; "
        f"events sent twice to a client: {s['duplicate_events_seen_by_clients']}"
    )
    say(
        f"Postgres: runs by status {s['db_runs_by_status']}; conversations' runs completed "
        f"{s['db_conversation_runs_completed']}; abandoned starts {s['db_abandoned_starts']}"
    )
    say(f"Postgres integrity: {s['db_integrity']}")
    say(f"WatchRun(after_seq=-1) of each resumed run ends with: {s['resumed_runs_full_replay_ends_with']}")


def run(opts: Options, say: Any = print, result_path: Path | None = RESULT, keep_logs: bool = False) -> dict[str, Any]:
    """Build the lab, run the load with its faults, tear everything down; the summary. Raises netns.Unavailable.
    The processes' logs are kept (and their place printed) only when something failed."""
    netns.probe()
    for name in netns.sweep_stale():
        say(f"removed a dead lab's leftover {name}")
    workdir = netns.make_workdir()
    made: dict[str, Any] = {"lab": None, "mesh": None, "keep_logs": True}

    def cleanup() -> None:
        mesh, lab = made.pop("mesh", None), made.pop("lab", None)
        if mesh is not None:
            mesh.dns.close()
        if lab is not None:
            lab.close()  # processes (by pid, per namespace), namespaces, veths, bridge, /etc/netns files
        if workdir.exists():
            if made.get("keep_logs") and (workdir / "logs").is_dir():
                keep = Path(tempfile.gettempdir()) / f"{workdir.name}-logs"
                shutil.copytree(workdir / "logs", keep, dirs_exist_ok=True)
                say(f"logs of the failed run kept in {keep}")
            shutil.rmtree(workdir, ignore_errors=True)

    def on_signal(signum: int, _frame: Any) -> None:
        cleanup()
        raise SystemExit(128 + signum)

    atexit.register(cleanup)
    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        t0 = time.monotonic()
        lab = made["lab"] = netns.Lab(workdir)
        service_env = {"AGENTMESH_RUN_LEASE_S": str(opts.lease_s)}
        mesh = made["mesh"] = build(lab, workdir, service_env, say)
        setup_s = time.monotonic() - t0
        for name, host in lab.hosts.items():
            say(f"  host {name:<13} {host.ip:<15} netns {host.ns}")
        req = urllib.request.Request(
            f"{mesh.sim_url}/_sim/faults",
            data=json.dumps({"latency_ms": opts.latency_ms}).encode(),
            method="PUT",
            headers={"content-type": "application/json"},
        )
        urllib.request.urlopen(req, timeout=5).read()
        load = Load(mesh, opts, say)
        say(f"load: {opts.concurrency} conversations at a time through {mesh.public_addr}; faults:")
        faults = asyncio.run(load.run(lambda ld: fault_plan(ld, service_env)))
        summary = _summarise(mesh, load, faults, setup_s)
        print_summary(summary, say)
        if result_path is not None:
            result_path.parent.mkdir(parents=True, exist_ok=True)
            result_path.write_text(json.dumps(summary, indent=2) + "\n")
            say(f"wrote {result_path}")
        made["keep_logs"] = keep_logs or summary["lost"] > 0 or bool((summary["takeover"] or {}).get("lost"))
        return summary
    finally:
        cleanup()
        atexit.unregister(cleanup)
        for sig, handler in old.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--concurrency", type=int, default=Options.concurrency)
    p.add_argument("--no-result", action="store_true", help="print only; do not write bench/results/multihost.json")
    p.add_argument("--keep-logs", action="store_true", help="keep the processes' logs even when nothing failed")
    args = p.parse_args(argv)
    try:
        s = run(
            Options(concurrency=args.concurrency),
            result_path=None if args.no_result else RESULT,
            keep_logs=args.keep_logs,
        )
    except netns.Unavailable as exc:
        print(f"SKIPPED: multihost test needs network namespaces: {exc}")
        return 0
    return 1 if s["lost"] or (s["takeover"] or {}).get("lost") else 0


if __name__ == "__main__":
    sys.exit(main())
