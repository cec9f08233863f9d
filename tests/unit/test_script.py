"""Stage scripts and the Build they come from, without running them (the runs are in ``script/``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trustme

from kuberunner.build import Build, BuildConfigError, go_duration
from kuberunner.config.schema import RunnerConfig
from kuberunner.job import JobPayload
from kuberunner.script import Stage, generate, has_work, quote, stage_title, step_stages


def fixture_job(shared_dir: Path, **changes: Any) -> JobPayload:
    data = json.loads((shared_dir / "docs/fixtures/job-payload.json").read_text())
    data.update(changes)
    return JobPayload.parse(data)


def make(shared_dir: Path, runner: RunnerConfig | None = None, **changes: Any) -> Build:
    return Build.create(
        fixture_job(shared_dir, **changes),
        runner or RunnerConfig(token="glrt-t0kenABCDEFG", url="https://gitlab.example.com/"),
        executor_name="kubernetes",
        helper_command=["gitlab-runner-helper"],
    )


@pytest.mark.parametrize(
    ("stage", "title"),
    [
        ("prepare_script", "Preparing environment"),
        ("get_sources", "Getting source from Git repository"),
        ("restore_cache", "Restoring cache"),
        ("download_artifacts", "Downloading artifacts"),
        ("step_script", 'Executing "step_script" stage of the job script'),
        ("step_release", 'Executing "step_release" stage of the job script'),
        ("after_script", "Running after_script"),
        ("archive_cache", "Saving cache for successful job"),
        ("archive_cache_on_failure", "Saving cache for failed job"),
        ("upload_artifacts_on_success", "Uploading artifacts for successful job"),
        ("upload_artifacts_on_failure", "Uploading artifacts for failed job"),
        ("cleanup_file_variables", "Cleaning up project directory and file based variables"),
    ],
)
def test_stage_titles_are_gitlab_runners(stage: str, title: str) -> None:
    assert stage_title(stage) == title


def test_fixture_job_stages(shared_dir: Path) -> None:
    build = make(shared_dir)
    assert step_stages(build) == ["step_script"]
    work = {stage: has_work(build, stage) for stage in Stage}
    assert work == {
        Stage.PREPARE_SCRIPT: True,
        Stage.GET_SOURCES: True,
        Stage.RESTORE_CACHE: True,
        Stage.DOWNLOAD_ARTIFACTS: True,  # compile's artifacts
        Stage.STEP_SCRIPT: True,
        Stage.AFTER_SCRIPT: True,
        Stage.ARCHIVE_CACHE: True,
        Stage.ARCHIVE_CACHE_ON_FAILURE: False,  # the cache is saved on success only
        Stage.UPLOAD_ARTIFACTS_ON_SUCCESS: True,
        Stage.UPLOAD_ARTIFACTS_ON_FAILURE: True,  # junit is `when: always`
        Stage.CLEANUP_FILE_VARIABLES: True,  # KUBECONFIG_DATA
    }


def test_a_bare_job_skips_what_it_does_not_use(shared_dir: Path) -> None:
    build = make(
        shared_dir,
        variables=[],
        cache=[],
        artifacts=[],
        dependencies=[],
        steps=[{"name": "script", "script": ["true"]}, {"name": "release", "script": ["release-cli"]}],
    )
    assert step_stages(build) == ["step_script", "step_release"]
    skipped = [s for s in Stage if not has_work(build, s)]
    assert skipped == [
        Stage.RESTORE_CACHE,
        Stage.DOWNLOAD_ARTIFACTS,
        Stage.AFTER_SCRIPT,
        Stage.ARCHIVE_CACHE,
        Stage.ARCHIVE_CACHE_ON_FAILURE,
        Stage.UPLOAD_ARTIFACTS_ON_SUCCESS,
        Stage.UPLOAD_ARTIFACTS_ON_FAILURE,
        Stage.CLEANUP_FILE_VARIABLES,
    ]
    no_gitlab = make(shared_dir, RunnerConfig(url=""))
    assert not has_work(no_gitlab, Stage.UPLOAD_ARTIFACTS_ON_SUCCESS)


def test_an_unknown_stage_is_refused(shared_dir: Path) -> None:
    with pytest.raises(BuildConfigError, match="the job has no stage 'step_deploy'"):
        generate(make(shared_dir), "step_deploy")


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("plain/path-1.0:x,y@z+%=", "plain/path-1.0:x,y@z+%="),
        ("", "''"),
        ("two words", "'two words'"),
        ("it's", "'it'\\''s'"),
        ("$HOME", "'$HOME'"),
        ("a\x00b", "ab"),
    ],
)
def test_quote(value: str, quoted: str) -> None:
    assert quote(value) == quoted


def test_gitlab_durations() -> None:
    assert [go_duration(s) for s in (3600, 5400, 300, 42)] == ["1h0m0s", "1h30m0s", "5m0s", "42s"]


# ----------------------------------------------------------------- the Build


def test_kubernetes_layout(shared_dir: Path) -> None:
    build = make(shared_dir)
    assert build.builds_dir == "/builds"
    assert build.project_dir == "/builds/acme/webapp"
    assert build.file_variables_dir == "/builds/acme/webapp.tmp"
    assert build.cache_file("deps") == "/cache/acme/webapp/deps/cache.zip"
    assert build.timeout == 3600
    assert build.gitlab_url == "https://gitlab.example.com/"
    assert build.variables.value("CI_PROJECT_DIR") == build.project_dir
    assert build.variables.value("CI_DISPOSABLE_ENVIRONMENT") == "true"


def test_shell_layout_isolates_concurrent_jobs(shared_dir: Path, tmp_path: Path) -> None:
    runner = RunnerConfig(
        token="glrt-t0kenABCDEFG", builds_dir=str(tmp_path / "b"), cache_dir=str(tmp_path / "c")
    )
    job = fixture_job(shared_dir)
    one = Build.create(job, runner, executor_name="shell", concurrent_id=0, helper_command=["h"])
    two = Build.create(job, runner, executor_name="shell", concurrent_id=1, helper_command=["h"])
    assert one.project_dir == f"{tmp_path}/b/t0kenABC/0/acme/webapp"
    assert two.project_dir == f"{tmp_path}/b/t0kenABC/1/acme/webapp"
    assert one.cache_dir == f"{tmp_path}/c"


def test_project_path_never_escapes_the_builds_dir(shared_dir: Path) -> None:
    job_info = {"id": 1, "name": "x", "project_id": 42, "project_full_path": "../../etc"}
    assert make(shared_dir, job_info=job_info).project_dir == "/builds/etc"
    job_info["project_full_path"] = ""
    git_info = {"repo_url": "https://gitlab.example.com/group/sub/proj.git", "sha": "a" * 40}
    assert make(shared_dir, job_info=job_info, git_info=git_info).project_dir == "/builds/group/sub/proj"
    git_info["repo_url"] = ""
    assert make(shared_dir, job_info=job_info, git_info=git_info).project_dir == "/builds/project-42"


def test_masked_values_cover_variables_and_tokens(shared_dir: Path) -> None:
    build = make(shared_dir)
    assert set(build.masked_values()) == {"glcbt-64_Zx9yQ2mN4kP7rT1vW3sA", "s3cr3tV4lu3xyz99"}
    assert "s3cr3t" not in repr(build) and "glcbt" not in repr(build)


def test_timeouts_and_attempts_from_variables(shared_dir: Path) -> None:
    def with_vars(**values: str) -> Build:
        return make(shared_dir, variables=[{"key": k, "value": v} for k, v in values.items()])

    build = with_vars(
        RUNNER_SCRIPT_TIMEOUT="15m", RUNNER_AFTER_SCRIPT_TIMEOUT="1h30m", GET_SOURCES_ATTEMPTS="3"
    )
    assert build.script_timeout == 900
    assert build.after_script_timeout == 5400
    assert build.get_sources_attempts == 3
    defaults = with_vars(RUNNER_SCRIPT_TIMEOUT="1200", RUNNER_AFTER_SCRIPT_TIMEOUT="soon")  # not Go durations
    assert defaults.script_timeout is None
    assert defaults.after_script_timeout == 300
    assert defaults.restore_cache_attempts == 1
    with pytest.raises(BuildConfigError, match="ARTIFACT_DOWNLOAD_ATTEMPTS=11 is out of range"):
        _ = with_vars(ARTIFACT_DOWNLOAD_ATTEMPTS="11").artifact_download_attempts


def test_git_settings_from_variables(shared_dir: Path) -> None:
    def with_vars(**values: str) -> Build:
        return make(shared_dir, variables=[{"key": k, "value": v} for k, v in values.items()])

    build = make(shared_dir)
    assert (build.git_strategy, build.git_depth, build.git_clean_flags) == ("fetch", 20, ["-ffdx"])
    assert build.git_fetch_flags == ["--prune", "--quiet"]
    assert make(shared_dir, allow_git_fetch=False).git_strategy == "clone"
    build = with_vars(GIT_STRATEGY="none", GIT_CHECKOUT="true", GIT_SUBMODULE_STRATEGY="recursive")
    assert (build.git_checkout, build.submodule_strategy) == (False, "none")  # nothing to check out
    build = with_vars(
        GIT_DEPTH="3", GIT_CLEAN_FLAGS="none", GIT_FETCH_EXTRA_FLAGS="none", GIT_CHECKOUT="false"
    )
    assert (build.git_depth, build.git_clean_flags, build.git_fetch_flags, build.git_checkout) == (
        3,
        [],
        [],
        False,
    )


def test_tls_ca_file_becomes_a_file_variable(shared_dir: Path, tmp_path: Path) -> None:
    pem = trustme.CA().cert_pem.bytes().decode()
    ca = tmp_path / "ca.pem"
    ca.write_text(pem)
    build = make(shared_dir, RunnerConfig(**{"tls-ca-file": str(ca)}))
    assert build.variables.value("CI_SERVER_TLS_CA_FILE") == pem
    assert build.variables.get("CI_SERVER_TLS_CA_FILE") == "/builds/acme/webapp.tmp/CI_SERVER_TLS_CA_FILE"
    with pytest.raises(BuildConfigError, match=r"tls-ca-file '.*absent.pem' cannot be read \(No such file"):
        make(shared_dir, RunnerConfig(**{"tls-ca-file": str(tmp_path / "absent.pem")}))


def test_kubernetes_get_sources_trusts_the_ca_for_gitlabs_host_only(shared_dir: Path, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text(trustme.CA().cert_pem.bytes().decode())
    script = generate(make(shared_dir, RunnerConfig(**{"tls-ca-file": str(ca)})), "get_sources")
    assert "git config --global http.https://gitlab.example.com.sslCAInfo " in script
