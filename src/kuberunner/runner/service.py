"""``kuberunner run``: ask GitLab for jobs for every runner in config.toml and run them.

Capacity: ``concurrent`` jobs over all runners, ``limit`` per runner,
``request_concurrency`` requests in flight per runner. A build slot is taken
before asking, as gitlab-runner does, so a job GitLab hands over always has
room. Answers are handled as the contract says: 201 run it; 204/409 wait
``check_interval``; 429/503 back off for ``Retry-After``; 403 three times in a
row pauses that runner for ``unhealthy_interval``. config.toml is re-read when
it changes. Shutdown lets running jobs finish within ``shutdown_timeout``,
then cancels them, and always reports every job's final state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kuberunner.executors.base import Cancellation, Executor
from kuberunner.gitlab import GitLabClient, GitLabError, GitLabForbidden, runner_info
from kuberunner.job import JobPayload
from kuberunner.runner.job import JobReport, run_gitlab_job
from kuberunner.runner.metrics import Metrics
from kuberunner.util.logs import SECRETS

if TYPE_CHECKING:
    from kuberunner.build import Build
    from kuberunner.config import Config, RunnerConfig

__all__ = ["RunnerSlots", "Service", "ServiceHooks"]

log = logging.getLogger(__name__)

CONFIG_RELOAD_INTERVAL = 3.0
LONG_POLL_TIMEOUT = 90.0
CANCEL_GRACE = 30.0
ORPHAN_SWEEP_INTERVAL = 600.0


@dataclass
class ServiceHooks:
    """How the service makes executors and builds: the seam between runner and executors."""

    load_config: Callable[[Path], Config]
    make_executor: Callable[[RunnerConfig], Executor]
    make_build: Callable[[RunnerConfig, JobPayload, int], Build]
    make_client: Callable[[RunnerConfig, Metrics], GitLabClient] | None = None
    # removes pods/secrets a crashed run of this machine left behind; returns what it removed
    sweep: Callable[[RunnerConfig], Awaitable[list[str]]] | None = None


class RunnerSlots:
    """Build slots: ``concurrent`` overall and ``limit`` per runner (0 = no limit)."""

    def __init__(self, concurrent: int) -> None:
        self.concurrent = concurrent
        self._used = 0
        self._per_runner: dict[str, int] = {}
        self._changed = asyncio.Condition()
        self._ids: dict[str, set[int]] = {}

    def _free(self, key: str, limit: int) -> bool:
        if self._used >= self.concurrent:
            return False
        return not (limit and self._per_runner.get(key, 0) >= limit)

    async def acquire(self, key: str, limit: int) -> int:
        """Wait for a slot; returns the runner-local concurrent id (CI_CONCURRENT_ID)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._free(key, limit))
            self._used += 1
            self._per_runner[key] = self._per_runner.get(key, 0) + 1
            taken = self._ids.setdefault(key, set())
            concurrent_id = next(i for i in range(len(taken) + 1) if i not in taken)
            taken.add(concurrent_id)
            return concurrent_id

    async def release(self, key: str, concurrent_id: int) -> None:
        async with self._changed:
            self._used -= 1
            self._per_runner[key] -= 1
            self._ids.get(key, set()).discard(concurrent_id)
            self._changed.notify_all()

    async def resize(self, concurrent: int) -> None:
        async with self._changed:
            self.concurrent = concurrent
            self._changed.notify_all()

    @property
    def used(self) -> int:
        return self._used


@dataclass
class _Worker:
    runner: RunnerConfig
    client: GitLabClient
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    last_update: str | None = None
    forbidden_in_row: int = 0
    paused_until: float = 0.0

    @property
    def key(self) -> str:
        return self.runner.token

    @property
    def label(self) -> str:
        return self.runner.name or self.runner.short_token


