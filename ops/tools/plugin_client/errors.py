"""The plugin client's exceptions, one root:

PluginClientError
├── InvalidGap            a --write-gap/--read-gap that is not MIN-MAX seconds
├── LoginFailed           Stoflow refused the email/password (or the refresh chain is spent)
├── StateLocked           another plugin client already uses this state file
├── CorruptState          the state file cannot be read back (never silently forgotten)
├── UnresolvedReference   a `$ref` names a response or field the task did not get
└── ImageUnavailable      the image of an `$upload` could not be downloaded
"""

from __future__ import annotations


class PluginClientError(Exception):
    """Root of the plugin client's errors."""


class InvalidGap(PluginClientError, ValueError):
    """A gap option that is not `MIN-MAX` seconds with 0 <= MIN <= MAX."""


class LoginFailed(PluginClientError):
    """Stoflow refused the credentials."""


class StateLocked(PluginClientError):
    """Two clients must not share one memory of tasks run."""


class CorruptState(PluginClientError):
    """The state file exists but is not what this client wrote."""


class UnresolvedReference(PluginClientError):
    """A `{"$ref": ...}` placeholder that the earlier responses cannot fill."""

    def __init__(self, reference: str, reason: str) -> None:
        super().__init__(f"cannot resolve {reference!r}: {reason}")
        self.reference = reference


class ImageUnavailable(PluginClientError):
    """The image to upload could not be fetched."""
