"""Cache, artifact download and upload scripts: the helper calls they make and how failures count."""

from __future__ import annotations

from pathlib import Path

from script_support import FakeHelper, MakeBuild, RunStage, notice, warning

from kuberunner.build import Build
from kuberunner.config.schema import CacheConfig, RunnerConfig
from kuberunner.job import Cache


def cache(key: str = "deps", **extra: object) -> dict[str, object]:
    entry: dict[str, object] = {
        "key": key,
        "paths": [".m2/repository"],
        "policy": "pull-push",
        "when": "on_success",
    }
    entry.update(extra)
    return entry


def test_restore_cache_extracts_each_key(
    make_build: MakeBuild, run_stage: RunStage, fake_helper: FakeHelper
) -> None:
    build = make_build(cache=[cache("deps-$CI_JOB_ID")])
    ran = run_stage(build, "restore_cache")
    assert ran.rc == 0, ran.text
    assert ran.text == notice("Checking cache for deps-77...") + "helper ran: cache-extractor\n" + notice(
        "Successfully extracted cache"
    )
    archive = f"{build.cache_dir}/acme/app/deps-77/cache.zip"
    assert fake_helper.calls() == [["cache-extractor", "--file", archive, "--timeout", "10"]]


def test_a_missing_cache_falls_back_then_only_warns(
    make_build: MakeBuild, run_stage: RunStage, fake_helper: FakeHelper
) -> None:
    build = make_build(
        cache=[cache("main__missing__", fallback_keys=["default__missing__", "shared"])],
        variables=[{"key": "CACHE_FALLBACK_KEY", "value": "global"}],
    )
    ran = run_stage(build, "restore_cache")
    assert ran.rc == 0, ran.text
    tried = [call[2].split("/")[-2] for call in fake_helper.calls()]
    assert tried == ["main__missing__", "default__missing__", "shared"]  # stops at the first that works
    assert ran.text.count(warning("Failed to extract cache")) == 2
    assert ran.text.endswith(notice("Successfully extracted cache"))

    ran = run_stage(make_build(cache=[cache("only__missing__")]), "restore_cache")
    assert ran.rc == 0  # a cache that cannot be restored is a warning, not a failure
    assert ran.text.endswith(warning("Failed to extract cache"))


def test_protected_global_fallback_key_is_ignored(make_build: MakeBuild) -> None:
    build = make_build(variables=[{"key": "CACHE_FALLBACK_KEY", "value": "main-protected"}])
    assert build.cache_fallback_keys(Cache(key="x", fallback_keys=["a", "../escape", "a"])) == ["a"]


def test_policy_and_when_decide_what_is_restored_and_saved(
    make_build: MakeBuild, run_stage: RunStage, fake_helper: FakeHelper
) -> None:
    build = make_build(
        cache=[
            cache("pull-only", policy="pull"),
            cache("push-only", policy="push"),
            cache("on-failure", when="on_failure"),
            cache("always", when="always", untracked=True, paths=[]),
        ]
    )
    ran = run_stage(build, "restore_cache")
    assert notice("Not downloading cache push-only due to policy") in ran.text
    assert [c[2].split("/")[-2] for c in fake_helper.calls()] == ["pull-only", "on-failure", "always"]

    fake_helper.log.unlink()
    ran = run_stage(build, "archive_cache")
    assert ran.rc == 0, ran.text
    assert notice("Not uploading cache pull-only due to policy") in ran.text
    assert notice("Creating cache push-only...") in ran.text and notice("Created cache") in ran.text
    calls = fake_helper.calls()
    assert [c[2].split("/")[-2] for c in calls] == ["push-only", "always"]
    assert calls[0] == [
        "cache-archiver",
        "--file",
        f"{build.cache_dir}/acme/app/push-only/cache.zip",
        "--timeout",
        "10",
        "--path",
        ".m2/repository",
    ]
    assert calls[1][-1] == "--untracked"

    fake_helper.log.unlink()
    assert run_stage(build, "archive_cache_on_failure").rc == 0
    assert [c[2].split("/")[-2] for c in fake_helper.calls()] == ["on-failure", "always"]


def test_a_failure_to_save_the_cache_is_a_warning(make_build: MakeBuild, run_stage: RunStage) -> None:
    ran = run_stage(make_build(cache=[cache("dir__missing__")]), "archive_cache")
    assert ran.rc == 0
    assert ran.text.endswith(warning("Failed to create cache"))


def test_empty_or_escaping_keys_skip_the_cache(make_build: MakeBuild, run_stage: RunStage) -> None:
    build = make_build(cache=[cache("../../etc")])
    ran = run_stage(build, "restore_cache")
    assert ran.text == notice("Skipping cache extraction due to empty cache key")
    # no key at all: gitlab-runner's default, <job name>/<ref>
    assert make_build().cache_key(Cache(key="")) == "build/main"


def test_object_storage_cache_uses_presigned_urls(
    make_build: MakeBuild, run_stage: RunStage, fake_helper: FakeHelper
) -> None:
    runner = RunnerConfig(token="glrt-RunnerTok3n", cache=CacheConfig(Type="s3", Path="ci"))
    build = make_build(runner, cache=[cache("deps")])
    signed: list[tuple[str, str]] = []

    def presign(method: str, name: str) -> str:
        signed.append((method, name))
        return f"https://s3.example.com/bucket/{name}?X-Amz-Signature=s'g&op={method}"

    build.cache_presigner = presign
    assert run_stage(build, "restore_cache").rc == 0
    assert run_stage(build, "archive_cache").rc == 0
    name = "ci/runner/RunnerTo/project/5/deps"
    assert signed == [("GET", name), ("PUT", name)]
    get, put = fake_helper.calls()
    assert get[-2:] == ["--url", f"https://s3.example.com/bucket/{name}?X-Amz-Signature=s'g&op=GET"]
    assert put[-2:] == ["--url", f"https://s3.example.com/bucket/{name}?X-Amz-Signature=s'g&op=PUT"]
    shared = make_build(RunnerConfig(cache=CacheConfig(Type="s3", Shared=True)))
    assert shared.cache_object_name("k") == "project/5/k"


