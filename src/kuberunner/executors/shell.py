"""The shell executor: every stage script runs as a local process on the runner's machine.

Each stage's script (:mod:`kuberunner.script`) is written to a private
directory and run as ``<shell> <script>`` in a new session, stdin closed,
stdout and stderr merged and streamed into the job's log as they arrive. When
the script's shell exits, whatever it left running in its process group is
killed: a background process never keeps a job alive. (A process that puts
itself in a new session with ``setsid`` escapes that; only the log pipe is
closed on it.)

Order and rules follow gitlab-runner (``common/build.go``):

- ``prepare_script``, then ``get_sources``, ``restore_cache``,
  ``download_artifacts`` (retried ``GET_SOURCES_ATTEMPTS``,
  ``RESTORE_CACHE_ATTEMPTS``, ``ARTIFACT_DOWNLOAD_ATTEMPTS`` times), then each
  step (``step_script``, ``step_release``...), stopping at the first failure;
- ``after_script`` runs when the steps started, also after a failure or a
  graceful cancel, with ``CI_JOB_STATUS`` = ``success``/``failed``/``canceled``,
  under ``RUNNER_AFTER_SCRIPT_TIMEOUT`` (default 5m); its failure is only a
  warning unless ``AFTER_SCRIPT_IGNORE_ERRORS`` is false;
- then the cache and the artifacts for a successful or a failed job; a failed
  upload fails a job that had succeeded;
- ``cleanup_file_variables`` always runs, even after a timeout or a forced
  cancel: it only removes the files holding secrets.

Every failure of a stage script is a ``script_failure`` carrying the exit code,
as gitlab-runner reports it (also for get_sources and artifact downloads: the
job's repository or dependencies are the cause far more often than the
machine). Time and cancel:

- the job timeout (``runner_info.timeout``) kills the running stage's process
  group; after_script and the uploads are skipped, as gitlab-runner does, and
  the outcome is ``job_execution_timeout``. ``RUNNER_SCRIPT_TIMEOUT`` limits the
  steps only, so after_script and the uploads still run;
- :attr:`Cancellation.graceful` sends SIGTERM to the script's process group
  (SIGKILL after ``kill_grace`` seconds), runs after_script with
  ``CI_JOB_STATUS=canceled`` and the on-failure uploads, and ends with
  ``runner_interrupted`` (what the runner sends GitLab for a canceled job);
- :attr:`Cancellation.force` kills at once and runs nothing but the cleanup.

The final ``Job succeeded`` / ``ERROR: Job failed: ...`` line is the runner's to write.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from kuberunner.build import Build, BuildConfigError, go_duration
from kuberunner.executors.base import Cancellation, JobOutcome
from kuberunner.script import Stage, generate, has_work, stage_title, step_stages
from kuberunner.trace import JobTrace

__all__ = ["ShellExecutor", "resolve_shell"]

_UNSUPPORTED_SHELLS = frozenset({"pwsh", "powershell", "cmd"})
_CHUNK = 64 * 1024
_CLEANUP_TIMEOUT = 60.0

Stop = Literal["timeout", "canceled", "aborted"]


def resolve_shell(name: str) -> list[str]:
    """The command that runs a stage script for config.toml's ``shell`` ("" = bash, else sh).

    Raises :class:`ValueError` with the fix when the shell cannot run our scripts.
    """
    if not name:
        return ["bash"] if shutil.which("bash") else ["sh"]
    if name in _UNSUPPORTED_SHELLS:
        raise ValueError(
            f'shell "{name}" is not supported by kuberunner: '
            'set shell = "bash" or shell = "sh" in [[runners]]'
        )
    argv = ["busybox", "sh"] if name == "busybox" else [name]
    if shutil.which(argv[0]) is None:
        raise ValueError(
            f'shell "{name}" was not found on this machine (PATH): '
            'install it, or set shell = "sh" in [[runners]]'
        )
    return argv


@dataclass(frozen=True)
class _Result:
    """How one stage ended: its exit code, and whether we stopped it (and why)."""

    exit_code: int
    stop: Stop | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.stop is None


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class ShellExecutor:
    """Runs jobs as local processes. One instance may run several jobs at once.

    ``shell`` overrides config.toml's ``shell``; ``env`` is the environment the
    scripts start from (default: the runner's own, as gitlab-runner does);
    ``kill_grace`` is how long a stopped script gets between SIGTERM and SIGKILL;
    ``drain_timeout`` how long output is still read after the script's group
    was killed (only a process that escaped the group can hold the pipe open).
    """

    name = "shell"

    def __init__(
        self,
        *,
        shell: str | None = None,
        env: Mapping[str, str] | None = None,
        kill_grace: float = 10.0,
        drain_timeout: float = 5.0,
    ) -> None:
        self.shell = shell
        self.env = dict(env) if env is not None else None
        self.kill_grace = kill_grace
        self.drain_timeout = drain_timeout

    async def run(self, build: Build, trace: JobTrace, cancel: Cancellation) -> JobOutcome:
        for secret in build.masked_values():  # also the expanded forms and dependency tokens
            trace.add_masked(secret)
        shell_name = self.shell if self.shell is not None else build.runner.shell
        with trace.section("prepare_executor", 'Preparing the "shell" executor'):
            try:
                argv = resolve_shell(shell_name)
            except ValueError as exc:
                return JobOutcome.failed("runner_configuration_error", str(exc))
            trace.info(f"Using Shell ({argv[-1]}) executor...")
        try:
            os.makedirs(build.builds_dir, exist_ok=True)
        except OSError as exc:
            return JobOutcome.failed(
                "runner_system_failure",
                f"cannot create builds_dir {build.builds_dir!r}: {exc.strerror}; "
                "fix builds_dir in config.toml",
            )
        with tempfile.TemporaryDirectory(prefix="kuberunner-scripts-") as scripts:
            job = _Job(self, build, trace, cancel, argv, scripts)
            return await job.run()


class _Job:
    """One job's run on the shell executor: the stage sequence and its bookkeeping."""

    def __init__(
        self,
        executor: ShellExecutor,
        build: Build,
        trace: JobTrace,
        cancel: Cancellation,
        argv: list[str],
        scripts_dir: str,
    ) -> None:
        self.x = executor
        self.build = build
        self.trace = trace
        self.cancel = cancel
        self.argv = argv
        self.scripts_dir = scripts_dir
        self.loop = asyncio.get_running_loop()
        self.deadline = self.loop.time() + build.timeout
        self.env = dict(os.environ if executor.env is None else executor.env)

    # ------------------------------------------------------------- the sequence

    async def run(self) -> JobOutcome:
        outcome = await self._main()
        await self._cleanup()
        return outcome

    async def _main(self) -> JobOutcome:
        failure: JobOutcome | None = None
        steps_started = False
        stopped: Stop | None = None

        try:
            pre_step_stages = self._pre_step_stages()
        except BuildConfigError as exc:
            self.trace.error(str(exc))
            pre_step_stages = []
            failure = JobOutcome.failed("script_failure", str(exc))
        for stage, attempts in pre_step_stages:
            result = await self._stage(stage, attempts=attempts)
            if isinstance(result, JobOutcome):
                failure = result
                break
            if not result.ok:
                failure, stopped = self._failure(result), result.stop
                break

        if failure is None:
            script_deadline = self._script_deadline()
            for stage in step_stages(self.build):
                steps_started = True
                result = await self._stage(stage, deadline=script_deadline)
                if isinstance(result, JobOutcome):
                    failure = result
                    break
                if not result.ok:
                    failure, stopped = self._failure(result), result.stop
                    break

        if stopped == "aborted" or (stopped == "timeout" and self._job_timed_out()):
            return failure or self._timeout_outcome()

        if steps_started and has_work(self.build, Stage.AFTER_SCRIPT):
            status = "success" if failure is None else "canceled" if stopped == "canceled" else "failed"
            after = await self._after_script(status)
            if after is not None and failure is None:
                failure = after
            if self.cancel.force.is_set():
                return failure or self._abort_outcome()
            if self._job_timed_out():
                return self._timeout_outcome()

        succeeded = failure is None
        for stage in (
            Stage.ARCHIVE_CACHE if succeeded else Stage.ARCHIVE_CACHE_ON_FAILURE,
            Stage.UPLOAD_ARTIFACTS_ON_SUCCESS if succeeded else Stage.UPLOAD_ARTIFACTS_ON_FAILURE,
        ):
            if not has_work(self.build, stage):
                continue
            result = await self._stage(stage, graceful=False)
            if isinstance(result, JobOutcome):
                failure = failure or result
            elif result.stop == "aborted":
                return failure or self._abort_outcome()
            elif result.stop == "timeout":
                return self._timeout_outcome()
            elif not result.ok and failure is None:
                failure = self._failure(result)
        return failure or JobOutcome.success()

    def _pre_step_stages(self) -> list[tuple[str, int]]:
        """The stages before the steps, with their attempts; BuildConfigError for a bad count."""
        build = self.build
        attempts: dict[str, Callable[[], int]] = {
            Stage.GET_SOURCES: lambda: build.get_sources_attempts,
            Stage.RESTORE_CACHE: lambda: build.restore_cache_attempts,
            Stage.DOWNLOAD_ARTIFACTS: lambda: build.artifact_download_attempts,
        }
        stages: list[tuple[str, int]] = [(Stage.PREPARE_SCRIPT, 1)]
        for stage, count in attempts.items():
            if has_work(build, stage):
                stages.append((stage, count()))
        return stages

    def _script_deadline(self) -> float:
        limit = self.build.script_timeout
        if limit is None:
            return self.deadline
        return min(self.deadline, self.loop.time() + limit)

    def _job_timed_out(self) -> bool:
        return self.loop.time() >= self.deadline

    async def _after_script(self, status: str) -> JobOutcome | None:
        deadline = min(self.deadline, self.loop.time() + self.build.after_script_timeout)
        result = await self._stage(Stage.AFTER_SCRIPT, deadline=deadline, graceful=False, job_status=status)
        if isinstance(result, JobOutcome):
            return None if self.build.after_script_ignore_errors else result
        if result.ok or result.stop == "aborted":
            return None
        why = (
            f"timed out after {go_duration(self.build.after_script_timeout)}"
            if result.stop == "timeout"
            else f"exit code {result.exit_code}"
        )
        if self.build.after_script_ignore_errors:
            self.trace.warning(f"after_script failed, but job will continue unaffected: {why}")
            return None
        return JobOutcome.failed("script_failure", f"after_script failed: {why}", result.exit_code)

    async def _cleanup(self) -> None:
        if not has_work(self.build, Stage.CLEANUP_FILE_VARIABLES):
            return
        deadline = self.loop.time() + _CLEANUP_TIMEOUT
        result = await self._stage(
            Stage.CLEANUP_FILE_VARIABLES, deadline=deadline, graceful=False, force=False
        )
        if isinstance(result, JobOutcome):
            self.trace.warning(f"file variables were not removed: {result.message}")
        elif not result.ok:
            self.trace.warning(f"file variables were not removed: exit code {result.exit_code}")

    # --------------------------------------------------------------- outcomes

    def _failure(self, result: _Result) -> JobOutcome:
        if result.stop == "aborted":
            return self._abort_outcome()
        if result.stop == "canceled":
            return JobOutcome.failed("runner_interrupted", self.cancel.reason or "canceled")
        if result.stop == "timeout":
            if self._job_timed_out():
                return self._timeout_outcome()
            limit = go_duration(self.build.script_timeout or 0)
            return JobOutcome.failed(
                "job_execution_timeout", f"script timeout of {limit} exceeded (RUNNER_SCRIPT_TIMEOUT)"
            )
        return JobOutcome.failed("script_failure", f"exit code {result.exit_code}", result.exit_code)

    def _timeout_outcome(self) -> JobOutcome:
        # gitlab-runner's words, "seconds" after a duration included
        return JobOutcome.failed(
            "job_execution_timeout", f"execution took longer than {go_duration(self.build.timeout)} seconds"
        )

    def _abort_outcome(self) -> JobOutcome:
        return JobOutcome.failed("runner_interrupted", self.cancel.reason or "canceled")

    # ------------------------------------------------------------ one stage

    async def _stage(
        self,
        stage: str,
        *,
        attempts: int = 1,
        deadline: float | None = None,
        graceful: bool = True,
        force: bool = True,
        job_status: str | None = None,
    ) -> _Result | JobOutcome:
        """Run a stage (retrying a failure up to ``attempts`` times) in its own log section."""
        deadline = self.deadline if deadline is None else deadline
        if force and self.cancel.force.is_set():
            return _Result(0, "aborted")
        if graceful and self.cancel.graceful.is_set():
            return _Result(0, "canceled")
        if deadline <= self.loop.time():
            return _Result(0, "timeout")
        try:
            script = generate(self.build, stage, job_status=job_status)
        except BuildConfigError as exc:
            with self.trace.section(stage, stage_title(stage)):
                self.trace.error(str(exc))
            return JobOutcome.failed("script_failure", str(exc))
        path = os.path.join(self.scripts_dir, f"{stage}.sh")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(script)
        result = _Result(0)
        for _ in range(max(attempts, 1)):
            with self.trace.section(stage, stage_title(stage)):
                result = await self._execute(path, deadline=deadline, graceful=graceful, force=force)
                if result.stop == "timeout":
                    self.trace.warning(self._timeout_message(stage))
                elif result.stop == "canceled":
                    self.trace.warning("the job was canceled: its script was stopped")
            if result.ok or result.stop is not None:
                break
        return result

    def _timeout_message(self, stage: str) -> str:
        build = self.build
        if self._job_timed_out():
            return f"the job's timeout of {go_duration(build.timeout)} is over: {stage} was stopped"
        if stage == Stage.AFTER_SCRIPT:
            return (
                f"after_script's timeout of {go_duration(build.after_script_timeout)} is over: it was stopped"
            )
        return (
            f"RUNNER_SCRIPT_TIMEOUT of {go_duration(build.script_timeout or 0)} is over: {stage} was stopped"
        )

    async def _execute(self, path: str, *, deadline: float, graceful: bool, force: bool) -> _Result:
        """Run one script to its end (or until stopped), streaming its output into the log."""
        read_fd, write_fd = os.pipe()
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.argv,
                path,
                cwd=self.build.builds_dir,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=write_fd,
                stderr=write_fd,
                start_new_session=True,
            )
        except OSError as exc:
            os.close(read_fd)
            self.trace.error(f"cannot start {self.argv[0]}: {exc.strerror}")
            return _Result(127)
        finally:
            os.close(write_fd)
        reader = asyncio.StreamReader(limit=_CHUNK)
        transport, _ = await self.loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", 0)
        )
        pump = asyncio.create_task(self._pump(reader))
        stop: Stop | None = None
        try:
            stop = await self._wait(proc, deadline=deadline, graceful=graceful, force=force)
        finally:
            # The stage is over when its shell is: its background processes go with it
            # (and everything goes if this task itself is cancelled).
            _signal_group(proc.pid, signal.SIGKILL)
            try:
                if proc.returncode is None:
                    await proc.wait()
                await asyncio.wait({pump}, timeout=self.x.drain_timeout)
            finally:
                transport.close()
                pump.cancel()
                await asyncio.wait({pump})
        code = proc.returncode if proc.returncode is not None else -signal.SIGKILL
        return _Result(code if code >= 0 else 128 - code, stop)

    async def _pump(self, reader: asyncio.StreamReader) -> None:
        while chunk := await reader.read(_CHUNK):
            self.trace.write(chunk)

    async def _wait(
        self, proc: asyncio.subprocess.Process, *, deadline: float, graceful: bool, force: bool
    ) -> Stop | None:
        """Wait for the shell to exit; stop it on timeout or cancel. Returns why it was stopped."""
        exited: asyncio.Future[Any] = asyncio.ensure_future(proc.wait())
        watch: dict[asyncio.Future[Any], Stop] = {}
        if force:
            watch[asyncio.ensure_future(self.cancel.force.wait())] = "aborted"
        if graceful:
            watch[asyncio.ensure_future(self.cancel.graceful.wait())] = "canceled"
        try:
            done, _ = await asyncio.wait(
                {exited, *watch},
                timeout=max(deadline - self.loop.time(), 0),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if exited in done:
                return None
            fired = [reason for fut, reason in watch.items() if fut in done]
            stop: Stop = "aborted" if "aborted" in fired else fired[0] if fired else "timeout"
            if stop == "aborted":
                _signal_group(proc.pid, signal.SIGKILL)
            else:
                await self._terminate(proc, exited, force=force)
            await exited
            return stop
        finally:
            for fut in (exited, *watch):
                if not fut.done():
                    fut.cancel()

    async def _terminate(
        self, proc: asyncio.subprocess.Process, exited: asyncio.Future[Any], *, force: bool
    ) -> None:
        """SIGTERM the script's group; SIGKILL it after the grace period or on a forced cancel."""
        _signal_group(proc.pid, signal.SIGTERM)
        waits: set[asyncio.Future[Any]] = {exited}
        forced: asyncio.Future[Any] | None = None
        if force:
            forced = asyncio.ensure_future(self.cancel.force.wait())
            waits.add(forced)
        try:
            await asyncio.wait(waits, timeout=self.x.kill_grace, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if forced is not None and not forced.done():
                forced.cancel()
        if not exited.done():
            _signal_group(proc.pid, signal.SIGKILL)
