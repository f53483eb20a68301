"""Our product images as the adapters name them to marketplaces."""

from __future__ import annotations

from urllib.parse import urlsplit


def image_keys(urls: tuple[str, ...]) -> list[str]:
    """The stable part of our image URLs (their path): the signature and expiry change on every read.

    A listing's data keeps these for the images it shows, so an update re-sends only what changed.
    """
    return [urlsplit(url).path for url in urls]
