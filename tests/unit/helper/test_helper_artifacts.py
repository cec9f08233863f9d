"""artifacts-uploader and artifacts-downloader against a GitLab double on 127.0.0.1."""

from __future__ import annotations

import gzip
import io
import os
import socket
import ssl
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme
from click.testing import Result
from helper_doubles import FakeGitLab, FakeS3, HelperRun, Reply

Writer = Callable[..., Path]


def _upload(helper: HelperRun, gitlab: FakeGitLab, cwd: Path, *args: str, url: str | None = None) -> Result:
    return helper(
        cwd,
        "artifacts-uploader",
        "--url",
        url or gitlab.url,
        "--token",
        gitlab.job_token,
        "--id",
        str(gitlab.job_id),
        *args,
    )


@pytest.fixture
def project(tmp_path: Path, write: Writer) -> Path:
    root = tmp_path / "project"
    write(root / "dist/app.js", "console.log(1)")
    write(root / "dist/bin/tool", "#!/bin/sh\n", mode=0o755)
    write(root / "dist/debug/trace.log", "noise")
    write(root / "report.xml", "<testsuite/>")
    (root / "dist/latest").symlink_to("app.js")
    return root


def test_upload_sends_exactly_the_declared_paths_as_a_zip(
    helper: HelperRun, gitlab: FakeGitLab, project: Path
) -> None:
    result = _upload(
        helper,
        gitlab,
        project,
        "--path",
        "dist/",
        "--exclude",
        "dist/debug/**",
        "--name",
        "dist",
        "--artifact-format",
        "zip",
        "--artifact-type",
        "archive",
        "--expire-in",
        "1 week",
    )

    assert result.exit_code == 0, result.output
    [(filename, content, query)] = gitlab.uploads
    assert filename == "dist.zip"
    assert query == {"expire_in": "1 week", "artifact_format": "zip", "artifact_type": "archive"}
    with zipfile.ZipFile(io.BytesIO(content)) as zf:
        assert zf.namelist() == ["dist/", "dist/app.js", "dist/bin/", "dist/bin/tool", "dist/latest"]
        assert stat.S_IMODE(zf.getinfo("dist/bin/tool").external_attr >> 16) == 0o755
        assert stat.S_ISLNK(zf.getinfo("dist/latest").external_attr >> 16)
    [request] = gitlab.server.requests
    assert request.headers["job-token"] == gitlab.job_token
    assert request.headers["content-length"] == str(len(request.body))
    assert request.headers["user-agent"].startswith("kuberunner-helper ")
    assert request.headers["x-request-id"]
    lines = result.output.splitlines()
    assert lines[0] == "Uploading artifacts..."
    assert "dist/: found 5 matching artifact files and directories" in lines
    assert "dist/debug/**: excluded 2 files" in lines
    assert lines[-1] == (
        'Uploading artifacts as "archive" to coordinator... 201 Created  '
        f"id={gitlab.job_id} responseStatus=201 Created token=64_Zx9yQ"
    )
    assert gitlab.job_token not in result.output


def test_a_large_raw_artifact_is_streamed_intact(
    helper: HelperRun, gitlab: FakeGitLab, tmp_path: Path, write: Writer
) -> None:
    payload = os.urandom(3 * 1024 * 1024 + 17)
    write(tmp_path / "image.bin", payload)

    result = _upload(
        helper, gitlab, tmp_path, "--path", "image.bin", "--artifact-format", "raw", "--name", "image"
    )

    assert result.exit_code == 0, result.output
    [(filename, content, query)] = gitlab.uploads
    assert (filename, query["artifact_format"]) == ("image", "raw")
    assert content == payload
    assert "Created image: 1 entry, 3.0 MiB" in result.output


def test_missing_and_escaping_paths_warn_and_nothing_matching_means_no_upload(
    helper: HelperRun, gitlab: FakeGitLab, project: Path
) -> None:
    result = _upload(helper, gitlab, project, "--path", "nope", "--path", "../../etc/passwd")

    assert result.exit_code == 0, result.output
    assert "WARNING: nope: no matching files. Ensure that the artifact path is relative" in result.output
    assert "WARNING: ../../etc/passwd: the path is outside the project directory" in result.output
    assert "WARNING: No files to upload" in result.output
    assert gitlab.server.requests == []


def test_gzip_report_is_one_gzip_member_named_after_the_artifact(
    helper: HelperRun, gitlab: FakeGitLab, project: Path
) -> None:
    result = _upload(
        helper,
        gitlab,
        project,
        "--path",
        "report.xml",
        "--name",
        "junit",
        "--artifact-format",
        "gzip",
        "--artifact-type",
        "junit",
    )

    assert result.exit_code == 0, result.output
    [(filename, content, query)] = gitlab.uploads
    assert filename == "junit.gz"
    assert query["artifact_type"] == "junit"
    assert gzip.decompress(content) == b"<testsuite/>"


