"""One GitLab job's life: confirm, run, stream the log, report — whatever happens.

The order is the contract's: ``PUT state=running`` first (two-phase commit;
403/404 or ``Job-Status: canceled|failed`` means the job is not ours any
more), then the executor runs while :class:`TraceSender` streams the log,
then the whole log is flushed, and only then the final ``PUT`` with the
state, the failure reason and the log's checksum and size.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kuberunner import REVISION, __version__
from kuberunner.executors.base import BuildError, Cancellation, Executor, JobOutcome
from kuberunner.gitlab import GitLabClient, GitLabError, GitLabForbidden, GitLabNotFound
from kuberunner.job import JobPayload
from kuberunner.runner.outcome import final_line, gitlab_failure_reason
from kuberunner.runner.trace_sender import TraceSender
from kuberunner.trace import JobTrace, header

if TYPE_CHECKING:
    from kuberunner.build import Build
    from kuberunner.config import RunnerConfig

__all__ = ["JobReport", "run_gitlab_job"]

log = logging.getLogger(__name__)

FINAL_UPDATE_ATTEMPTS = 10


@dataclass(frozen=True)
class JobReport:
    """What happened to a job, for metrics and the service's log."""

    job_id: int
    outcome: JobOutcome
    duration: float
    trace_bytes: int
    delivered: bool  # GitLab accepted the final state


async def run_gitlab_job(
    client: GitLabClient,
    payload: JobPayload,
    *,
    runner: RunnerConfig,
    executor: Executor,
    make_build: Callable[[JobPayload], Build],
    cancel: Cancellation | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> JobReport | None:
    """Run a job GitLab handed us. None when GitLab withdrew it before it started."""
    started = time.monotonic()
    job_id, token = payload.id, payload.token
    try:
        confirm = await client.update_job(job_id, token, state="running")
    except (GitLabForbidden, GitLabNotFound) as exc:
        log.info("job %d: dropped, GitLab no longer assigns it to us (%s)", job_id, exc.status)
        return None
    except GitLabError as exc:
        log.warning("job %d: dropped, could not confirm it is running: %s", job_id, exc)
        return None
    if confirm.job_status in ("canceled", "failed"):
        log.info("job %d: dropped, GitLab says it is %s", job_id, confirm.job_status)
        return None

    cancel = cancel or Cancellation()

    def on_status(status: str) -> None:
        if status == "canceling":
            cancel.cancel("the job was canceled in GitLab")
        elif status in ("canceled", "failed"):
            cancel.abort("the job was canceled in GitLab")

    sender = TraceSender(client, job_id, token, on_status=on_status, interval=confirm.update_interval or 3.0)
    masked = [*payload.masked_values, token, runner.token]
    trace = JobTrace(
        sender.append,
        masked,
        limit_bytes=runner.output_limit * 1024,
        sections=payload.features.trace_sections,
    )
    trace.write(header(runner.name or "kuberunner", __version__, REVISION, runner.short_token))
    sender.start()
    try:
        build = make_build(payload)
        outcome = await executor.run(build, trace, cancel)
    except BuildError as exc:
        outcome = exc.outcome()
    except Exception as exc:  # the job must still be reported
        log.exception("job %d: executor crashed", job_id)
        outcome = JobOutcome.failed(
            "runner_system_failure", f"kuberunner internal error: {type(exc).__name__}: {exc}"
        )
    if cancel.force.is_set() and outcome.state == "success":
        outcome = JobOutcome.failed("runner_interrupted", "the job was canceled")
    text, is_error = final_line(outcome)
    if is_error:
        trace.error(text)
    else:
        trace.notice(text)
    trace.finish()
    await sender.close()

    delivered = await _report(client, payload, outcome, trace, sleep=sleep, interval=sender.interval)
    return JobReport(job_id, outcome, time.monotonic() - started, trace.bytesize, delivered)


async def _report(
    client: GitLabClient,
    payload: JobPayload,
    outcome: JobOutcome,
    trace: JobTrace,
    *,
    sleep: Callable[[float], Awaitable[None]],
    interval: float,
) -> bool:
    """The final ``PUT``; 202 means "log not persisted yet": wait and send the same again."""
    reason = (
        gitlab_failure_reason(outcome.failure_reason, payload.features.failure_reasons)
        if outcome.state == "failed"
        else None
    )
    delay = max(interval, 0.5)
    for attempt in range(FINAL_UPDATE_ATTEMPTS):
        try:
            answer = await client.update_job(
                payload.id,
                payload.token,
                state=outcome.state,
                failure_reason=reason,
                exit_code=outcome.exit_code,
                checksum=trace.checksum,
                bytesize=trace.bytesize,
            )
        except (GitLabForbidden, GitLabNotFound) as exc:
            log.info(
                "job %d: GitLab refused the final state (%s): job canceled or removed", payload.id, exc.status
            )
            return False
        except GitLabError as exc:
            log.warning("job %d: final update failed (attempt %d): %s", payload.id, attempt + 1, exc)
            await sleep(min(60.0, delay))
            delay *= 2
            continue
        if answer.accepted:
            return True
        await sleep(min(60.0, answer.update_interval or delay))
        delay *= 2
    log.error(
        "job %d: GitLab did not accept the final state after %d attempts", payload.id, FINAL_UPDATE_ATTEMPTS
    )
    return False
