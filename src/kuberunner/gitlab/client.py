"""GitLab's runner API, as ``../shared/docs/gitlab-runner-api.md`` describes it.

One async client per GitLab URL. Every call returns a small result object or
raises from :mod:`kuberunner.gitlab.errors`; httpx errors never escape.
Retries follow the contract: 408, 429, 500, 502, 503, 504 and >= 512 plus
network errors, up to 5 attempts, waiting ``RateLimit-ResetTime`` or
``Retry-After`` when the server says, else exponential backoff from 100 ms.
The transport is injectable, as in httpx, so tests can plug in a handler.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import platform
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from kuberunner import NAME, REVISION, __version__
from kuberunner.gitlab.errors import GitLabError, GitLabHTTPError, GitLabUnreachable, error_for
from kuberunner.job import JobPayload, JobPayloadError

__all__ = [
    "FEATURES",
    "GitLabClient",
    "JobRequest",
    "RegisteredRunner",
    "RetryPolicy",
    "TracePatch",
    "UpdateAnswer",
    "api_base",
]

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

# What kuberunner advertises in `info.features`. Every key is always sent;
# only what is implemented is true.
FEATURES: dict[str, bool] = {
    "variables": True,
    "image": True,
    "services": True,
    "artifacts": True,
    "cache": True,
    "fallback_cache_keys": True,
    "shared": False,
    "upload_multiple_artifacts": True,
    "upload_raw_artifacts": True,
    "session": False,
    "terminal": False,
    "refspecs": True,
    "masking": True,
    "proxy": False,
    "raw_variables": True,
    "artifacts_exclude": True,
    "multi_build_steps": True,
    "trace_reset": True,
    "trace_checksum": True,
    "trace_size": True,
    "vault_secrets": False,
    "cancelable": True,
    "return_exit_code": True,
    "service_variables": True,
    "service_multiple_aliases": True,
    "image_executor_opts": False,
    "service_executor_opts": False,
    "cancel_gracefully": True,
    "native_steps_integration": False,
    "two_phase_job_commit": True,
    "job_inputs": False,
}


def api_base(url: str) -> str:
    """The configured ``url`` with a trailing ``/`` or ``/ci`` removed, then ``/api/v4/``."""
    base = url.rstrip("/")
    if base.endswith("/ci"):
        base = base[: -len("/ci")]
    return base.rstrip("/") + "/api/v4/"


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    backoff_min: float = 0.1
    backoff_max: float = 60.0

    def backoff(self, attempt: int) -> float:
        return float(min(self.backoff_max, self.backoff_min * (2**attempt)))


@dataclass(frozen=True)
class RegisteredRunner:
    id: int
    token: str
    token_expires_at: str | None

    def __repr__(self) -> str:
        return f"RegisteredRunner(id={self.id})"


@dataclass(frozen=True)
class JobRequest:
    """The answer to ``POST /jobs/request``: a job (201) or none (204/409/429/503)."""

    status: int
    job: JobPayload | None
    last_update: str | None
    retry_after: float | None = None


@dataclass(frozen=True)
class UpdateAnswer:
    """The answer to ``PUT /jobs/:id``."""

    status: int
    job_status: str | None
    update_interval: float | None

    @property
    def accepted(self) -> bool:
        return self.status == 200

    @property
    def trace_not_persisted(self) -> bool:
        return self.status == 202


@dataclass(frozen=True)
class TracePatch:
    """The answer to ``PATCH /jobs/:id/trace``.

    ``remote_size`` is the size GitLab now holds (from ``Range: 0-N``): after a
    202 the new total, after a 416 where to resume from.
    """

    status: int
    remote_size: int | None
    job_status: str | None
    update_interval: float | None


Sleep = Callable[[float], Awaitable[None]]


class GitLabClient:
    """Async client of GitLab's runner API for one GitLab instance."""

    def __init__(
        self,
        url: str,
        *,
        tls_ca_file: str | None = None,
        tls_cert_file: str | None = None,
        tls_key_file: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        on_response: Callable[[str, int], None] | None = None,
    ) -> None:
        self.url = url
        self.base = api_base(url)
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._on_response = on_response
        verify: Any = True
        if tls_ca_file:
            import ssl

            ctx = ssl.create_default_context(cafile=tls_ca_file)
            if tls_cert_file and tls_key_file:
                ctx.load_cert_chain(tls_cert_file, tls_key_file)
            verify = ctx
        self._http = httpx.AsyncClient(
            base_url=self.base,
            transport=transport,
            verify=verify,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 30.0)),
            headers={"User-Agent": user_agent()},
            follow_redirects=False,
        )

    async def __aenter__(self) -> GitLabClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # ------------------------------------------------------------------ transport

    async def _send(
        self,
        endpoint: str,
        method: str,
        path: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        retry: bool = True,
        also_retry: frozenset[int] = frozenset(),
    ) -> httpx.Response:
        """Send one request with the contract's retries; the last answer is returned as is."""
        attempts = self._retry.attempts if retry else 1
        last_exc: Exception | None = None
        for attempt in range(attempts):
            req_headers = {"X-Request-Id": uuid.uuid4().hex}
            if headers:
                req_headers.update(headers)
            try:
                kwargs: dict[str, Any] = {"headers": req_headers}
                if json_body is not None:
                    kwargs["content"] = json.dumps(json_body).encode()
                    req_headers["Content-Type"] = "application/json"
                elif content is not None:
                    kwargs["content"] = content
                if timeout is not None:
                    kwargs["timeout"] = timeout
                response = await self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                last_exc = exc
                if self._on_response:
                    self._on_response(endpoint, 0)
                if attempt + 1 < attempts:
                    await self._sleep(self._retry.backoff(attempt))
                    continue
                raise GitLabUnreachable(
                    f"{endpoint}: cannot reach {self.url}: {_describe_transport(exc)}"
                ) from None
            if self._on_response:
                self._on_response(endpoint, response.status_code)
            if (
                _retryable(response.status_code) or response.status_code in also_retry
            ) and attempt + 1 < attempts:
                await self._sleep(_wait_for(response, self._retry, attempt))
                continue
            return response
        raise GitLabUnreachable(f"{endpoint}: gave up: {last_exc}")  # pragma: no cover - loop always returns

    # ------------------------------------------------------------------ runners

    async def register_runner(
        self,
        registration_token: str,
        *,
        description: str,
        tags: list[str] | None = None,
        run_untagged: bool = True,
        locked: bool = True,
        access_level: str = "not_protected",
        maximum_timeout: int | None = None,
        paused: bool = False,
        maintenance_note: str | None = None,
    ) -> RegisteredRunner:
        """Legacy ``POST /runners`` with a registration token."""
        body: dict[str, Any] = {
            "token": registration_token,
            "description": description,
            "tag_list": ",".join(tags or []),
            "run_untagged": run_untagged,
            "locked": locked,
            "access_level": access_level,
            "paused": paused,
            "info": runner_info(),
        }
        if maximum_timeout:
            body["maximum_timeout"] = maximum_timeout
        if maintenance_note:
            body["maintenance_note"] = maintenance_note
        response = await self._send("runners/register", "POST", "runners", json_body=body)
        if response.status_code != 201:
            raise _http_error("register runner", response)
        return _registered(response)

    async def verify_runner(self, token: str, system_id: str | None = None) -> RegisteredRunner | None:
        """``POST /runners/verify``: the runner as GitLab knows it, or None if GitLab does not."""
        body: dict[str, Any] = {"token": token}
        if system_id:
            body["system_id"] = system_id
        response = await self._send("runners/verify", "POST", "runners/verify", json_body=body)
        if response.status_code == 200:
            try:
                return _registered(response, fallback_token=token)
            except GitLabError:
                return RegisteredRunner(id=0, token=token, token_expires_at=None)
        if response.status_code in (403, 422):
            return None
        raise _http_error("verify runner", response)

    async def unregister_runner(self, token: str) -> bool:
        """``DELETE /runners``: True when removed, False when GitLab did not know the token."""
        response = await self._send("runners/unregister", "DELETE", "runners", json_body={"token": token})
        if response.status_code == 204:
            return True
        if response.status_code == 403:
            return False
        raise _http_error("unregister runner", response)

    async def unregister_manager(self, token: str, system_id: str) -> bool:
        """``DELETE /runners/managers`` for ``glrt-`` tokens: removes this machine only."""
        response = await self._send(
            "runners/managers",
            "DELETE",
            "runners/managers",
            json_body={"token": token, "system_id": system_id},
        )
        if response.status_code == 204:
            return True
        if response.status_code in (403, 404):
            return False
        raise _http_error("unregister runner manager", response)

    async def reset_token(self, token: str) -> RegisteredRunner:
        response = await self._send(
            "runners/reset_token", "POST", "runners/reset_authentication_token", json_body={"token": token}
        )
        if response.status_code != 201:
            raise _http_error("reset runner token", response)
        data = _json(response, "reset runner token")
        return RegisteredRunner(
            id=0, token=str(data.get("token", "")), token_expires_at=data.get("token_expires_at")
        )

    # ------------------------------------------------------------------ jobs

    async def request_job(
        self,
        token: str,
        *,
        system_id: str,
        info: Mapping[str, Any],
        last_update: str | None = None,
        timeout: float | None = None,
    ) -> JobRequest:
        """``POST /jobs/request``. 204/409/429/503 are ordinary answers, not errors."""
        body: dict[str, Any] = {"token": token, "system_id": system_id, "info": dict(info)}
        if last_update:
            body["last_update"] = last_update
        response = await self._send(
            "jobs/request", "POST", "jobs/request", json_body=body, timeout=timeout, retry=False
        )
        status = response.status_code
        new_update = response.headers.get("X-GitLab-Last-Update") or last_update
        if status == 201:
            data = _json(response, "request job")
            try:
                job = JobPayload.parse(data)
            except JobPayloadError as exc:
                raise GitLabHTTPError(
                    "jobs/request", 201, f"GitLab sent a job kuberunner cannot read: {exc}"
                ) from None
            return JobRequest(201, job, new_update)
        if status in (204, 409):
            return JobRequest(status, None, new_update)
        if status in (429, 503) or _retryable(status):
            return JobRequest(status, None, new_update, retry_after=_wait_for(response, self._retry, 0))
        raise _http_error("request job", response)

    async def update_job(
        self,
        job_id: int,
        job_token: str,
        *,
        state: str,
        failure_reason: str | None = None,
        exit_code: int | None = None,
        checksum: str | None = None,
        bytesize: int | None = None,
    ) -> UpdateAnswer:
        """``PUT /jobs/:id``. 200 and 202 are answers; 403/404 raise GitLabForbidden/NotFound."""
        body: dict[str, Any] = {"token": job_token, "state": state, "info": runner_info()}
        if failure_reason:
            body["failure_reason"] = failure_reason
        if exit_code is not None:
            body["exit_code"] = exit_code
        if checksum is not None or bytesize is not None:
            body["output"] = {"checksum": checksum, "bytesize": bytesize}
        # 409: the job is being updated by another request (GitLab's lock): try again
        response = await self._send(
            "jobs/update",
            "PUT",
            f"jobs/{job_id}",
            json_body=body,
            headers={"JOB-TOKEN": job_token},
            also_retry=frozenset({409}),
        )
        if response.status_code in (200, 202):
            return UpdateAnswer(response.status_code, response.headers.get("Job-Status"), _interval(response))
        raise _http_error("update job", response)

    async def patch_trace(self, job_id: int, job_token: str, content: bytes, *, start: int) -> TracePatch:
        """``PATCH /jobs/:id/trace`` with ``Content-Range: start-end`` (end inclusive)."""
        end = start + len(content) - 1
        response = await self._send(
            "jobs/trace",
            "PATCH",
            f"jobs/{job_id}/trace",
            content=content,
            headers={
                "JOB-TOKEN": job_token,
                "Content-Type": "text/plain",
                "Content-Range": f"{start}-{end}",
            },
        )
        status = response.status_code
        remote = _range_end(response.headers.get("Range"))
        if status in (202, 416, 403, 409) or _retryable(status):
            return TracePatch(status, remote, response.headers.get("Job-Status"), _interval(response))
        raise _http_error("send job log", response)


