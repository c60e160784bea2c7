"""Restore tokens: they open for the tenant they were sealed for, under the same key, until they expire, and
carry nothing readable."""

from __future__ import annotations

import logging

import pytest
from pydantic import SecretStr

from agentmesh.services.guard.vault import Sealer, restore_key
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


def test_the_key_comes_from_the_setting_else_the_internal_token() -> None:
    explicit = restore_key(Settings(guard_restore_key=SecretStr("k"), internal_token=SecretStr("t")))
    derived = restore_key(Settings(internal_token=SecretStr("t"), guard_restore_key=None))
    assert explicit != derived and len(derived) == 32
    # Every replica that shares the internal token derives the same key.
    assert derived == restore_key(Settings(internal_token=SecretStr("t"), guard_restore_key=None))
    none = Settings(internal_token=None, guard_restore_key=None)
    assert restore_key(none) != restore_key(none)  # neither: random per process
