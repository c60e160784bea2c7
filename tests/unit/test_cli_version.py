"""`agentmesh --version` prints the installed distribution's version, which is pyproject.toml's."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_version_flag_prints_the_package_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "agentmesh", "--version"], capture_output=True, text=True, timeout=60, check=True
    )
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert importlib.metadata.version("agentmesh") == declared
    assert out.stdout.strip() == f"agentmesh {declared}"
    assert out.stderr == ""
