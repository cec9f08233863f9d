"""Line output in gitlab-runner's helper style (``WARNING: ...`` prefixes).

The job log is the user's only view into the helper, so every step says what
it did. Output goes to an injected stream so tests read exactly what users see.
"""

from __future__ import annotations

import sys
from typing import TextIO

__all__ = ["Log"]


class Log:
    """Writes info lines plain and warnings/errors with gitlab-runner's prefixes."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self._out = out
        self._err = err

    @property
    def out(self) -> TextIO:
        # Resolved lazily so click's CliRunner (which swaps sys.stdout) sees the output.
        return self._out if self._out is not None else sys.stdout

    @property
    def err(self) -> TextIO:
        return self._err if self._err is not None else sys.stderr

    def info(self, message: str) -> None:
        self._write(self.out, message)

    def warning(self, message: str) -> None:
        self._write(self.out, f"WARNING: {message}")

    def error(self, message: str, *, level: str = "ERROR") -> None:
        self._write(self.err, f"{level}: {message}")

    @staticmethod
    def _write(stream: TextIO, line: str) -> None:
        stream.write(line + "\n")
        stream.flush()
