"""The GitLab double follows the runner API contract, error paths included, so a wrong client fails on it."""

from __future__ import annotations

import io
import json
import os
import socket
import ssl
import subprocess
import threading
import time
import uuid
import zipfile
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from .gitlab import (
    KUBERNETES_FEATURES,
    TRACE_PATCH_LIMIT,
    BareRepo,
    GitLabDouble,
    JobHandle,
    RunnerRecord,
    make_bare_repo,
)

pytest_plugins = ["tests.doubles.gitlab.fixtures"]

USER_AGENT = "kuberunner-tests 0.1.0 (test; linux/amd64)"
SYSTEM_ID = "s_0123456789ab"
MASKED_VALUE = "s3cr3tV4lu3xyz99"


def _request_id(request: httpx.Request) -> None:
    request.headers["X-Request-Id"] = uuid.uuid4().hex


def _client(base_url: str, **kwargs: Any) -> httpx.Client:
    return httpx.Client(
        base_url=base_url,
        headers={"User-Agent": USER_AGENT},
        event_hooks={"request": [_request_id]},
        timeout=kwargs.pop("timeout", 5.0),
        **kwargs,
    )


@pytest.fixture
def api(gitlab: GitLabDouble) -> Iterator[httpx.Client]:
    """A well-behaved HTTP client for `<url>/api/v4` (User-Agent and X-Request-Id on every request)."""
    with _client(gitlab.api_url) as client:
        yield client


def features(**overrides: bool) -> dict[str, bool]:
    out = dict.fromkeys(KUBERNETES_FEATURES, True)
    out.update(overrides)
    return out


def info(**feature_overrides: bool) -> dict[str, Any]:
    return {
        "name": "kuberunner",
        "version": "0.1.0",
        "revision": "0123abcd",
        "platform": "linux",
        "architecture": "amd64",
        "executor": "kubernetes",
        "shell": "bash",
        "features": features(**feature_overrides),
    }


def request_job(api: httpx.Client, runner: RunnerRecord, **extra: Any) -> httpx.Response:
    body = {"token": runner.token, "system_id": SYSTEM_ID, "info": info(), **extra}
    return api.post("/jobs/request", json=body)


def take(api: httpx.Client, runner: RunnerRecord, job: JobHandle, *, start: bool = True) -> dict[str, Any]:
    """Request `job` (it must be the one handed out) and, by default, confirm it with state=running."""
    answer = request_job(api, runner)
    assert answer.status_code == 201
    payload: dict[str, Any] = answer.json()
    assert payload["id"] == job.id
    if start:
        assert put_job(api, job, {"token": job.token, "state": "running"}).status_code == 200
    return payload


def put_job(client: httpx.Client, job: JobHandle, body: dict[str, Any]) -> httpx.Response:
    """PUT /jobs/:id as the contract has it: the job token in the body and in JOB-TOKEN."""
    token = body.get("token")
    headers = {"JOB-TOKEN": token} if isinstance(token, str) else {}
    return client.put(f"/jobs/{job.id}", json=body, headers=headers)


def patch(api: httpx.Client, job: JobHandle, data: bytes, start: int, **headers: str) -> httpx.Response:
    all_headers = {
        "JOB-TOKEN": job.token,
        "Content-Range": f"{start}-{start + len(data) - 1}",
        "Content-Type": "text/plain",
        **headers,
    }
    return api.patch(f"/jobs/{job.id}/trace", content=data, headers=all_headers)


def crc(data: bytes) -> str:
    return f"crc32:{zlib.crc32(data) & 0xFFFFFFFF:08x}"


def finish(api: httpx.Client, job: JobHandle, state: str = "success", **extra: Any) -> httpx.Response:
    trace = job.trace
    body: dict[str, Any] = {
        "token": job.token,
        "state": state,
        "output": {"checksum": crc(trace), "bytesize": len(trace)},
        **extra,
    }
    if state == "failed":
        body.setdefault("failure_reason", "script_failure")
        body.setdefault("exit_code", 1)
    return put_job(api, job, body)


def zip_bytes(name: str = "dist/app.txt", text: str = "built\n") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, text)
    return buffer.getvalue()


def multipart(data: bytes, filename: str = "dist.zip", name: str = "file") -> tuple[bytes, str]:
    boundary = "----kuberunnerBoundary7MA4YWxk"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def upload(
    api: httpx.Client, job: JobHandle, data: bytes, *, url: str | None = None, **query: str
) -> httpx.Response:
    """Upload as a runner streams it: chunked, no Content-Length."""
    body, content_type = multipart(data)
    params = {"artifact_format": "zip", "artifact_type": "archive", "expire_in": "1 week", **query}
    chunks = iter([body[:50], body[50:]])
    return api.post(
        url or f"/jobs/{job.id}/artifacts",
        params=params if url is None else None,
        content=chunks,
        headers={"JOB-TOKEN": job.token, "Content-Type": content_type},
    )


def git(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(cwd),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "LC_ALL": "C",
    }
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=30, check=False
    )


# -- runner registration ---------------------------------------------------------------------------


def test_legacy_registration_gives_a_runner_token_that_verifies(
    gitlab: GitLabDouble, api: httpx.Client
) -> None:
    answer = api.post(
        "/runners",
        json={
            "token": gitlab.registration_token,
            "description": "k8s",
            "tag_list": "k8s, linux",
            "run_untagged": False,
            "access_level": "ref_protected",
            "maximum_timeout": 3600,
            "info": info(),
        },
    )
    assert answer.status_code == 201
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert set(body) == {"id", "token", "token_expires_at"}
    assert body["token"].startswith("glrt-")
    runner = gitlab.runners[-1]
    assert (runner.tags, runner.run_untagged, runner.access_level) == (
        ("k8s", "linux"),
        False,
        "ref_protected",
    )
    verified = api.post("/runners/verify", json={"token": body["token"], "system_id": SYSTEM_ID})
    assert verified.status_code == 200
    assert verified.json()["id"] == body["id"]


