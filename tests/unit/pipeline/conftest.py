"""Helpers for pipeline tests: throwaway git projects with given files."""

from __future__ import annotations

import os
import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

ProjectFactory = Callable[..., Path]


def _git(cwd: Path, home: Path, *args: str) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z",
        "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z",
    }
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


@pytest.fixture
def project(tmp_path: Path) -> ProjectFactory:
    """Make a committed git project (branch ``feature/x``, remote ``gitlab.example.com:grp/app``)."""

    def make(files: dict[str, str], *, branch: str = "feature/x", tag: str | None = None) -> Path:
        root = tmp_path / "proj"
        home = tmp_path / "home"
        home.mkdir(exist_ok=True)
        root.mkdir()
        for name, text in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text))
        _git(root, home, "init", "-q", "-b", branch)
        _git(root, home, "config", "user.email", "jane.doe@example.com")
        _git(root, home, "config", "user.name", "Jane Doe")
        _git(root, home, "add", "-A")
        _git(root, home, "commit", "-qm", "Add pipeline\n\nWith a body line.")
        _git(root, home, "remote", "add", "origin", "https://gitlab.example.com/grp/app.git")
        _git(root, home, "update-ref", "refs/remotes/origin/main", "HEAD")
        _git(root, home, "symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/main")
        if tag is not None:
            _git(root, home, "tag", tag)
            _git(root, home, "checkout", "-q", "--detach", tag)
        return root

    return make
