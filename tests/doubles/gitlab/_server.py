"""The GitLab double: a real HTTP/1.1 server on 127.0.0.1 that speaks the runner API contract.

Contract: `shared/docs/gitlab-runner-api.md`. Where GitLab accepts something the contract forbids (no
User-Agent, a trace PATCH before `state=running`, a final PUT without checksum, a masked value in the
trace...), the double answers as GitLab would and records a `Violation`; the `gitlab` fixture fails the
test on any violation, so a wrong client cannot pass.

Strictness choices the contract leaves open:
- A trace PATCH body above 1 MiB gets 400 (not 416): 416 means "resume from Range", and a client obeying
  it would resend the same oversized chunk forever; 400 is a client error that stops it at once.
- A Content-Range whose end is not `start + len(body) - 1` gets 416 (plus a violation), although GitLab
  ignores the end: the contract says the end is inclusive, and a client that gets it wrong must fail.
- Answers to a bad job token carry no `Job-Status` (as GitLab: the status is not disclosed to strangers);
  every answer to an authenticated job request does.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import itertools
import json
import re
import secrets
import select
import socket
import ssl
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote

from . import _git
from ._faults import Fault, FaultPlan
from ._http import (
    FramingError,
    MultipartError,
    Request,
    Response,
    json_response,
    message,
    param_error,
    parse_multipart,
    read_body,
    reason,
)
from ._model import (
    ACTIVE_STATES,
    FAILURE_REASONS,
    KUBERNETES_FEATURES,
    Artifact,
    JobHandle,
    JobSpec,
    RecordedRequest,
    RunnerRecord,
    Violation,
)
from ._payload import (
    build_payload,
    normalize_artifact,
    normalize_cache,
    normalize_image,
    normalize_service,
    normalize_variables,
)

MIB = 1024 * 1024
TRACE_PATCH_LIMIT = MIB
"""The contract: at most 1 MiB per trace PATCH."""

SYSTEM_ID = re.compile(r"s_[0-9A-Za-z]{12}")
USER_AGENT = re.compile(r"[^\s/]+ \S+ \(.+\)")
"""`<name> <version> (...)`, as the contract requires on every request."""

ARTIFACT_FORMATS: dict[str, str] = {
    "archive": "zip",
    "metadata": "gzip",
    "trace": "raw",
    "junit": "gzip",
    "metrics": "gzip",
    "dotenv": "gzip",
    "cobertura": "gzip",
    "jacoco": "gzip",
    "lsif": "zip",
    "cyclonedx": "gzip",
    "annotations": "gzip",
    "sast": "raw",
    "secret_detection": "raw",
    "dependency_scanning": "raw",
    "container_scanning": "raw",
    "dast": "raw",
    "performance": "raw",
    "browser_performance": "raw",
    "load_performance": "raw",
    "terraform": "raw",
    "requirements": "raw",
    "coverage_fuzzing": "raw",
    "api_fuzzing": "raw",
    "accessibility": "raw",
    "codequality": "raw",
}
"""GitLab's artifact types and the one format each accepts (`Ci::JobArtifact::TYPE_AND_FORMAT_PAIRS`)."""

_ROUTES: tuple[tuple[str, str, re.Pattern[str]], ...] = (
    ("POST", "runners/register", re.compile(r"/api/v4/runners")),
    ("DELETE", "runners/delete", re.compile(r"/api/v4/runners")),
    ("POST", "runners/verify", re.compile(r"/api/v4/runners/verify")),
    ("DELETE", "runners/managers/delete", re.compile(r"/api/v4/runners/managers")),
    ("POST", "runners/reset_token", re.compile(r"/api/v4/runners/reset_authentication_token")),
    ("POST", "jobs/request", re.compile(r"/api/v4/jobs/request")),
    ("PUT", "jobs/update", re.compile(r"/api/v4/jobs/(?P<job>\d+)")),
    ("PATCH", "trace", re.compile(r"/api/v4/jobs/(?P<job>\d+)/trace")),
    ("POST", "artifacts/upload", re.compile(r"/api/v4/jobs/(?P<job>\d+)/artifacts")),
    ("GET", "artifacts/download", re.compile(r"/api/v4/jobs/(?P<job>\d+)/artifacts")),
    ("POST", "artifacts/upload", re.compile(r"/uploads/jobs/(?P<job>\d+)/artifacts")),
    ("GET", "object_storage", re.compile(r"/object-storage/artifacts/(?P<job>\d+)/(?P<key>[A-Za-z0-9_-]+)")),
)
_GIT_SUFFIXES = ("/info/refs", "/git-upload-pack", "/git-receive-pack")

_Endpoint = Callable[[Request, "re.Match[str] | None", "Fault | None", "_Handler"], Response]


class _Reject(Exception):
    """Raised inside an endpoint to answer at once with `response`."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def _same(secret: str, given: str | None) -> bool:
    """Constant-time token comparison that tolerates any input."""
    return given is not None and hmac.compare_digest(secret.encode(), given.encode())


def _str_param(params: Mapping[str, Any], name: str, *, required: bool = False) -> str | None:
    value = params.get(name)
    if value is None:
        if required:
            raise _Reject(param_error(f"{name} is missing"))
        return None
    if not isinstance(value, str):
        raise _Reject(param_error(f"{name} is invalid"))
    return value


def _bool_param(params: Mapping[str, Any], name: str) -> bool | None:
    value = params.get(name)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    raise _Reject(param_error(f"{name} is invalid"))


def _int_param(params: Mapping[str, Any], name: str) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return int(value)
    raise _Reject(param_error(f"{name} is invalid"))


def _client_gone(sock: socket.socket) -> bool:
    """True when the peer closed its end (EOF pending), so an answer would be lost."""
    if isinstance(sock, ssl.SSLSocket):
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


class _Handler(BaseHTTPRequestHandler):
    """One keep-alive connection; every request goes to `GitLabDouble._serve`."""

    protocol_version = "HTTP/1.1"
    server_version = "GitLabDouble"
    sys_version = ""
    timeout = 60.0
    disable_nagle_algorithm = True
    """Headers and body go out in two writes; without TCP_NODELAY each small answer waits ~40 ms."""
    server: _Server
    connection_id = 0

    def setup(self) -> None:
        super().setup()
        self.connection_id = self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection_id)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: request lines and errors can carry tokens, and nothing secret may reach the output."""

    def do_GET(self) -> None:
        """Every method goes through the double's router."""
        self.server.double._serve(self)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET


