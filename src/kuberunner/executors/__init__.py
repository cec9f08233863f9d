"""Executors: what runs a job's stage scripts somewhere and reports how it ended.

:mod:`~kuberunner.executors.base` has the protocol every executor follows;
:class:`~kuberunner.executors.shell.ShellExecutor` runs jobs as local
processes, :mod:`~kuberunner.executors.kubernetes` as pods.
"""

from __future__ import annotations

from kuberunner.executors.base import BuildError, Cancellation, Executor, JobOutcome
from kuberunner.executors.shell import ShellExecutor

__all__ = ["BuildError", "Cancellation", "Executor", "JobOutcome", "ShellExecutor"]
