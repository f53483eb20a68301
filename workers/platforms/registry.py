"""Build the adapters of a worker pool (filled in as each marketplace lands)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from workers.platforms.base import PlatformAdapter

if TYPE_CHECKING:
    from workers.context import WorkerApp


def build_adapters(app: WorkerApp) -> dict[str, PlatformAdapter]:
    """The adapters of the real marketplaces, sharing the worker's HTTP client."""
    return {}