# ---------------------------------------------------------------------- helpers


def user_agent() -> str:
    return f"{NAME} {__version__} ({REVISION}; {platform.system().lower()}/{platform.machine()})"


def runner_info(executor: str = "kubernetes", shell: str = "bash") -> dict[str, Any]:
    """The ``info`` object of requests: who we are and what we can do."""
    return {
        "name": NAME,
        "version": __version__,
        "revision": REVISION,
        "platform": platform.system().lower(),
        "architecture": _arch(),
        "executor": executor,
        "shell": shell,
        "features": dict(FEATURES),
    }


def _arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def _retryable(status: int) -> bool:
    return status in RETRY_STATUSES or status >= 512


def _wait_for(response: httpx.Response, policy: RetryPolicy, attempt: int) -> float:
    reset = response.headers.get("RateLimit-ResetTime")
    if reset:
        try:
            when = email.utils.parsedate_to_datetime(reset).timestamp()
            return float(min(policy.backoff_max, max(0.0, when - time.time())))
        except (TypeError, ValueError):
            pass
    retry_after = response.headers.get("Retry-After")
    if retry_after:
        try:
            return float(min(policy.backoff_max, max(0.0, float(retry_after))))
        except ValueError:
            pass
    return policy.backoff(attempt)


def _interval(response: httpx.Response) -> float | None:
    value = response.headers.get("X-GitLab-Trace-Update-Interval")
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _range_end(value: str | None) -> int | None:
    """``Range: 0-N`` → N (the size the server holds)."""
    if not value or "-" not in value:
        return None
    try:
        return int(value.split("-", 1)[1])
    except ValueError:
        return None