class _Server(ThreadingHTTPServer):
    """A threading server that tracks its connections and threads, so `close()` leaves nothing behind."""

    daemon_threads = True

    def __init__(self, double: GitLabDouble, ssl_context: ssl.SSLContext | None) -> None:
        self.double = double
        self.ssl_context = ssl_context
        self._lock = threading.Lock()
        self._connections: dict[int, socket.socket] = {}
        self._conn_threads: set[threading.Thread] = set()
        self._ids = itertools.count(1)
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._run_connection,
            args=(request, client_address),
            name="gitlab-double-conn",
            daemon=True,
        )
        with self._lock:
            self._conn_threads.add(thread)
        thread.start()

    def _run_connection(self, request: socket.socket, client_address: Any) -> None:
        try:
            if self.ssl_context is not None:
                request.settimeout(10)
                request = self.ssl_context.wrap_socket(request, server_side=True)
            self.finish_request(request, client_address)
        except (OSError, ssl.SSLError):
            pass
        except Exception:
            self.double._internal_error(traceback.format_exc())
        finally:
            self.shutdown_request(request)
            with self._lock:
                self._conn_threads.discard(threading.current_thread())

    def track(self, sock: socket.socket) -> int:
        with self._lock:
            connection_id = next(self._ids)
            self._connections[connection_id] = sock
            return connection_id

    def untrack(self, connection_id: int) -> None:
        with self._lock:
            self._connections.pop(connection_id, None)

    def close_connections(self) -> None:
        """Unblock handlers waiting on idle keep-alive connections."""
        with self._lock:
            sockets = list(self._connections.values())
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def join_threads(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._conn_threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


class GitLabDouble:
    """GitLab's runner API on 127.0.0.1 with state in memory, fault injection and request recording.

    Use as a context manager (or `start()`/`close()`); `url` is what a runner's `url` setting takes.
    """

    def __init__(
        self,
        *,
        long_poll_timeout: float = 0.5,
        trace_update_interval: str = "1",
        registration_token: str | None = None,
        max_trace_size: int = 100 * MIB,
        max_artifact_size: int = 100 * MIB,
        artifacts_object_storage: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self.long_poll_timeout = long_poll_timeout
        """How long `jobs/request` is held when `last_update` is current (Workhorse's long polling)."""
        self.trace_update_interval = trace_update_interval
        """Default `X-GitLab-Trace-Update-Interval` for new jobs."""
        self.registration_token = registration_token or f"GR1348941{secrets.token_urlsafe(15)}"
        self.registration_enabled = True
        self.max_trace_size = max_trace_size
        self.max_artifact_size = max_artifact_size
        self.artifacts_object_storage = artifacts_object_storage
        """When true, `GET /jobs/:id/artifacts?direct_download=true` answers 302 to object storage."""
        self.faults = FaultPlan(self._cond)
        self.runners: list[RunnerRecord] = []
        self.jobs: list[JobHandle] = []
        self.requests: list[RecordedRequest] = []
        self.violations: list[Violation] = []
        self.internal_errors: list[str] = []
        """Tracebacks of bugs in the double itself (answered 500); `assert_clean` fails on them."""
        self._jobs_by_id: dict[int, JobHandle] = {}
        self._repos: dict[str, Path] = {}
        self._project_ids: dict[str, int] = {}
        self._presigned: dict[str, tuple[int, str, str]] = {}
        self._queue_value = secrets.token_hex(8)
        self._polls_waiting = 0
        self._runner_ids = itertools.count(1)
        self._job_ids = itertools.count(1001)
        self._pipeline_ids = itertools.count(501)
        self._ssl_context = ssl_context
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._handlers: dict[str, _Endpoint] = {
            "runners/register": self._register,
            "runners/verify": self._verify,
            "runners/delete": self._delete_runner,
            "runners/managers/delete": self._delete_manager,
            "runners/reset_token": self._reset_token,
            "jobs/request": self._request_job,
            "jobs/update": self._update_job,
            "trace": self._patch_trace,
            "artifacts/upload": self._upload_artifact,
            "artifacts/download": self._download_artifact,
            "object_storage": self._object_storage,
            "git": self._git,
        }

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> GitLabDouble:
        """Listen on an ephemeral port of 127.0.0.1 and serve in a background thread."""
        if self._server is not None:
            return self
        self._server = _Server(self, self._ssl_context)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="gitlab-double", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving: wake held requests, close every connection, join every thread."""
        server, self._server = self._server, None
        if server is None:
            return
        with self._cond:
            self._stopping.set()
            self._cond.notify_all()
        server.shutdown()
        server.close_connections()
        server.server_close()
        server.join_threads(10.0)
        if self._thread is not None:
            self._thread.join(10.0)

    def __enter__(self) -> GitLabDouble:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def port(self) -> int:
        """The TCP port the double listens on."""
        if self._server is None:
            raise RuntimeError("the GitLab double is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The instance URL (what goes into config.toml `url`)."""
        scheme = "https" if self._ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """`<url>/api/v4`."""
        return f"{self.url}/api/v4"

    # -- test-side setup ---------------------------------------------------------------------------

    def create_runner(
        self,
        *,
        description: str = "kuberunner test",
        tags: Sequence[str] = (),
        run_untagged: bool = True,
        paused: bool = False,
        token_expires_at: str | None = None,
    ) -> RunnerRecord:
        """A runner as if created in the UI: a `glrt-` token the runner only verifies, no registration."""
        with self._cond:
            return self._new_runner(
                description=description,
                tags=tuple(tags),
                run_untagged=run_untagged,
                locked=False,
                access_level="not_protected",
                maximum_timeout=None,
                paused=paused,
                created_via="ui",
                token_expires_at=token_expires_at,
                info={},
            )

    def add_repo(self, path_in_url: str, bare_repo_dir: Path) -> str:
        """Serve `bare_repo_dir` at `<url>/<path_in_url>.git`; returns that URL (without credentials)."""
        key = path_in_url.strip("/").removesuffix(".git")
        with self._cond:
            self._repos[key] = Path(bare_repo_dir).resolve()
        return f"{self.url}/{key}.git"

    def enqueue(
        self,
        *,
        name: str = "test",
        stage: str = "test",
        script: Sequence[str] = ("echo hello",),
        before_script: Sequence[str] = (),
        after_script: Sequence[str] = (),
        variables: Mapping[str, str] | Sequence[Mapping[str, Any]] = (),
        masked: Mapping[str, str] | None = None,
        image: str | Mapping[str, Any] | None = "alpine:3.19",
        services: Sequence[str | Mapping[str, Any]] = (),
        artifacts: Sequence[Mapping[str, Any]] | None = None,
        cache: Sequence[Mapping[str, Any]] = (),
        hooks: Sequence[Mapping[str, Any]] = (),
        dependencies: Sequence[JobHandle] = (),
        tags: Sequence[str] = (),
        repo: str = "acme/webapp",
        ref: str = "main",
        ref_type: str = "branch",
        sha: str | None = None,
        before_sha: str = "0" * 40,
        depth: int = 20,
        timeout: int = 3600,
        pipeline_id: int | None = None,
        required_features: Sequence[str] = (),
        failure_reasons: Sequence[str] = FAILURE_REASONS,
        trace_sections: bool = True,
        final_put_202: int = 0,
        trace_update_interval: str | None = None,
        max_trace_size: int | None = None,
        payload: Mapping[str, Any] | None = None,
    ) -> JobHandle:
        """Queue a pending job; the next matching `jobs/request` gets it.

        `variables` takes a mapping (plain variables) or full entries (`key, value, public, masked, file,
        raw`); `masked` adds masked ones. `required_features`: features the runner must advertise, else
        GitLab drops the job as `runner_unsupported`. `final_put_202`: answer the final PUT 202 that many
        times first. `payload` is deep-merged into the job JSON last (objects merge, the rest replaces).
        """
        repo_key = repo.strip("/").removesuffix(".git")
        if ref_type not in ("branch", "tag"):
            raise ValueError("ref_type must be 'branch' or 'tag'")
        with self._cond:
            repo_dir = self._repos.get(repo_key)
        full_ref = f"refs/heads/{ref}" if ref_type == "branch" else f"refs/tags/{ref}"
        if sha is None:
            resolved = _git.rev_parse(repo_dir, full_ref) if repo_dir is not None else None
            sha = resolved or hashlib.sha1(f"{repo_key}@{ref}".encode()).hexdigest()
        user_variables = normalize_variables(variables, masked)
        with self._cond:
            job_id = next(self._job_ids)
            pipeline = pipeline_id if pipeline_id is not None else next(self._pipeline_ids)
            project_id = self._project_ids.setdefault(repo_key, 42 + len(self._project_ids))
        if repo_dir is not None and _git.rev_parse(repo_dir, sha) == sha:
            _git.update_ref(repo_dir, f"refs/pipelines/{pipeline}", sha)
        spec = JobSpec(
            name=name,
            stage=stage,
            script=tuple(script),
            before_script=tuple(before_script),
            after_script=tuple(after_script),
            variables=user_variables,
            image=normalize_image(image),
            services=tuple(normalize_service(s) for s in services),
            artifacts=tuple(normalize_artifact(a) for a in artifacts) if artifacts is not None else None,
            cache=tuple(normalize_cache(c) for c in cache),
            hooks=tuple(dict(h) for h in hooks),
            tags=tuple(tags),
            dependencies=tuple(d.id for d in dependencies),
            repo=repo_key,
            ref=ref,
            ref_type=ref_type,
            sha=sha,
            before_sha=before_sha,
            depth=depth,
            timeout=timeout,
            pipeline_id=pipeline,
            project_id=project_id,
            required_features=tuple(required_features),
            failure_reasons=tuple(failure_reasons),
            trace_sections=trace_sections,
            payload_overrides=payload,
        )
        job = JobHandle(
            self._cond,
            job_id,
            f"glcbt-64_{secrets.token_urlsafe(15)}",
            spec,
            final_put_202=final_put_202,
            trace_update_interval=trace_update_interval or self.trace_update_interval,
            max_trace_size=max_trace_size if max_trace_size is not None else self.max_trace_size,
        )
        with self._cond:
            self.jobs.append(job)
            self._jobs_by_id[job_id] = job
            self._queue_value = secrets.token_hex(8)
            self._cond.notify_all()
        return job

    # -- test-side inspection ----------------------------------------------------------------------

    @property
    def last_update(self) -> str:
        """The current `X-GitLab-Last-Update` value (changes whenever a job is queued)."""
        with self._cond:
            return self._queue_value

    def job(self, job_id: int) -> JobHandle:
        """A job by id."""
        with self._cond:
            return self._jobs_by_id[job_id]

    def requests_for(self, endpoint: str) -> list[RecordedRequest]:
        """Recorded requests to one endpoint (`jobs/request`, `trace`, `git`...), oldest first."""
        with self._cond:
            return [r for r in self.requests if r.endpoint == endpoint]

    def wait_requests(self, endpoint: str, count: int = 1, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until `count` requests to `endpoint` were answered; returns them."""
        with self._cond:
            if not self._cond.wait_for(
                lambda: sum(r.endpoint == endpoint for r in self.requests) >= count, timeout
            ):
                raise TimeoutError(f"{count} request(s) to {endpoint} not seen within {timeout}s")
            return [r for r in self.requests if r.endpoint == endpoint]

    def wait_long_polls(self, count: int = 1, timeout: float = 5.0) -> None:
        """Block until `count` `jobs/request` calls are being held (long polling)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._polls_waiting >= count, timeout):
                raise TimeoutError(f"{count} held jobs/request call(s) not seen within {timeout}s")

    def take_violations(self) -> list[Violation]:
        """Return and forget the recorded contract violations (for tests that provoke them on purpose)."""
        with self._cond:
            taken, self.violations = self.violations, []
            for job in self.jobs:
                job.violations.clear()
            return taken

    def assert_clean(self) -> None:
        """Fail if a client broke the contract or the double itself crashed on a request."""
        with self._cond:
            problems = [*self.internal_errors, *(str(v) for v in self.violations)]
        if problems:
            raise AssertionError("the GitLab double saw problems:\n" + "\n".join(problems))

    # -- request plumbing --------------------------------------------------------------------------

    def _internal_error(self, text: str) -> None:
        with self._cond:
            self.internal_errors.append(text)
            self._cond.notify_all()

    def _violation(self, endpoint: str, job: JobHandle | None, text: str) -> None:
        violation = Violation(endpoint, job.id if job else None, text)
        with self._cond:
            if violation not in self.violations:
                self.violations.append(violation)
                if job is not None:
                    job.violations.append(violation)

    def _route(self, request: Request) -> tuple[str | None, re.Match[str] | None, Response | None]:
        """(endpoint, match, None), or (None, None, answer) for unknown paths and methods."""
        allowed = False
        for method, endpoint, pattern in _ROUTES:
            match = pattern.fullmatch(request.path)
            if match is None:
                continue
            if method == request.method:
                return endpoint, match, None
            allowed = True
        if allowed:
            return None, None, json_response(405, {"error": "405 Not Allowed"})
        if request.path.endswith(_GIT_SUFFIXES):
            return "git", None, None
        return None, None, json_response(404, {"error": "404 Not Found"})

    def _serve(self, handler: _Handler) -> None:
        started = time.monotonic()
        raw_path, _, query_string = handler.path.partition("?")
        headers = [(key, str(value)) for key, value in handler.headers.items()]
        framing_error: str | None = None
        try:
            body = read_body(handler.rfile, handler.headers)
        except FramingError as exc:
            body, framing_error = b"", str(exc)
        request = Request(
            method=handler.command,
            path=unquote(raw_path),
            query_string=query_string,
            headers=headers,
            body=body,
            connection_id=handler.connection_id,
        )
        fault: Fault | None = None
        endpoint, match, response = self._route(request)
        job_id = int(match["job"]) if match is not None and "job" in match.groupdict() else None
        if framing_error is not None:
            response = message(400, f"400 Bad request - {framing_error}")
            response.close = True
        elif endpoint is not None:
            fault = self.faults.take(endpoint)
            try:
                response = self._answer(endpoint, match, request, fault, handler)
            except Exception:
                self._internal_error(traceback.format_exc())
                response = message(500, "500 Internal Server Error")
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            endpoint=endpoint or "unknown",
            status=response.status if response is not None else None,
            body_length=len(body),
            connection_id=handler.connection_id,
            job_id=job_id,
            fault=fault.kind if fault is not None else None,
            query_string=query_string,
            headers=self._header_dict(headers),
            body=body,
            response_headers=self._header_dict(response.headers) if response is not None else {},
            started=started,
            finished=time.monotonic(),
        )
        # Recorded before the answer leaves, so a test that just got its answer always finds the record.
        with self._cond:
            self.requests.append(record)
            self._cond.notify_all()
        if response is None:
            handler.close_connection = True
            with contextlib.suppress(OSError):
                handler.connection.shutdown(socket.SHUT_RDWR)
        elif not self._send(handler, response):
            with self._cond:
                record.delivered = False
                self._cond.notify_all()

    @staticmethod
    def _header_dict(headers: Sequence[tuple[str, str]]) -> dict[str, str]:
        out: dict[str, str] = {}
        for key, value in headers:
            lower = key.lower()
            out[lower] = f"{out[lower]}, {value}" if lower in out else value
        return out

    def _answer(
        self,
        endpoint: str,
        match: re.Match[str] | None,
        request: Request,
        fault: Fault | None,
        handler: _Handler,
    ) -> Response | None:
        if request.path.startswith("/api/v4/"):
            self._check_transport(endpoint, request)
        if fault is not None:
            if fault.kind == "status":
                return fault.status_response()
            if fault.kind == "delay":
                self._stopping.wait(fault.seconds)
            elif fault.kind == "drop" and not fault.processed:
                return None
            elif fault.kind == "redirect" and endpoint == "artifacts/upload":
                assert match is not None
                location = fault.location or f"{self.url}/uploads/jobs/{match['job']}/artifacts"
                if fault.location is None and request.query_string:
                    location += f"?{request.query_string}"
                assert fault.status is not None
                return message(fault.status, reason(fault.status), [("Location", location)])
        try:
            response = self._handlers[endpoint](request, match, fault, handler)
        except _Reject as rejected:
            response = rejected.response
        if fault is not None and fault.kind == "drop":
            return None
        return response

    def _check_transport(self, endpoint: str, request: Request) -> None:
        user_agent = request.header("User-Agent")
        if user_agent is None or not USER_AGENT.fullmatch(user_agent):
            self._violation(endpoint, None, "User-Agent missing or not '<name> <version> (...)'")
        if not request.header("X-Request-Id"):
            self._violation(endpoint, None, "request without X-Request-Id")

    @staticmethod
    def _send(handler: _Handler, response: Response) -> bool:
        try:
            handler.send_response(response.status)
            for key, value in response.headers:
                handler.send_header(key, value)
            has_body = response.status not in (204, 304) and not 100 <= response.status < 200
            if has_body:
                handler.send_header("Content-Length", str(len(response.body)))
            if response.close:
                handler.send_header("Connection", "close")
            handler.end_headers()
            if has_body and handler.command != "HEAD":
                handler.wfile.write(response.body)
            handler.wfile.flush()
            return True
        except (OSError, ssl.SSLError):
            handler.close_connection = True
            return False

    def _params(self, request: Request) -> dict[str, Any]:
        """Query and body parameters merged, as Grape does; JSON or form bodies only."""
        params: dict[str, Any] = dict(request.query())
        if not request.body:
            return params
        media = request.media_type()
        if media == "application/json":
            try:
                data = json.loads(request.body)
            except ValueError:
                raise _Reject(param_error("the request body is not valid JSON")) from None
            if not isinstance(data, dict):
                raise _Reject(param_error("the request body must be a JSON object"))
            params.update(data)
        elif media == "application/x-www-form-urlencoded":
            form = parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True)
            params.update({key: values[-1] for key, values in form.items()})
        else:
            raise _Reject(
                json_response(415, {"error": f"The provided content-type '{media}' is not supported."})
            )
        return params

    # -- runners -----------------------------------------------------------------------------------

    def _new_runner(self, **fields: Any) -> RunnerRecord:
        runner = RunnerRecord(id=next(self._runner_ids), token=f"glrt-{secrets.token_urlsafe(15)}", **fields)
        self.runners.append(runner)
        self._cond.notify_all()
        return runner

    def _runner_by_token(self, token: str | None) -> RunnerRecord | None:
        """The live runner with this token (caller holds the lock); expired tokens count as invalid."""
        for runner in self.runners:
            if runner.deleted or not _same(runner.token, token):
                continue
            if runner.token_expires_at is not None:
                expires = datetime.fromisoformat(runner.token_expires_at.replace("Z", "+00:00"))
                if expires <= datetime.now(UTC):
                    return None
            return runner
        return None

    def _authenticate_runner(self, token: str | None) -> RunnerRecord:
        runner = self._runner_by_token(token)
        if runner is None:
            raise _Reject(message(403, "403 Forbidden"))
        return runner

    @staticmethod
    def _runner_answer(runner: RunnerRecord) -> dict[str, Any]:
        return {"id": runner.id, "token": runner.token, "token_expires_at": runner.token_expires_at}

    def _register(
        self, request: Request, match: re.Match[str] | None, fault: Fault | None, h: _Handler
    ) -> Response:
        params = self._params(request)
        token = _str_param(params, "token", required=True)
        description = _str_param(params, "description") or ""
        raw_tags = params.get("tag_list")
        if raw_tags is None:
            tags: tuple[str, ...] = ()
        elif isinstance(raw_tags, str):
            tags = tuple(t.strip() for t in raw_tags.split(",") if t.strip())
        elif isinstance(raw_tags, list) and all(isinstance(t, str) for t in raw_tags):
            tags = tuple(t.strip() for t in raw_tags if t.strip())
        else:
            raise _Reject(param_error("tag_list is invalid"))
        run_untagged = _bool_param(params, "run_untagged")
        locked = _bool_param(params, "locked")
        paused = _bool_param(params, "paused")
        active = _bool_param(params, "active")
        access_level = _str_param(params, "access_level")
        if access_level is not None and access_level not in ("not_protected", "ref_protected"):
            raise _Reject(param_error("access_level does not have a valid value"))
        maximum_timeout = _int_param(params, "maximum_timeout")
        info = params.get("info")
        if info is not None and not isinstance(info, dict):
            raise _Reject(param_error("info is invalid"))
        with self._cond:
            if not _same(self.registration_token, token):
                return message(403, "403 Forbidden")
            if not self.registration_enabled:
                return message(410, "410 Gone - runner registration disallowed")
            errors: dict[str, list[str]] = {}
            if maximum_timeout is not None and maximum_timeout < 600:
                errors["maximum_timeout"] = ["needs to be at least 10 minutes"]
            if not tags and run_untagged is False:
                errors["tags_list"] = ["can not be empty when runner is not allowed to pick untagged jobs"]
            if errors:
                return json_response(400, {"message": errors})
            runner = self._new_runner(
                description=description,
                tags=tags,
                run_untagged=run_untagged if run_untagged is not None else True,
                locked=bool(locked),
                access_level=access_level or "not_protected",
                maximum_timeout=maximum_timeout,
                paused=paused if paused is not None else (active is False),
                created_via="registration",
                info=dict(info or {}),
            )
            return json_response(201, self._runner_answer(runner))

    def _system_id(self, params: Mapping[str, Any], *, required: bool) -> str | None:
        system_id = _str_param(params, "system_id", required=required)
        if system_id is not None and not SYSTEM_ID.fullmatch(system_id):
            raise _Reject(param_error("system_id is invalid (expected s_ followed by 12 characters)"))
        return system_id

    def _verify(
        self, request: Request, match: re.Match[str] | None, fault: Fault | None, h: _Handler
    ) -> Response:
        params = self._params(request)
        token = _str_param(params, "token", required=True)
        system_id = self._system_id(params, required=False)
        with self._cond:
            runner = self._authenticate_runner(token)
            if runner.orphaned:
                return message(422, "422 Unprocessable Entity - Runner is orphaned")
            if system_id is not None:
                runner.managers.setdefault(system_id, {})
            self._cond.notify_all()
            return json_response(200, self._runner_answer(runner))

    def _delete_runner(
        self, request: Request, match: re.Match[str] | None, fault: Fault | None, h: _Handler
    ) -> Response:
        params = self._params(request)
        token = _str_param(params, "token", required=True)
        with self._cond:
            runner = self._authenticate_runner(token)
            runner.deleted = True
            self._cond.notify_all()
            return Response(204)

    def _delete_manager(
        self, request: Request, match: re.Match[str] | None, fault: Fault | None, h: _Handler
    ) -> Response:
        params = self._params(request)
        token = _str_param(params, "token", required=True)
        system_id = self._system_id(params, required=True)
        with self._cond:
            runner = self._authenticate_runner(token)
            if system_id not in runner.managers:
                return message(404, "404 Runner Manager Not Found")
            del runner.managers[system_id]
            self._cond.notify_all()
            return Response(204)

    def _reset_token(
        self, request: Request, match: re.Match[str] | None, fault: Fault | None, h: _Handler
    ) -> Response:
        params = self._params(request)
        token = _str_param(params, "token", required=True)
        with self._cond:
            runner = self._authenticate_runner(token)
            if runner.orphaned:
                return message(422, "422 Unprocessable Entity - Runner is orphaned")
            runner.token = f"glrt-{secrets.token_urlsafe(15)}"
            self._cond.notify_all()
            return json_response(201, {"token": runner.token, "token_expires_at": runner.token_expires_at})

    # -- jobs/request ------------------------------------------------------------------------------

    def _request_job(
        self, request: Request, match: re.Match[str] | None, fault: Fault | None, h: _Handler
    ) -> Response:
        params = self._params(request)
        token = _str_param(params, "token", required=True)
        system_id = self._system_id(params, required=True)
        last_update = _str_param(params, "last_update")
        features = self._validate_info(params.get("info"))
        with self._cond:
            runner = self._authenticate_runner(token)
            assert system_id is not None
            runner.info = dict(params["info"])
            runner.managers[system_id] = dict(params["info"])
            if runner.paused:
                return Response(204, [("X-GitLab-Last-Update", self._queue_value)])
            current = self._queue_value
            if last_update and last_update == current:
                self._hold(current)
                if self._queue_value == current:
                    return Response(204, [("X-GitLab-Last-Update", current)])
            if _client_gone(h.connection):
                return Response(204, [("X-GitLab-Last-Update", self._queue_value)])
            job = self._pick_job(runner, features)
            if job is None:
                return Response(204, [("X-GitLab-Last-Update", self._queue_value)])
            job.state = "assigned"
            job.runner_id = runner.id
            job.system_id = system_id
            job.payload = build_payload(
                job,
                server_url=self.url,
                dependencies=[self._jobs_by_id[d] for d in job.spec.dependencies],
                repo_url=self._repo_url(job),
            )
            self._cond.notify_all()
            return json_response(201, job.payload)

    def _validate_info(self, info: Any) -> dict[str, Any]:
        """`info` with its strings and `features`: an object of booleans with every key (else 400)."""
        if info is None:
            raise _Reject(param_error("info is missing"))
        if not isinstance(info, dict):
            raise _Reject(param_error("info is invalid"))
        for key in ("name", "version", "revision", "platform", "architecture", "executor", "shell"):
            if not isinstance(info.get(key), str):
                raise _Reject(param_error(f"info[{key}] is missing or not a string"))
        features = info.get("features")
        if not isinstance(features, dict):
            raise _Reject(param_error("info[features] must be an object of booleans"))
        not_bool = sorted(k for k, v in features.items() if not isinstance(v, bool))
        if not_bool:
            raise _Reject(param_error(f"info[features] values must be booleans: {', '.join(not_bool)}"))
        missing = [k for k in KUBERNETES_FEATURES if k not in features]
        if missing:
            raise _Reject(param_error(f"info[features] lacks keys: {', '.join(missing)}"))
        return features

    def _hold(self, current: str) -> None:
        """Workhorse long polling: wait until the queue changes, the timeout passes, or the double stops."""
        deadline = time.monotonic() + self.long_poll_timeout
        self._polls_waiting += 1
        self._cond.notify_all()
        try:
            while self._queue_value == current and not self._stopping.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
        finally:
            self._polls_waiting -= 1
            self._cond.notify_all()

    def _pick_job(self, runner: RunnerRecord, features: Mapping[str, Any]) -> JobHandle | None:
        """The oldest queued job this runner may take; jobs needing an unadvertised feature are dropped."""
        for job in self.jobs:
            if job.state != "queued":
                continue
            if job.spec.tags and not set(job.spec.tags) <= set(runner.tags):
                continue
            if not job.spec.tags and not runner.run_untagged:
                continue
            if any(features.get(f) is not True for f in job.spec.required_features):
                job.state = "failed"
                job.failure_reason = "runner_unsupported"
                job.runner_id = runner.id
                continue
            return job
        return None

    def _repo_url(self, job: JobHandle) -> str:
        host = self.url.split("://", 1)[1]
        scheme = self.url.split("://", 1)[0]
        return f"{scheme}://gitlab-ci-token:{job.token}@{host}/{job.spec.repo}.git"

    # -- job endpoints -----------------------------------------------------------------------------

    def _authenticate_job(self, match: re.Match[str] | None, token: str | None) -> JobHandle:
        """The job named in the URL if `token` is its token; 403 otherwise, without Job-Status (as GitLab)."""
        assert match is not None
        with self._cond:
            job = self._jobs_by_id.get(int(match["job"]))
        if job is None or not _same(job.token, token):
            raise _Reject(message(403, "403 Forbidden"))
        return job

    @staticmethod
    def _require_processing(job: JobHandle) -> None:
        if job.state not in ACTIVE_STATES:
            raise _Reject(
                message(403, "403 Forbidden - Job is not processing on runner", [("Job-Status", job.status)])
            )

    def _update_job(
        self, request: Request, match: re.Match[str] | None, fault: Fault | None, h: _Handler
    ) -> Response:
        params = self._params(request)
        token = _str_param(params, "token", required=True)
        state = _str_param(params, "state")
        failure_reason = _str_param(params, "failure_reason")
        exit_code = _int_param(params, "exit_code")
        checksum = _str_param(params, "checksum")
        output = params.get("output")
        bytesize: int | None = None
        if output is not None:
            if not isinstance(output, dict):
                raise _Reject(param_error("output is invalid"))
            checksum = _str_param(output, "checksum") or checksum
            bytesize = _int_param(output, "bytesize")
        job = self._authenticate_job(match, token)
        endpoint = "jobs/update"
        if request.header("JOB-TOKEN") is None:
            self._violation(endpoint, job, "PUT without the JOB-TOKEN header")
        with self._cond:
            self._require_processing(job)
            if state not in ("running", "success", "failed"):
                return message(
                    400, "400 Bad request - state must be running, success or failed", self._job_headers(job)
                )
            if state == "running":
                if not job.started:
                    job.started = True
                    if job.state == "assigned":
                        job.state = "running"
                job.keepalives += 1
                self._cond.notify_all()
                return json_response(200, 200, self._job_headers(job))
            if (
                state == "failed"
                and failure_reason is not None
                and failure_reason not in job.spec.failure_reasons
            ):
                return param_error("failure_reason does not have a valid value")
            if state == "failed" and failure_reason is None:
                self._violation(endpoint, job, "final state 'failed' without failure_reason")
            if not job.started:
                self._violation(endpoint, job, "final state sent before PUT state=running")
            if checksum is None:
                self._violation(endpoint, job, "final PUT without output.checksum")
            elif bytesize is None:
                self._violation(endpoint, job, "final PUT without output.bytesize")
            job.final_put_attempts += 1
            if job.final_put_202_remaining > 0 and checksum is not None:
                job.final_put_202_remaining -= 1
                self._cond.notify_all()
                return json_response(202, 202, self._job_headers(job))
            job.final_state = state
            job.failure_reason = failure_reason if state == "failed" else None
            job.exit_code = exit_code
            job.reported_checksum = checksum
            job.reported_bytesize = bytesize
            if checksum is not None:
                job.checksum_ok = checksum == job.trace_crc() and (
                    bytesize is None or bytesize == job._trace_size()
                )
            job.state = "canceled" if job.state == "canceling" else state
            self._cond.notify_all()
            return json_response(200, 200, self._job_headers(job))

    @staticmethod
    def _job_headers(job: JobHandle) -> list[tuple[str, str]]:
        return [("Job-Status", job.status), ("X-GitLab-Trace-Update-Interval", job.trace_update_interval)]

    def _patch_trace(
        self, request: Request, match: re.Match[str] | None, fault: Fault | None, h: _Handler
    ) -> Response:
        endpoint = "trace"
        job = self._authenticate_job(match, request.header("JOB-TOKEN") or request.query().get("token"))
        body = request.body
        with self._cond:
            self._require_processing(job)
            status_header = [("Job-Status", job.status)]
            if not job.started:
                self._violation(endpoint, job, "trace PATCH before PUT state=running")
            content_range = request.header("Content-Range")
            if content_range is None:
                return message(400, "400 Missing header Content-Range", status_header)
            parsed = re.fullmatch(r"(\d+)-(\d+)", content_range.strip())
            if parsed is None:
                return message(400, "400 Bad request - Content-Range must be <start>-<end>", status_header)
            if request.media_type() != "text/plain":
                self._violation(endpoint, job, "trace PATCH without Content-Type: text/plain")
            if len(body) > TRACE_PATCH_LIMIT:
                self._violation(endpoint, job, f"trace PATCH of {len(body)} bytes (limit 1 MiB)")
                return message(400, "400 Bad request - trace chunk exceeds 1 MiB", status_header)
            if not body:
                self._violation(endpoint, job, "empty trace PATCH (must be skipped)")
            if fault is not None and fault.kind == "trace_loss":
                size = job._trace_size()
                keep = min(fault.keep if fault.keep is not None else size // 2, size)
                job._truncate_trace(keep)
                self._cond.notify_all()
                return message(416, "416 Range Not Satisfiable", [("Range", f"0-{keep}"), *status_header])
            start, end = int(parsed[1]), int(parsed[2])
            size = job._trace_size()
            if start != size:
                return message(416, "416 Range Not Satisfiable", [("Range", f"0-{size}"), *status_header])
            if body and end != start + len(body) - 1:
                self._violation(
                    endpoint,
                    job,
                    f"Content-Range {start}-{end} for {len(body)} bytes (end must be inclusive)",
                )
                return message(416, "416 Range Not Satisfiable", [("Range", f"0-{size}"), *status_header])
            if start + len(body) > job.max_trace_size:
                job.state = "failed"
                job.failure_reason = "trace_size_exceeded"
                self._cond.notify_all()
                return message(403, "403 Forbidden: Trace size exceeded", [("Job-Status", job.status)])
            job._append_trace(body)
            job.trace_patches += 1
            for name in job._new_leaks(start):
                self._violation(endpoint, job, f"secret {name} appears unmasked in the trace")
            self._cond.notify_all()
            return Response(
                202,
                [
                    ("Job-Status", job.status),
                    ("Range", f"0-{job._trace_size()}"),
                    ("X-GitLab-Trace-Update-Interval", job.trace_update_interval),
                ],
            )

    # -- artifacts ---------------------------------------------------------------------------------

    def _upload_artifact(
        self, request: Request, match: re.Match[str] | None, fault: Fault | None, h: _Handler
    ) -> Response:
        query = request.query()
        job = self._authenticate_job(match, request.header("JOB-TOKEN") or query.get("token"))
        with self._cond:
            self._require_processing(job)
        artifact_type = query.get("artifact_type", "archive")
        artifact_format = query.get("artifact_format", "zip")
        if artifact_type not in ARTIFACT_FORMATS:
            return param_error("artifact_type does not have a valid value")
        if artifact_format not in ("raw", "zip", "gzip"):
            return param_error("artifact_format does not have a valid value")
        headers = [("Job-Status", job.status)]
        if request.media_type() != "multipart/form-data":
            return message(400, "400 Bad request - Missing artifacts file!", headers)
        try:
            parts = parse_multipart(request.header("Content-Type") or "", request.body)
        except MultipartError as exc:
            return message(400, f"400 Bad request - {exc}", headers)
        files = [part for part in parts if part.name == "file"]
        if len(files) != 1 or not files[0].filename:
            return message(400, "400 Bad request - Missing artifacts file!", headers)
        upload = files[0]
        if len(upload.data) > self.max_artifact_size:
            return message(413, "413 Request Entity Too Large", headers)
        if ARTIFACT_FORMATS[artifact_type] != artifact_format:
            return message(
                400, f"400 Bad request - {artifact_type} artifacts must be {ARTIFACT_FORMATS[artifact_type]}"
            )
        with self._cond:
            self._require_processing(job)
            if artifact_type in job.artifacts:
                return message(
                    400, "400 Bad request - another artifact of the same type already exists", headers
                )
            assert upload.filename is not None
            job.artifacts[artifact_type] = Artifact(
                artifact_type=artifact_type,
                artifact_format=artifact_format,
                filename=upload.filename,
                expire_in=query.get("expire_in"),
                content_type=upload.content_type,
                data=upload.data,
            )
            self._cond.notify_all()
            return json_response(201, 201, [("Job-Status", job.status)])

    def _download_artifact(
        self, request: Request, match: re.Match[str] | None, fault: Fault | None, h: _Handler
    ) -> Response:
        assert match is not None
        query = request.query()
        token = request.header("JOB-TOKEN") or query.get("job_token")
        with self._cond:
            holder = self._job_by_token(token)
            if holder is None or holder.state not in ACTIVE_STATES:
                return message(401, "401 Unauthorized")
            target = self._jobs_by_id.get(int(match["job"]))
            if target is None:
                return message(404, "404 Not Found")
            if target.spec.project_id != holder.spec.project_id:
                return message(403, "403 Forbidden")
            artifact = target.artifacts.get("archive")
            if artifact is None:
                return message(404, "404 Not Found")
            redirect = fault is not None and fault.kind == "redirect"
            if redirect or (self.artifacts_object_storage and query.get("direct_download") == "true"):
                key = secrets.token_urlsafe(12)
                signature = secrets.token_hex(16)
                self._presigned[key] = (target.id, "archive", signature)
                location = (
                    f"{self.url}/object-storage/artifacts/{target.id}/{key}"
                    f"?X-Amz-Expires=600&X-Amz-Signature={signature}"
                )
                status = fault.status if fault is not None and fault.status else 302
                return message(status, reason(status), [("Location", location)])
            return Response(
                200,
                [
                    ("Content-Type", "application/octet-stream"),
                    ("Content-Disposition", f'attachment; filename="{artifact.filename}"'),
                ],
                artifact.data,
            )

    def _job_by_token(self, token: str | None) -> JobHandle | None:
        if not token:
            return None
        for job in self.jobs:
            if _same(job.token, token):
                return job
        return None

    def _object_storage(
        self, request: Request, match: re.Match[str] | None, fault: Fault | None, h: _Handler
    ) -> Response:
        assert match is not None
        if request.header("JOB-TOKEN") is not None:
            self._violation("object_storage", None, "JOB-TOKEN sent to object storage (leaks the job token)")
        with self._cond:
            entry = self._presigned.get(match["key"])
            signature = request.query().get("X-Amz-Signature")
            if entry is None or entry[0] != int(match["job"]) or not _same(entry[2], signature):
                body = b"<?xml version='1.0'?><Error><Code>AccessDenied</Code></Error>"
                return Response(403, [("Content-Type", "application/xml")], body)
            artifact = self._jobs_by_id[entry[0]].artifacts.get(entry[1])
            if artifact is None:
                body = b"<?xml version='1.0'?><Error><Code>NoSuchKey</Code></Error>"
                return Response(404, [("Content-Type", "application/xml")], body)
            return Response(200, [("Content-Type", "application/zip")], artifact.data)

    # -- git over HTTP -----------------------------------------------------------------------------

    def _git(
        self, request: Request, match: re.Match[str] | None, fault: Fault | None, h: _Handler
    ) -> Response:
        suffix = next(s for s in _GIT_SUFFIXES if request.path.endswith(s))
        repo_key = request.path[: -len(suffix)].strip("/").removesuffix(".git")
        job = self._job_from_basic_auth(request.header("Authorization"))
        if job is None:
            return Response(
                401,
                [("WWW-Authenticate", 'Basic realm="GitLab"'), ("Content-Type", "text/plain")],
                b"HTTP Basic: Access denied\n",
            )
        with self._cond:
            repo_dir = self._repos.get(repo_key)
        if repo_dir is None or repo_key != job.spec.repo:
            return message(404, "404 Project Not Found")
        service = request.query().get("service")
        if suffix == "/git-receive-pack" or service == "git-receive-pack":
            return Response(
                403, [("Content-Type", "text/plain")], b"You are not allowed to push code to this project.\n"
            )
        wanted = (suffix == "/info/refs" and request.method == "GET" and service == "git-upload-pack") or (
            suffix == "/git-upload-pack" and request.method == "POST"
        )
        if not wanted:
            return message(404, "404 Not Found")
        return _git.http_backend(repo_dir, suffix, request, "gitlab-ci-token")

    def _job_from_basic_auth(self, authorization: str | None) -> JobHandle | None:
        """The running job whose token is the Basic password of user `gitlab-ci-token`."""
        if not authorization or not authorization.lower().startswith("basic "):
            return None
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, _, password = decoded.partition(":")
        if user != "gitlab-ci-token":
            return None
        with self._cond:
            job = self._job_by_token(password)
            if job is None or job.state not in ACTIVE_STATES:
                return None
            return job


__all__ = ["GitLabDouble"]
