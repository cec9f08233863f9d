"""cache-archiver and cache-extractor with presigned URLs against an S3 double on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import Result
from helper_doubles import FakeS3, HelperRun, Reply, zip_bytes

from kuberunner.helper.s3 import path_style_url, presign, presign_url

Writer = Callable[..., Path]
KEY = "project/42/deps-main-protected/cache.zip"


def _url(s3: FakeS3, method: str, key: str = KEY) -> str:
    return presign(
        method,
        endpoint=s3.endpoint,
        bucket=s3.bucket,
        key=key,
        access_key=s3.access_key,
        secret_key=s3.secret_key,
        region="us-east-1",
        expires_s=600,
        insecure=True,
    )


@pytest.fixture
def project(tmp_path: Path, write: Writer) -> Path:
    root = tmp_path / "project"
    write(root / ".m2/repository/org/lib.jar", b"PK\x03\x04 jar bytes")
    write(root / ".m2/repository/org/lib.pom", "<project/>")
    write(root / "src/Main.java", "class Main {}")
    return root


@pytest.fixture
def cache_file(tmp_path: Path) -> Path:
    return tmp_path / "cache/acme/webapp/deps-main-protected/cache.zip"


def _archive(helper: HelperRun, cwd: Path, cache_file: Path, *args: str) -> Result:
    return helper(cwd, "cache-archiver", "--file", str(cache_file), "--path", ".m2/repository", *args)


def test_archiver_zips_the_paths_atomically_and_puts_them_to_the_presigned_url(
    helper: HelperRun, s3: FakeS3, project: Path, cache_file: Path
) -> None:
    put_url = _url(s3, "PUT")

    result = _archive(helper, project, cache_file, "--url", put_url)

    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(cache_file) as zf:
        assert zf.namelist() == [
            ".m2/repository/",
            ".m2/repository/org/",
            ".m2/repository/org/lib.jar",
            ".m2/repository/org/lib.pom",
        ]
    assert os.listdir(cache_file.parent) == ["cache.zip"]  # no temporary file left behind
    stored, _ = s3.objects[f"/{s3.bucket}/{KEY}"]
    assert stored == cache_file.read_bytes()
    [put] = s3.server.requests
    assert not put.chunked
    assert put.headers["content-type"] == "application/octet-stream"
    assert result.output.splitlines() == [
        "Creating cache deps-main-protected...",
        ".m2/repository: found 4 matching artifact files and directories",
        f"Uploading cache.zip to {s3.url}/{s3.bucket}/{KEY}",
        f"Uploaded cache.zip ({len(stored)} B)",
        "Created cache",
    ]
    assert "X-Amz-Signature" not in result.output


def test_an_unchanged_cache_is_neither_rebuilt_nor_uploaded_again(
    helper: HelperRun, s3: FakeS3, project: Path, cache_file: Path
) -> None:
    put_url = _url(s3, "PUT")
    assert _archive(helper, project, cache_file, "--url", put_url).exit_code == 0

    again = _archive(helper, project, cache_file, "--url", put_url)

    assert again.exit_code == 0
    assert "Archive is up to date!" in again.output
    assert len(s3.server.requests) == 1


def test_a_file_added_since_the_last_archive_rebuilds_it(
    helper: HelperRun, project: Path, cache_file: Path, write: Writer
) -> None:
    assert _archive(helper, project, cache_file).exit_code == 0
    os.utime(cache_file, (1_000_000_000, 1_000_000_000))  # the archive is older than every file
    write(project / ".m2/repository/org/new.jar")

    result = _archive(helper, project, cache_file)

    assert result.exit_code == 0
    assert "No URL provided, cache will not be uploaded to shared cache server." in result.output
    with zipfile.ZipFile(cache_file) as zf:
        assert ".m2/repository/org/new.jar" in zf.namelist()


def test_upload_503_then_success_is_retried(
    helper: HelperRun, s3: FakeS3, project: Path, cache_file: Path
) -> None:
    s3.server.script.append(Reply(503, b"<Error><Code>SlowDown</Code></Error>"))

    result = _archive(helper, project, cache_file, "--url", _url(s3, "PUT"))

    assert result.exit_code == 0, result.output
    assert helper.sleeps == [0.1]
    assert len(s3.server.requests) == 2
    assert "WARNING: Uploading cache.zip failed: 503 Service Unavailable: SlowDown; retrying" in result.output


def test_a_rejected_signature_fails_once_with_s3s_reason(
    helper: HelperRun, s3: FakeS3, project: Path, cache_file: Path
) -> None:
    tampered = _url(s3, "PUT").replace("X-Amz-Expires=600", "X-Amz-Expires=6000")

    result = _archive(helper, project, cache_file, "--url", tampered)

    assert result.exit_code == 1
    assert len(s3.server.requests) == 1
    assert result.output.splitlines()[-1] == (
        f"ERROR: uploading cache.zip to {s3.url}/{s3.bucket}/{KEY} failed: the cache server answered "
        "403 Forbidden: SignatureDoesNotMatch: The signature does not match (the presigned URL may have "
        "expired, or its signature does not match)"
    )


def test_an_archive_over_the_upload_limit_stays_local(
    helper: HelperRun, s3: FakeS3, project: Path, cache_file: Path
) -> None:
    result = _archive(
        helper, project, cache_file, "--url", _url(s3, "PUT"), "--max-uploaded-archive-size", "10"
    )

    assert result.exit_code == 0
    assert "is too big (Limit is set to 10). Cache will be stored only locally." in result.output
    assert s3.server.requests == []
    assert cache_file.exists()


def test_nothing_to_cache_keeps_the_existing_cache(
    helper: HelperRun, project: Path, cache_file: Path
) -> None:
    result = helper(project, "cache-archiver", "--file", str(cache_file), "--path", "node_modules")

    assert result.exit_code == 0
    assert "WARNING: No files to cache" in result.output
    assert not cache_file.exists()


def _extract(helper: HelperRun, cwd: Path, cache_file: Path, *args: str) -> Result:
    return helper(cwd, "cache-extractor", "--file", str(cache_file), *args)


def test_extractor_downloads_and_extracts_the_cache(
    helper: HelperRun, s3: FakeS3, tmp_path: Path, cache_file: Path
) -> None:
    s3.objects[f"/{s3.bucket}/{KEY}"] = (
        zip_bytes({"node_modules/a/index.js": b"module.exports = 1"}),
        1.7e9,
    )
    project = tmp_path / "project"
    project.mkdir()

    result = _extract(helper, project, cache_file, "--url", _url(s3, "GET"))

    assert result.exit_code == 0, result.output
    assert (project / "node_modules/a/index.js").read_bytes() == b"module.exports = 1"
    assert cache_file.stat().st_mtime == 1.7e9  # kept from Last-Modified, to detect changes later
    lines = result.output.splitlines()
    assert f"Downloading cache.zip from {s3.url}/{s3.bucket}/{KEY}" in lines
    assert lines[-1] == "Successfully extracted cache"
    assert "X-Amz-Signature" not in result.output


def test_a_current_local_copy_is_not_downloaded_again(
    helper: HelperRun, s3: FakeS3, tmp_path: Path, cache_file: Path
) -> None:
    s3.objects[f"/{s3.bucket}/{KEY}"] = (zip_bytes({"f.txt": b"1"}), 1.7e9)
    project = tmp_path / "project"
    project.mkdir()
    get_url = _url(s3, "GET")
    assert _extract(helper, project, cache_file, "--url", get_url).exit_code == 0

    again = _extract(helper, project, cache_file, "--url", get_url)

    assert again.exit_code == 0
    assert "cache.zip is up to date" in again.output
    assert "Downloading cache.zip" not in again.output


def test_a_missing_remote_cache_is_a_warning_and_exit_1(
    helper: HelperRun, s3: FakeS3, tmp_path: Path, cache_file: Path
) -> None:
    result = _extract(helper, tmp_path, cache_file, "--url", _url(s3, "GET"))

    assert result.exit_code == 1
    assert len(s3.server.requests) == 1
    assert result.output.splitlines()[-1] == (
        f"WARNING: cache not found: {s3.url}/{s3.bucket}/{KEY} does not exist yet "
        "(it is created when a job using this cache key finishes)"
    )


def test_a_missing_local_cache_without_url_is_exit_1_with_the_path(
    helper: HelperRun, tmp_path: Path, cache_file: Path
) -> None:
    result = _extract(helper, tmp_path, cache_file)

    assert result.exit_code == 1
    assert f"WARNING: cache not found: {cache_file} does not exist" in result.output


def test_local_cache_round_trip_without_object_storage(
    helper: HelperRun, project: Path, cache_file: Path, tmp_path: Path
) -> None:
    assert _archive(helper, project, cache_file).exit_code == 0
    fresh = tmp_path / "fresh-checkout"
    fresh.mkdir()

    result = _extract(helper, fresh, cache_file)

    assert result.exit_code == 0, result.output
    assert (fresh / ".m2/repository/org/lib.pom").read_text() == "<project/>"
    assert not (fresh / "src").exists()


def test_an_expired_presigned_url_is_reported_with_s3s_reason(
    helper: HelperRun, s3: FakeS3, tmp_path: Path, cache_file: Path
) -> None:
    expired = presign_url(
        "GET",
        path_style_url(endpoint=s3.endpoint, bucket=s3.bucket, key=KEY, insecure=True),
        access_key=s3.access_key,
        secret_key=s3.secret_key,
        region="us-east-1",
        expires_s=60,
        at=datetime.now(UTC) - timedelta(hours=1),
    )

    result = _extract(helper, tmp_path, cache_file, "--url", expired)

    assert result.exit_code == 1
    assert "answered 403 Forbidden: AccessDenied: Request has expired" in result.output
    assert not cache_file.exists()


def test_untracked_files_of_a_real_git_checkout_are_cached(
    helper: HelperRun, tmp_path: Path, cache_file: Path, write: Writer
) -> None:
    repo = tmp_path / "repo"
    write(repo / "README.md", "tracked")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(tmp_path)}
    for args in (["init", "-q"], ["add", "README.md"], ["commit", "-qm", "init"]):
        subprocess.run([*git, *args], cwd=repo, check=True, capture_output=True, env=env)
    write(repo / "target/classes/App.class", b"\xca\xfe\xba\xbe")

    result = helper(repo, "cache-archiver", "--file", str(cache_file), "--untracked")

    assert result.exit_code == 0, result.output
    assert "untracked: found 1 files" in result.output
    with zipfile.ZipFile(cache_file) as zf:
        assert zf.namelist() == ["target/classes/App.class"]
