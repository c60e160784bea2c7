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

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agentmesh.settings import Settings

log = logging.getLogger(__name__)

_PREFIX = "v1."
_NONCE_BYTES = 12
_AAD_DOMAIN = b"agentmesh-guard-restore-v1|"
_KDF_LABEL = b"agentmesh-guard-restore-key-v1"


def restore_key(settings: Settings) -> bytes:
    """AGENTMESH_GUARD_RESTORE_KEY, else a key derived from the internal token (shared by every replica that
    shares the token), else a random one (tokens then open only in this process)."""
    if settings.guard_restore_key is not None:
        return hashlib.sha256(settings.guard_restore_key.get_secret_value().encode()).digest()
    if settings.internal_token is not None:
        return hmac.new(_KDF_LABEL, settings.internal_token.get_secret_value().encode(), hashlib.sha256).digest()
    log.warning("no AGENTMESH_GUARD_RESTORE_KEY or internal token: restore tokens open only in this process")
    return os.urandom(32)


class Sealer:
    """seal(tenant, placeholders) -> token; open(tenant, token) -> placeholders, or None when it does not open."""

    def __init__(self, key: bytes, *, ttl_s: float, clock: Callable[[], float] = time.time) -> None:
        self._aead = AESGCM(key)
        self._ttl_s = ttl_s
        self._clock = clock

    def seal(self, tenant: str, placeholders: Mapping[str, str]) -> str:
        body = json.dumps({"iat": int(self._clock()), "p": dict(placeholders)}, separators=(",", ":")).encode()
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, body, _AAD_DOMAIN + tenant.encode())
        return _PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def open(self, tenant: str, token: str) -> dict[str, str] | None:
        """The placeholders, or None for a token that is malformed, another tenant's, sealed under another key,
        or expired. Callers treat None as "nothing to restore": the reason is logged as metadata only."""
        if not token.startswith(_PREFIX):
            return self._refuse("malformed")
        try:
            raw = base64.urlsafe_b64decode(token[len(_PREFIX) :] + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            return self._refuse("malformed")
        if len(raw) <= _NONCE_BYTES:
            return self._refuse("malformed")
        try:
            body = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _AAD_DOMAIN + tenant.encode())
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
