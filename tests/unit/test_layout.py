"""The architecture as the tree shows it, checked: the import layering (import-linter contracts in pyproject.toml)
holds, and breaks when a service imports another or the runtime imports a service; no hand-written module
grows past 600 lines."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(src: Path) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_import_contracts_hold() -> None:
    result = _lint_imports(ROOT / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 3 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("services/researcher/server.py", "import agentmesh.services.guard.policy", "no service imports another"),
        ("llm/_client.py", "import agentmesh.services.supervisor.store", "the runtime imports no service"),
        ("services/guard/servicer.py", "import agentmesh.cli._up", "the CLI composes"),
    ],
)
def test_a_forbidden_import_breaks_a_contract(tmp_path: Path, module: str, line: str, contract: str) -> None:
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    target = src / "agentmesh" / module
    target.write_text(target.read_text() + f"\n{line}  # noqa\n")
    result = _lint_imports(src)
    assert result.returncode != 0
    assert f"{contract}" in result.stdout and "BROKEN" in result.stdout, result.stdout


def test_no_hand_written_module_is_over_600_lines() -> None:
    tracked = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True)
    long = {p: n for p in tracked.stdout.split() if (n := len((ROOT / p).read_text().splitlines())) > 600}
    assert not long, f"split these: {long}"
