"""Pytest fixtures for the GitLab double.

Register them with `pytest_plugins = ["tests.doubles.gitlab.fixtures"]` in the top-level conftest.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ._git import BareRepo, make_bare_repo
from ._server import GitLabDouble


@pytest.fixture
def gitlab() -> Iterator[GitLabDouble]:
    """A started GitLab double; the test fails if a client broke the contract or the double crashed."""
    with GitLabDouble() as double:
        yield double
        double.assert_clean()


@pytest.fixture
def gitlab_repo(gitlab: GitLabDouble, tmp_path: Path) -> BareRepo:
    """A two-commit bare repository served by the double as `acme/webapp` (the default job repo)."""
    repo = make_bare_repo(tmp_path / "repos", name="webapp")
    gitlab.add_repo("acme/webapp", repo.path)
    return repo
