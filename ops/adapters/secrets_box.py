"""Encryption at rest for marketplace tokens: Fernet under a key ring (`MultiFernet`).

Tokens are sealed with the key derived (HKDF) from the current STOFLOW_SECRET_KEY and opened with any
key of the ring: the current secret, then each of STOFLOW_OLD_SECRET_KEYS. Each secret also brings its
pre-HKDF key (SHA-256 of a label and the secret), so tokens stored before key derivation stay readable
until `stoflow rotate-secret` re-seals them.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from ops.config.secret_keys import MARKETPLACE_TOKENS, derive_key
from ops.config.settings import Settings


class UnreadableSecret(ValueError):
    """Sealed data that no key of the ring opens."""


def _legacy_key(secret: str) -> bytes:
    return hashlib.sha256(b"stoflow-marketplace-tokens\0" + secret.encode()).digest()


class SecretsBox:
    def __init__(self, secrets: str | Sequence[str]) -> None:
        ring = [secrets] if isinstance(secrets, str) else list(secrets)
        if not ring:
            raise ValueError("the key ring needs at least one secret")
        keys = [derive_key(secret, MARKETPLACE_TOKENS) for secret in ring]
        keys += [_legacy_key(secret) for secret in ring]
        self._fernet = MultiFernet([Fernet(base64.urlsafe_b64encode(key)) for key in keys])

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretsBox:
        return cls(settings.secret_key_ring)

    def seal(self, values: dict[str, Any]) -> bytes:
        return self._fernet.encrypt(json.dumps(values, separators=(",", ":")).encode())

    def open(self, sealed: bytes) -> dict[str, Any]:
        try:
            opened: dict[str, Any] = json.loads(self._fernet.decrypt(sealed))
        except InvalidToken as error:
            raise UnreadableSecret(
                "stored tokens cannot be decrypted with STOFLOW_SECRET_KEY or STOFLOW_OLD_SECRET_KEYS"
            ) from error
        return opened

    def can_open(self, sealed: bytes) -> bool:
        try:
            self._fernet.decrypt(sealed)
        except InvalidToken:
            return False
        return True

    def reseal(self, sealed: bytes) -> bytes:
        """The same secret sealed under the current key (raises `UnreadableSecret` when no key opens it)."""
        try:
            return self._fernet.rotate(sealed)
        except InvalidToken as error:
            raise UnreadableSecret("no key of the ring opens these tokens") from error
