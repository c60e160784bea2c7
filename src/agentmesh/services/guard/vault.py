"""Restore tokens: the placeholder -> value map of a conversation, sealed (AES-GCM) so that the caller can keep it
next to its redacted text without holding the values in clear. Only a guard with the key opens it, only for
the tenant it was sealed for (the tenant is the associated data), and only until it expires.

The guard stays stateless: nothing of the values is stored on its side, and a supervisor may checkpoint the
token (ciphertext) where it must never checkpoint the values themselves."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agentmesh.settings import Settings

log = logging.getLogger(__name__)

_PREFIX = "v2."
_LEGACY_PREFIX = "v1."
_NONCE_BYTES = 12
_AAD_DOMAIN = b"agentmesh-guard-restore-v1|"
_KDF_LABEL = b"agentmesh-guard-restore-key-v1"
_KID_LABEL = b"agentmesh-guard-restore-kid-v1"
_MIN_KEY_CHARS = 32
# Values that appear in this repository or its docs as examples: a key anybody can read seals nothing.
KNOWN_DEFAULTS = frozenset({"dev-internal-token-change-me", "change-me", "changeme", "dev-restore-key-change-me"})


class RestoreKeyError(ValueError):
    """The restore key is missing, a known default or too short outside a dev mesh: the guard refuses to start."""


@dataclass(frozen=True)
class RestoreKeys:
    """The key that seals new tokens, and older keys that still open tokens sealed before a rotation."""

    current: bytes
    previous: tuple[bytes, ...] = ()


def key_id(key: bytes) -> str:
    """A short public name of a key, carried in every token it seals, so the right key opens it after a rotation.
    An HMAC of the key, so it tells nothing about the key itself."""
    return hmac.new(key, _KID_LABEL, hashlib.sha256).hexdigest()[:8]


def _derive(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def _checked(secret: str, name: str) -> bytes:
    if secret in KNOWN_DEFAULTS or len(secret) < _MIN_KEY_CHARS:
        raise RestoreKeyError(
            f"{name}: a known default or shorter than {_MIN_KEY_CHARS} characters; "
            "make one with `openssl rand -base64 32`"
        )
    return _derive(secret)


def restore_keys(settings: Settings) -> RestoreKeys:
    """AGENTMESH_GUARD_RESTORE_KEY (and AGENTMESH_GUARD_RESTORE_KEYS_PREVIOUS, comma-separated, to open tokens of
    keys rotated out). Missing, a known default or short: RestoreKeyError, unless AGENTMESH_DEV (set by
    `agentmesh up`) allows a key derived from the internal token (shared by the replicas of that one mesh), else a
    random one (tokens then open only in this process)."""
    previous = tuple(
        _checked(k.strip(), "AGENTMESH_GUARD_RESTORE_KEYS_PREVIOUS")
        for k in (
            settings.guard_restore_keys_previous.get_secret_value() if settings.guard_restore_keys_previous else ""
        ).split(",")
        if k.strip()
    )
    if settings.guard_restore_key is not None:
        secret = settings.guard_restore_key.get_secret_value()
        if not settings.dev:
            return RestoreKeys(_checked(secret, "AGENTMESH_GUARD_RESTORE_KEY"), previous)
        return RestoreKeys(_derive(secret), previous)
    if not settings.dev:
        raise RestoreKeyError(
            "AGENTMESH_GUARD_RESTORE_KEY is not set: the guard needs a key of its own to seal restore tokens "
            "(`openssl rand -base64 32`); only a dev mesh (`agentmesh up`, AGENTMESH_DEV=1) may go without"
        )
    if settings.internal_token is not None:
        token = settings.internal_token.get_secret_value().encode()
        return RestoreKeys(hmac.new(_KDF_LABEL, token, hashlib.sha256).digest(), previous)
    log.warning("no AGENTMESH_GUARD_RESTORE_KEY or internal token: restore tokens open only in this process")
    return RestoreKeys(os.urandom(32), previous)


class Sealer:
    """seal(tenant, placeholders) -> token; open(tenant, token) -> placeholders, or None when it does not open.

    A token is `v2.<key id>.<base64(nonce + ciphertext)>`: the key id picks the key that opens it, so the sealing
    key can rotate while tokens of the previous keys still open (until they expire)."""

    def __init__(self, key: bytes | RestoreKeys, *, ttl_s: float, clock: Callable[[], float] = time.time) -> None:
        keys = key if isinstance(key, RestoreKeys) else RestoreKeys(key)
        self._kid = key_id(keys.current)
        self._aead = AESGCM(keys.current)
        self._by_kid = {key_id(k): AESGCM(k) for k in (*keys.previous, keys.current)}
        self._ttl_s = ttl_s
        self._clock = clock

    def seal(self, tenant: str, placeholders: Mapping[str, str]) -> str:
        body = json.dumps({"iat": int(self._clock()), "p": dict(placeholders)}, separators=(",", ":")).encode()
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, body, _AAD_DOMAIN + tenant.encode())
        return f"{_PREFIX}{self._kid}." + base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def open(self, tenant: str, token: str) -> dict[str, str] | None:
        """The placeholders, or None for a token that is malformed, another tenant's, sealed under another key,
        or expired. Callers treat None as "nothing to restore": the reason is logged as metadata only."""
        if token.startswith(_LEGACY_PREFIX):  # issued before key ids: only the current key may open it
            kid, payload = self._kid, token[len(_LEGACY_PREFIX) :]
        elif token.startswith(_PREFIX):
            kid, _, payload = token[len(_PREFIX) :].partition(".")
        else:
            return self._refuse("malformed")
        aead = self._by_kid.get(kid)
        if aead is None:
            return self._refuse("unknown key id")  # sealed under a key this guard no longer (or never) had
        try:
            raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        except (binascii.Error, ValueError):
            return self._refuse("malformed")
        if len(raw) <= _NONCE_BYTES:
            return self._refuse("malformed")
        try:
            body = aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _AAD_DOMAIN + tenant.encode())
        except InvalidTag:
            return self._refuse("does not open")  # another tenant's, another key, or tampered with
        data = json.loads(body)
        if self._clock() - data["iat"] > self._ttl_s:
            return self._refuse("expired")
        return {str(k): str(v) for k, v in data["p"].items()}

    @staticmethod
    def _refuse(reason: str) -> None:
        log.info("restore token ignored", extra={"reason": reason})
        return None