def test_registration_error_paths(gitlab: GitLabDouble, api: httpx.Client) -> None:
    good = {"token": gitlab.registration_token, "description": "x"}
    assert api.post("/runners", json={**good, "token": "GR1348941wrong"}).status_code == 403
    missing = api.post("/runners", json={"description": "x"})
    assert (missing.status_code, missing.json()) == (400, {"error": "token is missing"})
    assert api.post("/runners", json={**good, "access_level": "everyone"}).status_code == 400
    short = api.post("/runners", json={**good, "maximum_timeout": 300})
    assert short.status_code == 400
    assert "maximum_timeout" in short.json()["message"]
    untagged = api.post("/runners", json={**good, "run_untagged": False})
    assert (untagged.status_code, list(untagged.json()["message"])) == (400, ["tags_list"])
    gitlab.registration_enabled = False
    gone = api.post("/runners", json=good)
    assert gone.status_code == 410
    assert gone.json()["message"].startswith("410")
    assert gitlab.runners == []


def test_verify_managers_reset_and_delete(gitlab: GitLabDouble, api: httpx.Client) -> None:
    runner = gitlab.create_runner()
    assert runner.token.startswith("glrt-")
    assert api.post("/runners/verify", json={"token": "glrt-nope"}).status_code == 403
    assert (
        api.post("/runners/verify", json={"token": runner.token, "system_id": SYSTEM_ID}).status_code == 200
    )
    assert SYSTEM_ID in runner.managers

    def delete(path: str, **body: str) -> httpx.Response:
        return api.request("DELETE", path, json=body)

    assert delete("/runners/managers", token=runner.token).status_code == 400
    assert delete("/runners/managers", token="glrt-nope", system_id=SYSTEM_ID).status_code == 403
    assert delete("/runners/managers", token=runner.token, system_id="s_000000000000").status_code == 404
    assert delete("/runners/managers", token=runner.token, system_id=SYSTEM_ID).status_code == 204
    assert delete("/runners/managers", token=runner.token, system_id=SYSTEM_ID).status_code == 404

    old_token = runner.token
    reset = api.post("/runners/reset_authentication_token", json={"token": old_token})
    assert reset.status_code == 201
    assert set(reset.json()) == {"token", "token_expires_at"}
    assert reset.json()["token"] != old_token
    assert api.post("/runners/verify", json={"token": old_token}).status_code == 403

    runner.orphaned = True
    assert api.post("/runners/verify", json={"token": runner.token}).status_code == 422
    assert api.post("/runners/reset_authentication_token", json={"token": runner.token}).status_code == 422
    runner.orphaned = False

    assert delete("/runners", token="glrt-nope").status_code == 403
    assert delete("/runners", token=runner.token).status_code == 204
    assert api.post("/runners/verify", json={"token": runner.token}).status_code == 403


def test_expired_runner_token_is_refused(gitlab: GitLabDouble, api: httpx.Client) -> None:
    runner = gitlab.create_runner(token_expires_at="2020-01-01T00:00:00Z")
    assert api.post("/runners/verify", json={"token": runner.token}).status_code == 403
    assert request_job(api, runner).status_code == 403


# -- asking for a job ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda b: b["info"].update(features=list(KUBERNETES_FEATURES)), "must be an object"),
        (lambda b: b["info"]["features"].update(cancelable="true"), "cancelable"),
        (lambda b: b["info"]["features"].pop("trace_checksum"), "trace_checksum"),
        (lambda b: b.pop("system_id"), "system_id is missing"),
        (lambda b: b.update(system_id="machine-1"), "system_id is invalid"),
        (lambda b: b.pop("info"), "info is missing"),
        (lambda b: b["info"].pop("executor"), "info[executor]"),
        (lambda b: b.pop("token"), "token is missing"),
    ],
)
def test_jobs_request_rejects_a_malformed_body(
    gitlab: GitLabDouble, api: httpx.Client, change: Any, error: str
) -> None:
    runner = gitlab.create_runner()
    gitlab.enqueue()
    body = {"token": runner.token, "system_id": SYSTEM_ID, "info": info()}
    change(body)
    answer = api.post("/jobs/request", json=body)
    assert answer.status_code == 400
    assert error in answer.json()["error"]
    assert gitlab.jobs[0].state == "queued"


def test_jobs_request_auth_and_content_type(gitlab: GitLabDouble, api: httpx.Client) -> None:
    runner = gitlab.create_runner()
    forbidden = api.post("/jobs/request", json={"token": "glrt-nope", "system_id": SYSTEM_ID, "info": info()})
    assert (forbidden.status_code, forbidden.json()) == (403, {"message": "403 Forbidden"})
    text = api.post(
        "/jobs/request", content=json.dumps({"token": runner.token}), headers={"Content-Type": "text/plain"}
    )
    assert text.status_code == 415


def test_no_job_answers_204_with_last_update(gitlab: GitLabDouble, api: httpx.Client) -> None:
    runner = gitlab.create_runner()
    answer = request_job(api, runner)
    assert answer.status_code == 204
    assert answer.content == b""
    assert answer.headers["X-GitLab-Last-Update"] == gitlab.last_update
    assert runner.managers[SYSTEM_ID]["executor"] == "kubernetes"


