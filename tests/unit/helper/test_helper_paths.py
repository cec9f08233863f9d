"""Which files artifacts/cache steps pick up: GitLab's path, glob, exclude and untracked rules."""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from kuberunner.helper.log import Log
from kuberunner.helper.paths import FileSet, collect, compile_glob, split_pattern


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("*.txt", "a.txt", True),
        ("*.txt", "dir/a.txt", False),
        ("*.txt", ".hidden.txt", True),
        ("**/*.txt", "a.txt", True),
        ("**/*.txt", "x/y/a.txt", True),
        ("**/*.txt", "x/y/a.txt.bak", False),
        ("dist/**", "dist", True),
        ("dist/**", "dist/a/b.js", True),
        ("dist/**", "distx/a", False),
        ("a/**/b", "a/b", True),
        ("a/**/b", "a/x/y/b", True),
        ("a/**/b", "a/x/yb", False),
        ("src/*/main.go", "src/x/main.go", True),
        ("src/*/main.go", "src/x/y/main.go", False),
        ("{bin,lib}/*.so", "lib/a.so", True),
        ("{bin,lib}/*.so", "usr/a.so", False),
        ("file[0-9].log", "file7.log", True),
        ("file[0-9].log", "filex.log", False),
        ("file[!0-9].log", "filex.log", True),
        ("file[!0-9].log", "file7.log", False),
        ("?.c", "a.c", True),
        ("?.c", "ab.c", False),
        ("a*b", "a/b", False),
        ("**", "any/thing/at/all", True),
    ],
)
def test_glob_semantics_follow_doublestar(pattern: str, path: str, matches: bool) -> None:
    assert (compile_glob(pattern).fullmatch(path) is not None) is matches


def test_split_pattern_keeps_the_literal_directory_in_front_of_the_first_glob() -> None:
    assert split_pattern("build/out/**/*.o") == ("build/out", "**/*.o")
    assert split_pattern("*.txt") == (".", "*.txt")
    assert split_pattern("plain/path") == ("plain/path", "")


Writer = Callable[..., Path]


def _collect(
    root: Path, *paths: str, exclude: tuple[str, ...] = (), untracked: bool = False
) -> tuple[FileSet, str]:
    out = io.StringIO()
    files = collect(root, paths, exclude=exclude, untracked=untracked, log=Log(out, out))
    return files, out.getvalue()


def test_a_directory_path_includes_everything_under_it_and_counts_like_gitlab(
    tmp_path: Path, write: Writer
) -> None:
    write(tmp_path / "dist/app.js")
    write(tmp_path / "dist/css/site.css")
    write(tmp_path / "other.txt")

    files, output = _collect(tmp_path, "dist/")

    assert files.names() == ["dist", "dist/app.js", "dist/css", "dist/css/site.css"]
    assert "dist/: found 4 matching artifact files and directories" in output


def test_globs_exclude_and_absolute_paths_inside_the_project(tmp_path: Path, write: Writer) -> None:
    write(tmp_path / "build/a.o")
    write(tmp_path / "build/sub/b.o")
    write(tmp_path / "build/sub/keep.txt")
    write(tmp_path / "build/tmp/c.o")
    write(tmp_path / "report.xml")

    files, output = _collect(
        tmp_path,
        "build/**/*.o",
        str(tmp_path / "report.xml"),
        exclude=("build/tmp/**",),
    )

    assert files.names() == ["build/a.o", "build/sub/b.o", "report.xml"]
    assert "build/tmp/**: excluded 1 files" in output


def test_exclude_is_not_recursive_a_directory_pattern_only_drops_the_directory_entry(
    tmp_path: Path, write: Writer
) -> None:
    write(tmp_path / "out/cache/blob")
    write(tmp_path / "out/app")

    files, _ = _collect(tmp_path, "out", exclude=("out/cache",))

    assert files.names() == ["out", "out/app", "out/cache/blob"]


def test_no_match_warns_with_gitlabs_wording(tmp_path: Path) -> None:
    files, output = _collect(tmp_path, "nope")

    assert len(files) == 0
    assert (
        f"WARNING: nope: no matching files. Ensure that the artifact path is relative to the "
        f"working directory ({tmp_path})" in output
    )


def test_paths_outside_the_project_are_rejected_with_a_warning(tmp_path: Path, write: Writer) -> None:
    project = tmp_path / "project"
    write(tmp_path / "secret.txt", "top secret")
    write(project / "ok.txt")

    files, output = _collect(project, "../secret.txt", "/etc/passwd", "../*", "ok.txt")

    assert files.names() == ["ok.txt"]
    assert output.count("is outside the project directory") == 3
    assert "WARNING: ../secret.txt: the path is outside the project directory" in output


def test_a_symlinked_parent_directory_cannot_lead_outside_the_project(tmp_path: Path, write: Writer) -> None:
    project = tmp_path / "project"
    write(tmp_path / "outside/secret.txt", "top secret")
    project.mkdir()
    (project / "escape").symlink_to(tmp_path / "outside")

    files, output = _collect(project, "escape/secret.txt")

    assert len(files) == 0
    assert "symbolic link that leads outside the project directory" in output


def test_symlinks_are_collected_as_links_and_not_followed(tmp_path: Path, write: Writer) -> None:
    write(tmp_path / "outside/big.bin")
    project = tmp_path / "project"
    write(project / "dist/real.txt")
    (project / "dist/link-to-outside").symlink_to(tmp_path / "outside")

    files, _ = _collect(project, "dist")

    assert files.names() == ["dist", "dist/link-to-outside", "dist/real.txt"]
    assert os.path.islink(project / "dist/link-to-outside")


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(cwd)},
    )


def test_untracked_lists_files_git_does_not_track_including_ignored_ones(
    tmp_path: Path, write: Writer
) -> None:
    write(tmp_path / "tracked.txt")
    write(tmp_path / ".gitignore", "*.log\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "tracked.txt", ".gitignore")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "init")
    write(tmp_path / "new/generated.txt")
    write(tmp_path / "debug.log")

    files, output = _collect(tmp_path, untracked=True, exclude=("*.tmp",))

    # GitLab documents that `untracked` ignores .gitignore, so debug.log is included.
    assert files.names() == ["debug.log", "new/generated.txt"]
    assert "untracked: found 2 files" in output


def test_untracked_outside_a_git_repository_says_so(tmp_path: Path, write: Writer) -> None:
    write(tmp_path / "file.txt")

    files, output = _collect(tmp_path, untracked=True)

    assert len(files) == 0
    assert f"WARNING: untracked: {tmp_path} is not a git repository" in output
