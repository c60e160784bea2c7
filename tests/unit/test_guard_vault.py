"""Restore tokens: they open for the tenant they were sealed for, under the same key, until they expire, and
carry nothing readable."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from agentmesh.services.guard.vault import RestoreKeyError, Sealer, key_id, restore_keys
from agentmesh.settings import Settings

KEY = bytes(range(32))
VALUES = {"<EMAIL_1>": "ana@example.com", "<PHONE_1>": "+1 650 253 0000"}


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_token_opens_for_its_tenant_and_holds_nothing_readable() -> None:
    sealer = Sealer(KEY, ttl_s=60)
    token = sealer.seal("acme", VALUES)
    assert sealer.open("acme", token) == VALUES
    assert "ana@example.com" not in token and "EMAIL" not in token


def test_another_tenant_another_key_or_a_changed_byte_does_not_open(caplog: pytest.LogCaptureFixture) -> None:
    sealer = Sealer(KEY, ttl_s=60)
    token = sealer.seal("acme", VALUES)
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    with caplog.at_level(logging.INFO, logger="agentmesh.services.guard.vault"):
        assert sealer.open("globex", token) is None
        assert Sealer(bytes(32), ttl_s=60).open("acme", token) is None
        assert sealer.open("acme", flipped) is None
    assert "ana@example.com" not in caplog.text


@pytest.mark.parametrize("token", ["", "v1.", "v1.!!!", "v2.abc", "not a token", "v1.AAAA"])
def test_malformed_tokens_do_not_open(token: str) -> None:
    assert Sealer(KEY, ttl_s=60).open("acme", token) is None


def test_tokens_expire() -> None:
    clock = Clock()
    sealer = Sealer(KEY, ttl_s=60, clock=clock)
    token = sealer.seal("acme", VALUES)
    clock.now += 59
    assert sealer.open("acme", token) == VALUES
    clock.now += 2
    assert sealer.open("acme", token) is None


STRONG = "q3Zk1x8v0b5mW2yT7nR4pL6sD9fH3jK0aC1eG5iO8uE="
OLD = "Yb7Jr2Vt5Nq8Wc1Xz4Ms6Lk9Hg3Fd0Sa2Pe5Ou8Iy1T="


def test_the_key_comes_from_the_setting_else_the_internal_token_in_a_dev_mesh_only() -> None:
    explicit = restore_keys(Settings(guard_restore_key=SecretStr(STRONG), internal_token=SecretStr("t")))
    derived = restore_keys(Settings(internal_token=SecretStr("t"), guard_restore_key=None, dev=True))
    assert explicit.current != derived.current and len(derived.current) == 32
    # Every replica of a dev mesh that shares the internal token derives the same key.
    assert derived == restore_keys(Settings(internal_token=SecretStr("t"), guard_restore_key=None, dev=True))
    none = Settings(internal_token=None, guard_restore_key=None, dev=True)
    assert restore_keys(none) != restore_keys(none)  # neither: random per process


@pytest.mark.parametrize(
    "key",
    [None, "dev-internal-token-change-me", "change-me", "short-key-of-31-characters-xxxx"],
)
def test_outside_a_dev_mesh_a_missing_default_or_short_key_refuses_to_start(key: str | None) -> None:
    settings = Settings(
        guard_restore_key=None if key is None else SecretStr(key),
        internal_token=SecretStr("dev-internal-token-change-me"),
    )
    with pytest.raises(RestoreKeyError) as info:
        restore_keys(settings)
    assert "AGENTMESH_GUARD_RESTORE_KEY" in str(info.value) and (key is None or key not in str(info.value))


def test_the_guard_process_refuses_to_start_without_a_key(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTMESH_")}
    env |= {"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "AGENTMESH_DATA_DIR": str(tmp_path)}
    env |= {"AGENTMESH_METRICS_PORT_OFFSET": "0", "AGENTMESH_GUARD_LLM_CHECK": "false"}
    done = subprocess.run(
        [sys.executable, "-m", "agentmesh", "serve", "guard", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "AGENTMESH_GUARD_RESTORE_KEY is not set" in done.stdout + done.stderr


def test_tokens_name_their_key_so_the_key_can_rotate() -> None:
    old = Sealer(restore_keys(Settings(guard_restore_key=SecretStr(OLD))), ttl_s=60)
    token = old.seal("acme", VALUES)
    assert token.startswith(f"v2.{key_id(restore_keys(Settings(guard_restore_key=SecretStr(OLD))).current)}.")
    rotated = Settings(guard_restore_key=SecretStr(STRONG), guard_restore_keys_previous=SecretStr(f" {OLD} "))
    new = Sealer(restore_keys(rotated), ttl_s=60)
    assert new.open("acme", token) == VALUES  # an old token still opens after the rotation
    fresh = new.seal("acme", VALUES)
    assert fresh.split(".")[1] != token.split(".")[1]  # new tokens use the new key
    assert old.open("acme", fresh) is None  # which the old guard does not have
    dropped = Sealer(restore_keys(Settings(guard_restore_key=SecretStr(STRONG))), ttl_s=60)
    assert dropped.open("acme", token) is None  # once the old key is dropped, its tokens stop opening