def test_job_payload_has_the_fixture_shape(gitlab: GitLabDouble, api: httpx.Client, shared_dir: Path) -> None:
    fixture = json.loads((shared_dir / "docs" / "fixtures" / "job-payload.json").read_text())
    runner = gitlab.create_runner()
    dep = gitlab.enqueue(name="compile")
    take(api, runner, dep)
    assert upload(api, dep, zip_bytes()).status_code == 201
    assert finish(api, dep).status_code == 200
    job = gitlab.enqueue(
        name="build-image",
        masked={"DEPLOY_TOKEN": MASKED_VALUE},
        variables=[
            {"key": "KUBECONFIG_DATA", "value": "apiVersion: v1\n", "file": True},
            {"key": "LITERAL", "value": "$NOT_EXPANDED", "raw": True},
            {"key": "PLAIN", "value": "1", "public": True},
        ],
        after_script=["echo cleanup"],
        services=[{"name": "docker:24.0.5-dind", "alias": "docker-dind"}],
        artifacts=[{"name": "dist", "paths": ["dist/"]}],
        dependencies=[dep],
    )
    answer = request_job(api, runner)
    assert answer.status_code == 201
    assert answer.headers["content-type"] == "application/json"
    payload = answer.json()
    assert set(payload) == set(fixture)
    for section in ("job_info", "git_info", "runner_info"):
        assert set(fixture[section]) <= set(payload[section]), section
    assert set(payload["image"]) == set(fixture["image"])
    assert set(payload["services"][0]) == set(fixture["services"][0])
    assert set(payload["artifacts"][0]) >= set(fixture["artifacts"][0])
    assert payload["token"] == job.token and job.token.startswith("glcbt-")
    assert (
        payload["git_info"]["repo_url"]
        == f"http://gitlab-ci-token:{job.token}@127.0.0.1:{gitlab.port}/acme/webapp.git"
    )
    variables = {v["key"]: v for v in payload["variables"]}
    assert variables["DEPLOY_TOKEN"] == {
        "key": "DEPLOY_TOKEN",
        "value": MASKED_VALUE,
        "public": False,
        "masked": True,
    }
    assert variables["CI_JOB_TOKEN"]["masked"] is True
    assert variables["KUBECONFIG_DATA"]["file"] is True and "raw" not in variables["KUBECONFIG_DATA"]
    assert variables["LITERAL"]["raw"] is True and "file" not in variables["LITERAL"]
    assert [s["name"] for s in payload["steps"]] == ["script", "after_script"]
    assert payload["dependencies"] == [
        {
            "id": dep.id,
            "name": "compile",
            "token": job.token,
            "artifacts_file": {"filename": "dist.zip", "size": len(zip_bytes())},
        }
    ]
    assert payload["features"]["failure_reasons"] == fixture["features"]["failure_reasons"]
    assert job.state == "assigned" and job.runner_id == runner.id and job.system_id == SYSTEM_ID


def test_payload_overrides_are_deep_merged(gitlab: GitLabDouble, api: httpx.Client) -> None:
    runner = gitlab.create_runner()
    job = gitlab.enqueue(
        hooks=[{"name": "pre_get_sources_script", "script": ["echo pre"]}],
        payload={"git_info": {"depth": 0}, "runner_info": {"timeout": 60}, "image": None},
    )
    payload = take(api, runner, job, start=False)
    assert (payload["git_info"]["depth"], payload["git_info"]["ref"]) == (0, "main")
    assert payload["runner_info"] == {"uuid": None, "timeout": 60, "runner_session_url": None}
    assert payload["image"] is None
    assert payload["hooks"] == [{"name": "pre_get_sources_script", "script": ["echo pre"]}]
    assert job.payload == payload
    with pytest.raises(ValueError, match="SHORT"):
        gitlab.enqueue(masked={"SHORT": "abc"})


def test_waits_follow_a_client_in_another_thread(gitlab: GitLabDouble) -> None:
    runner = gitlab.create_runner()
    job = gitlab.enqueue()
    with pytest.raises(TimeoutError, match=f"job {job.id}: assignment") as timed_out:
        job.wait_assigned(timeout=0.05)
    assert job.token not in str(timed_out.value)

    def drive() -> None:
        with _client(gitlab.api_url) as client:
            take(client, runner, job)
            patch(client, job, b"step one\n", 0)
            finish(client, job)

    thread = threading.Thread(target=drive)
    thread.start()
    job.wait_assigned()
    job.wait_trace("step one")
    assert job.wait_status("success", "failed") == "success"
    thread.join(timeout=5)
    assert [r.status for r in gitlab.wait_requests("trace")] == [202]
    assert job.checksum_ok is True


def test_long_poll_is_woken_by_a_new_job(gitlab: GitLabDouble, api: httpx.Client) -> None:
    runner = gitlab.create_runner()
    gitlab.long_poll_timeout = 10.0
    last_update = request_job(api, runner).headers["X-GitLab-Last-Update"]
    with ThreadPoolExecutor(1) as pool, _client(gitlab.api_url, timeout=15.0) as other:
        held = pool.submit(request_job, other, runner, last_update=last_update)
        gitlab.wait_long_polls(1)
        job = gitlab.enqueue()
        answer = held.result(timeout=5)
    assert answer.status_code == 201
    assert answer.json()["id"] == job.id


