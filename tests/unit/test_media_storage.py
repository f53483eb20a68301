"""Local media storage: atomic writes under the root, keys that cannot escape it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from persistence.media_storage import (
    InvalidMediaKey,
    LocalMediaStorage,
    MediaNotFound,
    MediaStorage,
    product_image_key,
)


def test_put_get_exists_delete(tmp_path: Path) -> None:
    storage: MediaStorage = LocalMediaStorage(tmp_path)
    key = product_image_key(3, 41)

    storage.put(key, b"jpeg bytes", "image/jpeg")

    assert storage.exists(key)
    assert storage.get(key) == b"jpeg bytes"
    assert (tmp_path / key).read_bytes() == b"jpeg bytes"
    storage.delete(key)
    assert not storage.exists(key)
    storage.delete(key)  # deleting twice is fine
    with pytest.raises(MediaNotFound):
        storage.get(key)


def test_put_replaces_atomically_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    storage = LocalMediaStorage(tmp_path)
    key = "t1/p1/a.jpg"

    storage.put(key, b"first", "image/jpeg")
    storage.put(key, b"second", "image/jpeg")

    assert storage.get(key) == b"second"
    assert [path.name for path in (tmp_path / "t1" / "p1").iterdir()] == ["a.jpg"]


def test_product_image_keys_are_fresh_and_scoped() -> None:
    first = product_image_key(7, 12)

    assert re.fullmatch(r"t7/p12/[0-9a-f]{32}\.jpg", first)
    assert product_image_key(7, 12) != first
    with pytest.raises(ValueError, match="positive"):
        product_image_key(0, 12)


@pytest.mark.parametrize(
    "key",
    [
        "../outside.jpg",
        "t1/../../outside.jpg",
        "/etc/passwd",
        "t1/./a.jpg",
        ".hidden",
        "t1\\..\\a.jpg",
        "t1//a.jpg",
        "",
        "t1/a.jpg\0",
        "x" * 201,
    ],
)
def test_keys_that_could_escape_the_root_are_refused(tmp_path: Path, key: str) -> None:
    storage = LocalMediaStorage(tmp_path / "media")

    with pytest.raises(InvalidMediaKey):
        storage.put(key, b"x", "image/jpeg")
    with pytest.raises(InvalidMediaKey):
        storage.get(key)
    with pytest.raises(InvalidMediaKey):
        storage.exists(key)
    assert not (tmp_path / "outside.jpg").exists()


def test_a_symlink_out_of_the_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "media"
    root.mkdir()
    (tmp_path / "secret.txt").write_text("secret")
    (root / "link").symlink_to(tmp_path)

    with pytest.raises(InvalidMediaKey):
        LocalMediaStorage(root).get("link/secret.txt")
