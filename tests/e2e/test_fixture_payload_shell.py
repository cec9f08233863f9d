"""The fixture job payload, end to end on the shell executor, with the real helper.

The payload is ``shared/docs/fixtures/job-payload.json`` with its repository
replaced by a local bare repository (file:// URL, a pipeline ref at the job's
commit, which is *not* the branch tip) and its steps by commands that work on
this machine. A small GitLab stand-in on 127.0.0.1 serves the dependency's
artifacts and records the artifact uploads, checking the job tokens.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import os
import re
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from tests.doubles.gitlab import make_bare_repo

from kuberunner.build import Build
from kuberunner.config.schema import RunnerConfig
from kuberunner.executors import Cancellation, JobOutcome, ShellExecutor
from kuberunner.job import JobPayload
from kuberunner.trace import JobTrace

JOB_TOKEN = "glcbt-64_Zx9yQ2mN4kP7rT1vW3sA"
DEPLOY_TOKEN = "s3cr3tV4lu3xyz99"
DEPENDENCY_ZIP_ENTRIES = {"compile/out.txt": "compiled by job 4810\n"}


@dataclass
class Upload:
    job_id: int
    query: dict[str, list[str]]
    token: str | None
    filename: str
    content: bytes


@dataclass
class FakeGitLab:
    """Just the artifact endpoints of the contract: GET a dependency's, POST the job's."""

    dependency_tokens: dict[int, str]
    uploads: list[Upload] = field(default_factory=list)
    downloads: list[tuple[int, str | None]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        gitlab = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(
                self, status: int, body: bytes = b"{}", content_type: str = "application/json"
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                match = re.fullmatch(r"/api/v4/jobs/(\d+)/artifacts", urlsplit(self.path).path)
                if not match:
                    self._reply(404, b'{"message":"404 Not Found"}')
                    return
                job_id, token = int(match[1]), self.headers.get("JOB-TOKEN")
                gitlab.downloads.append((job_id, token))
                if token != gitlab.dependency_tokens.get(job_id):
                    self._reply(401, b'{"message":"401 Unauthorized"}')
                    return
                buffer = io.BytesIO()
                with zipfile.ZipFile(buffer, "w") as z:
                    for name, text in DEPENDENCY_ZIP_ENTRIES.items():
                        z.writestr(name, text)
                self._reply(200, buffer.getvalue(), "application/zip")

            def do_POST(self) -> None:
                url = urlsplit(self.path)
                match = re.fullmatch(r"/api/v4/jobs/(\d+)/artifacts", url.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if not match:
                    self._reply(404, b'{"message":"404 Not Found"}')
                    return
                boundary = (
                    self.headers.get_content_type() == "multipart/form-data"
                    and self.headers.get_param("boundary")
                )
                if not boundary:
                    gitlab.problems.append(f"upload without multipart/form-data: {self.headers}")
                    self._reply(400, b'{"message":"400 Bad request"}')
                    return
                filename, content = _file_part(body, str(boundary))
                gitlab.uploads.append(
                    Upload(
                        int(match[1]), parse_qs(url.query), self.headers.get("JOB-TOKEN"), filename, content
                    )
                )
                self._reply(201)

        return Handler


def _file_part(body: bytes, boundary: str) -> tuple[str, bytes]:
    """The filename and content of the multipart part named ``file``."""
    for part in body.split(b"--" + boundary.encode()):
        head, sep, content = part.partition(b"\r\n\r\n")
        if sep and b'name="file"' in head:
            filename = re.search(rb'filename="([^"]*)"', head)
            return (filename[1].decode() if filename else ""), content.removesuffix(b"\r\n")
    raise AssertionError("no multipart part named 'file'")


@pytest.fixture
def gitlab() -> Iterator[tuple[FakeGitLab, str]]:
    fake = FakeGitLab(dependency_tokens={4810: JOB_TOKEN})
    server = ThreadingHTTPServer(("127.0.0.1", 0), fake.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
        assert not fake.problems, fake.problems


@dataclass
class Job:
    build: Build
    outcome: JobOutcome
    log: str


def _git(*args: str, env: dict[str, str]) -> str:
    return subprocess.run(["git", *args], env=env, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LC_ALL": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
    }


def fixture_payload(
    shared_dir: Path, repo_url: str, sha: str, script: list[str], after: list[str]
) -> JobPayload:
    data = json.loads((shared_dir / "docs/fixtures/job-payload.json").read_text())
    data["git_info"]["repo_url"] = repo_url
    data["git_info"]["sha"] = sha
    data["steps"][0]["script"] = script
    data["steps"][1]["script"] = after
    return JobPayload.parse(data)


async def run_job(payload: JobPayload, runner: RunnerConfig, concurrent_id: int, env: dict[str, str]) -> Job:
    build = Build.create(
        payload,
        runner,
        executor_name="shell",
        concurrent_id=concurrent_id,
        helper_command=[sys.executable, "-m", "kuberunner.helper"],
    )
    received = bytearray()
    trace = JobTrace(received.extend, build.masked_values(), sections=payload.features.trace_sections)
    outcome = await ShellExecutor(shell="sh", env=env).run(build, trace, Cancellation())
    trace.finish()
    return Job(build, outcome, received.decode())


async def test_fixture_payload_end_to_end(
    shared_dir: Path, tmp_path: Path, gitlab: tuple[FakeGitLab, str], env: dict[str, str]
) -> None:
    fake, url = gitlab
    repo = make_bare_repo(
        tmp_path / "remote", name="webapp", commits=2, files={"Dockerfile": "FROM scratch\n"}
    )
    sha = repo.commits[0]  # the pipeline's commit; the branch has moved on since
    _git(f"--git-dir={repo.path}", "update-ref", "refs/pipelines/917", sha, env=env)
    runner = RunnerConfig(
        name="e2e",
        token="glrt-e2eRunnerTokenXYZ",
        url=url,
        builds_dir=str(tmp_path / "builds"),
        cache_dir=str(tmp_path / "cache"),
    )
    script = [
        "git rev-parse HEAD",
        'cat "$KUBECONFIG_DATA"',
        'stat -c "mode=%a" "$KUBECONFIG_DATA"',
        'echo "deploy=$DEPLOY_TOKEN job=$CI_JOB_TOKEN literal=$LITERAL"',
        "cat compile/out.txt",
        "mkdir -p dist && echo x > dist/a.txt && echo scratch > not-declared.txt",
        "echo '<testsuite/>' > report.xml",
        "mkdir -p .m2/repository/org/acme && echo jar-1 > .m2/repository/org/acme/lib.jar",
    ]
    payload = fixture_payload(
        shared_dir, f"file://{repo.path}", sha, script, ['echo "status=$CI_JOB_STATUS"']
    )
    first = await run_job(payload, runner, 0, env)
    log = first.log
    assert first.outcome == JobOutcome.success(), log

    # the sources are checked out at the job's exact commit
    assert f"Checking out {sha[:8]} as detached HEAD (ref is main)..." in log
    assert f"\n{sha}\n" in log
    assert _git("-C", first.build.project_dir, "rev-parse", "HEAD", env=env) == sha

    # the file variable: a private file holding the value, removed when the job ends
    assert "apiVersion: v1\nkind: Config\n" in log
    assert "mode=600\n" in log
    assert not (Path(first.build.file_variables_dir) / "KUBECONFIG_DATA").exists()

    # masked values and the job token reach the log only as [MASKED]
    assert "deploy=[MASKED] job=[MASKED] literal=$NOT_EXPANDED\n" in log
    assert DEPLOY_TOKEN not in log and JOB_TOKEN not in log

    # after_script ran with the job's status
    assert "status=success\n" in log

    # the dependency's artifacts were fetched with its own token
    assert fake.downloads == [(4810, JOB_TOKEN)]
    assert "compiled by job 4810\n" in log

    # the artifacts hold exactly the declared paths
    assert [(u.job_id, u.token, u.filename) for u in fake.uploads] == [
        (4821, JOB_TOKEN, "dist.zip"),
        (
            4821,
            JOB_TOKEN,
            "junit.xml.gz.gz",
        ),  # the name plus the format's extension, as gitlab-runner's helper
    ]
    archive, junit = fake.uploads
    assert archive.query == {
        "artifact_format": ["zip"],
        "artifact_type": ["archive"],
        "expire_in": ["1 week"],
    }
    with zipfile.ZipFile(io.BytesIO(archive.content)) as z:
        files = {i.filename: z.read(i) for i in z.infolist() if not i.is_dir()}
        dirs = {i.filename for i in z.infolist() if i.is_dir()}
    assert files == {"dist/a.txt": b"x\n"}
    assert dirs <= {"dist/"}
    assert junit.query["artifact_type"] == ["junit"] and junit.query["artifact_format"] == ["gzip"]
    assert gzip.decompress(junit.content) == b"<testsuite/>\n"

    # the stages, in gitlab-runner's order
    sections = re.findall(r"section_start:\d+:([a-z_]+)", log)
    assert sections == [
        "prepare_executor",
        "prepare_script",
        "get_sources",
        "restore_cache",
        "download_artifacts",
        "step_script",
        "after_script",
        "archive_cache",
        "upload_artifacts_on_success",
        "cleanup_file_variables",
    ]
    assert await asyncio.to_thread(os.path.isfile, first.build.cache_file("deps-main-protected"))

    # a second job, in another directory, gets the cache the first one saved
    check = ["cat .m2/repository/org/acme/lib.jar", "test ! -e dist/a.txt"]
    second = await run_job(fixture_payload(shared_dir, f"file://{repo.path}", sha, check, []), runner, 1, env)
    assert second.outcome == JobOutcome.success(), second.log
    assert second.build.project_dir != first.build.project_dir
    assert "Checking cache for deps-main-protected..." in second.log
    assert "Successfully extracted cache" in second.log
    assert "\njar-1\n" in second.log


async def test_a_failing_fixture_job_reports_the_exit_code_and_uploads_on_failure(
    shared_dir: Path, tmp_path: Path, gitlab: tuple[FakeGitLab, str], env: dict[str, str]
) -> None:
    fake, url = gitlab
    repo = make_bare_repo(tmp_path / "remote", name="webapp", commits=1)
    _git(f"--git-dir={repo.path}", "update-ref", "refs/pipelines/917", repo.head, env=env)
    runner = RunnerConfig(token="glrt-e2eRunnerTokenXYZ", url=url, builds_dir=str(tmp_path / "b"))
    script = ["echo '<testsuite failures=\"1\"/>' > report.xml", "exit 4"]
    payload = fixture_payload(
        shared_dir, f"file://{repo.path}", repo.head, script, ['echo "status=$CI_JOB_STATUS"']
    )
    job = await run_job(payload, runner, 0, env)
    assert job.outcome == JobOutcome.failed("script_failure", "exit code 4", 4)
    assert "status=failed\n" in job.log
    # only the `when: always` report goes up for a failed job; the cache is kept for successes only
    assert [u.filename for u in fake.uploads] == ["junit.xml.gz.gz"]
    assert "archive_cache" not in job.log
