"""get_sources against real local repositories, under bash, dash and busybox sh."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from script_support import MakeBuild, RunStage, echo, notice
from tests.doubles.gitlab import BareRepo, make_bare_repo

from kuberunner.build import Build, BuildConfigError
from kuberunner.config.schema import RunnerConfig
from kuberunner.script import generate

Git = Callable[..., str]


@pytest.fixture
def repo(tmp_path: Path) -> BareRepo:
    return make_bare_repo(tmp_path / "remote", name="app", commits=3, files={"src/main.c": "int main;\n"})


def git_info(repo: BareRepo, *, sha: str | None = None, depth: int = 0, **extra: Any) -> dict[str, Any]:
    info: dict[str, Any] = {
        "repo_url": f"file://{repo.path}",
        "ref": "main",
        "sha": sha or repo.head,
        "ref_type": "branch",
        "refspecs": ["+refs/heads/main:refs/remotes/origin/main"],
        "depth": depth,
    }
    info.update(extra)
    return info


def variables(**values: str) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in values.items()]


def head(git: Git, build: Build) -> str:
    return git("rev-parse", "HEAD", cwd=Path(build.project_dir)).strip()


def test_clone_checks_out_the_exact_sha(
    make_build: MakeBuild, run_stage: RunStage, repo: BareRepo, git: Git
) -> None:
    older = repo.commits[1]  # not the branch tip: the job's own commit must be checked out
    build = make_build(git_info=git_info(repo, sha=older, depth=2), variables=variables(GIT_STRATEGY="clone"))
    ran = run_stage(build, "get_sources")
    assert ran.rc == 0, ran.text
    assert head(git, build) == older
    assert notice("Fetching changes with git depth set to 2...") in ran.text
    assert notice("Created fresh repository.") in ran.text
    assert notice(f"Checking out {older[:8]} as detached HEAD (ref is main)...") in ran.text
    assert notice("Skipping Git submodules setup") in ran.text
    assert (Path(build.project_dir) / "src/main.c").read_text() == "int main;\n"
    assert git("rev-parse", "--is-shallow-repository", cwd=Path(build.project_dir)).strip() == "true"


def test_fetch_reuses_the_checkout_and_cleans_it(
    make_build: MakeBuild, run_stage: RunStage, repo: BareRepo, git: Git
) -> None:
    build = make_build(git_info=git_info(repo))
    assert build.git_strategy == "fetch"  # allow_git_fetch is true
    assert run_stage(build, "get_sources").rc == 0
    leftover = Path(build.project_dir) / "build-output.o"
    leftover.write_text("stale")
    ran = run_stage(build, "get_sources")
    assert ran.rc == 0, ran.text
    assert notice("Fetching changes...") in ran.text
    assert "Created fresh repository." not in ran.text  # the repository is reused
    assert not leftover.exists()  # git clean -ffdx
    assert head(git, build) == repo.head
    assert git("rev-parse", "--is-shallow-repository", cwd=Path(build.project_dir)).strip() == "false"


def test_git_clean_flags_none_keeps_untracked_files(
    make_build: MakeBuild, run_stage: RunStage, repo: BareRepo
) -> None:
    build = make_build(git_info=git_info(repo), variables=variables(GIT_CLEAN_FLAGS="none"))
    assert run_stage(build, "get_sources").rc == 0
    kept = Path(build.project_dir) / "kept.txt"
    kept.write_text("keep")
    assert run_stage(build, "get_sources").rc == 0
    assert kept.exists()


def test_strategy_none_leaves_an_empty_project_dir(
    make_build: MakeBuild, run_stage: RunStage, repo: BareRepo
) -> None:
    runner = RunnerConfig(pre_get_sources_script="echo runner-pre")
    build = make_build(runner, git_info=git_info(repo), variables=variables(GIT_STRATEGY="none"))
    Path(build.project_dir).rmdir()
    ran = run_stage(build, "get_sources")
    assert ran.rc == 0, ran.text
    assert ran.text == (
        notice("Skipping Git repository setup")
        + notice("Skipping Git checkout")
        + notice("Skipping Git submodules setup")
    )  # hooks do not run without a repository
    assert list(Path(build.project_dir).iterdir()) == []


def test_git_checkout_false_fetches_without_checking_out(
    make_build: MakeBuild, run_stage: RunStage, repo: BareRepo
) -> None:
    build = make_build(git_info=git_info(repo), variables=variables(GIT_CHECKOUT="false"))
    ran = run_stage(build, "get_sources")
    assert ran.rc == 0, ran.text
    assert notice("Skipping Git checkout") in ran.text
    assert not (Path(build.project_dir) / "README.md").exists()


def test_hooks_run_around_the_checkout_in_gitlab_runners_order(
    make_build: MakeBuild, run_stage: RunStage, repo: BareRepo
) -> None:
    runner = RunnerConfig(
        pre_get_sources_script="echo runner-pre", post_get_sources_script="echo runner-post"
    )
    hooks = [
        {"name": "pre_get_sources_script", "script": ["echo job-pre"]},
        {
            "name": "post_get_sources_script",
            "script": ["echo job-post", "test -f README.md && echo has-readme"],
        },
    ]
    ran = run_stage(make_build(runner, git_info=git_info(repo), hooks=hooks), "get_sources")
    assert ran.rc == 0, ran.text
    order = [
        ran.text.index(s)
        for s in ("runner-pre\n", "job-pre\n", "Checking out", "job-post\n", "runner-post\n")
    ]
    assert order == sorted(order)
    assert echo("echo runner-pre") in ran.text and "has-readme\n" in ran.text


def test_a_failing_pre_hook_fails_the_stage(
    make_build: MakeBuild, run_stage: RunStage, repo: BareRepo
) -> None:
    hooks = [{"name": "pre_get_sources_script", "script": ["exit 9"]}]
    ran = run_stage(make_build(git_info=git_info(repo), hooks=hooks), "get_sources")
    assert ran.rc == 9
    assert "Fetching changes" not in ran.text


def test_the_job_token_never_reaches_the_output(make_build: MakeBuild, run_stage: RunStage) -> None:
    secret = "glcbt-64_JobTokenForTests123"
    info = {
        "repo_url": f"http://gitlab-ci-token:{secret}@127.0.0.1:9/acme/app.git",  # nothing listens on port 9
        "ref": "main",
        "sha": "0" * 40,
        "refspecs": ["+refs/heads/main:refs/remotes/origin/main"],
    }
    build = make_build(git_info=info)
    assert secret in generate(build, "get_sources")  # the command needs it...
    ran = run_stage(build, "get_sources")
    assert ran.rc != 0
    assert "127.0.0.1" in ran.text  # git's error names the server...
    assert secret not in ran.text  # ...but never the credentials


def test_clone_url_replaces_gitlabs_host_and_keeps_the_job_token(make_build: MakeBuild) -> None:
    runner = RunnerConfig(clone_url="https://git.internal:8443/mirror")
    build = make_build(
        runner,
        git_info={"repo_url": "https://gitlab-ci-token:tok@gitlab.example.com/acme/app.git", "sha": "a" * 40},
        variables=variables(CI_PROJECT_PATH="acme/app"),
    )
    token = "glcbt-64_JobTokenForTests123"
    assert build.remote_url == f"https://gitlab-ci-token:{token}@git.internal:8443/mirror/acme/app.git"
    ssh = make_build(
        RunnerConfig(clone_url="ssh://gitlab.example.com"), variables=variables(CI_PROJECT_PATH="a/b")
    )
    assert ssh.remote_url == "ssh://git@gitlab.example.com/a/b.git"


def test_fetch_extra_flags_and_refspecs_reach_git(make_build: MakeBuild) -> None:
    build = make_build(
        git_info={
            "repo_url": "file:///r.git",
            "sha": "b" * 40,
            "refspecs": ["+refs/pipelines/9:refs/pipelines/9", "+refs/heads/main:refs/remotes/origin/main"],
            "depth": 20,
        },
        variables=variables(GIT_FETCH_EXTRA_FLAGS="--no-tags --prune"),
    )
    script = generate(build, "get_sources")
    assert (
        "fetch origin +refs/pipelines/9:refs/pipelines/9 +refs/heads/main:refs/remotes/origin/main "
        "--depth 20 --no-tags --prune" in script
    )


def test_submodules_are_initialized_with_the_strategy(
    make_build: MakeBuild, run_stage: RunStage, tmp_path: Path, git: Git
) -> None:
    lib = make_bare_repo(tmp_path / "remote", name="lib", commits=1, files={"lib.h": "#define LIB 1\n"})
    work = tmp_path / "work"
    git("clone", "-q", f"file://{lib.path}", str(tmp_path / "unused"))
    git("init", "-q", "-b", "main", str(work))
    git(
        "-c",
        "protocol.file.allow=always",
        "submodule",
        "add",
        "-q",
        f"file://{lib.path}",
        "vendor/lib",
        cwd=work,
    )
    git("commit", "-q", "-m", "with submodule", cwd=work)
    sha = git("rev-parse", "HEAD", cwd=work).strip()
    app = tmp_path / "remote" / "app.git"
    git("clone", "-q", "--bare", str(work), str(app))
    # git refuses file:// submodules by default; allow it as an operator would for a local mirror
    (tmp_path / "home" / ".gitconfig").write_text('[protocol "file"]\n\tallow = always\n')
    info = {
        "repo_url": f"file://{app}",
        "ref": "main",
        "sha": sha,
        "refspecs": ["+refs/heads/main:refs/remotes/origin/main"],
    }
    build = make_build(
        git_info=info, variables=variables(GIT_SUBMODULE_STRATEGY="recursive", GIT_SUBMODULE_DEPTH="1")
    )
    ran = run_stage(build, "get_sources")
    assert ran.rc == 0, ran.text
    assert notice("Updating/initializing submodules recursively with git depth set to 1...") in ran.text
    assert (Path(build.project_dir) / "vendor/lib/lib.h").read_text() == "#define LIB 1\n"


def test_unknown_submodule_strategy_is_a_clear_error(make_build: MakeBuild) -> None:
    build = make_build(git_info={"sha": "c" * 40}, variables=variables(GIT_SUBMODULE_STRATEGY="deep"))
    with pytest.raises(
        BuildConfigError, match="GIT_SUBMODULE_STRATEGY='deep' is not supported: use none, normal"
    ):
        generate(build, "get_sources")
