"""What every executor offers the runner: run one job, write its log, return an outcome.

The runner (GitLab jobs) and ``kuberunner exec`` (local pipelines) both call
:meth:`Executor.run` with the same :class:`~kuberunner.build.Build`; only the
trace's sink differs.

Who writes what in the log: the runner writes the header (``Running with
...``) and the last line (``Job succeeded`` or ``ERROR: Job failed: <message>``,
from the returned :class:`JobOutcome`); the executor writes everything in
between: its ``prepare_executor`` section, then one section per stage, named
and titled as gitlab-runner does (:func:`kuberunner.script.stage_title`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from kuberunner.build import Build
    from kuberunner.trace import JobTrace

__all__ = ["BuildError", "Cancellation", "Executor", "JobOutcome"]

FailureReason = Literal[
    "script_failure",
    "runner_system_failure",
    "job_execution_timeout",
    "runner_configuration_error",
    "runner_external_dependency_failure",
    "runner_interrupted",
    "image_pull_failure",
    "unknown_failure",
]


@dataclass(frozen=True)
class JobOutcome:
    """How a job ended. ``message`` is the one-line "why" shown after ``ERROR: Job failed:``."""

    state: Literal["success", "failed"]
    failure_reason: FailureReason | None = None
    exit_code: int | None = None
    message: str = ""

    @classmethod
    def success(cls) -> JobOutcome:
        return cls("success")

    @classmethod
    def failed(cls, reason: FailureReason, message: str, exit_code: int | None = None) -> JobOutcome:
        return cls("failed", reason, exit_code, message)

    @property
    def is_system_failure(self) -> bool:
        return self.failure_reason not in (None, "script_failure", "job_execution_timeout")


class BuildError(Exception):
    """A job failure an executor raises from deep inside; the runner turns it into a JobOutcome."""

    def __init__(
        self, message: str, reason: FailureReason = "runner_system_failure", exit_code: int | None = None
    ) -> None:
        super().__init__(message)
        self.reason: FailureReason = reason
        self.exit_code = exit_code

    def outcome(self) -> JobOutcome:
        return JobOutcome.failed(self.reason, str(self), self.exit_code)


@dataclass
class Cancellation:
    """Two ways to stop a job, set by the runner from GitLab's ``Job-Status`` or a signal.

    ``graceful``: stop the script, still run after_script and upload on_failure artifacts.
    ``force``: stop everything now (GitLab already considers the job canceled).
    ``reason`` says who asked, for the log line.
    """

    graceful: asyncio.Event = field(default_factory=asyncio.Event)
    force: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str = ""

    def cancel(self, reason: str = "job canceled") -> None:
        self.reason = self.reason or reason
        self.graceful.set()

    def abort(self, reason: str = "job canceled") -> None:
        self.reason = self.reason or reason
        self.graceful.set()
        self.force.set()

    @property
    def requested(self) -> bool:
        return self.graceful.is_set()


class Executor(Protocol):
    """Runs one job to the end. Never raises for a job failure: returns a failed JobOutcome."""

    name: str

    async def run(self, build: Build, trace: JobTrace, cancel: Cancellation) -> JobOutcome: ...
