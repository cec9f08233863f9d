"""The helper's relay transport: answers from files, requests out as log lines (kuberunner exec)."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from helper_doubles import zip_bytes

from kuberunner.helper.cli import HelperContext, main
from kuberunner.helper.relay import (
    MAX_REQUEST_BYTES,
    RELAY_DIR_ENV,
    RELAY_MARK_ENV,
    RelayError,
    RelayReader,
    RelayTransport,
    encode_response,
    request_lines,
    response_key,
)

MARK = "kuberunner:abcd1234:"
LEAD = "\x1e" + MARK


def _bodies(output: bytes) -> list[str]:
    """The marker bodies of the relay lines in ``output``, as the executor's log parser sees them."""
    lines = output.decode().split("\n")  # not splitlines(): it splits at the marker's \x1e too
    assert all(line.startswith(LEAD + "relay:") for line in lines if line.startswith("\x1e"))
    return [line[len(LEAD) :] for line in lines if line.startswith(LEAD)]


def _read_all(bodies: list[str]) -> list[object]:
    reader = RelayReader()
    return [r for r in (reader.feed(b) for b in bodies) if r is not None]


def test_a_post_goes_out_as_lines_and_comes_back_the_same_request(tmp_path: Path) -> None:
    out = io.BytesIO()
    body = bytes(range(256)) * 100  # several lines' worth, every byte value
    with httpx.Client(transport=RelayTransport(tmp_path, MARK, out)) as client:
        response = client.post(
            "http://127.0.0.1:8080/api/v4/jobs/7/artifacts?artifact_format=zip",
            headers={"JOB-TOKEN": "glcbt-secret"},
            content=body,
        )
    assert response.status_code == 201  # what GitLab answers; the runner checks the real answer later
    lines = out.getvalue().decode().split("\n")
    assert max(len(line) for line in lines) < 16 * 1024  # no container runtime splits them
    (request,) = _read_all(_bodies(out.getvalue()))
    assert request.method == "POST"
    assert request.path == "/api/v4/jobs/7/artifacts?artifact_format=zip"
    assert request.headers["job-token"] == "glcbt-secret"
    assert request.body == body
    assert "glcbt-secret" not in repr(request)


def test_lost_or_damaged_lines_are_detected_never_delivered() -> None:
    lines = [line[len(LEAD) :] for line in request_lines(MARK, "POST", "/p", {}, b"x" * 10000)]
    assert len(lines) > 3
    with pytest.raises(RelayError, match="lost lines"):
        _read_all([lines[0], *lines[2:]])  # a data line missing
    with pytest.raises(RelayError, match="lost lines"):
        _read_all(lines[1:])  # the beginning missing
    damaged = [*lines[:-1], lines[-1][:-4] + "0000"]  # the checksum does not match
    with pytest.raises(RelayError, match="damaged"):
        _read_all(damaged)
    with pytest.raises(RelayError):
        _read_all([lines[0], "relay:data:0:not base64!"])
    assert len(_read_all(lines + lines)) == 2  # one after the other


def test_a_request_too_large_for_a_pod_log_is_refused_with_413(tmp_path: Path) -> None:
    out = io.BytesIO()
    with httpx.Client(transport=RelayTransport(tmp_path, MARK, out)) as client:
        response = client.put("http://h/cache", content=b"x" * (MAX_REQUEST_BYTES + 1))
    assert response.status_code == 413
    assert "make the artifacts smaller" in response.json()["message"]
    assert out.getvalue() == b""


def test_a_get_is_answered_from_its_parts_and_an_unforeseen_one_is_404(tmp_path: Path) -> None:
    answer = encode_response(200, {"Content-Type": "application/zip"}, b"PK-archive-bytes")
    key = response_key("GET", "/api/v4/jobs/3/artifacts")
    (tmp_path / f"{key}.000").write_bytes(answer[:10])
    (tmp_path / f"{key}.001").write_bytes(answer[10:])
    with httpx.Client(transport=RelayTransport(tmp_path, MARK, io.BytesIO())) as client:
        got = client.get("http://127.0.0.1:1/api/v4/jobs/3/artifacts?direct_download=true")
        assert (got.status_code, got.content) == (200, b"PK-archive-bytes")
        assert got.headers["content-type"] == "application/zip"
        head = client.head("http://127.0.0.1:1/api/v4/jobs/3/artifacts")
        assert head.status_code == 200 and head.content == b""
        missing = client.get("http://127.0.0.1:1/api/v4/jobs/4/artifacts")
        assert missing.status_code == 404 and "kuberunner exec" in missing.json()["message"]


def test_the_helper_commands_use_the_relay_the_environment_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """artifacts-downloader and artifacts-uploader as the pod runs them: env vars, no network."""
    relay = tmp_path / "relay"
    relay.mkdir()
    key = response_key("GET", "/api/v4/jobs/3/artifacts")
    archive = zip_bytes({"out/a.txt": b"from job 3"})
    answer = encode_response(200, {"Content-Type": "application/zip"}, archive)
    (relay / f"{key}.000").write_bytes(answer)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    env = {RELAY_DIR_ENV: str(relay), RELAY_MARK_ENV: MARK}
    runner = CliRunner()
    args = ["artifacts-downloader", "--url", "http://127.0.0.1:9", "--token", "dep-token", "--id", "3"]
    done = runner.invoke(main, args, env=env, obj=HelperContext(sleep=lambda _: None))
    assert done.exit_code == 0, done.output
    assert (work / "out" / "a.txt").read_bytes() == b"from job 3"
    (work / "dist").mkdir()
    (work / "dist" / "app").write_bytes(b"binary")
    up = ["artifacts-uploader", "--url", "http://127.0.0.1:9", "--token", "job-token", "--id", "5"]
    done = runner.invoke(main, [*up, "--path", "dist"], env=env, obj=HelperContext(sleep=lambda _: None))
    assert done.exit_code == 0, done.output
    (request,) = _read_all(_bodies(done.stdout_bytes))
    assert request.method == "POST" and request.path.startswith("/api/v4/jobs/5/artifacts")
    assert request.headers["job-token"] == "job-token"
    assert b"dist/app" in request.body  # the multipart body with the zip GitLab would get