def test_307_redirect_repeats_the_upload_at_the_new_location(
    helper: HelperRun, gitlab: FakeGitLab, project: Path
) -> None:
    moved = f"{gitlab.url}/moved/api/v4/jobs/{gitlab.job_id}/artifacts"
    gitlab.server.script.append(Reply(307, headers={"Location": moved}))

    result = _upload(helper, gitlab, project, "--path", "report.xml", "--artifact-type", "archive")

    assert result.exit_code == 0, result.output
    first, second = gitlab.server.requests
    assert first.path == f"/api/v4/jobs/{gitlab.job_id}/artifacts"
    assert second.path == f"/moved/api/v4/jobs/{gitlab.job_id}/artifacts"
    assert second.query == {"artifact_type": "archive"}
    assert len(gitlab.uploads) == 1
    assert helper.sleeps == []
    assert "Upload request redirected" in result.output


def test_413_is_too_large_and_not_retried(helper: HelperRun, gitlab: FakeGitLab, project: Path) -> None:
    gitlab.server.script.append(Reply.json(413, {"message": "413 Request Entity Too Large"}))

    result = _upload(helper, gitlab, project, "--path", "dist")

    assert result.exit_code == 1
    assert len(gitlab.server.requests) == 1
    assert "is too large for GitLab (413 Request Entity Too Large)" in result.output
    assert result.output.splitlines()[-1].startswith("ERROR: artifacts.zip (")


def test_403_is_a_clear_error_and_not_retried(helper: HelperRun, gitlab: FakeGitLab, project: Path) -> None:
    result = helper(
        project,
        "artifacts-uploader",
        "--url",
        gitlab.url + "/",
        "--token",
        "glcbt-64_WrongTokenButLongEnough",
        "--id",
        str(gitlab.job_id),
        "--path",
        "dist",
    )

    assert result.exit_code == 1
    assert len(gitlab.server.requests) == 1
    assert helper.sleeps == []
    assert (
        f"ERROR: GitLab refused the artifacts upload for job {gitlab.job_id} (403 Forbidden: "
        "403 Forbidden - Job is not processing on runner)" in result.output
    )
    assert "glcbt-64_WrongTokenButLongEnough" not in result.output


def test_503_then_success_is_retried_after_the_first_backoff(
    helper: HelperRun, gitlab: FakeGitLab, project: Path
) -> None:
    gitlab.server.script.append(Reply.json(503, {"message": "503 Service Unavailable"}))

    result = _upload(helper, gitlab, project, "--path", "dist")

    assert result.exit_code == 0, result.output
    assert len(gitlab.server.requests) == 2
    assert len(gitlab.uploads) == 1
    assert helper.sleeps == [0.1]


def test_429_waits_for_retry_after(helper: HelperRun, gitlab: FakeGitLab, project: Path) -> None:
    gitlab.server.script.append(Reply.json(429, {"message": "Too Many Requests"}, {"Retry-After": "7"}))

    result = _upload(helper, gitlab, project, "--path", "dist")

    assert result.exit_code == 0, result.output
    assert helper.sleeps == [7.0]
    assert "Retrying in 7 s (attempt 2 of 5)" in result.output


def test_retryable_failures_stop_after_five_attempts_with_exponential_backoff(
    helper: HelperRun, gitlab: FakeGitLab, project: Path
) -> None:
    gitlab.server.script.extend(Reply(502) for _ in range(5))

    result = _upload(helper, gitlab, project, "--path", "dist")

    assert result.exit_code == 1
    assert len(gitlab.server.requests) == 5
    assert helper.sleeps == [0.1, 0.2, 0.4, 0.8]
    assert result.output.splitlines()[-1] == (
        f"ERROR: uploading artifacts for job {gitlab.job_id} failed: GitLab answered 502 Bad Gateway "
        "(after 5 attempts)"
    )


def test_network_errors_are_retried_then_reported(
    helper: HelperRun, gitlab: FakeGitLab, project: Path
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]

    result = _upload(helper, gitlab, project, "--path", "dist", url=f"http://127.0.0.1:{closed_port}")

    assert result.exit_code == 1
    assert helper.sleeps == [0.1, 0.2, 0.4, 0.8]
    assert "ERROR: uploading artifacts to http://127.0.0.1:" in result.output
    assert "failed after 5 attempts: ConnectError" in result.output


