"""A local stand-in for GitLab's artifact endpoints, for ``kuberunner exec``.

Local pipelines run their jobs through the same stage scripts and the same
helper as production jobs, so artifacts still travel by
``POST /api/v4/jobs/:id/artifacts`` and ``GET /api/v4/jobs/:id/artifacts``.
This server answers those two calls on 127.0.0.1 and keeps the archives in a
directory, checking each job's token as GitLab does.

Uploads are streamed to disk (an artifact can be far larger than memory would
like) and stored under names the server chooses, never the client's, so no
file name or ``artifact_type`` can write outside the store. A ``dotenv``
report is checked as GitLab does when it is uploaded (``KEY=VALUE`` lines):
a malformed one is refused with 400, which fails the uploading job, and a
good one is kept parsed for the jobs that depend on it.
"""

from __future__ import annotations

import contextlib
import email.message
import email.parser
import email.policy
import gzip
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qs, quote, unquote, urlsplit

__all__ = ["ArtifactStore", "DotenvError", "StoredArtifact", "parse_dotenv"]

_PATH = re.compile(r"^/api/v4/jobs/(\d+)/artifacts$")
_ARTIFACT_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_FORMATS = {"zip": ".zip", "gzip": ".gz", "raw": ""}
_DOTENV_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
_CHUNK = 64 * 1024
_MAX_PART_HEADERS = 16 * 1024
_DOTENV_MAX_BYTES = 5 * 1024  # GitLab's limit for a dotenv report


class DotenvError(ValueError):
    """A dotenv report GitLab would refuse; the message says which line and why."""


def parse_dotenv(text: str) -> dict[str, str]:
    """GitLab's dotenv report: one ``KEY=VALUE`` per line, value trimmed, quotes kept as written.

    Empty lines and ``#`` comments are skipped. Raises :class:`DotenvError` naming the line.
    """
    out: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _DOTENV_LINE.match(line)
        if match is None:
            key = line.split("=", 1)[0] if "=" in line else line[:40]
            raise DotenvError(
                f"line {number} ({key!r}) is not KEY=VALUE with a variable name of letters, digits and _"
            )
        out[match.group(1)] = match.group(2).strip()
    return out


@dataclass
class StoredArtifact:
    job_id: int
    artifact_type: str
    artifact_format: str
    filename: str  # as the uploader named it (shown in Content-Disposition only)
    path: Path
    size: int


@dataclass
class _State:
    root: Path
    cache_root: Path | None = None
    tokens: dict[int, str] = field(default_factory=dict)
    artifacts: dict[tuple[int, str], StoredArtifact] = field(default_factory=dict)
    dotenv: dict[int, dict[str, str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class ArtifactStore:
    """Start with ``with ArtifactStore(dir) as store:``; ``store.url`` is the "GitLab" URL.

    With ``cache_root``, it also stands in for a cache bucket: ``GET``/``PUT
    /cache/<object name>`` (see :meth:`cache_url`), what the helper does with
    presigned URLs, for jobs that cannot write to this machine's cache directory.
    """

    def __init__(self, root: Path, *, cache_root: Path | None = None) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self._state = _State(root, cache_root)
        state = self._state

        class Handler(_Handler):
            store = state

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # a short poll interval: shutdown() waits for it, at the end of every local run
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.02,), name="artifact-store", daemon=True
        )

    def __repr__(self) -> str:
        return f"<ArtifactStore {self.url} root={str(self._state.root)!r}>"

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def cache_url(self, method: str, object_name: str) -> str | None:
        """The "presigned" URL of a cache object (a :data:`kuberunner.build.CachePresigner`);
        None without a cache root."""
        if self._state.cache_root is None or _cache_path(self._state.cache_root, object_name) is None:
            return None
        return f"{self.url}/cache/{quote(object_name, safe='/')}"

    def register_job(self, job_id: int, token: str) -> None:
        """Accept ``token`` for job ``job_id``'s uploads and downloads (as GitLab accepts a job's token)."""
        with self._state.lock:
            self._state.tokens[job_id] = token

    def archive(self, job_id: int, artifact_type: str = "archive") -> StoredArtifact | None:
        with self._state.lock:
            return self._state.artifacts.get((job_id, artifact_type))

    def dotenv(self, job_id: int) -> dict[str, str]:
        """The variables of job ``job_id``'s dotenv report (empty if it uploaded none)."""
        with self._state.lock:
            return dict(self._state.dotenv.get(job_id, {}))

    def __enter__(self) -> ArtifactStore:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


