"""Turning a job's outcome into what GitLab accepts and what the log's last line says."""

from __future__ import annotations

from kuberunner.executors.base import JobOutcome

__all__ = ["final_line", "gitlab_failure_reason"]

# Reasons only sent when the job's features.failure_reasons lists them, and
# what they fall back to otherwise (the contract's table).
_FALLBACK = {
    "image_pull_failure": "runner_system_failure",
    "runner_external_dependency_failure": "runner_system_failure",
    "runner_configuration_error": "script_failure",
    "runner_interrupted": "unknown_failure",
}
_ALWAYS = frozenset({"script_failure", "runner_system_failure", "job_execution_timeout", "unknown_failure"})


def gitlab_failure_reason(reason: str | None, accepted: list[str]) -> str:
    """The reason to send: the executor's, or its documented fallback if this GitLab does not know it."""
    reason = reason or "script_failure"
    if reason in _ALWAYS:
        return reason
    if reason in accepted:
        return reason
    return _FALLBACK.get(reason, "script_failure")


def final_line(outcome: JobOutcome) -> tuple[str, bool]:
    """(text, is_error) of the log's last line, in gitlab-runner's words."""
    if outcome.state == "success":
        return "Job succeeded", False
    why = outcome.message or (
        f"exit code {outcome.exit_code}" if outcome.exit_code is not None else "unknown failure"
    )
    if outcome.is_system_failure:
        return f"Job failed (system failure): {why}", True
    return f"Job failed: {why}", True