def _zip(entries: dict[str, tuple[bytes, int]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, (data, mode) in entries.items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = mode << 16
            zf.writestr(info, data)
    return buf.getvalue()


DEP_ZIP = _zip(
    {
        "build/": (b"", stat.S_IFDIR | 0o755),
        "build/app": (b"binary", stat.S_IFREG | 0o755),
        "build/app-latest": (b"app", stat.S_IFLNK | 0o777),
    }
)


def _download(helper: HelperRun, gitlab: FakeGitLab, cwd: Path, token: str | None = None) -> Result:
    return helper(
        cwd,
        "artifacts-downloader",
        "--url",
        gitlab.url,
        "--token",
        token or gitlab.dep_token,
        "--id",
        str(gitlab.dep_id),
    )


def test_download_extracts_a_dependency_s_artifacts(
    helper: HelperRun, gitlab: FakeGitLab, tmp_path: Path
) -> None:
    gitlab.archives[gitlab.dep_id] = (gitlab.dep_token, DEP_ZIP)

    result = _download(helper, gitlab, tmp_path)

    assert result.exit_code == 0, result.output
    assert (tmp_path / "build/app").read_bytes() == b"binary"
    assert stat.S_IMODE((tmp_path / "build/app").stat().st_mode) == 0o755
    assert (tmp_path / "build/app-latest").readlink() == Path("app")
    assert "Downloading artifacts from coordinator... ok (" in result.output
    assert f"id={gitlab.dep_id} responseStatus=200 OK token=64_Dep0T" in result.output
    assert gitlab.dep_token not in result.output


def test_redirect_to_object_storage_does_not_carry_the_job_token(
    helper: HelperRun, gitlab: FakeGitLab, s3: FakeS3, tmp_path: Path
) -> None:
    gitlab.archives[gitlab.dep_id] = (gitlab.dep_token, b"")
    gitlab.redirect_downloads_to = s3.url
    s3.public[f"/artifacts/{gitlab.dep_id}.zip"] = DEP_ZIP

    result = _download(helper, gitlab, tmp_path)

    assert result.exit_code == 0, result.output
    [at_gitlab] = gitlab.server.requests
    [at_storage] = s3.server.requests
    assert at_gitlab.headers["job-token"] == gitlab.dep_token
    assert "job-token" not in at_storage.headers
    assert at_storage.query == {"X-Amz-Signature": "deadbeef"}
    assert (tmp_path / "build/app").read_bytes() == b"binary"
    assert "host=127.0.0.1" in result.output
    assert "deadbeef" not in result.output


def test_missing_artifacts_name_the_dependency_job(
    helper: HelperRun, gitlab: FakeGitLab, tmp_path: Path
) -> None:
    result = _download(helper, gitlab, tmp_path)

    assert result.exit_code == 1
    assert len(gitlab.server.requests) == 1
    assert result.output.splitlines()[-1] == (
        f"ERROR: job {gitlab.dep_id} has no artifacts to download (404 Not Found): they expired or were "
        "erased, or the job did not upload any"
    )


def test_forbidden_download_names_the_dependency_job(
    helper: HelperRun, gitlab: FakeGitLab, tmp_path: Path
) -> None:
    gitlab.archives[gitlab.dep_id] = (gitlab.dep_token, DEP_ZIP)

    result = _download(helper, gitlab, tmp_path, token="glcbt-64_NotTheDependencyToken")

    assert result.exit_code == 1
    assert len(gitlab.server.requests) == 1
    assert f"ERROR: cannot download the artifacts of job {gitlab.dep_id}: GitLab answered 403 Forbidden" in (
        result.output
    )
    assert not (tmp_path / "build").exists()


def test_download_503_then_success_is_retried(helper: HelperRun, gitlab: FakeGitLab, tmp_path: Path) -> None:
    gitlab.archives[gitlab.dep_id] = (gitlab.dep_token, DEP_ZIP)
    gitlab.server.script.append(Reply(503))

    result = _download(helper, gitlab, tmp_path)

    assert result.exit_code == 0, result.output
    assert helper.sleeps == [0.1]
    assert (tmp_path / "build/app").exists()


def test_a_zip_slip_archive_is_refused_and_nothing_lands_outside(
    helper: HelperRun, gitlab: FakeGitLab, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    evil = _zip({"ok.txt": (b"ok", stat.S_IFREG | 0o644), "../../pwned.txt": (b"x", stat.S_IFREG | 0o644)})
    gitlab.archives[gitlab.dep_id] = (gitlab.dep_token, evil)

    result = _download(helper, gitlab, project)

    assert result.exit_code == 1
    assert f"ERROR: artifacts of job {gitlab.dep_id}: refusing to extract '../../pwned.txt'" in result.output
    assert not (tmp_path.parent / "pwned.txt").exists()
    assert list(project.iterdir()) == []


def test_https_gitlab_with_a_private_ca_and_no_redirect_to_plain_http(
    helper: HelperRun, project: Path, tmp_path: Path
) -> None:
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_tls)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    gitlab = FakeGitLab(tls=server_tls)
    try:
        assert (
            _upload(helper, gitlab, project, "--path", "report.xml", "--tls-ca-file", str(ca_file)).exit_code
            == 0
        )
        plain = gitlab.url.replace("https://", "http://")
        gitlab.server.script.append(
            Reply(307, headers={"Location": f"{plain}/api/v4/jobs/{gitlab.job_id}/artifacts"})
        )

        result = _upload(helper, gitlab, project, "--path", "report.xml", "--tls-ca-file", str(ca_file))

        assert result.exit_code == 1
        assert len(gitlab.server.requests) == 2
        assert "refusing GitLab's redirect of the upload to http://127.0.0.1:" in result.output
    finally:
        gitlab.server.close()