def test_dependencies_are_downloaded_with_their_own_token(
    make_build: MakeBuild, run_stage: RunStage, fake_helper: FakeHelper
) -> None:
    dependencies = [
        {
            "id": 10,
            "name": "compile",
            "token": "dep-token-10",
            "artifacts_file": {"filename": "a.zip", "size": 1},
        },
        {"id": 11, "name": "lint", "token": "dep-token-11"},  # no artifacts: nothing to download
    ]
    ran = run_stage(make_build(dependencies=dependencies), "download_artifacts")
    assert ran.rc == 0, ran.text
    assert ran.text.startswith(notice("Downloading artifacts for compile (10)..."))
    assert fake_helper.calls() == [
        [
            "artifacts-downloader",
            "--url",
            "https://gitlab.example.com",
            "--token",
            "dep-token-10",
            "--id",
            "10",
        ]
    ]


def test_a_failed_download_fails_the_stage(make_build: MakeBuild, run_stage: RunStage) -> None:
    dependencies = [
        {"id": 12, "name": "gone", "token": "__missing__", "artifacts_file": {"filename": "a.zip"}}
    ]
    ran = run_stage(make_build(dependencies=dependencies), "download_artifacts")
    assert ran.rc == 1


def test_uploads_follow_when_and_pass_every_option(
    make_build: MakeBuild, run_stage: RunStage, fake_helper: FakeHelper
) -> None:
    artifacts = [
        {
            "name": "dist-$CI_JOB_ID",
            "paths": ["dist/", "$CI_JOB_ID.txt"],
            "exclude": ["dist/*.tmp"],
            "when": "on_success",
            "expire_in": "1 week",
            "artifact_type": "archive",
            "artifact_format": "zip",
        },
        {
            "name": "junit",
            "paths": ["report.xml"],
            "when": "always",
            "artifact_type": "junit",
            "artifact_format": "gzip",
        },
        {"name": "logs", "untracked": True, "when": "on_failure"},
        {"name": "nothing", "when": "always"},  # no paths: skipped
    ]
    build = make_build(artifacts=artifacts)
    ran = run_stage(build, "upload_artifacts_on_success")
    assert ran.rc == 0, ran.text
    common = [
        "artifacts-uploader",
        "--url",
        "https://gitlab.example.com",
        "--token",
        build.job.token,
        "--id",
        "77",
    ]
    assert fake_helper.calls() == [
        [
            *common,
            *("--path", "dist/", "--path", "77.txt", "--exclude", "dist/*.tmp", "--name", "dist-77"),
            *("--expire-in", "1 week", "--artifact-format", "zip", "--artifact-type", "archive"),
        ],
        [
            *common,
            "--path",
            "report.xml",
            "--name",
            "junit",
            "--artifact-format",
            "gzip",
            "--artifact-type",
            "junit",
        ],
    ]
    assert ran.text.count(notice("Uploading artifacts...")) == 2

    fake_helper.log.unlink()
    assert run_stage(build, "upload_artifacts_on_failure").rc == 0
    assert [c[c.index("--name") + 1] for c in fake_helper.calls()] == ["junit", "logs"]


def test_a_failed_upload_fails_the_stage(make_build: MakeBuild, run_stage: RunStage) -> None:
    ran = run_stage(
        make_build(artifacts=[{"name": "__missing__", "paths": ["x"]}]), "upload_artifacts_on_success"
    )
    assert ran.rc == 1


def test_a_missing_helper_disables_the_step_with_a_warning(
    make_build: MakeBuild, run_stage: RunStage
) -> None:
    build: Build = make_build(artifacts=[{"name": "a", "paths": ["x"]}], cache=[cache("deps")])
    build.helper_command = [str(Path(build.builds_dir) / "no-such-helper")]
    ran = run_stage(build, "upload_artifacts_on_success")
    assert ran.rc == 0
    assert ran.text.endswith(warning(f"Missing {build.helper_command[0]}. Uploading artifacts is disabled."))
    ran = run_stage(build, "restore_cache")
    assert ran.text.endswith(warning(f"Missing {build.helper_command[0]}. Extracting cache is disabled."))


def test_without_a_gitlab_url_the_helper_finds_gitlab_from_the_job(
    make_build: MakeBuild, run_stage: RunStage, fake_helper: FakeHelper
) -> None:
    dependencies = [
        {"id": 10, "name": "compile", "token": "dep-token-10", "artifacts_file": {"filename": "a.zip"}}
    ]
    build = make_build(
        RunnerConfig(url=""), dependencies=dependencies, artifacts=[{"name": "a", "paths": ["x"]}]
    )
    assert run_stage(build, "download_artifacts").rc == 0
    assert fake_helper.calls() == [["artifacts-downloader", "--token", "dep-token-10", "--id", "10"]]
    ran = run_stage(build, "upload_artifacts_on_success")
    assert ran.rc == 0 and ran.text == ""  # nowhere to upload to
    assert len(fake_helper.calls()) == 1
