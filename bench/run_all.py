"""`make bench`: run every registered benchmark with its defaults, one after another (never in parallel:
they would measure each other on a 2-core machine)."""

from __future__ import annotations

import subprocess
import sys

from bench import REGISTRY


def main() -> int:
    failed = []
    for name in REGISTRY:
        print(f"\n=== bench {name} ===", flush=True)
        if subprocess.run([sys.executable, "-m", "agentmesh", "bench", name]).returncode != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
