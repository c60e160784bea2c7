"""Where a service's CPU goes under load: `py-spy record` on its pid during the measured window (sampling
from outside; the service is not paused: --nonblocking), then the collapsed stacks summarised by the leaf
frame's package (self time) and by the mesh's own functions (inclusive time)."""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_FRAME_RE = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

# Leaf frame path fragment -> bucket. First match wins; order from specific to general.
_BUCKETS: tuple[tuple[str, str], ...] = (
    ("/grpc/", "grpc"),
    ("grpc/_cython", "grpc"),
    ("/asyncpg/", "asyncpg"),
    ("/anthropic/", "anthropic sdk"),
    ("/httpx2/", "httpx2 (sdk transport)"),
    ("/httpcore", "httpx2 (sdk transport)"),
    ("/h11/", "httpx2 (sdk transport)"),
    ("/pydantic", "pydantic"),
    ("/tenacity/", "tenacity"),
    ("/logging/", "logging"),
    ("/json/", "json"),
    ("/google/protobuf/", "protobuf"),
    ("/opentelemetry/", "opentelemetry"),
    ("/uvloop/", "event loop"),
    ("/asyncio/", "event loop"),
    ("/ssl.py", "ssl"),
    ("/services/", "services/ (our code)"),
    ("/agentmesh/", "agentmesh/ (our code)"),
)


def bucket_of(path: str) -> str:
    for fragment, name in _BUCKETS:
        if fragment in path:
            return name
    return "other" if path else "native"


def _parse(frame: str) -> tuple[str, str]:
    m = _FRAME_RE.match(frame.strip())
    if not m:
        return frame.strip(), ""
    return m.group("func"), m.group("file")


@dataclass
class Profile:
    role: str
    samples: int
    by_bucket: dict[str, float]  # share of samples, by the leaf frame's package
    top_self: list[tuple[str, float]]  # leaf function -> share
    top_ours: list[tuple[str, float]]  # our functions (agentmesh/, services/) -> inclusive share
    raw_path: str

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "samples": self.samples,
            "raw": self.raw_path,
            "self_by_package": {k: round(v, 3) for k, v in self.by_bucket.items()},
            "top_self": [[f, round(s, 3)] for f, s in self.top_self],
            "top_ours_inclusive": [[f, round(s, 3)] for f, s in self.top_ours],
        }


def summarise(role: str, raw: Path, top: int = 12) -> Profile:
    """Read py-spy's raw (collapsed) output: `frame;frame;...;leaf COUNT` per line, root first."""
    buckets: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    total = 0
    text = raw.read_text(encoding="utf-8", errors="replace") if raw.exists() else ""
    for line in text.splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        frames = [_parse(f) for f in stack.split(";")]
        # py-spy names the thread first ("process 123:..." / "thread (0x...)"): skip frames without a file.
        frames = [f for f in frames if f[1]] or frames
        func, path = frames[-1]
        total += count
        buckets[bucket_of(path)] += count
        leaves[f"{func} ({_short(path)})"] += count
        seen = set()
        for f, p in frames:
            if ("/agentmesh/" in p or "/services/" in p) and "/agentmesh/v1/" not in p:
                key = f"{f} ({_short(p)})"
                if key not in seen:
                    seen.add(key)
                    ours[key] += count
    share = (lambda c: c / total) if total else (lambda c: 0.0)
    return Profile(
        role=role,
        samples=total,
        by_bucket={k: share(v) for k, v in buckets.most_common()},
        top_self=[(k, share(v)) for k, v in leaves.most_common(top)],
        top_ours=[(k, share(v)) for k, v in ours.most_common(top)],
        raw_path=str(raw),
    )


def _short(path: str) -> str:
    for marker in ("site-packages/", "/src/", "/services/", "/lib/python3"):
        if marker in path:
            tail = path.split(marker, 1)[1]
            return ("services/" + tail) if marker == "/services/" else tail
    return Path(path).name


def py_spy() -> str | None:
    exe = Path(sys.executable).parent / "py-spy"
    return str(exe) if exe.exists() else shutil.which("py-spy")


async def record(pids: dict[str, int], duration_s: float, out_dir: Path, rate: int = 50) -> list[Profile]:
    """Profile every pid at once for `duration_s`; returns a summary per role (empty if py-spy is missing)."""
    exe = py_spy()
    if exe is None:
        return []
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    procs = {}
    for role, pid in pids.items():
        raw = out_dir / f"profile-{role}.txt"
        procs[role] = (
            raw,
            await asyncio.create_subprocess_exec(
                exe,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(max(1, int(duration_s))),
                "--rate",
                str(rate),
                "--format",
                "raw",
                "--output",
                str(raw),
                "--nonblocking",
                "--full-filenames",
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            ),
        )
    out = []
    for role, (raw, proc) in procs.items():
        await proc.wait()
        out.append(summarise(role, raw))
    return out