class _Body:
    """The request body as a stream, whether sent with Content-Length or chunked."""

    def __init__(self, rfile: Any, headers: Any) -> None:
        self._rfile = rfile
        self._chunked = headers.get("Transfer-Encoding", "").lower() == "chunked"
        self._left = 0 if self._chunked else int(headers.get("Content-Length") or 0)
        self._done = not self._chunked and self._left == 0

    def read(self, size: int = _CHUNK) -> bytes:
        if self._done:
            return b""
        if not self._chunked:
            data: bytes = self._rfile.read(min(size, self._left))
            self._left -= len(data)
            if not data or self._left == 0:
                self._done = True
            return data
        if self._left == 0:
            line = self._rfile.readline(1024)
            try:
                self._left = int(line.split(b";")[0].strip() or b"0", 16)
            except ValueError:
                raise _BadRequest("invalid chunked encoding") from None
            if self._left == 0:
                while self._rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                self._done = True
                return b""
        chunk: bytes = self._rfile.read(min(size, self._left))
        self._left -= len(chunk)
        if not chunk:
            self._done = True
        elif self._left == 0:
            self._rfile.readline(1024)  # the CRLF after each chunk
        return chunk

    def drain(self) -> None:
        while self.read():
            pass


class _BadRequest(Exception):
    pass


_CACHE_SEGMENT = re.compile(r"^[A-Za-z0-9._-]+$")
_CACHE_PREFIX = "/cache/"


def _cache_path(root: Path, object_name: str) -> Path | None:
    """Where a cache object lives under ``root``; None for a name that could leave it."""
    parts = object_name.split("/")
    if not all(_CACHE_SEGMENT.match(p) and p not in (".", "..") for p in parts):
        return None
    return root.joinpath(*parts)


def _boundary(content_type: str) -> bytes:
    message = email.message.Message()
    message["Content-Type"] = content_type
    if message.get_content_type() != "multipart/form-data":
        raise _BadRequest("expected multipart/form-data")
    boundary = message.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise _BadRequest("multipart body without a boundary")
    return boundary.encode("latin-1")


def _save_file_part(body: _Body, boundary: bytes, open_target: Callable[[], BinaryIO]) -> str | None:
    """Stream the part named ``file`` of a multipart body into ``open_target()``; its filename, or None."""
    delimiter = b"\r\n--" + boundary
    buf = b"\r\n"  # so that a boundary on the very first line is found like any other
    filename: str | None = None

    def fill(need: int) -> bool:
        nonlocal buf
        while len(buf) < need:
            data = body.read()
            if not data:
                return False
            buf += data
        return True

    # preamble: up to the first delimiter
    while (at := buf.find(delimiter)) < 0:
        buf = buf[-len(delimiter) :]
        if not fill(len(buf) + 1):
            raise _BadRequest("file is missing")
    buf = buf[at + len(delimiter) :]
    while True:
        fill(2)
        if buf.startswith(b"--"):
            return filename  # the closing delimiter
        end = buf.find(b"\r\n\r\n")
        while end < 0:
            if len(buf) > _MAX_PART_HEADERS or not fill(len(buf) + 1):
                raise _BadRequest("malformed multipart part headers")
            end = buf.find(b"\r\n\r\n")
        headers = email.parser.BytesHeaderParser(policy=email.policy.HTTP).parsebytes(buf[2:end] + b"\r\n")
        buf = buf[end + 4 :]
        is_file = headers.get_param("name", header="content-disposition") == "file" and filename is None
        out = open_target() if is_file else None
        if is_file:
            filename = headers.get_filename() or "artifacts.zip"
        while (at := buf.find(delimiter)) < 0:
            keep = len(delimiter) - 1
            if len(buf) > keep:
                if out is not None:
                    out.write(buf[:-keep])
                buf = buf[-keep:]
            if not fill(len(buf) + 1):
                raise _BadRequest("truncated multipart body")
        if out is not None:
            out.write(buf[:at])
        buf = buf[at + len(delimiter) :]


