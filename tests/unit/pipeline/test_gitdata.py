"""What ``kuberunner exec`` reads from the local repository: real git, every shape of HEAD.

Each case is a value a job would see as a CI_* variable (branch, tag, commit, default
branch, project path, triggering user), so a change in how git is asked shows here.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kuberunner.pipeline import PipelineError
from kuberunner.pipeline.gitdata import read_git_data


@pytest.fixture(autouse=True)
def _isolated_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No user or system git configuration leaks in; fixed dates."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z")
    monkeypatch.setenv("GIT_COMMITTER_DATE", "2024-01-02T03:04:05+02:00")


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=Jane Doe", "-c", "user.email=jane@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def repo(
    tmp_path: Path, name: str = "app", *, branch: str = "main", message: str = "Add app\n\nBody."
) -> Path:
    root = tmp_path / name
    root.mkdir()
    git(root, "init", "-q", "-b", branch)
    (root / "README").write_text("hello\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", message)
    return root


def with_origin(root: Path, url: str = "git@gitlab.example.com:grp/app.git") -> None:
    git(root, "remote", "add", "origin", url)
    git(root, "update-ref", "refs/remotes/origin/trunk", "HEAD")
    git(root, "symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/trunk")


def test_a_branch_of_a_clone(tmp_path: Path) -> None:
    root = repo(tmp_path, branch="feature/x", message="Add app\n\nBody line.\n\n")
    with_origin(root, "https://gitlab.example.com:8443/grp/sub/app.git")
    git(root, "config", "user.name", "Jane Doe")
    git(root, "config", "user.email", "jane@example.com")
    (root / "sub").mkdir()

    data = read_git_data(root / "sub")

    assert data.sha == git(root, "rev-parse", "HEAD")
    assert (data.ref, data.is_tag) == ("feature/x", False)
    assert (data.title, data.message) == ("Add app", "Add app\n\nBody line.")
    assert data.timestamp == "2024-01-02T03:04:05+02:00"
    assert data.author == "Jane Doe <jane@example.com>"
    assert data.default_branch == "trunk"
    assert (data.server_host, data.server_port, data.project_path) == (
        "gitlab.example.com",
        "8443",
        "grp/sub/app",
    )
    assert (data.user_name, data.user_email) == ("Jane Doe", "jane@example.com")


def test_a_detached_head_at_a_tag_is_a_tag_pipeline(tmp_path: Path) -> None:
    root = repo(tmp_path)
    git(root, "tag", "-a", "-m", "release", "v1.2.0")
    git(root, "checkout", "-q", "v1.2.0")

    data = read_git_data(root)

    assert (data.ref, data.is_tag) == ("v1.2.0", True)


def test_a_detached_head_without_a_tag_is_its_sha(tmp_path: Path) -> None:
    root = repo(tmp_path)
    git(root, "checkout", "-q", "--detach")

    data = read_git_data(root)

    assert (data.ref, data.is_tag) == (data.sha, False)


def test_a_branch_that_a_tag_shadows_keeps_gits_short_name(tmp_path: Path) -> None:
    """As ``git symbolic-ref --short HEAD`` says: ``heads/main`` when a tag is also called main."""
    root = repo(tmp_path)
    git(root, "tag", "main")

    assert read_git_data(root).ref == "heads/main"


def test_without_a_remote_the_project_is_local_and_the_default_branch_configured(tmp_path: Path) -> None:
    root = repo(tmp_path, "my-tool")
    git(root, "config", "init.defaultBranch", "develop")

    data = read_git_data(root)

    assert (data.remote_url, data.server_host, data.project_path) == ("", "gitlab.com", "local/my-tool")
    assert data.default_branch == "develop"
    assert (data.user_name, data.user_email) == ("", "")


def test_the_last_configured_user_wins_and_values_stay_whole(tmp_path: Path) -> None:
    root = repo(tmp_path)
    config = root / ".git" / "config"
    config.write_text(
        config.read_text()
        + '[user]\n\tname = First\n\temail = "a\\nb@example.com"\n[User]\n\tNAME = Second\n'
    )

    data = read_git_data(root)

    assert (data.user_name, data.user_email) == ("Second", "a\nb@example.com")


def test_a_repository_without_a_commit_says_to_commit(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    git(root, "init", "-q")

    with pytest.raises(PipelineError, match="has no commit yet"):
        read_git_data(root)


def test_outside_a_repository_there_is_no_commit(tmp_path: Path) -> None:
    plain = tmp_path / "Unpacked Tarball"
    plain.mkdir()

    data = read_git_data(plain)

    assert not data.has_commit
    assert (data.ref, data.project_path, data.default_branch) == ("", "local/unpacked-tarball", "main")
