"""The runner against the GitLab double: real CLI, real shell executor, real scripts.

Each test drives GitLab's side through the double (queue, cancel, faults) and
asserts what GitLab ends up holding: final state, failure reason, exit code,
the stored trace and its checksum.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.doubles.gitlab import GitLabDouble

from kuberunner.config.schema import Config
from kuberunner.runner.factory import service_hooks
from kuberunner.runner.metrics import MetricsServer
from kuberunner.runner.service import Service

SECRET = "s3cr3t-Value-for-e2e"


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kuberunner", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def register(
    config: Path, gitlab: GitLabDouble, token: str, name: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    """`kuberunner register` of a shell runner, non-interactively."""
    return cli(
        "register",
        "-c",
        str(config),
        "-n",
        "--url",
        gitlab.url,
        "--token",
        token,
        "--name",
        name,
        "--executor",
        "shell",
        *extra,
    )


def config_for(gitlab: GitLabDouble, token: str, tmp: Path, *, concurrent: int = 1, **runner: Any) -> Config:
    table: dict[str, Any] = {
        "name": "e2e",
        "url": gitlab.url,
        "token": token,
        "executor": "shell",
        "builds_dir": str(tmp / "builds"),
        "cache_dir": str(tmp / "cache"),
    }
    table.update(runner)
    return Config.model_validate({"concurrent": concurrent, "check_interval": 1, "runners": [table]})


@pytest.fixture
async def service_factory(gitlab: GitLabDouble, tmp_path: Path) -> AsyncIterator[Callable[..., Service]]:
    """Start an in-process service (the same object `kuberunner run` runs); stopped at teardown."""
    started: list[tuple[Service, asyncio.Task[None]]] = []

    def start(*, concurrent: int = 1, **runner: Any) -> Service:
        token = gitlab.create_runner().token
        service = Service(
            None,
            service_hooks(),
            system_id="s_e2etest00001",
            config=config_for(gitlab, token, tmp_path, concurrent=concurrent, **runner),
        )
        started.append((service, asyncio.create_task(service.run())))
        return service

    yield start
    for service, task in started:
        service.stop(force=True)
        await asyncio.wait_for(task, 60)


async def finished(job: Any, timeout: float = 60.0) -> str:
    status: str = await asyncio.to_thread(job.wait_finished, timeout)
    return status


# --------------------------------------------------------------------------- through the CLI


def test_register_then_run_a_job_through_the_cli(
    gitlab: GitLabDouble, gitlab_repo: Any, tmp_path: Path
) -> None:
    runner = gitlab.create_runner()
    config = tmp_path / "etc" / "config.toml"
    result = cli(
        "register",
        "-c",
        str(config),
        "--non-interactive",
        "--url",
        gitlab.url,
        "--token",
        runner.token,
        "--name",
        "e2e-cli",
        "--executor",
        "shell",
        "--builds-dir",
        str(tmp_path / "builds"),
        "--cache-dir",
        str(tmp_path / "cache"),
    )
    assert result.returncode == 0, result.stderr
    assert (config.stat().st_mode & 0o777) == 0o600
    assert (config.parent / ".runner_system_id").read_text().startswith("s_")
    assert runner.token not in result.stdout + result.stderr

    listed = cli("list", "-c", str(config))
    assert "e2e-cli" in listed.stdout and runner.token not in listed.stdout

    job = gitlab.enqueue(
        script=["echo hello from $CI_JOB_NAME", "git log -1 --format=%H", "echo $MY_SECRET"],
        masked={"MY_SECRET": SECRET},
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "kuberunner", "run", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert job.wait_finished(60) == "success"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    trace = job.trace.decode()
    assert "hello from test" in trace
    assert gitlab_repo.head in trace  # checked out at the exact sha
    assert "[MASKED]" in trace and SECRET not in trace
    assert job.checksum_ok
    assert SECRET not in out + err and job.token not in out + err and runner.token not in out + err


def test_verify_and_unregister(gitlab: GitLabDouble, tmp_path: Path) -> None:
    runner = gitlab.create_runner()
    config = tmp_path / "config.toml"
    assert register(config, gitlab, runner.token, "one").returncode == 0
    verified = cli("verify", "-c", str(config))
    assert verified.returncode == 0 and "is valid" in verified.stdout
    removed = cli("unregister", "-c", str(config), "--name", "one")
    assert removed.returncode == 0, removed.stderr
    assert "one" not in cli("list", "-c", str(config)).stdout.split("ConfigFile")[1].split("\n", 1)[1]


def test_sigterm_lets_a_running_job_finish(gitlab: GitLabDouble, gitlab_repo: Any, tmp_path: Path) -> None:
    runner = gitlab.create_runner()
    config = tmp_path / "config.toml"
    assert register(config, gitlab, runner.token, "term", "--builds-dir", str(tmp_path / "b")).returncode == 0
    marker = tmp_path / "go"
    job = gitlab.enqueue(
        script=[f"while [ ! -e {marker} ]; do sleep 0.05; done", "echo finished after SIGTERM"],
        variables={"GIT_STRATEGY": "none"},
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "kuberunner", "run", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        job.wait_running(30)
        proc.send_signal(signal.SIGTERM)
        marker.touch()  # the job may end only after the signal arrived
        assert job.wait_finished(60) == "success"
    finally:
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "finished after SIGTERM" in job.trace.decode()


# --------------------------------------------------------------------------- in process


async def test_failing_job_reports_script_failure_and_exit_code(
    gitlab: GitLabDouble, service_factory: Callable[..., Service]
) -> None:
    job = gitlab.enqueue(script=["echo before", "exit 3", "echo never"], variables={"GIT_STRATEGY": "none"})
    service_factory()
    assert await finished(job) == "failed"
    assert (job.failure_reason, job.exit_code) == ("script_failure", 3)
    trace = job.trace.decode()
    assert "before" in trace and "echo never\n" not in trace.replace("$ echo never", "")
    assert "ERROR: Job failed: exit code 3" in trace
    assert job.checksum_ok


async def test_graceful_cancel_runs_after_script(
    gitlab: GitLabDouble, service_factory: Callable[..., Service]
) -> None:
    job = gitlab.enqueue(
        # a job that prints keeps the log flowing; GitLab's Job-Status arrives on each answer
        script=["echo started", "while true; do echo tick; sleep 0.2; done"],
        after_script=["echo after_script sees $CI_JOB_STATUS"],
        variables={"GIT_STRATEGY": "none"},
        trace_update_interval="0.2",
    )
    service_factory()
    await asyncio.to_thread(job.wait_for, lambda j: b"started" in j.trace, 30, "script started")
    job.cancel()
    assert await finished(job) == "canceled"
    assert "after_script sees canceled" in job.trace.decode()


async def test_force_cancel_stops_at_once(
    gitlab: GitLabDouble, service_factory: Callable[..., Service]
) -> None:
    job = gitlab.enqueue(
        script=["echo started", "while true; do echo tick; sleep 0.2; done"],
        after_script=["echo after ran"],
        variables={"GIT_STRATEGY": "none"},
        trace_update_interval="0.2",
    )
    service = service_factory()
    await asyncio.to_thread(job.wait_for, lambda j: b"started" in j.trace, 30, "script started")
    job.force_cancel()
    for _ in range(600):  # the runner must notice and stop the job: the report list fills
        if service.reports:
            break
        await asyncio.sleep(0.05)
    assert service.reports and service.reports[0].outcome.state == "failed"
    assert "after ran" not in job.trace.decode()


async def test_job_timeout_is_job_execution_timeout(
    gitlab: GitLabDouble, service_factory: Callable[..., Service]
) -> None:
    job = gitlab.enqueue(script=["sleep 60"], timeout=2, variables={"GIT_STRATEGY": "none"})
    service_factory()
    assert await finished(job) == "failed"
    assert job.failure_reason == "job_execution_timeout"


async def test_trace_resumes_after_server_side_loss(
    gitlab: GitLabDouble, service_factory: Callable[..., Service]
) -> None:
    lines = [f"echo line-{i:04d}" for i in range(200)]
    job = gitlab.enqueue(script=lines, variables={"GIT_STRATEGY": "none"}, trace_update_interval="0.1")
    gitlab.faults.add("trace", "trace_loss", count=2, keep=10)
    service_factory()
    assert await finished(job) == "success"
    trace = job.trace.decode()
    for i in range(200):
        assert trace.count(f"\nline-{i:04d}\n") == 1
    assert job.checksum_ok


async def test_artifacts_flow_from_a_job_to_its_dependant(
    gitlab: GitLabDouble, gitlab_repo: Any, service_factory: Callable[..., Service]
) -> None:
    build = gitlab.enqueue(
        name="build",
        script=["mkdir -p out", "echo built > out/result.txt", "echo nope > other.txt"],
        artifacts=[
            {
                "name": "out",
                "paths": ["out/"],
                "when": "on_success",
                "artifact_type": "archive",
                "artifact_format": "zip",
            }
        ],
    )
    service_factory()
    assert await finished(build) == "success"
    assert "archive" in build.artifacts
    test = gitlab.enqueue(
        name="test", script=["cat out/result.txt", "test ! -e other.txt"], dependencies=[build]
    )
    assert await finished(test) == "success", test.trace.decode()
    assert "built" in test.trace.decode()


async def test_hundred_jobs_with_concurrent_ten(
    gitlab: GitLabDouble, service_factory: Callable[..., Service]
) -> None:
    jobs = [
        gitlab.enqueue(
            script=[f"echo job {i}", "exit 1" if i % 10 == 0 else "true"], variables={"GIT_STRATEGY": "none"}
        )
        for i in range(100)
    ]
    service = service_factory(concurrent=10)
    statuses = [await finished(job, 240) for job in jobs]
    assert statuses.count("failed") == 10 and statuses.count("success") == 90
    assert all(job.checksum_ok for job in jobs)
    assert service.slots.used <= 10


@pytest.mark.parametrize(
    ("endpoint", "kind", "opts"),
    [
        ("jobs/request", 500, {"count": 3}),
        ("jobs/request", 429, {"retry_after": 0}),
        ("jobs/request", "drop", {}),
        ("jobs/update", 502, {"count": 2}),
        ("jobs/update", "drop", {"processed": True}),
        ("jobs/update", 409, {}),
        ("trace", 500, {"count": 3}),
        ("trace", 409, {"count": 2}),
        ("trace", "drop", {"count": 2}),
        ("trace", "trace_loss", {}),
    ],
)
async def test_injected_faults_leave_no_job_running(
    gitlab: GitLabDouble,
    service_factory: Callable[..., Service],
    endpoint: str,
    kind: Any,
    opts: dict[str, Any],
) -> None:
    job = gitlab.enqueue(
        script=["echo fault-tolerant"],
        variables={"GIT_STRATEGY": "none"},
        trace_update_interval="0.1",
        final_put_202=1,
    )
    gitlab.faults.add(endpoint, kind, **opts)
    service_factory()
    assert await finished(job, 90) == "success"
    assert "fault-tolerant" in job.trace.decode() and job.checksum_ok


async def test_no_secret_in_trace_logs_or_metrics(
    gitlab: GitLabDouble, service_factory: Callable[..., Service], caplog: pytest.LogCaptureFixture
) -> None:
    job = gitlab.enqueue(
        script=[
            "echo $MY_SECRET",
            "echo $CI_JOB_TOKEN",
            "printf 's3cr3t-'; printf 'Value-for-e2e\\n'",
            "exit 4",
        ],
        masked={"MY_SECRET": SECRET},
        variables={"GIT_STRATEGY": "none"},
    )
    service = service_factory()
    server = MetricsServer(service.metrics, "127.0.0.1:0", service.health)
    server.start()
    try:
        assert await finished(job) == "failed"
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(f"http://127.0.0.1:{server.port}/metrics")).text
            health = await http.get(f"http://127.0.0.1:{server.port}/health")
    finally:
        server.stop()
    assert 'kuberunner_jobs_total{failure_reason="script_failure",runner="e2e",state="failed"} 1.0' in metrics
    assert "kuberunner_api_requests_total" in metrics and health.status_code == 200
    for text in (job.trace.decode(), caplog.text, metrics):
        assert SECRET not in text and job.token not in text


def test_run_single_stops_after_max_builds(gitlab: GitLabDouble, tmp_path: Path) -> None:
    runner = gitlab.create_runner()
    jobs = [gitlab.enqueue(script=[f"echo single {i}"], variables={"GIT_STRATEGY": "none"}) for i in range(2)]
    result = cli(
        "run-single",
        "--url",
        gitlab.url,
        "--token",
        runner.token,
        "--executor",
        "shell",
        "--builds-dir",
        str(tmp_path / "b"),
        "--max-builds",
        "1",
        "--log-format",
        "json",
        "--system-id-dir",
        str(tmp_path),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert jobs[0].final_state == "success" and jobs[1].state == "queued"
    records = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert any("job 1001 finished: success" in r["msg"] for r in records)
    assert runner.token not in result.stderr


def test_run_single_wait_timeout_ends_without_jobs(gitlab: GitLabDouble, tmp_path: Path) -> None:
    runner = gitlab.create_runner()
    result = cli(
        "run-single",
        "--url",
        gitlab.url,
        "--token",
        runner.token,
        "--wait-timeout",
        "1",
        "--system-id-dir",
        str(tmp_path),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "no job arrived" in result.stderr


def test_register_prompts_for_what_is_missing_on_a_terminal(gitlab: GitLabDouble, tmp_path: Path) -> None:
    import pty

    runner = gitlab.create_runner()
    config = tmp_path / "config.toml"
    pid, fd = pty.fork()
    if pid == 0:  # the child: the real CLI with a terminal attached
        os.execv(sys.executable, [sys.executable, "-m", "kuberunner", "register", "-c", str(config)])
    answers = iter([gitlab.url, runner.token, "from-a-terminal", "shell"])
    seen = b""
    prompts = (b"GitLab instance URL", b"authentication token", b"Runner name", b"Executor")
    asked = 0
    while True:
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
        while asked < len(prompts) and prompts[asked] in seen:
            os.write(fd, next(answers).encode() + b"\n")
            seen = seen.split(prompts[asked], 1)[1]
            asked += 1
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert asked == 4
    text = config.read_text()
    assert 'name = "from-a-terminal"' in text and 'executor = "shell"' in text
