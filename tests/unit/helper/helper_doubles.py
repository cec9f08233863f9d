"""Real HTTP servers on 127.0.0.1 that play GitLab's artifacts endpoints and an S3-like store.

Both follow the contract in shared/docs/gitlab-runner-api.md, error paths
included: a wrong job token is 403 with GitLab's JSON body, an unknown job 404,
S3 refuses a PUT without Content-Length (411), a bad or expired signature
(403 XML), and an unknown key (404 NoSuchKey). Tests queue extra replies
(503, 429 + Retry-After, 413, redirects) in front of the normal behaviour.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import re
import ssl
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
from click.testing import CliRunner, Result

from kuberunner.helper.cli import HelperContext, main

JOB_ID = 4821
JOB_TOKEN = "glcbt-64_Zx9yQ2mN4kP7rT1vW3sA"
DEP_ID = 4810
DEP_TOKEN = "glcbt-64_Dep0Token9Secret8Value7"
S3_ACCESS = "AKIAKUBERUNNERTEST"
S3_SECRET = "kuberunner/test/secret/key+value"
BUCKET = "runner-cache"


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, data: Any, headers: dict[str, str] | None = None) -> Reply:
        return cls(status, json.dumps(data).encode(), {"Content-Type": "application/json", **(headers or {})})


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    chunked: bool

    @property
    def raw_query(self) -> str:
        return "&".join(f"{k}={v}" for k, v in self.query.items())


Handler = Callable[[Recorded], Reply]


class FakeServer:
    """A ThreadingHTTPServer on 127.0.0.1 that records requests and answers through ``handler``."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.scheme = "https" if tls else "http"
        self.requests: list[Recorded] = []
        self.script: list[Reply] = []
        self.lock = threading.Lock()
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _body(self) -> tuple[bytes, bool]:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = bytearray()
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return bytes(data), True
                        data += self.rfile.read(size)
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length), False

            def _serve(self) -> None:
                body, chunked = self._body()
                parts = urlsplit(self.path)
                rec = Recorded(
                    method=self.command,
                    path=parts.path,
                    query=dict(parse_qsl(parts.query, keep_blank_values=True)),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                    chunked=chunked,
                )
                with server.lock:
                    server.requests.append(rec)
                    scripted = server.script.pop(0) if server.script else None
                reply = scripted or server.handler(rec)
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(reply.body)

            do_GET = do_POST = do_PUT = do_HEAD = _serve

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        # A short poll interval only makes shutdown() return quickly at teardown.
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.01,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"{self.scheme}://{host!s}:{port}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


def parse_multipart(rec: Recorded) -> tuple[str, str, bytes]:
    """(part name, filename, content) of a one-part multipart/form-data body."""
    match = re.search(r"boundary=([^;]+)", rec.headers["content-type"])
    assert match, rec.headers["content-type"]
    boundary = match.group(1).encode()
    assert rec.body.startswith(b"--" + boundary + b"\r\n")
    head, _, rest = rec.body[len(boundary) + 4 :].partition(b"\r\n\r\n")
    tail = b"\r\n--" + boundary + b"--\r\n"
    assert rest.endswith(tail)
    disposition = head.decode()
    name = re.search(r'name="([^"]*)"', disposition)
    filename = re.search(r'filename="([^"]*)"', disposition)
    assert name and filename
    return name.group(1), filename.group(1), rest[: -len(tail)]


class FakeGitLab:
    """GitLab's job artifacts endpoints: upload for JOB_ID, download of stored jobs' archives."""

    job_id = JOB_ID
    job_token = JOB_TOKEN
    dep_id = DEP_ID
    dep_token = DEP_TOKEN

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.server = FakeServer(self.handle, tls)
        self.uploads: list[tuple[str, bytes, dict[str, str]]] = []
        self.archives: dict[int, tuple[str, bytes]] = {}  # job id -> (its token, zip bytes)
        self.redirect_downloads_to: str | None = None  # object storage base URL

    @property
    def url(self) -> str:
        return self.server.url

    def handle(self, rec: Recorded) -> Reply:
        m = re.fullmatch(r"(?:/[^/]+)*/api/v4/jobs/(\d+)/artifacts", rec.path)
        if not m:
            return Reply.json(404, {"message": "404 Not Found"})
        job_id = int(m.group(1))
        token = rec.headers.get("job-token")
        if rec.method == "POST":
            if job_id != JOB_ID or token != JOB_TOKEN:
                return Reply.json(403, {"message": "403 Forbidden - Job is not processing on runner"})
            name, filename, content = parse_multipart(rec)
            if name != "file":
                return Reply.json(400, {"error": "file is missing"})
            self.uploads.append((filename, content, rec.query))
            return Reply.json(201, {})
        if rec.method == "GET":
            stored = self.archives.get(job_id)
            if stored is None:
                return Reply.json(404, {"message": "404 Not Found"})
            if token != stored[0]:
                return Reply.json(403, {"message": "403 Forbidden"})
            if self.redirect_downloads_to:
                location = f"{self.redirect_downloads_to}/artifacts/{job_id}.zip?X-Amz-Signature=deadbeef"
                return Reply(302, headers={"Location": location})
            return Reply(200, stored[1], {"Content-Type": "application/zip"})
        return Reply.json(405, {"message": "405 Method Not Allowed"})