def test_long_poll_times_out_and_a_stale_value_is_not_held(gitlab: GitLabDouble, api: httpx.Client) -> None:
    runner = gitlab.create_runner()
    gitlab.long_poll_timeout = 0.3
    current = request_job(api, runner).headers["X-GitLab-Last-Update"]
    started = time.monotonic()
    held = request_job(api, runner, last_update=current)
    assert time.monotonic() - started >= 0.3
    assert (held.status_code, held.headers["X-GitLab-Last-Update"]) == (204, current)
    gitlab.long_poll_timeout = 60.0  # a held request would outlast the client's 5 s timeout
    stale = request_job(api, runner, last_update="0123456789abcdef")
    assert (stale.status_code, stale.headers["X-GitLab-Last-Update"]) == (204, current)


def test_job_needing_an_unadvertised_feature_is_dropped(gitlab: GitLabDouble, api: httpx.Client) -> None:
    runner = gitlab.create_runner()
    unsupported = gitlab.enqueue(required_features=["cancel_gracefully"])
    body = {"token": runner.token, "system_id": SYSTEM_ID, "info": info(cancel_gracefully=False)}
    assert api.post("/jobs/request", json=body).status_code == 204
    assert (unsupported.status, unsupported.failure_reason) == ("failed", "runner_unsupported")
    unsupported_2 = gitlab.enqueue(required_features=["cancel_gracefully"])
    plain = gitlab.enqueue()
    answer = api.post("/jobs/request", json=body)
    assert answer.json()["id"] == plain.id
    assert unsupported_2.failure_reason == "runner_unsupported"


def test_tags_and_pause_decide_who_gets_a_job(gitlab: GitLabDouble, api: httpx.Client) -> None:
    untagged_runner = gitlab.create_runner()
    k8s_runner = gitlab.create_runner(tags=["k8s", "linux"], run_untagged=False)
    tagged = gitlab.enqueue(tags=["k8s"])
    assert request_job(api, untagged_runner).status_code == 204
    plain = gitlab.enqueue()
    assert request_job(api, k8s_runner).json()["id"] == tagged.id
    assert request_job(api, k8s_runner).status_code == 204
    untagged_runner.paused = True
    assert request_job(api, untagged_runner).status_code == 204
    untagged_runner.paused = False
    assert request_job(api, untagged_runner).json()["id"] == plain.id


# -- running a job ---------------------------------------------------------------------------------


def test_job_is_pending_until_put_running(gitlab: GitLabDouble, api: httpx.Client) -> None:
    runner = gitlab.create_runner()
    job = gitlab.enqueue()
    take(api, runner, job, start=False)
    assert (job.state, job.status, job.started) == ("assigned", "running", False)
    early = patch(api, job, b"too early\n", 0)
    assert early.status_code == 202
    assert [v.message for v in gitlab.take_violations()] == ["trace PATCH before PUT state=running"]
    answer = put_job(api, job, {"token": job.token, "state": "running"})
    assert (answer.status_code, answer.headers["Job-Status"]) == (200, "running")
    job.wait_running(timeout=1)
    assert job.state == "running"


def test_trace_append_416_and_resume(gitlab: GitLabDouble, api: httpx.Client) -> None:
    runner = gitlab.create_runner()
    job = gitlab.enqueue(trace_update_interval="3")
    take(api, runner, job)
    first = patch(api, job, b"hello", 0)
    assert first.status_code == 202
    assert first.headers["Range"] == "0-5"
    assert first.headers["Job-Status"] == "running"
    assert first.headers["X-GitLab-Trace-Update-Interval"] == "3"
    again = patch(api, job, b"hello", 0)
    assert (again.status_code, again.headers["Range"]) == (416, "0-5")
    ahead = patch(api, job, b"!", 9)
    assert (ahead.status_code, ahead.headers["Range"]) == (416, "0-5")
    assert patch(api, job, b" world\n", 5).headers["Range"] == "0-12"
    assert job.trace == b"hello world\n"
    assert job.trace_crc() == crc(b"hello world\n")


def test_trace_rejects_bad_requests(gitlab: GitLabDouble, api: httpx.Client) -> None:
    runner = gitlab.create_runner()
    job = gitlab.enqueue()
    take(api, runner, job)
    url = f"/jobs/{job.id}/trace"
    no_range = api.patch(url, content=b"x", headers={"JOB-TOKEN": job.token, "Content-Type": "text/plain"})
    assert no_range.status_code == 400
    assert patch(api, job, b"x", 0, **{"Content-Range": "bytes 0-0/1"}).status_code == 400
    no_token = api.patch(url, content=b"x", headers={"Content-Range": "0-0", "Content-Type": "text/plain"})
    assert no_token.status_code == 403
    assert "Job-Status" not in no_token.headers
    assert patch(api, job, b"x", 0, **{"JOB-TOKEN": "glcbt-64_wrong"}).status_code == 403
    exclusive_end = patch(api, job, b"abc", 0, **{"Content-Range": "0-3"})
    assert (exclusive_end.status_code, exclusive_end.headers["Range"]) == (416, "0-0")
    too_big = b"x" * (TRACE_PATCH_LIMIT + 1)
    assert patch(api, job, too_big, 0).status_code == 400
    assert job.trace == b""
    messages = " | ".join(v.message for v in gitlab.take_violations())
    assert "end must be inclusive" in messages
    assert "limit 1 MiB" in messages


def test_trace_loss_answers_a_smaller_range(gitlab: GitLabDouble, api: httpx.Client) -> None:
    runner = gitlab.create_runner()
    job = gitlab.enqueue()
    take(api, runner, job)
    assert patch(api, job, b"0123456789", 0).status_code == 202
    gitlab.faults.add("trace", "trace_loss", keep=4)
    lost = patch(api, job, b"abc", 10)
    assert (lost.status_code, lost.headers["Range"]) == (416, "0-4")
    assert job.trace == b"0123"
    resumed = patch(api, job, b"456789abc", 4)
    assert (resumed.status_code, resumed.headers["Range"]) == (202, "0-13")
    assert job.trace == b"0123456789abc"


