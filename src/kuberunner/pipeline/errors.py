"""Errors raised while loading or resolving a pipeline, located like GitLab's linter.

Every problem names the file, line and column (1-based) where it was found, so a
user can jump straight to it: ``.gitlab-ci.yml:12:3: test-job: unknown key `scrpt```.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Location", "PipelineError", "Problem"]


@dataclass(frozen=True)
class Location:
    """A place in a pipeline file; ``line``/``column`` are 1-based, 0 when unknown."""

    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line <= 0:
            return self.file
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the configuration."""

    message: str
    location: Location | None = None

    def __str__(self) -> str:
        if self.location is None:
            return self.message
        return f"{self.location}: {self.message}"


class PipelineError(Exception):
    """The pipeline cannot be loaded, resolved or run as asked.

    ``problems`` holds every problem found (several are reported at once where the
    checks are independent); ``file``/``line``/``column``/``message`` describe the first.
    """

    def __init__(self, problems: Iterable[Problem] | str, location: Location | None = None) -> None:
        if isinstance(problems, str):
            problems = [Problem(problems, location)]
        self.problems: list[Problem] = list(problems)
        if not self.problems:
            self.problems = [Problem("invalid pipeline configuration", location)]
        first = self.problems[0]
        self.message = first.message
        self.file = first.location.file if first.location else ""
        self.line = first.location.line if first.location else 0
        self.column = first.location.column if first.location else 0
        super().__init__("\n".join(str(p) for p in self.problems))
