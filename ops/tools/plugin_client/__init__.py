"""The reference browser-plugin client: `stoflow plugin`, the e2e tests and the model for the extension.

`PluginClient(PluginClientConfig(...)).run(max_tasks=None, until_idle=False)` drains one login's Vinted
task queue; `rules` holds the pure parts, `memory` the on-disk record of tasks run.
"""

from ops.tools.plugin_client.client import (
    DEFAULT_STATE_DIR,
    DEFAULT_VINTED_URL,
    PluginClient,
    PluginClientConfig,
    RunSummary,
)
from ops.tools.plugin_client.rules import BackoffPolicy, GapRange, SendWindow, parse_gap

__all__ = [
    "DEFAULT_STATE_DIR",
    "DEFAULT_VINTED_URL",
    "BackoffPolicy",
    "GapRange",
    "PluginClient",
    "PluginClientConfig",
    "RunSummary",
    "SendWindow",
    "parse_gap",
]