def test_unmasked_secret_in_trace_is_a_violation(gitlab: GitLabDouble, api: httpx.Client) -> None:
    runner = gitlab.create_runner()
    job = gitlab.enqueue(masked={"DEPLOY_TOKEN": MASKED_VALUE})
    take(api, runner, job)
    half = len(MASKED_VALUE) // 2
    patch(api, job, f"token is {MASKED_VALUE[:half]}".encode(), 0)
    assert gitlab.violations == []
    patch(api, job, f"{MASKED_VALUE[half:]}\n".encode(), len(job.trace))
    violations = gitlab.take_violations()
    assert [v.message for v in violations] == ["secret DEPLOY_TOKEN appears unmasked in the trace"]
    assert MASKED_VALUE not in str(violations)
    patch(api, job, f"[MASKED] {job.token}".encode(), len(job.trace))
    with pytest.raises(AssertionError, match="secret CI_JOB_TOKEN appears unmasked") as failure:
        gitlab.assert_clean()
    assert job.token not in str(failure.value)
    gitlab.take_violations()


def test_trace_size_limit_fails_the_job(gitlab: GitLabDouble, api: httpx.Client) -> None:
    runner = gitlab.create_runner()
    job = gitlab.enqueue(max_trace_size=8)
    take(api, runner, job)
    answer = patch(api, job, b"0123456789", 0)
    assert (answer.status_code, answer.headers["Job-Status"]) == (403, "failed")
    assert "Trace size exceeded" in answer.json()["message"]
    assert (job.status, job.failure_reason) == ("failed", "trace_size_exceeded")


def test_final_put_validation_and_checksum(gitlab: GitLabDouble, api: httpx.Client) -> None:
    runner = gitlab.create_runner()
    job = gitlab.enqueue()
    take(api, runner, job)
    patch(api, job, b"log\n", 0)
    assert put_job(api, job, {"state": "success"}).status_code == 400
    wrong = put_job(api, job, {"token": "glcbt-64_wrong", "state": "success"})
    assert (wrong.status_code, "Job-Status" in wrong.headers) == (403, False)
    for state in ("canceled", "pending", None):
        bad = put_job(api, job, {"token": job.token, "state": state})
        assert (bad.status_code, bad.headers["Job-Status"]) == (400, "running"), state
    assert finish(api, job, "failed", failure_reason="bogus_reason").status_code == 400
    assert finish(api, job, "failed", exit_code="one").status_code == 400
    assert job.state == "running"
    done = finish(
        api,
        job,
        "failed",
        failure_reason="script_failure",
        exit_code=2,
        output={"checksum": "crc32:00000000", "bytesize": 4},
    )
    assert (done.status_code, done.headers["Job-Status"]) == (200, "failed")
    assert job.wait_finished(timeout=1) == "failed"
    assert (job.failure_reason, job.exit_code, job.checksum_ok) == ("script_failure", 2, False)
    after = put_job(api, job, {"token": job.token, "state": "running"})
    assert (after.status_code, after.headers["Job-Status"]) == (403, "failed")
    assert "not processing on runner" in after.json()["message"]
    assert patch(api, job, b"more", 4).status_code == 403


def test_final_put_answers_202_until_the_trace_is_persisted(gitlab: GitLabDouble, api: httpx.Client) -> None:
    runner = gitlab.create_runner()
    job = gitlab.enqueue(final_put_202=2, trace_update_interval="2")
    take(api, runner, job)
    patch(api, job, b"Job succeeded\n", 0)
    for _ in range(2):
        pending = finish(api, job)
        assert (pending.status_code, pending.headers["X-GitLab-Trace-Update-Interval"]) == (202, "2")
        assert not job.finished
    assert finish(api, job).status_code == 200
    assert job.wait_finished(timeout=1) == "success"
    assert (job.final_put_attempts, job.checksum_ok, job.reported_bytesize) == (3, True, 14)


def test_careless_final_put_is_recorded(gitlab: GitLabDouble, api: httpx.Client) -> None:
    runner = gitlab.create_runner()
    job = gitlab.enqueue()
    take(api, runner, job, start=False)
    assert api.put(f"/jobs/{job.id}", json={"token": job.token, "state": "failed"}).status_code == 200
    assert job.checksum_ok is None
    assert {v.message for v in gitlab.take_violations()} == {
        "PUT without the JOB-TOKEN header",
        "final state 'failed' without failure_reason",
        "final state sent before PUT state=running",
        "final PUT without output.checksum",
    }


def test_graceful_cancel(gitlab: GitLabDouble, api: httpx.Client) -> None:
    runner = gitlab.create_runner()
    job = gitlab.enqueue()
    take(api, runner, job)
    job.cancel()
    assert patch(api, job, b"stopping\n", 0).headers["Job-Status"] == "canceling"
    keepalive = put_job(api, job, {"token": job.token, "state": "running"})
    assert (keepalive.status_code, keepalive.headers["Job-Status"]) == (200, "canceling")
    assert finish(api, job, "failed").headers["Job-Status"] == "canceled"
    assert job.wait_finished(timeout=1) == "canceled"
    queued = gitlab.enqueue()
    queued.cancel()
    assert queued.status == "canceled"
    assert request_job(api, runner).status_code == 204