class _Handler(BaseHTTPRequestHandler):
    store: _State
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: job logs show what the helper did."""

    def _reply(self, status: int, message: str, *, close: bool = False) -> None:
        body = json.dumps({"message": message}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def _authorized_job(self) -> int | None:
        """The job id of the URL if the request's JOB-TOKEN is that job's; else reply with the error."""
        match = _PATH.match(urlsplit(self.path).path)
        if not match:
            self._reply(404, "404 Not Found", close=True)
            return None
        job_id = int(match.group(1))
        with self.store.lock:
            expected = self.store.tokens.get(job_id)
        if expected is None:
            self._reply(404, "404 Job Not Found", close=True)
            return None
        if self.headers.get("JOB-TOKEN") != expected:
            self._reply(403, "403 Forbidden", close=True)
            return None
        return job_id

    def _cache_object(self) -> Path | None:
        """The cache file of a ``/cache/...`` URL, or None after replying 404."""
        root = self.store.cache_root
        name = unquote(urlsplit(self.path).path[len(_CACHE_PREFIX) :])
        path = _cache_path(root, name) if root is not None else None
        if path is None:
            self._reply(404, "404 Not Found", close=True)
        return path

    def do_PUT(self) -> None:
        if not self.path.startswith(_CACHE_PREFIX):
            self._reply(404, "404 Not Found", close=True)
            return
        path = self._cache_object()
        if path is None:
            return
        body = _Body(self.rfile, self.headers)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, staged_name = tempfile.mkstemp(prefix=".upload-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := body.read():
                    out.write(chunk)
            os.replace(staged_name, path)
        finally:
            Path(staged_name).unlink(missing_ok=True)
        self._reply(200, "200 OK")

    def do_POST(self) -> None:
        try:
            self._upload()
        except _BadRequest as exc:
            self._reply(400, f"400 Bad request - {exc}", close=True)
        except Exception as exc:  # the helper must get an answer, never a reset connection
            self._reply(500, f"500 Internal Server Error - {type(exc).__name__}", close=True)

    def _upload(self) -> None:
        job_id = self._authorized_job()
        if job_id is None:
            return
        query = parse_qs(urlsplit(self.path).query)
        artifact_type = query.get("artifact_type", ["archive"])[0]
        artifact_format = query.get("artifact_format", ["zip"])[0]
        if not _ARTIFACT_TYPE.match(artifact_type):
            raise _BadRequest("artifact_type is invalid")
        if artifact_format not in _FORMATS:
            raise _BadRequest(f"artifact_format must be one of {', '.join(_FORMATS)}")
        body = _Body(self.rfile, self.headers)
        boundary = _boundary(self.headers.get("Content-Type", ""))
        target_dir = self.store.root / str(job_id)
        target_dir.mkdir(parents=True, exist_ok=True)
        fd, staged_name = tempfile.mkstemp(prefix=f".{artifact_type}-", dir=target_dir)
        staged = Path(staged_name)
        try:
            with os.fdopen(fd, "wb") as out:
                filename = _save_file_part(body, boundary, lambda: out)
            body.drain()
            if filename is None:
                raise _BadRequest("file is missing")
            variables = self._dotenv(staged, artifact_format) if artifact_type == "dotenv" else None
            path = target_dir / f"{artifact_type}{_FORMATS[artifact_format]}"
            staged.replace(path)
        finally:
            staged.unlink(missing_ok=True)
        stored = StoredArtifact(job_id, artifact_type, artifact_format, filename, path, path.stat().st_size)
        with self.store.lock:
            self.store.artifacts[(job_id, artifact_type)] = stored
            if variables is not None:
                self.store.dotenv[job_id] = variables
        self._reply(201, "201 Created")

    @staticmethod
    def _dotenv(path: Path, artifact_format: str) -> dict[str, str]:
        try:
            if artifact_format == "gzip":
                with gzip.open(path, "rb") as fh:
                    data = fh.read(_DOTENV_MAX_BYTES + 1)
            else:
                with path.open("rb") as fh:
                    data = fh.read(_DOTENV_MAX_BYTES + 1)
        except (OSError, EOFError) as exc:
            raise _BadRequest(f"dotenv report cannot be read: {exc}") from None
        if len(data) > _DOTENV_MAX_BYTES:
            raise _BadRequest(f"dotenv report is larger than {_DOTENV_MAX_BYTES} bytes")
        try:
            return parse_dotenv(data.decode("utf-8"))
        except UnicodeDecodeError:
            raise _BadRequest("dotenv report is not UTF-8") from None
        except DotenvError as exc:
            raise _BadRequest(f"invalid dotenv report: {exc}") from None

    def do_GET(self) -> None:
        if self.path.startswith(_CACHE_PREFIX):
            self._get_cache()
            return
        job_id = self._authorized_job()
        if job_id is None:
            return
        with self.store.lock:
            artifact = self.store.artifacts.get((job_id, "archive"))
        if artifact is None:
            self._reply(404, "404 Not Found")
            return
        quoted = artifact.filename.replace("\\", "\\\\").replace('"', '\\"')
        self._send_file(artifact.path, f'attachment; filename="{quoted}"')

    def _get_cache(self) -> None:
        path = self._cache_object()
        if path is None:
            return
        if not path.is_file():
            self._reply(404, "404 Not Found")
            return
        self._send_file(path, None)

    def _send_file(self, path: Path, disposition: str | None) -> None:
        with path.open("rb") as fh:
            self.send_response(200)
            self.send_header("Content-Type", "application/zip")
            self.send_header("Content-Length", str(os.fstat(fh.fileno()).st_size))
            if disposition:
                self.send_header("Content-Disposition", disposition)
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                shutil.copyfileobj(fh, self.wfile)
