"""Helpers to run generated stage scripts for real; the fixtures in ``conftest.py`` wrap them.

A module with a unique name (not ``conftest``) so that test modules can import
it whatever other test directories hold.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from kuberunner.build import Build
from kuberunner.config.schema import RunnerConfig

SHELLS = {"bash": ["bash"], "dash": ["dash"], "busybox": ["busybox", "sh"]}
GREEN, YELLOW, RESET = "\x1b[32;1m", "\x1b[0;33m", "\x1b[0;m"


def echo(cmd: str) -> str:
    """How a command appears in the log before it runs."""
    return f"{GREEN}$ {cmd}{RESET}\n"


def notice(msg: str) -> str:
    return f"{GREEN}{msg}{RESET}\n"


def warning(msg: str) -> str:
    return f"{YELLOW}{msg}{RESET}\n"


@dataclass
class Ran:
    rc: int
    output: bytes

    @property
    def text(self) -> str:
        return self.output.decode("utf-8", "replace")


def base_env(home: Path) -> dict[str, str]:
    """A clean environment: no user or system git config can change what the tests see."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LC_ALL": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": str(home / ".gitconfig"),
        "GIT_AUTHOR_NAME": "T",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "T",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }


def run_script(shell: list[str], script: str, cwd: Path, env: dict[str, str]) -> Ran:
    """Run ``script`` as a file under ``shell``, stdin closed, stdout and stderr merged."""
    path = cwd / ".stage.sh"
    path.write_text(script)
    try:
        done = subprocess.run(
            [*shell, str(path)],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=60,
            check=False,
        )
    finally:
        path.unlink()
    return Ran(done.returncode, done.stdout)


def payload(**changes: Any) -> dict[str, Any]:
    """A small job payload; keyword arguments replace its top-level keys."""
    data: dict[str, Any] = {
        "id": 77,
        "token": "glcbt-64_JobTokenForTests123",
        "allow_git_fetch": True,
        "job_info": {
            "id": 77,
            "name": "build",
            "stage": "test",
            "project_id": 5,
            "project_full_path": "acme/app",
        },
        "git_info": {"repo_url": "", "ref": "main", "sha": "", "refspecs": [], "depth": 0},
        "runner_info": {"timeout": 600},
        "variables": [{"key": "CI_JOB_ID", "value": "77", "public": True}],
        "steps": [{"name": "script", "script": ["echo hello"], "when": "on_success"}],
        "features": {"trace_sections": True},
    }
    data.update(changes)
    return data


def steps(*script: str) -> list[dict[str, object]]:
    return [{"name": "script", "script": list(script)}]


class MakeBuild(Protocol):
    def __call__(self, runner: RunnerConfig | None = None, **changes: Any) -> Build: ...


class RunStage(Protocol):
    def __call__(self, build: Build, stage: str, *, job_status: str | None = None) -> Ran: ...


@dataclass
class FakeHelper:
    """``kuberunner-helper`` stand-in: logs ``[arg][arg]...`` per call, and fails (exit 1, as the
    real one does for a missing cache or artifacts) when an argument contains ``__missing__``."""

    path: Path
    log: Path

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [line[1:-1].split("][") for line in self.log.read_text().splitlines()]


def write_fake_helper(directory: Path) -> FakeHelper:
    log = directory / "helper.log"
    path = directory / "bin" / "fake-helper"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "#!/bin/sh\n"
        f"log='{log}'\n"
        'for a in "$@"; do printf "[%s]" "$a" >> "$log"; done\n'
        'echo >> "$log"\n'
        'case "$*" in *__missing__*) echo "WARNING: not found"; exit 1;; esac\n'
        'echo "helper ran: $1"\n'
    )
    path.chmod(0o755)
    return FakeHelper(path, log)