def test_force_cancel(gitlab: GitLabDouble, api: httpx.Client) -> None:
    runner = gitlab.create_runner()
    job = gitlab.enqueue()
    take(api, runner, job)
    assert patch(api, job, b"working\n", 0).status_code == 202
    job.force_cancel()
    refused = patch(api, job, b"more\n", 8)
    assert (refused.status_code, refused.headers["Job-Status"]) == (403, "canceled")
    put = finish(api, job)
    assert (put.status_code, put.headers["Job-Status"]) == (403, "canceled")
    assert job.trace == b"working\n"


def test_chunked_json_body_is_read(gitlab: GitLabDouble, api: httpx.Client) -> None:
    runner = gitlab.create_runner()
    job = gitlab.enqueue()
    take(api, runner, job, start=False)
    body = json.dumps({"token": job.token, "state": "running"}).encode()
    answer = api.put(
        f"/jobs/{job.id}",
        content=iter([body[:7], body[7:]]),
        headers={"Content-Type": "application/json", "JOB-TOKEN": job.token},
    )
    assert answer.status_code == 200
    assert gitlab.requests_for("jobs/update")[-1].header("Transfer-Encoding") == "chunked"
    assert job.started


# -- artifacts -------------------------------------------------------------------------------------


def test_artifact_upload_is_chunked_multipart(gitlab: GitLabDouble, api: httpx.Client) -> None:
    runner = gitlab.create_runner()
    job = gitlab.enqueue()
    take(api, runner, job)
    data = zip_bytes()
    answer = upload(api, job, data)
    assert (answer.status_code, answer.headers["content-type"]) == (201, "application/json")
    recorded = gitlab.requests_for("artifacts/upload")[-1]
    assert recorded.header("Transfer-Encoding") == "chunked" and recorded.header("Content-Length") is None
    stored = job.artifacts["archive"]
    assert (stored.data, stored.filename, stored.artifact_format, stored.expire_in) == (
        data,
        "dist.zip",
        "zip",
        "1 week",
    )
    assert upload(api, job, data).status_code == 400  # one archive per job
    assert upload(api, job, b"\x1f\x8b", artifact_type="junit", artifact_format="gzip").status_code == 201
    assert upload(api, job, b"x", artifact_type="dotenv", artifact_format="zip").status_code == 400
    assert upload(api, job, b"x", artifact_type="bogus").status_code == 400


def test_artifact_upload_error_paths(gitlab: GitLabDouble, api: httpx.Client) -> None:
    runner = gitlab.create_runner()
    job = gitlab.enqueue()
    take(api, runner, job)
    url = f"/jobs/{job.id}/artifacts"
    body, content_type = multipart(b"data")
    assert api.post(url, content=body, headers={"Content-Type": content_type}).status_code == 403
    wrong_part, wrong_type = multipart(b"data", name="archive")
    answer = api.post(url, content=wrong_part, headers={"JOB-TOKEN": job.token, "Content-Type": wrong_type})
    assert answer.status_code == 400
    truncated = api.post(
        url, content=body[:-10], headers={"JOB-TOKEN": job.token, "Content-Type": content_type}
    )
    assert truncated.status_code == 400
    gitlab.max_artifact_size = 3
    assert upload(api, job, b"four").status_code == 413
    gitlab.faults.add("artifacts/upload", 503, retry_after=1)
    unavailable = upload(api, job, b"abc")
    assert (unavailable.status_code, unavailable.headers["Retry-After"]) == (503, "1")
    assert "archive" not in job.artifacts


def test_artifact_upload_follows_a_307(gitlab: GitLabDouble, api: httpx.Client) -> None:
    runner = gitlab.create_runner()
    job = gitlab.enqueue()
    take(api, runner, job)
    gitlab.faults.add("artifacts/upload", "redirect")
    moved = upload(api, job, b"zip")
    assert moved.status_code == 307
    location = moved.headers["Location"]
    assert location.startswith(f"{gitlab.url}/uploads/jobs/{job.id}/artifacts?")
    assert "artifact_type=archive" in location
    assert "archive" not in job.artifacts
    assert upload(api, job, b"zip", url=location).status_code == 201
    assert job.artifacts["archive"].data == b"zip"


def _job_with_archive(
    gitlab: GitLabDouble, api: httpx.Client, runner: RunnerRecord, data: bytes
) -> JobHandle:
    dep = gitlab.enqueue(name="compile")
    take(api, runner, dep)
    assert upload(api, dep, data).status_code == 201
    return dep


def test_artifact_download_by_a_dependent_job(gitlab: GitLabDouble, api: httpx.Client) -> None:
    runner = gitlab.create_runner()
    data = zip_bytes()
    dep = _job_with_archive(gitlab, api, runner, data)
    dep_token = dep.token
    assert finish(api, dep).status_code == 200
    no_artifacts = gitlab.enqueue(name="lint")
    take(api, runner, no_artifacts)
    job = gitlab.enqueue(dependencies=[dep])
    token = take(api, runner, job)["dependencies"][0]["token"]
    got = api.get(f"/jobs/{dep.id}/artifacts", headers={"JOB-TOKEN": token})
    assert (got.status_code, got.content) == (200, data)
    assert zipfile.ZipFile(io.BytesIO(got.content)).read("dist/app.txt") == b"built\n"
    assert api.get(f"/jobs/{dep.id}/artifacts").status_code == 401
    assert (
        api.get(f"/jobs/{dep.id}/artifacts", headers={"JOB-TOKEN": dep_token}).status_code == 401
    )  # finished
    assert api.get(f"/jobs/{no_artifacts.id}/artifacts", headers={"JOB-TOKEN": token}).status_code == 404
    assert api.get("/jobs/999999/artifacts", headers={"JOB-TOKEN": token}).status_code == 404
    stranger = gitlab.enqueue(repo="other/project")
    take(api, runner, stranger)
    assert api.get(f"/jobs/{dep.id}/artifacts", headers={"JOB-TOKEN": stranger.token}).status_code == 403


