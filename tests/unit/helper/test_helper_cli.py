"""The command line itself: gitlab-runner-helper's names and flags, env fallbacks, a real process."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from helper_doubles import FakeGitLab, HelperRun


def test_python_m_kuberunner_helper_uploads_as_a_real_process(gitlab: FakeGitLab, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out/result.txt").write_text("42")
    env = {
        k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy") and not k.startswith("CI_")
    }
    env["CI_JOB_TOKEN"] = gitlab.job_token  # the token can come from the job's environment

    args = ["--url", gitlab.url, "--id", str(gitlab.job_id), "--path", "out", "--artifact-type", "archive"]
    proc = subprocess.run(
        [sys.executable, "-m", "kuberunner.helper", "artifacts-uploader", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert proc.returncode == 0, proc.stdout + proc.stderr
    [(filename, content, _)] = gitlab.uploads
    assert filename == "artifacts.zip"
    with zipfile.ZipFile(io.BytesIO(content)) as zf:
        assert zf.read("out/result.txt") == b"42"
    assert 'Uploading artifacts as "archive" to coordinator... 201 Created' in proc.stdout
    assert gitlab.job_token not in proc.stdout + proc.stderr


def test_a_failing_real_process_exits_1_with_one_error_line_on_stderr(
    gitlab: FakeGitLab, tmp_path: Path
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kuberunner.helper", "cache-extractor", "--file", str(tmp_path / "none.zip")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert proc.returncode == 1
    missing = tmp_path / "none.zip"
    assert proc.stderr.splitlines() == [
        f"WARNING: cache not found: {missing} does not exist (no cache was saved with this key yet)"
    ]


def test_help_lists_the_gitlab_runner_helper_commands(helper: HelperRun, tmp_path: Path) -> None:
    result = helper(tmp_path, "--help")

    assert result.exit_code == 0
    for command in ("artifacts-uploader", "artifacts-downloader", "cache-archiver", "cache-extractor"):
        assert command in result.output


def test_uploader_accepts_every_flag_gitlab_runner_generates(helper: HelperRun, tmp_path: Path) -> None:
    result = helper(tmp_path, "artifacts-uploader", "--help")

    for flag in (
        "--url",
        "--token",
        "--id",
        "--tls-ca-file",
        "--path",
        "--exclude",
        "--untracked",
        "--name",
        "--expire-in",
        "--artifact-format",
        "--artifact-type",
        "--compression-level",
    ):
        assert flag in result.output, flag


def test_credentials_come_from_ci_variables_when_flags_are_absent(
    helper: HelperRun, gitlab: FakeGitLab, tmp_path: Path
) -> None:
    (tmp_path / "a.txt").write_text("a")
    env = {"CI_SERVER_URL": gitlab.url, "CI_JOB_TOKEN": gitlab.job_token, "CI_JOB_ID": str(gitlab.job_id)}

    result = helper(tmp_path, "artifacts-uploader", "--path", "a.txt", env=env)

    assert result.exit_code == 0, result.output
    assert len(gitlab.uploads) == 1


def test_a_missing_token_is_a_usage_error(helper: HelperRun, gitlab: FakeGitLab, tmp_path: Path) -> None:
    result = helper(tmp_path, "artifacts-downloader", "--url", gitlab.url, "--id", "1")

    assert result.exit_code == 2
    assert "Missing option '--token'" in result.output
    assert gitlab.server.requests == []
