"""The service's polling rules and signals, against the GitLab double."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.doubles.gitlab import GitLabDouble

from kuberunner.config.schema import Config
from kuberunner.runner.factory import service_hooks
from kuberunner.runner.service import Service


def write_config(
    path: Path, gitlab: GitLabDouble, tokens: list[str], tmp: Path, *, concurrent: int = 1, extra: str = ""
) -> None:
    runners = "".join(
        f"""
[[runners]]
  name = "r{i}"
  url = "{gitlab.url}"
  token = "{token}"
  executor = "shell"
  builds_dir = "{tmp / "builds"}"
  cache_dir = "{tmp / "cache"}"
{extra}
"""
        for i, token in enumerate(tokens)
    )
    path.write_text(f"concurrent = {concurrent}\ncheck_interval = 1\nshutdown_timeout = 30\n{runners}")


async def test_limit_and_concurrent_are_never_exceeded(gitlab: GitLabDouble, tmp_path: Path) -> None:
    token = gitlab.create_runner().token
    config = Config.model_validate(
        {
            "concurrent": 4,
            "check_interval": 1,
            "runners": [
                {
                    "name": "lim",
                    "url": gitlab.url,
                    "token": token,
                    "executor": "shell",
                    "limit": 2,
                    "request_concurrency": 3,
                    "builds_dir": str(tmp_path / "b"),
                    "cache_dir": str(tmp_path / "c"),
                }
            ],
        }
    )
    marker = tmp_path / "release"
    jobs = [
        gitlab.enqueue(
            script=[f"while [ ! -e {marker} ]; do sleep 0.05; done"], variables={"GIT_STRATEGY": "none"}
        )
        for _ in range(5)
    ]
    service = Service(None, service_hooks(), system_id="s_limittest001", config=config)
    task = asyncio.create_task(service.run())
    try:
        await asyncio.to_thread(jobs[1].wait_running, 30)
        # two running (the runner's limit); the third is not even requested
        await asyncio.sleep(0.5)  # give a wrong implementation the chance to take more
        assert sum(j.started for j in jobs) == 2
        marker.touch()
        for job in jobs:
            assert await asyncio.to_thread(job.wait_finished, 60) == "success"
    finally:
        service.stop()
        await asyncio.wait_for(task, 60)


async def test_three_403_in_a_row_pause_the_runner(gitlab: GitLabDouble, tmp_path: Path) -> None:
    config = Config.model_validate(
        {
            "concurrent": 1,
            "check_interval": 1,
            "runners": [
                {
                    "name": "bad",
                    "url": gitlab.url,
                    "token": "glrt-not-a-valid-token",
                    "executor": "shell",
                    "unhealthy_interval": "1h",
                    "builds_dir": str(tmp_path / "b"),
                }
            ],
        }
    )
    service = Service(None, service_hooks(), system_id="s_unhealthy001", config=config)
    task = asyncio.create_task(service.run())
    try:
        await asyncio.to_thread(gitlab.wait_requests, "jobs/request", 3, 30)
        for _ in range(100):
            if not service.health()["healthy"]:
                break
            await asyncio.sleep(0.05)
        assert service.health()["runners"]["bad"]["healthy"] is False
        await asyncio.sleep(1.5)  # an unpaused runner would ask again every second
        assert len(gitlab.requests_for("jobs/request")) == 3
    finally:
        service.stop()
        await asyncio.wait_for(task, 30)


async def test_config_reload_picks_up_a_new_runner(gitlab: GitLabDouble, tmp_path: Path) -> None:
    first, second = gitlab.create_runner().token, gitlab.create_runner(description="second").token
    path = tmp_path / "config.toml"
    write_config(path, gitlab, [first], tmp_path)
    from kuberunner.runner import service as service_module

    service = Service(path, service_hooks(), system_id="s_reloadtest01")
    old_interval = service_module.CONFIG_RELOAD_INTERVAL
    service_module.CONFIG_RELOAD_INTERVAL = 0.1
    task = asyncio.create_task(service.run())
    try:
        write_config(path, gitlab, [first, second], tmp_path)
        for _ in range(200):
            if len(service.health()["runners"]) == 2:
                break
            await asyncio.sleep(0.05)
        assert set(service.health()["runners"]) == {"r0", "r1"}
        path.write_text("this is [ not toml")
        await asyncio.sleep(0.5)
        assert len(service.health()["runners"]) == 2  # a broken file keeps the previous configuration
    finally:
        service_module.CONFIG_RELOAD_INTERVAL = old_interval
        service.stop()
        await asyncio.wait_for(task, 30)


def _start(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "kuberunner", "run", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigint_twice_stops_now_and_still_reports(gitlab: GitLabDouble, tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    write_config(path, gitlab, [gitlab.create_runner().token], tmp_path)
    job = gitlab.enqueue(
        script=["echo started", "while true; do echo tick; sleep 0.2; done"],
        variables={"GIT_STRATEGY": "none"},
        trace_update_interval="0.2",
    )
    proc = _start(path)
    try:
        job.wait_for(lambda j: b"started" in j.trace, 30, "job started")
        proc.send_signal(signal.SIGINT)
        # signals do not queue: send the second once the first was handled
        assert proc.stderr is not None
        for line in proc.stderr:
            if "running job(s) to finish" in line:
                break
        proc.send_signal(signal.SIGINT)
        assert job.wait_finished(30) == "failed"
    finally:
        _, err = proc.communicate(timeout=60)
    assert job.checksum_ok and job.failure_reason is not None
    assert proc.returncode == 0, err


def test_shutdown_timeout_cancels_jobs_and_reports(gitlab: GitLabDouble, tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    write_config(path, gitlab, [gitlab.create_runner().token], tmp_path)
    path.write_text(path.read_text().replace("shutdown_timeout = 30", "shutdown_timeout = 1"))
    job = gitlab.enqueue(
        script=["echo started", "sleep 600"],
        after_script=["echo after: $CI_JOB_STATUS"],
        variables={"GIT_STRATEGY": "none"},
    )
    proc = _start(path)
    try:
        job.wait_for(lambda j: b"started" in j.trace, 30, "job started")
        proc.send_signal(signal.SIGQUIT)
        assert job.wait_finished(60) == "failed"
    finally:
        proc.communicate(timeout=60)
    trace: Any = job.trace.decode()
    assert "after: canceled" in trace
    assert proc.returncode == 0


async def test_orphans_are_swept_when_the_service_starts(gitlab: GitLabDouble, tmp_path: Path) -> None:
    from dataclasses import replace

    swept: list[str] = []
    started = asyncio.Event()

    async def sweep(runner: Any) -> list[str]:
        swept.append(runner.name)
        started.set()
        return ["runner-left-behind"]

    config = Config.model_validate(
        {
            "concurrent": 1,
            "check_interval": 1,
            "runners": [
                {
                    "name": "k",
                    "url": gitlab.url,
                    "token": gitlab.create_runner().token,
                    "executor": "shell",
                    "builds_dir": str(tmp_path / "b"),
                }
            ],
        }
    )
    service = Service(
        None, replace(service_hooks("s_sweeptest001"), sweep=sweep), system_id="s_sweeptest001", config=config
    )
    task = asyncio.create_task(service.run())
    try:
        await asyncio.wait_for(started.wait(), 30)
        assert swept == ["k"]
    finally:
        service.stop()
        await asyncio.wait_for(task, 30)
