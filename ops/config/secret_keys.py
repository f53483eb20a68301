"""Keys derived per purpose from STOFLOW_SECRET_KEY (HKDF-SHA256), and the key ring for rotation.

One secret never serves two purposes: marketplace tokens, media URL signatures and list cursors each get a
key of their own (`derive_key`). `STOFLOW_OLD_SECRET_KEYS` keeps earlier secrets readable while
`stoflow rotate-secret` re-encrypts what they sealed under the current one.
"""

from __future__ import annotations

import functools
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MARKETPLACE_TOKENS: Final = "marketplace-tokens"
MEDIA_URLS: Final = "media-urls"
CURSORS: Final = "cursors"

_SALT: Final = b"stoflow-key-derivation-v1"


# A pure function of a few (secret, purpose) pairs, asked for every signed media URL (each picture of
# each job a worker runs, each /media request): derived once per process.
@functools.lru_cache(maxsize=32)
def derive_key(secret: str, purpose: str) -> bytes:
    """The 32-byte key of one purpose, derived from a deployment secret."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=purpose.encode()).derive(
        secret.encode()
    )
