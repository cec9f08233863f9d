"""Fixtures running generated stage scripts for real, under bash, dash and busybox sh.

``shell`` is parametrized over the three shells: every test using it runs
three times. ``make_build`` builds a :class:`Build` from a small payload (see
``script_support.payload``); ``run_stage`` generates one stage's script, runs
it and returns its exit code and output; ``fake_helper`` stands in for
``kuberunner-helper``.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from script_support import (
    SHELLS,
    FakeHelper,
    MakeBuild,
    Ran,
    RunStage,
    base_env,
    payload,
    run_script,
    write_fake_helper,
)

from kuberunner.build import Build
from kuberunner.config.schema import RunnerConfig
from kuberunner.job import JobPayload
from kuberunner.script import generate


@pytest.fixture(params=sorted(SHELLS))
def shell(request: pytest.FixtureRequest) -> list[str]:
    argv = SHELLS[request.param]
    if shutil.which(argv[0]) is None:
        raise RuntimeError(f"{argv[0]} is needed to run the script tests (apt-get install -y {argv[0]})")
    return argv


@pytest.fixture
def fake_helper(tmp_path: Path) -> FakeHelper:
    return write_fake_helper(tmp_path)


@pytest.fixture
def make_build(tmp_path: Path, fake_helper: FakeHelper) -> MakeBuild:
    def make(runner: RunnerConfig | None = None, **changes: Any) -> Build:
        build = Build.create(
            JobPayload.parse(payload(**changes)),
            runner or RunnerConfig(token="glrt-RunnerTok3n", url="https://gitlab.example.com"),
            executor_name="shell",
            builds_dir=str(tmp_path / "builds"),
            cache_dir=str(tmp_path / "cache"),
            helper_command=[str(fake_helper.path)],
        )
        Path(build.project_dir).mkdir(parents=True, exist_ok=True)
        return build

    return make


@pytest.fixture
def run_stage(tmp_path: Path, shell: list[str]) -> RunStage:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (tmp_path / "builds").mkdir(exist_ok=True)

    def run(build: Build, stage: str, *, job_status: str | None = None) -> Ran:
        script = generate(build, stage, job_status=job_status)
        return run_script(shell, script, tmp_path / "builds", base_env(home))

    return run


@pytest.fixture
def git(tmp_path: Path) -> Callable[..., str]:
    """Run git in the tests' clean environment; returns its stdout."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)

    def run(*args: str, cwd: Path | None = None) -> str:
        done = subprocess.run(
            ["git", *args], cwd=cwd, env=base_env(home), capture_output=True, text=True, check=True
        )
        return done.stdout

    return run
