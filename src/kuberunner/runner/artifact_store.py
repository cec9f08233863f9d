"""A local stand-in for GitLab's artifact endpoints, for ``kuberunner exec``.

Local pipelines run their jobs through the same stage scripts and the same
helper as production jobs, so artifacts still travel by
``POST /api/v4/jobs/:id/artifacts`` and ``GET /api/v4/jobs/:id/artifacts``.
This server answers those two calls on 127.0.0.1 and keeps the archives in a
directory, checking each job's token as GitLab does.
"""

from __future__ import annotations

import email.parser
import email.policy
import re
import shutil
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["ArtifactStore", "StoredArtifact"]

_PATH = re.compile(r"^/api/v4/jobs/(\d+)/artifacts$")


@dataclass
class StoredArtifact:
    job_id: int
    artifact_type: str
    artifact_format: str
    filename: str
    path: Path
    size: int


@dataclass
class _State:
    root: Path
    tokens: dict[int, str] = field(default_factory=dict)
    artifacts: dict[tuple[int, str], StoredArtifact] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class ArtifactStore:
    """Start with ``with ArtifactStore(dir) as store:``; ``store.url`` is the "GitLab" URL."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self._state = _State(root)
        state = self._state

        class Handler(_Handler):
            store = state

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="artifact-store", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def register_job(self, job_id: int, token: str) -> None:
        with self._state.lock:
            self._state.tokens[job_id] = token

    def archive(self, job_id: int, artifact_type: str = "archive") -> StoredArtifact | None:
        with self._state.lock:
            return self._state.artifacts.get((job_id, artifact_type))

    def __enter__(self) -> ArtifactStore:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    store: _State
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: job logs show what the helper did."""

    def _reply(self, status: int, message: str) -> None:
        body = ('{"message":"%s"}' % message.replace('"', "'")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _job(self) -> int | None:
        match = _PATH.match(urlsplit(self.path).path)
        if not match:
            self._reply(404, "404 Not Found")
            return None
        job_id = int(match.group(1))
        with self.store.lock:
            expected = self.store.tokens.get(job_id)
        if expected is None:
            self._reply(404, "404 Job Not Found")
            return None
        return job_id

    def _token_ok(self, job_id: int) -> bool:
        with self.store.lock:
            return self.headers.get("JOB-TOKEN") == self.store.tokens.get(job_id)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(parts)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_POST(self) -> None:
        body = self._body()
        job_id = self._job()
        if job_id is None:
            return
        if not self._token_ok(job_id):
            self._reply(403, "403 Forbidden")
            return
        query = parse_qs(urlsplit(self.path).query)
        artifact_type = query.get("artifact_type", ["archive"])[0]
        artifact_format = query.get("artifact_format", ["zip"])[0]
        header = f"Content-Type: {self.headers.get('Content-Type', '')}\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(header + body)
        part = next(
            (p for p in message.iter_parts() if p.get_param("name", header="content-disposition") == "file"),
            None,
        ) if message.is_multipart() else None
        if part is None:
            self._reply(400, "400 Bad request - file is missing")
            return
        data = part.get_payload(decode=True) or b""
        filename = part.get_filename() or "artifacts.zip"
        target = self.store.root / str(job_id) / artifact_type
        target.mkdir(parents=True, exist_ok=True)
        path = target / Path(filename).name
        path.write_bytes(data)
        with self.store.lock:
            self.store.artifacts[(job_id, artifact_type)] = StoredArtifact(
                job_id, artifact_type, artifact_format, filename, path, len(data)
            )
        self._reply(201, "201 Created")

    def do_GET(self) -> None:
        job_id = self._job()
        if job_id is None:
            return
        if not self._token_ok(job_id):
            self._reply(403, "403 Forbidden")
            return
        with self.store.lock:
            artifact = self.store.artifacts.get((job_id, "archive"))
        if artifact is None:
            self._reply(404, "404 Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(artifact.size))
        self.send_header("Content-Disposition", f'attachment; filename="{artifact.filename}"')
        self.end_headers()
        with artifact.path.open("rb") as fh:
            shutil.copyfileobj(fh, self.wfile)
