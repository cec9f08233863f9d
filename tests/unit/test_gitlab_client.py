"""The GitLab client against httpx handlers that play the contract's answers."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from kuberunner.gitlab import (
    FEATURES,
    GitLabClient,
    GitLabForbidden,
    GitLabHTTPError,
    GitLabUnreachable,
    api_base,
)
from kuberunner.runner.trace_sender import MAX_PATCH_BYTES, TraceSender

PAYLOAD = {"id": 7, "token": "glcbt-secret", "steps": [{"name": "script", "script": ["true"]}]}


def client_for(
    handler: Callable[[httpx.Request], httpx.Response], sleeps: list[float] | None = None
) -> GitLabClient:
    async def fake_sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)

    return GitLabClient(
        "https://gitlab.example.com/", transport=httpx.MockTransport(handler), sleep=fake_sleep
    )


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("https://gitlab.example.com", "https://gitlab.example.com/api/v4/"),
        ("https://gitlab.example.com/", "https://gitlab.example.com/api/v4/"),
        ("https://gitlab.example.com/ci", "https://gitlab.example.com/api/v4/"),
        ("https://example.com/gitlab/ci/", "https://example.com/gitlab/api/v4/"),
    ],
)
def test_api_base_strips_slash_and_ci(url: str, base: str) -> None:
    assert api_base(url) == base


async def test_request_job_sends_contract_body_and_parses_201() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json=PAYLOAD, headers={"X-GitLab-Last-Update": "abc"})

    async with client_for(handler) as client:
        answer = await client.request_job(
            "glrt-runner", system_id="s_0123456789ab", info={"features": FEATURES}
        )
    assert answer.status == 201 and answer.job is not None and answer.job.id == 7
    assert answer.last_update == "abc"
    request = seen[0]
    assert request.url.path == "/api/v4/jobs/request"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"].startswith("kuberunner ")
    assert request.headers["X-Request-Id"]
    body = json.loads(request.content)
    assert body["token"] == "glrt-runner" and body["system_id"] == "s_0123456789ab"
    assert all(isinstance(v, bool) for v in body["info"]["features"].values())


async def test_request_job_204_keeps_last_update_and_409_is_not_an_error() -> None:
    answers = iter([httpx.Response(204, headers={"X-GitLab-Last-Update": "x1"}), httpx.Response(409)])
    async with client_for(lambda r: next(answers)) as client:
        first = await client.request_job("t", system_id="s", info={})
        second = await client.request_job("t", system_id="s", info={}, last_update=first.last_update)
    assert (first.status, first.job, first.last_update) == (204, None, "x1")
    assert (second.status, second.job, second.last_update) == (409, None, "x1")


async def test_request_job_403_raises_forbidden_without_the_token() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(403, json={"message": "403 Forbidden"})

    async with client_for(handler) as client:
        with pytest.raises(GitLabForbidden) as info:
            await client.request_job("glrt-supersecret", system_id="s", info={})
    assert "supersecret" not in str(info.value)


async def test_request_job_429_reports_retry_after() -> None:
    async with client_for(lambda r: httpx.Response(429, headers={"Retry-After": "7"})) as client:
        answer = await client.request_job("t", system_id="s", info={})
    assert answer.status == 429 and answer.retry_after == 7.0


async def test_a_broken_payload_is_a_clear_error() -> None:
    async with client_for(lambda r: httpx.Response(201, json={"id": "seven"})) as client:
        with pytest.raises(GitLabHTTPError) as info:
            await client.request_job("t", system_id="s", info={})
    assert "token" in str(info.value) and "id" in str(info.value)


async def test_update_retries_5xx_with_backoff_then_succeeds() -> None:
    sleeps: list[float] = []
    answers = iter(
        [httpx.Response(502), httpx.Response(503, headers={"Retry-After": "2"}), httpx.Response(200)]
    )
    async with client_for(lambda r: next(answers), sleeps) as client:
        answer = await client.update_job(1, "glcbt-x", state="running")
    assert answer.accepted
    assert sleeps == [0.1, 2.0]


async def test_network_errors_are_retried_then_reported_without_secrets() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError("connection refused")

    sleeps: list[float] = []
    async with client_for(handler, sleeps) as client:
        with pytest.raises(GitLabUnreachable) as info:
            await client.update_job(1, "glcbt-hidden", state="running")
    assert calls == 5 and len(sleeps) == 4
    assert "hidden" not in str(info.value)


async def test_update_job_sends_output_checksum_and_token() -> None:
    bodies: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        assert request.headers["JOB-TOKEN"] == "glcbt-j"
        return httpx.Response(200, headers={"Job-Status": "success"})

    async with client_for(handler) as client:
        answer = await client.update_job(
            3,
            "glcbt-j",
            state="failed",
            failure_reason="script_failure",
            exit_code=2,
            checksum="crc32:0000abcd",
            bytesize=9,
        )
    assert answer.job_status == "success"
    assert bodies[0]["state"] == "failed" and bodies[0]["exit_code"] == 2
    assert bodies[0]["output"] == {"checksum": "crc32:0000abcd", "bytesize": 9}
    assert bodies[0]["token"] == "glcbt-j"


class TraceStore:
    """A handler that stores a trace like GitLab: append at exactly the stored size, else 416."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.lose_to: int | None = None
        self.patches: list[tuple[int, int]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        start_s, end_s = request.headers["Content-Range"].split("-")
        start, end = int(start_s), int(end_s)
        body = request.content
        self.patches.append((start, len(body)))
        assert end - start + 1 == len(body)
        assert len(body) <= MAX_PATCH_BYTES
        if self.lose_to is not None:
            del self.data[self.lose_to :]
            self.lose_to = None
            return httpx.Response(416, headers={"Range": f"0-{len(self.data)}"})
        if start != len(self.data):
            return httpx.Response(416, headers={"Range": f"0-{len(self.data)}"})
        self.data += body
        return httpx.Response(202, headers={"Range": f"0-{len(self.data)}", "Job-Status": "running"})


async def test_trace_sender_resumes_after_server_side_loss_without_loss_or_repeat() -> None:
    store = TraceStore()
    async with client_for(store) as client:
        sender = TraceSender(client, 1, "glcbt-x", on_status=lambda s: None)
        sender.append(b"a" * 1000)
        assert await sender.send_once() == "done"
        sender.append(b"b" * 500)
        store.lose_to = 400  # GitLab lost everything after byte 400
        assert await sender.send_once() == "progress"
        assert sender.sent == 400
        assert await sender.close()
    assert bytes(store.data) == b"a" * 1000 + b"b" * 500


async def test_trace_sender_splits_into_one_mebibyte_patches() -> None:
    store = TraceStore()
    async with client_for(store) as client:
        sender = TraceSender(client, 1, "glcbt-x", on_status=lambda s: None)
        sender.append(b"x" * (2 * MAX_PATCH_BYTES + 10))
        assert await sender.close()
    assert [n for _, n in store.patches] == [MAX_PATCH_BYTES, MAX_PATCH_BYTES, 10]
    assert len(store.data) == 2 * MAX_PATCH_BYTES + 10


async def test_trace_sender_reports_job_status_and_stops_on_403() -> None:
    statuses: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(403, headers={"Job-Status": "canceled"})

    async with client_for(handler) as client:
        sender = TraceSender(client, 1, "glcbt-x", on_status=statuses.append)
        sender.append(b"hello")
        assert await sender.send_once() == "done"
    assert statuses == ["canceled"] and sender.forbidden
