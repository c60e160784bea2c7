"""`make test-multihost`: docker-compose.yml's topology on network namespaces, a load of conversations through the
gateway's public API, and three host faults during it: every process of one researcher host killed (then
restarted), one supervisor host's link unplugged (then plugged back), and the Postgres host's server restarted.

A conversation is one SupervisorService.Run. When its stream breaks (an error event, a gRPC error, or no event for
`idle_s`: a stream through an unplugged host just goes quiet) the client reads the run's status with GetThread
until it is no longer RUNNING (the lease of a vanished supervisor runs out and the other supervisor's sweeper marks
the run FAILED, resumable) and calls Resume through the gateway; supervisors do not take over each other's runs
(no takeover: issues 11/14), so Resume is the way a run continues. A run is lost if it never completes.

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
from tests.multihost import netns
from tests.multihost.topology import REPLICAS, Mesh, build

RESULT = Path(__file__).resolve().parents[2] / "bench" / "results" / "multihost.json"
QUESTION = "Compare two payment providers and recommend one"
_STATUS = {v: k for k, v in supervisor_pb2.RunStatus.items()}


@dataclass
class Options:
    concurrency: int = 6
    max_runs: int = 300
    latency_ms: float = 250.0
    """Simulated LLM latency, so that runs are in flight when a fault hits."""
    lease_s: float = 10.0
    """AGENTMESH_RUN_LEASE_S: how soon a vanished supervisor's runs become resumable (compose's default is 30 s)."""
    idle_s: float = 20.0
    """A run stream with no event for this long is given up on by the client (it reads the status, resumes)."""
    partition_s: float = 25.0
    """How long the supervisor host stays unplugged."""
    load_deadline_s: float = 210.0
    """Hard bound on the load phase (faults included); conversations still open then count as lost."""
    max_resumes: int = 6


@dataclass
class Conversation:
    n: int
    run_id: str = ""
    thread_id: str = ""
    completed: bool = False
    reason: str = ""
    resumes: int = 0
    new_runs: int = 0
    """Runs that had to be started again because the first never got a run id (rejected before starting)."""
    breaks: list[dict[str, Any]] = field(default_factory=list)
    """Each broken stream: when (s since load start), how (error event / gRPC status / idle), the status seen."""


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

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 2)

    async def _stream(self, call: Any, conv: Conversation) -> None:
        """Read one Run/Resume stream; on a break, record it. Returns when the stream ends either way."""
        errored = False  # an error event is followed by the call's own gRPC status: one break, not two
        try:
            while True:
                try:
                    ev = await asyncio.wait_for(call.read(), self.opts.idle_s)
                except TimeoutError:
                    call.cancel()
                    conv.breaks.append({"t": self.now(), "how": f"idle {self.opts.idle_s:.0f}s"})
                    return
                if ev is grpc.aio.EOF:
                    if not conv.completed:
                        conv.breaks.append({"t": self.now(), "how": "stream ended without a final event"})
                    return
                conv.run_id, conv.thread_id = ev.run_id or conv.run_id, ev.thread_id or conv.thread_id
                kind = ev.WhichOneof("event")
                if kind == "final":
                    conv.completed = True
                    conv.reason = supervisor_pb2.FinishReason.Name(ev.final.reason)
                elif kind == "error":
                    errored = True
                    conv.breaks.append(
                        {
                            "t": self.now(),
                            "how": f"error event code {ev.error.code}",
                            "message": ev.error.message[:120],
                            "resumable": ev.error.resumable,
                        }
                    )
        except grpc.aio.AioRpcError as exc:
            if not conv.completed and not errored:
                conv.breaks.append({"t": self.now(), "how": exc.code().name, "message": (exc.details() or "")[:120]})

    async def _status(self, stub: Any, conv: Conversation) -> str:
        """The run's status from GetThread, waiting (bounded) while it is RUNNING: a vanished supervisor's lease."""
        deadline = time.monotonic() + 3 * self.opts.lease_s + 10
        status = "UNKNOWN"
        while time.monotonic() < deadline:
            try:
                thread = await stub.GetThread(
                    supervisor_pb2.GetThreadRequest(thread_id=conv.thread_id), metadata=self.md, timeout=5
                )
                status = next((_STATUS[r.status] for r in thread.runs if r.run_id == conv.run_id), "UNKNOWN")
            except grpc.aio.AioRpcError as exc:
                status = f"GetThread {exc.code().name}"
            if status in ("RUN_STATUS_FAILED", "RUN_STATUS_COMPLETED"):
                return status
            await asyncio.sleep(1.0)
        return status

    async def conversation(self, stub: Any, n: int) -> None:
        conv = Conversation(n)
        self.convs.append(conv)
        hard = self.t0 + self.opts.load_deadline_s
        await self._stream(stub.Run(supervisor_pb2.RunRequest(message=f"{QUESTION} ({n})"), metadata=self.md), conv)
        while not conv.completed and time.monotonic() < hard and conv.resumes + conv.new_runs < self.opts.max_resumes:
            await asyncio.sleep(0.5)
            if not conv.run_id:  # never started (no event): nothing to resume, start it again
                conv.breaks[-1]["restarted"] = True
                conv.new_runs += 1
                call = stub.Run(supervisor_pb2.RunRequest(message=f"{QUESTION} ({n})"), metadata=self.md)
                await self._stream(call, conv)
                continue
            conv.breaks[-1]["status_before_resume"] = await self._status(stub, conv)
            conv.breaks[-1]["resumed_at"] = self.now()
            conv.resumes += 1
            await self._stream(stub.Resume(supervisor_pb2.ResumeRequest(run_id=conv.run_id), metadata=self.md), conv)

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
            remaining = self.t0 + self.opts.load_deadline_s + 3 * self.opts.idle_s - time.monotonic()
            _, pending = await asyncio.wait(workers, timeout=max(1.0, remaining))
            for task in pending:
                task.cancel()
        return done


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
    mesh = load.mesh
    host = mesh.lab.hosts["supervisor-2"]
    before = await _stats(mesh)
    fault = Fault("supervisor host link down", host.name, load.now())
    mesh.lab.link(host, up=False)
    eject = await _wait_healthy(mesh, "supervisor", REPLICAS["supervisor"] - 1, 30)
    await asyncio.sleep(max(0.0, load.opts.partition_s - (eject or 0)))
    mesh.lab.link(host, up=True)
    t_back = load.now()
    readmit = await _wait_healthy(mesh, "supervisor", REPLICAS["supervisor"], 60)
    fault.t_end = load.now()
    fault.detail = {
        "down_s": load.opts.partition_s,
        "t_back": t_back,
        "eject_s": eject,
        "readmit_after_link_up_s": readmit,
        "gateway_counters": _counters(mesh, "supervisor", before, await _stats(mesh)),
    }
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
    resumed = [c for c in completed if c.resumes]
    # Each break belongs to the last fault that had begun by then.
    per_fault: dict[str, dict[str, Any]] = {
        f.name: {
            "conversations_broken": 0,
            "restarted_without_run_id": 0,
            "resumed_while_host_out": 0,
            "completed_later": 0,
            "statuses_before_resume": Counter(),
            "how": Counter(),
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
            pf["how"][b["how"]] += 1
            pf["restarted_without_run_id"] += bool(b.get("restarted"))
            back = next(f.detail.get("t_back") for f in faults if f.name == owner)
            pf["resumed_while_host_out"] += bool(back and b.get("resumed_at", 1e9) < back)
            if "status_before_resume" in b:
                pf["statuses_before_resume"][b["status_before_resume"]] += 1
            if owner not in hit:
                hit.add(owner)
                pf["conversations_broken"] += 1
                pf["completed_later"] += c.completed
    for pf in per_fault.values():
        pf["statuses_before_resume"], pf["how"] = dict(pf["statuses_before_resume"]), dict(pf["how"])
    unattributed = sum(1 for c in convs for b in c.breaks if not faults or b["t"] < faults[0].t_start)
    return {
        "hosts": {h.name: h.ip for h in mesh.lab.hosts.values()},
        "subnet": str(mesh.lab.net),
        "setup_s": round(setup_s, 1),
        "options": asdict(load.opts),
        "faults": [asdict(f) for f in faults],
        "per_fault": per_fault,
        "breaks_before_any_fault": unattributed,
        "conversations": len(convs),
        "completed": len(completed),
        "completed_first_try": len(completed) - len(resumed),
        "completed_after_resume": len(resumed),
        "resumes": sum(c.resumes for c in convs),
        "restarted_before_start": sum(c.new_runs for c in convs),
        "lost": len(convs) - len(completed),
        "lost_runs": [asdict(c) for c in convs if not c.completed][:10],
        "finish_reasons": dict(Counter(c.reason for c in completed)),
        "dns_queries": mesh.dns.queries,
        # A Run the client gave up on before its first event may still have reached its supervisor later (the
        # unplugged host got it once its link was back): such rows are left FAILED, resumable, never completed.
        "db_runs_by_status": mesh.runs_by_status(),
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
            f"    restarted (no run id seen): {pf['restarted_without_run_id']}, resumed while the host was out: "
            f"{pf['resumed_while_host_out']}"
        )
        say(
            f"    conversations broken: {pf['conversations_broken']}, completed in the end: "
            f"{pf['completed_later']}, status before resume: {pf['statuses_before_resume']}, "
            f"how the streams broke: {pf['how']}"
        )
    say(
        f"conversations {s['conversations']}: completed {s['completed']} ({s['completed_first_try']} first try, "
        f"{s['completed_after_resume']} after {s['resumes']} resumes), lost {s['lost']}"
    )
    say(f"runs in Postgres by status: {s['db_runs_by_status']}")


def run(opts: Options, say: Any = print, result_path: Path | None = RESULT) -> dict[str, Any]:
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
        made["keep_logs"] = summary["lost"] > 0
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
    args = p.parse_args(argv)
    try:
        s = run(Options(concurrency=args.concurrency), result_path=None if args.no_result else RESULT)
    except netns.Unavailable as exc:
        print(f"SKIPPED: multihost test needs network namespaces: {exc}")
        return 0
    return 1 if s["lost"] else 0


if __name__ == "__main__":
    sys.exit(main())
