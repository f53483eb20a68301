"""Where image files live: a small storage protocol and its local-disk implementation.

`MediaStorage` is deliberately the handful of operations an object store offers (put, get, delete,
exists on an opaque key), so an S3-compatible backend (S3, MinIO, R2...) can implement the same protocol
later without touching the callers. The methods are blocking: callers on the event loop run them through
`asyncio.to_thread`.

MediaStorageError
├── InvalidMediaKey       a key that is not ours (path traversal, odd characters)
└── MediaNotFound         nothing stored under that key
"""

from __future__ import annotations

import os
import re
import tempfile
import uuid
from pathlib import Path
from typing import Final, Protocol

MAX_KEY_LENGTH: Final = 200  # product_images.storage_key is a VARCHAR(200)
# Segments start with a letter, digit or underscore: never ".", "..", or a hidden temp file's name.
_KEY_PATTERN: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*")
_TEMP_PREFIX: Final = ".upload-"


class MediaStorageError(Exception):
    """Root of the storage errors."""


class InvalidMediaKey(MediaStorageError, ValueError):
    """The key could escape the storage root or is not a key we issue."""


class MediaNotFound(MediaStorageError, LookupError):
    """Nothing is stored under the key."""


class MediaStorage(Protocol):
    """Opaque keys to bytes. Blocking; an S3-compatible backend can implement the same four methods."""

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store `data` under `key` atomically: readers see the whole file or nothing."""
        ...

    def get(self, key: str) -> bytes:
        """Return the bytes stored under `key`; raise `MediaNotFound` when there are none."""
        ...

    def delete(self, key: str) -> None:
        """Remove `key`; removing a missing key is not an error."""
        ...

    def exists(self, key: str) -> bool:
        """Tell whether something is stored under `key`."""
        ...


def product_image_key(tenant_id: int, product_id: int) -> str:
    """Return a fresh key for one product image: `t{tenant_id}/p{product_id}/{uuid}.jpg`."""
    if type(tenant_id) is not int or type(product_id) is not int or tenant_id <= 0 or product_id <= 0:
        raise ValueError("tenant and product ids must be positive integers")
    # A random name, never the upload's: names are user input, and a fresh key per upload means a file
    # is never overwritten while a marketplace may still be fetching it.
    return f"t{tenant_id}/p{product_id}/{uuid.uuid4().hex}.jpg"


def check_key(key: str) -> str:
    """Return `key` when it is a well-formed relative key; raise `InvalidMediaKey` otherwise."""
    if len(key) > MAX_KEY_LENGTH or not _KEY_PATTERN.fullmatch(key):
        raise InvalidMediaKey("not a media key")
    return key


class LocalMediaStorage:
    """Files under one root directory; the key is the relative path.

    Writes go to a temporary file in the target directory, are flushed to disk, then renamed over the
    final name (`os.replace` is atomic on POSIX), so a crash never leaves a half-written image under a key.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()

    def put(self, key: str, data: bytes, content_type: str) -> None:
        # The content type is implied by the key's extension here; an object store would record it.
        del content_type
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temp_name = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=path.parent)
        try:
            with os.fdopen(descriptor, "wb") as temp_file:
                temp_file.write(data)
                temp_file.flush()
                os.fsync(temp_file.fileno())
            os.replace(temp_name, path)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise MediaNotFound(key) from None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def _path(self, key: str) -> Path:
        """Map a key to its file, refusing anything that would land outside the root."""
        path = (self.root / check_key(key)).resolve()
        # The pattern already forbids "..", absolute paths and backslashes; this also catches a symlink
        # planted inside the root that points out of it.
        if not path.is_relative_to(self.root) or path == self.root:
            raise InvalidMediaKey("not a media key")
        return path