def _json(response: httpx.Response, what: str) -> dict[str, Any]:
    ctype = response.headers.get("Content-Type", "")
    if "application/json" not in ctype:
        raise GitLabHTTPError(
            what, response.status_code, f"expected a JSON answer, got Content-Type {ctype!r}"
        )
    try:
        data = response.json()
    except ValueError:
        raise GitLabHTTPError(what, response.status_code, "the answer is not valid JSON") from None
    if not isinstance(data, dict):
        raise GitLabHTTPError(what, response.status_code, "the answer is not a JSON object")
    return data


def _registered(response: httpx.Response, fallback_token: str = "") -> RegisteredRunner:
    data = _json(response, "register runner")
    token = str(data.get("token") or fallback_token)
    if not token:
        raise GitLabHTTPError("register runner", response.status_code, "the answer has no token")
    return RegisteredRunner(
        id=int(data.get("id") or 0), token=token, token_expires_at=data.get("token_expires_at")
    )


def _http_error(what: str, response: httpx.Response) -> GitLabHTTPError:
    message = response.reason_phrase
    try:
        data = response.json()
        if isinstance(data, dict) and data.get("message"):
            message = str(data["message"])
        elif isinstance(data, dict) and data.get("error"):
            message = str(data["error"])
    except ValueError:
        pass
    return error_for(what, response.status_code, message)


def _describe_transport(exc: httpx.TransportError) -> str:
    text = str(exc) or type(exc).__name__
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return (
            f"TLS: the server's certificate is not trusted ({text}); "
            "set tls-ca-file in [[runners]] to the CA that signed GitLab's certificate"
        )
    return text
