"""The contract cannot break silently: `buf breaking` compares protos/ with the last released copy
(protos/.released, kept by `make release`) and fails on a wire- or source-incompatible change."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BUF = Path(sys.executable).parent / "buf"
PROTOS = Path(__file__).resolve().parents[2] / "protos"
SUPERVISOR = "agentmesh/v1/supervisor.proto"


def _breaking(protos: Path) -> subprocess.CompletedProcess[str]:
    # Offline: both inputs are local directories, and every import (buf/validate, google/api) is vendored.
    return subprocess.run(
        [str(BUF), "breaking", "--against", ".released"],
        cwd=protos,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A copy of protos/ (with its .released) to change."""
    return Path(shutil.copytree(PROTOS, tmp_path / "protos"))


def _edit(protos: Path, pattern: str, replacement: str) -> None:
    path = protos / SUPERVISOR
    text, n = re.subn(pattern, replacement, path.read_text(), count=1, flags=re.MULTILINE)
    assert n == 1, pattern
    path.write_text(text)


def test_buf_is_installed() -> None:
    assert BUF.is_file(), "buf (the dev extra) is needed by make lint"


def test_the_current_protos_keep_the_released_contract() -> None:
    result = _breaking(PROTOS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_renumbering_a_field_breaks_the_contract(work: Path) -> None:
    # RunRequest.thread_id = 2 -> 9: old clients' thread ids would land in an unknown field.
    _edit(work, r"^(  string thread_id = )2( \[)", r"\g<1>9\g<2>")
    result = _breaking(work)
    assert result.returncode != 0
    assert 'field "2" with name "thread_id" on message "RunRequest" was deleted' in result.stdout


def test_adding_a_field_is_compatible(work: Path) -> None:
    # The same check passes a change old clients can live with, so the failure above is about the renumbering.
    _edit(work, r"^(message ResumeRequest \{\n)", "\\g<1>  // A note.\n  string note = 9;\n")
    result = _breaking(work)
    assert result.returncode == 0, result.stdout + result.stderr