class Service:
    """The long-running service behind ``kuberunner run`` and ``run-single``."""

    def __init__(
        self,
        config_path: Path | None,
        hooks: ServiceHooks,
        *,
        system_id: str,
        metrics: Metrics | None = None,
        config: Config | None = None,
        max_builds: int = 0,
        wait_timeout: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._path = config_path
        self._hooks = hooks
        self.system_id = system_id
        self.metrics = metrics or Metrics()
        self._static_config = config
        self.config: Config | None = None
        self._mtime: float | None = None
        self._workers: dict[str, _Worker] = {}
        self._jobs: dict[int, tuple[asyncio.Task[None], Cancellation]] = {}
        self.reports: list[JobReport] = []
        self.slots = RunnerSlots(1)
        self._stopping = asyncio.Event()
        self._stopped_polling = asyncio.Event()
        self._force = asyncio.Event()
        self._max_builds = max_builds
        self._builds_started = 0
        self._wait_timeout = wait_timeout
        self._clock = clock
        self._started_at = clock()

    # ------------------------------------------------------------------ control

    def stop(self, *, force: bool = False) -> None:
        """Graceful: stop asking for jobs, let running ones finish. Force: cancel them now."""
        self._stopping.set()
        if force:
            self._force.set()
            for _, cancel in self._jobs.values():
                cancel.abort("kuberunner was stopped")

    def health(self) -> dict[str, Any]:
        now = self._clock()
        runners = {
            w.label: {"healthy": w.paused_until <= now, "forbidden_in_row": w.forbidden_in_row}
            for w in self._workers.values()
        }
        return {
            "healthy": not self._stopping.is_set() and all(r["healthy"] for r in runners.values()),
            "runners": runners,
            "jobs_running": len(self._jobs),
        }

    # ------------------------------------------------------------------ main

    async def run(self) -> None:
        """Run until stopped (or, for run-single, until max builds / wait timeout)."""
        self._reload(initial=True)
        background = [asyncio.create_task(self._watch_config(), name="config-reload")]
        if self._hooks.sweep is not None:
            background.append(asyncio.create_task(self._sweep_orphans(), name="orphan-sweep"))
        try:
            await self._stopping.wait()
        finally:
            for task in background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._shutdown()

    async def _shutdown(self) -> None:
        for worker in self._workers.values():
            for task in worker.tasks:
                task.cancel()
        for worker in self._workers.values():
            for task in worker.tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._stopped_polling.set()
        timeout = float(self.config.shutdown_timeout if self.config else 30)
        if self._jobs and not self._force.is_set():
            log.info("waiting up to %ss for %d running job(s) to finish", timeout, len(self._jobs))
            await self._wait_jobs(timeout)
        if self._jobs and not self._force.is_set():
            log.warning("canceling %d job(s) still running after shutdown_timeout", len(self._jobs))
            for _, cancel in list(self._jobs.values()):
                cancel.cancel("kuberunner is shutting down")
            await self._wait_jobs(CANCEL_GRACE)
        if self._jobs:
            for _, cancel in list(self._jobs.values()):
                cancel.abort("kuberunner is shutting down")
            # their final reports still go out: wait for them without a limit
            await self._wait_jobs(None, interruptible=False)
        for worker in self._workers.values():
            await worker.client.aclose()

    async def _wait_jobs(self, timeout: float | None, *, interruptible: bool = True) -> None:
        """Wait for the running jobs to end, for ``timeout``, or (if interruptible) a forced stop."""
        tasks = [t for t, _ in self._jobs.values()]
        if not tasks:
            return
        # a task around asyncio.wait: cancelling it leaves the jobs running
        all_done: asyncio.Future[Any] = asyncio.ensure_future(asyncio.wait(tasks))
        waiters: set[asyncio.Future[Any]] = {all_done}
        forced: asyncio.Future[Any] | None = None
        if interruptible:
            forced = asyncio.ensure_future(self._force.wait())
            waiters.add(forced)
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                if not waiter.done():
                    waiter.cancel()

    # ------------------------------------------------------------------ config

    def _reload(self, *, initial: bool = False) -> None:
        if self._static_config is not None:
            config = self._static_config
            if not initial:
                return
        else:
            assert self._path is not None
            try:
                mtime = self._path.stat().st_mtime
            except OSError as exc:
                if initial:
                    raise
                log.error("cannot read %s: %s; keeping the previous configuration", self._path, exc)
                return
            if not initial and mtime == self._mtime:
                return
            try:
                config = self._hooks.load_config(self._path)
            except Exception as exc:
                if initial:
                    raise
                log.error(
                    "%s changed but is not valid, keeping the previous configuration: %s", self._path, exc
                )
                self._mtime = mtime
                return
            self._mtime = mtime
            if not initial:
                log.info("configuration reloaded from %s", self._path)
        self.config = config
        self.slots.concurrent = config.concurrent
        asyncio.get_running_loop().create_task(self.slots.resize(config.concurrent))
        wanted = {r.token: r for r in config.runners if r.token}
        for token, worker in list(self._workers.items()):
            if token not in wanted:
                log.info("runner %s removed from the configuration: no new jobs for it", worker.label)
                for task in worker.tasks:
                    task.cancel()
                del self._workers[token]
        for token, runner in wanted.items():
            SECRETS.add(token)
            if token in self._workers:
                self._workers[token].runner = runner
                continue
            client = (
                self._hooks.make_client(runner, self.metrics)
                if self._hooks.make_client
                else GitLabClient(
                    runner.url,
                    tls_ca_file=runner.tls_ca_file or None,
                    tls_cert_file=runner.tls_cert_file or None,
                    tls_key_file=runner.tls_key_file or None,
                    timeout=LONG_POLL_TIMEOUT,
                    on_response=self.metrics.api_response,
                )
            )
            worker = _Worker(runner, client)
            self._workers[token] = worker
            for n in range(runner.request_concurrency):
                worker.tasks.append(asyncio.create_task(self._poll(worker), name=f"poll-{worker.label}-{n}"))

    async def _sweep_orphans(self) -> None:
        """At start and then periodically: remove what a crashed run of this machine left."""
        assert self._hooks.sweep is not None
        while True:
            for worker in list(self._workers.values()):
                try:
                    removed = await self._hooks.sweep(worker.runner)
                except Exception as exc:  # never fatal: the next sweep tries again
                    log.warning("runner %s: removing orphaned pods failed: %s", worker.label, exc)
                    continue
                if removed:
                    log.info("runner %s: removed orphaned pods %s", worker.label, ", ".join(removed))
            await asyncio.sleep(ORPHAN_SWEEP_INTERVAL)

    async def _watch_config(self) -> None:
        while True:
            await asyncio.sleep(CONFIG_RELOAD_INTERVAL)
            self._reload()

    # ------------------------------------------------------------------ polling

    async def _poll(self, worker: _Worker) -> None:
        while not self._stopping.is_set():
            now = self._clock()
            if worker.paused_until > now:
                await self._pause(worker.paused_until - now)
                continue
            if self._max_builds and self._builds_started >= self._max_builds:
                return
            concurrent_id = await self.slots.acquire(worker.key, worker.runner.limit)
            handed_over = False
            try:
                wait = await self._ask(worker, concurrent_id)
                handed_over = wait is None
            finally:
                if not handed_over:
                    await self.slots.release(worker.key, concurrent_id)
            if wait:
                await self._pause(wait)
            self._check_wait_timeout()

    async def _ask(self, worker: _Worker, concurrent_id: int) -> float | None:
        """One request; None when a job was started (it keeps the slot), else seconds to wait."""
        check_interval = float(self.config.check_interval or 3) if self.config else 3.0
        runner = worker.runner
        try:
            answer = await worker.client.request_job(
                runner.token,
                system_id=self.system_id,
                info=runner_info(executor=runner.executor or "kubernetes", shell=runner.shell or "bash"),
                last_update=worker.last_update,
                timeout=LONG_POLL_TIMEOUT,
            )
        except GitLabForbidden:
            worker.forbidden_in_row += 1
            log.error(
                "runner %s: GitLab refused the runner token (403 Forbidden, %d in a row); "
                "check the token in config.toml or run `kuberunner verify`",
                worker.label,
                worker.forbidden_in_row,
            )
            if worker.forbidden_in_row >= runner.unhealthy_requests_limit:
                worker.paused_until = self._clock() + runner.unhealthy_interval
                log.error("runner %s: unhealthy, pausing for %ss", worker.label, runner.unhealthy_interval)
            return check_interval
        except GitLabError as exc:
            log.warning("runner %s: asking for a job failed: %s", worker.label, exc)
            return check_interval
        worker.forbidden_in_row = 0
        worker.last_update = answer.last_update
        if answer.job is None:
            if answer.status in (429, 503) or answer.status >= 500:
                return answer.retry_after or check_interval
            return check_interval
        self._start_job(worker, answer.job, concurrent_id)
        return None

    def _start_job(self, worker: _Worker, payload: JobPayload, concurrent_id: int) -> None:
        self._builds_started += 1
        SECRETS.add(payload.token, *payload.masked_values)
        cancel = Cancellation()
        if self._force.is_set():
            cancel.abort("kuberunner was stopped")
        runner = worker.runner
        label = worker.label
        log.info("runner %s: job %d received (%s)", label, payload.id, payload.job_info.name)
        self.metrics.jobs_running.labels(runner=label).inc()

        async def life() -> None:
            try:
                executor = self._hooks.make_executor(runner)
                report = await run_gitlab_job(
                    worker.client,
                    payload,
                    runner=runner,
                    executor=executor,
                    make_build=lambda p: self._hooks.make_build(runner, p, concurrent_id),
                    cancel=cancel,
                )
                if report is not None:
                    self.reports.append(report)
                    o = report.outcome
                    self.metrics.jobs_total.labels(
                        runner=label, state=o.state, failure_reason=o.failure_reason or ""
                    ).inc()
                    self.metrics.job_duration.labels(runner=label).observe(report.duration)
                    self.metrics.trace_bytes.labels(runner=label).inc(report.trace_bytes)
                    log.info(
                        "runner %s: job %d finished: %s%s",
                        label,
                        payload.id,
                        o.state,
                        f" ({o.failure_reason}: {o.message})" if o.state == "failed" else "",
                    )
            finally:
                self.metrics.jobs_running.labels(runner=label).dec()
                self._jobs.pop(payload.id, None)
                SECRETS.discard(payload.token, *payload.masked_values)
                await self.slots.release(worker.key, concurrent_id)
                if self._max_builds and self._builds_started >= self._max_builds and not self._jobs:
                    self._stopping.set()

        task = asyncio.create_task(life(), name=f"job-{payload.id}")
        self._jobs[payload.id] = (task, cancel)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=max(0.0, seconds))

    def _check_wait_timeout(self) -> None:
        if (
            self._wait_timeout
            and not self._jobs
            and self._builds_started == 0
            and self._clock() - self._started_at >= self._wait_timeout
        ):
            log.info("no job arrived within %ss: stopping", self._wait_timeout)
            self._stopping.set()
