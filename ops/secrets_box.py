"""Encryption at rest for marketplace tokens (Fernet, key derived from STOFLOW_SECRET_KEY)."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken


class SecretsBox:
    def __init__(self, secret_key: str) -> None:
        digest = hashlib.sha256(b"stoflow-marketplace-tokens\0" + secret_key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def seal(self, values: dict[str, Any]) -> bytes:
        return self._fernet.encrypt(json.dumps(values, separators=(",", ":")).encode())

    def open(self, sealed: bytes) -> dict[str, Any]:
        try:
            opened: dict[str, Any] = json.loads(self._fernet.decrypt(sealed))
        except InvalidToken as error:
            raise ValueError(
                "stored tokens cannot be decrypted with the current STOFLOW_SECRET_KEY"
            ) from error
        return opened
