"""The shell executor: real processes, real signals, the job's log as GitLab would receive it."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kuberunner.build import Build
from kuberunner.config.schema import RunnerConfig
from kuberunner.executors import Cancellation, JobOutcome, ShellExecutor
from kuberunner.executors.shell import resolve_shell
from kuberunner.job import JobPayload
from kuberunner.trace import JobTrace

GREEN, RESET = "\x1b[32;1m", "\x1b[0;m"


class Log:
    """The trace's sink; lets a test wait until some text has reached the log."""

    def __init__(self) -> None:
        self.data = bytearray()
        self._waiters: list[tuple[bytes, asyncio.Event]] = []

    def __call__(self, chunk: bytes) -> None:
        self.data += chunk
        for needle, event in self._waiters:
            if needle in self.data:
                event.set()

    @property
    def text(self) -> str:
        return self.data.decode()

    async def wait_for(self, needle: str, timeout: float = 20) -> None:
        event = asyncio.Event()
        self._waiters.append((needle.encode(), event))
        self(b"")
        await asyncio.wait_for(event.wait(), timeout)

    def sections(self) -> list[str]:
        return re.findall(r"section_start:\d+:([a-z_]+)", self.text)


def fake_helper(tmp_path: Path) -> Path:
    """Stands in for kuberunner-helper: logs its arguments; fails for anything named ``__missing__``."""
    path = tmp_path / "fake-helper"
    path.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {tmp_path}/helper.log\n'
        'case "$*" in *__missing__*) echo "ERROR: upload failed"; exit 1;; esac\n'
    )
    path.chmod(0o755)
    return path


def make_build(tmp_path: Path, *, script: list[str], after: list[str] | None = None, **changes: Any) -> Build:
    data: dict[str, Any] = {
        "id": 9,
        "token": "glcbt-64_ExecutorTestToken",
        "job_info": {"id": 9, "name": "test", "project_id": 1, "project_full_path": "g/p"},
        "git_info": {"ref": "main", "sha": "0" * 40},
        "runner_info": {"timeout": 600},
        "variables": [{"key": "GIT_STRATEGY", "value": "none"}],
        "steps": [{"name": "script", "script": script}],
        "features": {"trace_sections": True},
    }
    if after is not None:
        data["steps"].append({"name": "after_script", "script": after, "when": "always"})
    extra_vars = changes.pop("variables", [])
    data["variables"] += extra_vars
    data.update(changes)
    return Build.create(
        JobPayload.parse(data),
        RunnerConfig(token="glrt-ShellExecTok", url="http://127.0.0.1:9"),
        executor_name="shell",
        builds_dir=str(tmp_path / "builds"),
        cache_dir=str(tmp_path / "cache"),
        helper_command=[str(fake_helper(tmp_path))],
    )


async def run(
    build: Build,
    *,
    cancel: Cancellation | None = None,
    during: Callable[[Log, Cancellation], Any] | None = None,
    executor: ShellExecutor | None = None,
    masked: list[str] | None = None,
) -> tuple[JobOutcome, Log]:
    log = Log()
    trace = JobTrace(log, build.masked_values() if masked is None else masked, sections=True)
    cancel = cancel or Cancellation()
    executor = executor or ShellExecutor(shell="bash", kill_grace=5, drain_timeout=5)
    task = asyncio.create_task(executor.run(build, trace, cancel))
    if during is not None:
        await during(log, cancel)
    outcome = await asyncio.wait_for(task, 60)
    trace.finish()
    return outcome, log


async def test_a_successful_job_in_gitlab_runners_sections(tmp_path: Path) -> None:
    build = make_build(
        tmp_path,
        script=["echo hello", "cd /", "pwd"],
        after=['echo "after: $CI_JOB_STATUS"'],
        cache=[{"key": "deps", "paths": ["vendor"]}],
        artifacts=[{"name": "out", "paths": ["out/"]}],
        dependencies=[
            {"id": 3, "name": "compile", "token": "dep-token-3xyz", "artifacts_file": {"filename": "a.zip"}}
        ],
        variables=[{"key": "SECRET_FILE", "value": "s3cret-content", "file": True, "masked": True}],
    )
    outcome, log = await run(build)
    assert outcome == JobOutcome.success(), log.text
    assert log.sections() == [
        "prepare_executor",
        "prepare_script",
        "get_sources",
        "restore_cache",
        "download_artifacts",
        "step_script",
        "after_script",
        "archive_cache",
        "upload_artifacts_on_success",
        "cleanup_file_variables",
    ]
    for title in (
        'Preparing the "shell" executor',
        "Preparing environment",
        "Getting source from Git repository",
        'Executing "step_script" stage of the job script',
        "Running after_script",
        "Saving cache for successful job",
        "Uploading artifacts for successful job",
        "Cleaning up project directory and file based variables",
    ):
        assert f"\x1b[36;1m{title}{RESET}\n" in log.text
    assert f"{GREEN}$ echo hello{RESET}\nhello\n" in log.text
    assert "after: success\n" in log.text
    assert "Using Shell (bash) executor..." in log.text
    assert not (Path(build.file_variables_dir) / "SECRET_FILE").exists()  # cleaned up