def _sigv4_expected(rec: Recorded, host: str) -> str:
    """An independent SigV4 check of a presigned request (what S3/MinIO compute)."""
    params = {k: v for k, v in rec.query.items() if k != "X-Amz-Signature"}
    query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(params.items()))
    path = quote(rec.path, safe="/-_.~%")
    canonical = f"{rec.method}\n{path}\n{query}\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD"
    stamp = params["X-Amz-Date"]
    scope = params["X-Amz-Credential"].split("/", 1)[1]
    to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = ("AWS4" + S3_SECRET).encode()
    for part in scope.split("/"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def _s3_error(status: int, code: str, message: str) -> Reply:
    body = f"<?xml version='1.0'?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
    return Reply(status, body.encode(), {"Content-Type": "application/xml"})


class FakeS3:
    """Path-style S3: presigned GET/PUT on /bucket/key, plus unsigned public objects for redirects."""

    access_key = S3_ACCESS
    secret_key = S3_SECRET
    bucket = BUCKET

    def __init__(self) -> None:
        self.server = FakeServer(self.handle)
        self.objects: dict[str, tuple[bytes, float]] = {}
        self.public: dict[str, bytes] = {}

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def endpoint(self) -> str:
        return self.url.removeprefix("http://")

    def handle(self, rec: Recorded) -> Reply:
        if rec.path in self.public and rec.method == "GET":
            return Reply(200, self.public[rec.path], {"Content-Type": "application/zip"})
        if "X-Amz-Signature" not in rec.query:
            return _s3_error(403, "AccessDenied", "Access Denied")
        if rec.query["X-Amz-Credential"].split("/")[0] != S3_ACCESS:
            return _s3_error(403, "InvalidAccessKeyId", "The access key does not exist")
        if not hmac.compare_digest(rec.query["X-Amz-Signature"], _sigv4_expected(rec, rec.headers["host"])):
            return _s3_error(403, "SignatureDoesNotMatch", "The signature does not match")
        signed = datetime.strptime(rec.query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        if time.time() > signed.timestamp() + int(rec.query["X-Amz-Expires"]):
            return _s3_error(403, "AccessDenied", "Request has expired")
        if rec.method == "PUT":
            if rec.chunked or "content-length" not in rec.headers:
                return _s3_error(
                    411, "MissingContentLength", "You must provide the Content-Length HTTP header"
                )
            self.objects[rec.path] = (rec.body, time.time())
            return Reply(200, headers={"ETag": '"' + hashlib.md5(rec.body).hexdigest() + '"'})
        if rec.method == "GET":
            stored = self.objects.get(rec.path)
            if stored is None:
                return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
            return Reply(200, stored[0], {"Last-Modified": formatdate(stored[1], usegmt=True)})
        return _s3_error(405, "MethodNotAllowed", "The specified method is not allowed")


@dataclass
class HelperRun:
    """Runs the CLI in a directory, recording the retry waits instead of sleeping."""

    monkeypatch: pytest.MonkeyPatch
    sleeps: list[float] = field(default_factory=list)

    def __call__(self, cwd: Path, *args: str, env: dict[str, str] | None = None) -> Result:
        self.monkeypatch.chdir(cwd)
        context = HelperContext(sleep=self.sleeps.append)
        return CliRunner().invoke(main, list(args), obj=context, env=env, catch_exceptions=False)


def zip_bytes(files: dict[str, bytes]) -> bytes:
    """A zip archive holding ``files`` (name -> content), as an artifact or cache would be."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()