def test_artifact_download_redirects_to_object_storage(gitlab: GitLabDouble, api: httpx.Client) -> None:
    runner = gitlab.create_runner()
    data = zip_bytes()
    dep = _job_with_archive(gitlab, api, runner, data)
    headers = {"JOB-TOKEN": dep.token}
    gitlab.artifacts_object_storage = True
    assert api.get(f"/jobs/{dep.id}/artifacts", headers=headers).status_code == 200  # no direct_download
    moved = api.get(f"/jobs/{dep.id}/artifacts", params={"direct_download": "true"}, headers=headers)
    assert moved.status_code == 302
    location = moved.headers["Location"]
    assert location.startswith(f"{gitlab.url}/object-storage/")
    with _client(gitlab.url) as storage:
        fetched = storage.get(location)
        assert (fetched.status_code, fetched.content) == (200, data)
        assert storage.get(location.replace("Signature=", "Signature=0")).status_code == 403
        assert storage.get(location, headers=headers).status_code == 200
    assert [v.message for v in gitlab.take_violations()] == [
        "JOB-TOKEN sent to object storage (leaks the job token)"
    ]
    gitlab.artifacts_object_storage = False
    gitlab.faults.add("artifacts/download", "redirect", status=307)
    forced = api.get(f"/jobs/{dep.id}/artifacts", headers=headers)
    assert forced.status_code == 307 and "/object-storage/" in forced.headers["Location"]


# -- git over HTTP ---------------------------------------------------------------------------------


def test_git_clone_with_the_job_token(
    gitlab: GitLabDouble, api: httpx.Client, gitlab_repo: BareRepo, tmp_path: Path
) -> None:
    runner = gitlab.create_runner()
    job = gitlab.enqueue()
    git_info = take(api, runner, job)["git_info"]
    assert git_info["sha"] == gitlab_repo.head
    assert git("clone", "--quiet", git_info["repo_url"], "work", cwd=tmp_path).returncode == 0
    work = tmp_path / "work"
    assert git("rev-parse", "HEAD", cwd=work).stdout.strip() == gitlab_repo.head
    fetched = git("fetch", "--quiet", "origin", *git_info["refspecs"], cwd=work)
    assert fetched.returncode == 0, fetched.stderr
    pipeline_ref = f"refs/pipelines/{job.spec.pipeline_id}"
    assert git("rev-parse", pipeline_ref, cwd=work).stdout.strip() == gitlab_repo.head
    served = gitlab.requests_for("git")
    challenges = [r for r in served if r.status == 401]
    assert served[0] in challenges  # git sends credentials only after a Basic challenge
    assert {r.response_headers["www-authenticate"] for r in challenges} == {'Basic realm="GitLab"'}
    assert {r.status for r in served} == {200, 401}

    plain_url = f"{gitlab.url}/acme/webapp.git"
    anonymous = git("clone", "--quiet", plain_url, "anonymous", cwd=tmp_path)
    assert anonymous.returncode != 0
    assert not (tmp_path / "anonymous").exists()
    assert finish(api, job).status_code == 200
    assert git("clone", "--quiet", git_info["repo_url"], "expired", cwd=tmp_path).returncode != 0
    assert gitlab.requests_for("git")[-1].status == 401


def test_git_refuses_other_projects_and_pushes(
    gitlab: GitLabDouble, api: httpx.Client, gitlab_repo: BareRepo, tmp_path: Path
) -> None:
    other = make_bare_repo(tmp_path / "other", name="secret", commits=1)
    gitlab.add_repo("acme/secret", other.path)
    runner = gitlab.create_runner()
    job = gitlab.enqueue()
    take(api, runner, job)
    auth = ("gitlab-ci-token", job.token)
    with httpx.Client(base_url=gitlab.url, auth=auth) as client:
        refs = client.get("/acme/webapp.git/info/refs", params={"service": "git-upload-pack"})
        assert refs.status_code == 200
        assert refs.headers["content-type"] == "application/x-git-upload-pack-advertisement"
        assert gitlab_repo.head.encode() in refs.content
        assert (
            client.get("/acme/secret.git/info/refs", params={"service": "git-upload-pack"}).status_code == 404
        )
        push = client.get("/acme/webapp.git/info/refs", params={"service": "git-receive-pack"})
        assert push.status_code == 403
    with httpx.Client(base_url=gitlab.url, auth=("gitlab-ci-token", "glcbt-64_wrong")) as client:
        assert (
            client.get("/acme/webapp.git/info/refs", params={"service": "git-upload-pack"}).status_code == 401
        )


# -- faults ----------------------------------------------------------------------------------------


def test_status_faults_are_consumed_in_order(gitlab: GitLabDouble, api: httpx.Client) -> None:
    runner = gitlab.create_runner()
    gitlab.faults.add("jobs/request", 500, count=2)
    gitlab.faults.add("jobs/request", 429, retry_after=3)
    gitlab.faults.add("jobs/request", "status", status=409, body={"message": "409 Conflict"})
    assert gitlab.faults.pending("jobs/request") == 4
    answers = [request_job(api, runner) for _ in range(5)]
    assert [a.status_code for a in answers] == [500, 500, 429, 409, 204]
    assert answers[0].json() == {"message": "500 Internal Server Error"}
    assert answers[0].headers["content-type"] == "application/json"
    assert answers[2].headers["Retry-After"] == "3"
    assert gitlab.faults.pending() == 0
    assert [r.fault for r in gitlab.requests_for("jobs/request")] == ["status"] * 4 + [None]