async def test_a_failing_command_fails_the_job_with_its_exit_code(tmp_path: Path) -> None:
    build = make_build(
        tmp_path,
        script=["echo before", "sh -c 'exit 42'", "echo never"],
        after=['echo "after: $CI_JOB_STATUS"'],
        artifacts=[{"name": "logs", "paths": ["logs/"], "when": "on_failure"}],
    )
    outcome, log = await run(build)
    assert outcome == JobOutcome.failed("script_failure", "exit code 42", 42)
    assert "never\n" not in log.text
    assert "after: failed\n" in log.text
    assert log.sections()[-2:] == ["after_script", "upload_artifacts_on_failure"]
    assert "artifacts-uploader" in (tmp_path / "helper.log").read_text()


async def test_a_script_killed_by_a_signal_reports_128_plus_the_signal(tmp_path: Path) -> None:
    outcome, _ = await run(make_build(tmp_path, script=["kill -9 $$"]))
    assert (outcome.failure_reason, outcome.exit_code) == ("script_failure", 137)


async def test_output_is_streamed_while_the_script_runs(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    build = make_build(
        tmp_path, script=["echo ready", f"while [ ! -e {gate} ]; do sleep 0.05; done", "echo done"]
    )

    async def release(log: Log, _: Cancellation) -> None:
        await log.wait_for("ready\n")  # seen before the script can finish: it waits for the gate
        assert "done\n" not in log.text
        gate.touch()

    outcome, log = await run(build, during=release)
    assert outcome.state == "success"
    assert log.text.index("ready\n") < log.text.index("done\n")


async def test_background_processes_do_not_keep_the_job_alive(tmp_path: Path) -> None:
    build = make_build(tmp_path, script=["sleep 300 &", "(sleep 300; echo late) &", "echo bye"])
    # The drain allowance is far longer than the test's limit: only killing the group ends the job in time.
    executor = ShellExecutor(shell="sh", kill_grace=5, drain_timeout=600)
    outcome, log = await asyncio.wait_for(run(build, executor=executor), 30)
    assert outcome.state == "success"
    assert "bye\n" in log.text and "\nlate\n" not in log.text


async def test_job_timeout_kills_the_script_and_skips_after_script(tmp_path: Path) -> None:
    build = make_build(tmp_path, script=["echo started", "sleep 300"], after=["echo after-ran"])
    build.timeout = 1
    outcome, log = await run(build)
    assert outcome == JobOutcome.failed("job_execution_timeout", "execution took longer than 1s seconds")
    assert "started\n" in log.text
    assert "after-ran" not in log.text  # gitlab-runner does not run after_script after a job timeout
    assert "the job's timeout of 1s is over: step_script was stopped" in log.text


async def test_script_timeout_stops_the_steps_but_after_script_still_runs(tmp_path: Path) -> None:
    build = make_build(
        tmp_path,
        script=["sleep 300"],
        after=['echo "after: $CI_JOB_STATUS"'],
        variables=[{"key": "RUNNER_SCRIPT_TIMEOUT", "value": "1s"}],
        artifacts=[{"name": "partial", "paths": ["x"], "when": "on_failure"}],
    )
    outcome, log = await run(build)
    assert outcome.failure_reason == "job_execution_timeout"
    assert outcome.message == "script timeout of 1s exceeded (RUNNER_SCRIPT_TIMEOUT)"
    assert "after: failed\n" in log.text
    assert "upload_artifacts_on_failure" in log.sections()


async def test_graceful_cancel_terminates_then_runs_after_script(tmp_path: Path) -> None:
    build = make_build(
        tmp_path,
        script=["trap 'echo got TERM; exit 143' TERM", "echo started", "sleep 300 & wait"],
        after=['echo "after: $CI_JOB_STATUS"'],
        artifacts=[{"name": "logs", "paths": ["logs/"], "when": "on_failure"}],
    )

    async def cancel_when_started(log: Log, cancel: Cancellation) -> None:
        await log.wait_for("started\n")
        cancel.cancel("the job was canceled in GitLab")

    outcome, log = await run(build, during=cancel_when_started)
    assert outcome == JobOutcome.failed("runner_interrupted", "the job was canceled in GitLab")
    assert "got TERM\n" in log.text  # SIGTERM first: the script could clean up
    assert "after: canceled\n" in log.text
    assert "upload_artifacts_on_failure" in log.sections()


async def test_a_script_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    build = make_build(tmp_path, script=["trap '' TERM", "echo started", "while :; do sleep 0.1; done"])

    async def cancel_when_started(log: Log, cancel: Cancellation) -> None:
        await log.wait_for("started\n")
        cancel.cancel()

    executor = ShellExecutor(shell="sh", kill_grace=0.2, drain_timeout=5)
    outcome, _ = await run(build, during=cancel_when_started, executor=executor)
    assert outcome == JobOutcome.failed("runner_interrupted", "job canceled")


async def test_forced_cancel_kills_at_once_and_runs_no_after_script(tmp_path: Path) -> None:
    build = make_build(
        tmp_path,
        script=["trap '' TERM", "echo started", "sleep 300"],
        after=["echo after-ran"],
        variables=[{"key": "KUBECONFIG", "value": "secret", "file": True}],
    )

    async def abort_when_started(log: Log, cancel: Cancellation) -> None:
        await log.wait_for("started\n")
        cancel.abort("the job was canceled in GitLab")

    executor = ShellExecutor(shell="sh", kill_grace=600, drain_timeout=5)  # a forced cancel does not wait
    outcome, log = await asyncio.wait_for(run(build, during=abort_when_started, executor=executor), 30)
    assert outcome == JobOutcome.failed("runner_interrupted", "the job was canceled in GitLab")
    assert "after-ran" not in log.text
    assert log.sections()[-1] == "cleanup_file_variables"  # secrets on disk are still removed
    assert not (Path(build.file_variables_dir) / "KUBECONFIG").exists()


async def test_after_script_failure_only_warns_unless_told_otherwise(tmp_path: Path) -> None:
    outcome, log = await run(make_build(tmp_path, script=["true"], after=["exit 5"]))
    assert outcome.state == "success"
    assert "after_script failed, but job will continue unaffected: exit code 5" in log.text
    strict = [{"key": "AFTER_SCRIPT_IGNORE_ERRORS", "value": "false"}]
    outcome, _ = await run(make_build(tmp_path, script=["true"], after=["exit 5"], variables=strict))
    assert outcome == JobOutcome.failed("script_failure", "after_script failed: exit code 5", 5)


async def test_a_failed_upload_fails_a_successful_job(tmp_path: Path) -> None:
    build = make_build(tmp_path, script=["true"], artifacts=[{"name": "__missing__", "paths": ["x"]}])
    outcome, log = await run(build)
    assert outcome == JobOutcome.failed("script_failure", "exit code 1", 1)
    assert "ERROR: upload failed" in log.text


async def test_get_sources_is_retried_as_configured(tmp_path: Path) -> None:
    build = make_build(
        tmp_path,
        script=["echo never"],
        git_info={"repo_url": f"file://{tmp_path}/no-such-repo.git", "ref": "main", "sha": "1" * 40},
        variables=[{"key": "GIT_STRATEGY", "value": "clone"}, {"key": "GET_SOURCES_ATTEMPTS", "value": "3"}],
    )
    outcome, log = await run(build)
    assert log.sections().count("get_sources") == 3
    assert outcome.failure_reason == "script_failure" and outcome.exit_code == 128
    assert "step_script" not in log.sections()


async def test_bad_attempt_counts_and_strategies_are_reported(tmp_path: Path) -> None:
    build = make_build(tmp_path, script=["true"], variables=[{"key": "GET_SOURCES_ATTEMPTS", "value": "0"}])
    outcome, log = await run(build)
    assert outcome.failure_reason == "script_failure"
    assert "GET_SOURCES_ATTEMPTS=0 is out of range: use a number of attempts from 1 to 10" in log.text
    build = make_build(
        tmp_path,
        script=["true"],
        variables=[
            {"key": "GIT_STRATEGY", "value": "fetch"},
            {"key": "GIT_SUBMODULE_STRATEGY", "value": "all"},
        ],
    )
    outcome, log = await run(build)
    assert outcome.message == "GIT_SUBMODULE_STRATEGY='all' is not supported: use none, normal or recursive"


async def test_unusable_shells_are_configuration_errors(tmp_path: Path) -> None:
    build = make_build(tmp_path, script=["true"])
    outcome, _ = await run(build, executor=ShellExecutor(shell="pwsh"))
    assert outcome.failure_reason == "runner_configuration_error"
    assert 'set shell = "bash" or shell = "sh"' in outcome.message
    outcome, _ = await run(build, executor=ShellExecutor(shell="no-such-shell-xyz"))
    assert outcome.failure_reason == "runner_configuration_error"


@pytest.mark.parametrize(
    ("name", "argv"), [("bash", ["bash"]), ("sh", ["sh"]), ("busybox", ["busybox", "sh"])]
)
def test_resolve_shell(name: str, argv: list[str]) -> None:
    assert resolve_shell(name) == argv
    assert resolve_shell("") == ["bash"]


async def test_masked_values_never_reach_the_log(tmp_path: Path) -> None:
    build = make_build(
        tmp_path,
        script=['echo "token=$DEPLOY_TOKEN job=$CI_JOB_TOKEN"'],
        variables=[
            {"key": "DEPLOY_TOKEN", "value": "s3cr3tV4lu3xyz99", "masked": True},
            {"key": "CI_JOB_TOKEN", "value": "glcbt-64_ExecutorTestToken", "masked": True},
            {"key": "CI_DEBUG_TRACE", "value": "true"},  # xtrace shows every export too
        ],
    )
    outcome, log = await run(build, masked=[])  # the executor tells the trace what the build masks
    assert outcome.state == "success"
    assert "token=[MASKED] job=[MASKED]\n" in log.text
    assert "s3cr3tV4lu3xyz99" not in log.text
    assert "ExecutorTestToken" not in log.text
