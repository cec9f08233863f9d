"""The helper's one exception tree.

::

    HelperError                 a step failed; the CLI prints the message and exits 1
    ├── ArchiveError            a path or archive cannot be archived/extracted safely
    └── TransferError           an HTTP transfer failed (after retries, or for good)
        └── NotFoundError       the remote object does not exist (404)

Every message is one line, names the object and, where there is one, the fix.
Messages never carry a token or a presigned URL's query string.
"""

from __future__ import annotations

__all__ = ["ArchiveError", "HelperError", "NotFoundError", "TransferError"]


class HelperError(Exception):
    """A failure to report as ``<level>: <message>`` with a non-zero exit."""

    level = "ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ArchiveError(HelperError):
    """Collecting, archiving or extracting files failed (including unsafe paths)."""


class TransferError(HelperError):
    """An upload or download failed; ``status`` is the last HTTP status, if any."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NotFoundError(TransferError):
    """The server answered 404: the artifacts or the cache entry do not exist."""