def test_delay_fault_lets_a_client_timeout_fire(gitlab: GitLabDouble, api: httpx.Client) -> None:
    runner = gitlab.create_runner()
    gitlab.faults.add("runners/verify", "delay", seconds=0.2)
    started = time.monotonic()
    assert api.post("/runners/verify", json={"token": runner.token}).status_code == 200
    assert time.monotonic() - started >= 0.2
    job = gitlab.enqueue()
    gitlab.faults.add("jobs/request", "delay", seconds=1.0)
    with _client(gitlab.api_url, timeout=0.2) as impatient, pytest.raises(httpx.ReadTimeout):
        request_job(impatient, runner)
    gitlab.wait_requests("jobs/request", timeout=10)
    assert job.state == "queued"  # the answer would have been lost, so the double keeps the job


def test_drop_fault_closes_without_answering(gitlab: GitLabDouble, api: httpx.Client) -> None:
    runner = gitlab.create_runner()
    job = gitlab.enqueue()
    take(api, runner, job, start=False)
    gitlab.faults.add("jobs/update", "drop")
    with pytest.raises(httpx.RemoteProtocolError):
        put_job(api, job, {"token": job.token, "state": "running"})
    assert not job.started
    assert gitlab.requests_for("jobs/update")[-1].status is None
    assert put_job(api, job, {"token": job.token, "state": "running"}).status_code == 200
    gitlab.faults.add("trace", "drop", processed=True)
    with pytest.raises(httpx.RemoteProtocolError):
        patch(api, job, b"accepted, answer lost\n", 0)
    assert job.trace == b"accepted, answer lost\n"
    retry = patch(api, job, b"accepted, answer lost\n", 0)
    assert (retry.status_code, retry.headers["Range"]) == (416, "0-22")


# -- recording, lifecycle, transports --------------------------------------------------------------


def test_recording_keeps_secrets_out_of_reprs(gitlab: GitLabDouble, api: httpx.Client) -> None:
    runner = gitlab.create_runner()
    job = gitlab.enqueue(masked={"DEPLOY_TOKEN": MASKED_VALUE})
    take(api, runner, job)
    patch(api, job, b"[MASKED]\n", 0)
    texts = [repr(job), repr(runner), repr(job.spec), *(repr(r) for r in gitlab.requests)]
    for text in texts:
        assert runner.token not in text and job.token not in text and MASKED_VALUE not in text
    records = gitlab.requests
    assert [r.endpoint for r in records] == ["jobs/request", "jobs/update", "trace"]
    assert [r.status for r in records] == [201, 200, 202]
    assert records[2].body_length == 9 and records[2].job_id == job.id
    assert len({r.connection_id for r in records}) == 1  # keep-alive: one connection for all three


def test_contract_violations_fail_assert_clean(gitlab: GitLabDouble) -> None:
    with httpx.Client(base_url=gitlab.api_url) as bare:
        bare.post("/runners/verify", json={"token": "glrt-x"})
    with pytest.raises(AssertionError, match="User-Agent"):
        gitlab.assert_clean()
    assert {v.message for v in gitlab.take_violations()} == {
        "User-Agent missing or not '<name> <version> (...)'",
        "request without X-Request-Id",
    }
    gitlab.assert_clean()


async def test_works_from_asyncio(gitlab: GitLabDouble) -> None:
    runner = gitlab.create_runner()
    job = gitlab.enqueue()
    async with httpx.AsyncClient(
        base_url=gitlab.api_url, headers={"User-Agent": USER_AGENT, "X-Request-Id": "async-1"}
    ) as client:
        answer = await client.post(
            "/jobs/request", json={"token": runner.token, "system_id": SYSTEM_ID, "info": info()}
        )
        assert answer.status_code == 201
        job_token = {"JOB-TOKEN": job.token}
        await client.put(f"/jobs/{job.id}", json={"token": job.token, "state": "running"}, headers=job_token)
        await job.wait_running_async(timeout=2)
        await client.put(
            f"/jobs/{job.id}",
            json={"token": job.token, "state": "success", "output": {"checksum": crc(b""), "bytesize": 0}},
            headers=job_token,
        )
    assert await job.wait_finished_async(timeout=2) == "success"


def test_close_wakes_held_requests_and_frees_the_port() -> None:
    double = GitLabDouble(long_poll_timeout=60.0).start()
    runner = double.create_runner()
    port = double.port
    outcome: list[int | str] = []

    def hold() -> None:
        with _client(double.api_url, timeout=30.0) as client:
            try:
                outcome.append(request_job(client, runner, last_update=double.last_update).status_code)
            except httpx.TransportError as exc:
                outcome.append(type(exc).__name__)

    thread = threading.Thread(target=hold)
    thread.start()
    double.wait_long_polls(1)
    double.close()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert outcome in ([204], ["RemoteProtocolError"], ["ReadError"])
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
    double.assert_clean()


def test_serves_https_with_a_test_ca() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    with GitLabDouble(ssl_context=server_context) as double:
        assert double.url.startswith("https://")
        runner = double.create_runner()
        with _client(double.api_url, verify=client_context) as client:
            assert client.post("/runners/verify", json={"token": runner.token}).status_code == 200
        with _client(double.api_url) as untrusting, pytest.raises(httpx.ConnectError):
            untrusting.post("/runners/verify", json={"token": runner.token})
        double.assert_clean()
