"""HTTP for a job pod that cannot reach its "GitLab": files in, log lines out.

``kuberunner exec --executor kubernetes`` serves the artifact endpoints on the
developer's machine, which a pod in a real cluster usually cannot reach. Both
ends can reach the Kubernetes API, though, so the helper's HTTP goes through it:

- **In** (``GET``): the runner makes the requests the job will make before the
  pod exists and puts each answer into a Secret mounted at
  ``$KUBERUNNER_RELAY_DIR``, as a file named :func:`response_key` (split in
  parts ``<key>.000``, ``<key>.001``... to fit Secrets). :class:`RelayTransport`
  answers from those files; a request nobody foresaw gets 404.
- **Out** (anything else): :class:`RelayTransport` writes the request to stdout
  as marker lines (``$KUBERUNNER_RELAY_MARK`` + ``relay:...``, base64, a few KiB
  per line so no container runtime splits them); the runner's log follower
  takes them out of the job log (:class:`RelayReader`) and sends them on. The
  pod never hears the real answer: the request is reported as accepted, and the
  runner fails the job afterwards if the server refuses it.

The helper uses it when ``KUBERUNNER_RELAY_DIR`` is set (the executor sets it in
the helper containers only). Tokens travel in these lines, never in the job log:
the reader removes them before the log is written.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import httpx

from kuberunner.helper.transport import origin as transport_origin
from kuberunner.helper.transport import tls_context

__all__ = [
    "HOP_HEADERS",
    "MARKER_LEAD",
    "MAX_REQUEST_BYTES",
    "PART_GLOB",
    "RELAY_DIR_ENV",
    "RELAY_MARK_ENV",
    "RELAY_ORIGIN_ENV",
    "RelayError",
    "RelayReader",
    "RelayTransport",
    "RelayedRequest",
    "encode_response",
    "part_name",
    "relay_transport_from_env",
    "request_lines",
    "response_key",
]

RELAY_DIR_ENV = "KUBERUNNER_RELAY_DIR"
RELAY_MARK_ENV = "KUBERUNNER_RELAY_MARK"
RELAY_ORIGIN_ENV = "KUBERUNNER_RELAY_ORIGIN"
# Container runtimes split log lines above 16 KiB; 3 KiB of data is a 4 KiB line.
_CHUNK = 3 * 1024
# A request is at most this large (4/3 of it in the log): a log followed live survives the
# kubelet's rotation (10 MiB by default); one resumed across a rotation loses lines, which the
# reader detects.
MAX_REQUEST_BYTES = 16 * 1024 * 1024
# Every marker line of a job pod's log starts with this record separator (the in-pod drivers'
# stage markers too: executors.kubernetes.driver); the helper sits below both, so it is kept here.
MARKER_LEAD = "\x1e"
# Relay files are split in parts ``<name>.000``, ``<name>.001``... (to fit Secrets).
PART_GLOB = ".[0-9][0-9][0-9]"
# Headers that describe one connection, not the request: never carried, never replayed.
HOP_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})


class RelayError(Exception):
    """A relayed exchange that cannot be made or was damaged on the way."""


def part_name(name: str, number: int) -> str:
    """The file name of part ``number`` of relay file ``name`` (see :data:`PART_GLOB`)."""
    return f"{name}.{number:03d}"


def response_key(method: str, path: str) -> str:
    """The file name (a valid Secret key) of the answer to ``method path`` (query ignored)."""
    digest = hashlib.sha256(f"{method.upper()} {path}".encode()).hexdigest()[:32]
    return f"{method.lower()}-{digest}"


def encode_response(status: int, headers: Mapping[str, str], body: bytes) -> bytes:
    """An answer as a relay file: one JSON line (status, headers), then the body."""
    head = json.dumps({"status": status, "headers": dict(headers)}, separators=(",", ":"))
    return head.encode() + b"\n" + body


def _decode_response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    head, sep, body = data.partition(b"\n")
    try:
        meta = json.loads(head)
        status, headers = int(meta["status"]), {str(k): str(v) for k, v in meta["headers"].items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise RelayError("a relayed answer is damaged (no status line)") from None
    if not sep:
        raise RelayError("a relayed answer is damaged (no body separator)")
    return status, headers, body


@dataclass(frozen=True)
class RelayedRequest:
    """A request the pod made, as the runner receives it."""

    method: str
    path: str  # with its query
    headers: dict[str, str] = field(repr=False)
    body: bytes = field(repr=False)

    def __repr__(self) -> str:  # headers carry the job token
        return f"<RelayedRequest {self.method} {self.path} {len(self.body)} bytes>"


def request_lines(
    mark: str, method: str, path: str, headers: Mapping[str, str], body: bytes
) -> Iterator[str]:
    """The log lines (without newlines) that carry one request out of the pod."""
    if len(body) > MAX_REQUEST_BYTES:
        raise RelayError(
            f"{len(body)} bytes is more than the {MAX_REQUEST_BYTES // (1024 * 1024)} MiB a request "
            "can carry out of a pod through its log: make the artifacts smaller"
        )
    head = json.dumps({"method": method, "path": path, "headers": dict(headers)}, separators=(",", ":"))
    prefix = f"{MARKER_LEAD}{mark}relay:"
    yield f"{prefix}begin:{base64.b64encode(head.encode()).decode()}"
    count = 0
    for start in range(0, len(body), _CHUNK):
        yield f"{prefix}data:{count}:{base64.b64encode(body[start : start + _CHUNK]).decode()}"
        count += 1
    yield f"{prefix}end:{count}:{hashlib.sha256(body).hexdigest()}"


class RelayReader:
    """Reassembles the requests of :func:`request_lines` from the ``relay:...`` bodies of marker lines."""

    def __init__(self) -> None:
        self._head: dict[str, object] | None = None
        self._parts: list[bytes] = []

    def feed(self, line: str) -> RelayedRequest | None:
        """One marker body (what follows the mark, ``relay:`` included); a request when one is whole.

        Raises :class:`RelayError` when the lines are out of order or damaged (a log cut short).
        """
        kind, _, rest = line.removeprefix("relay:").partition(":")
        try:
            if kind == "begin":
                head = json.loads(base64.b64decode(rest, validate=True))
                if not isinstance(head, dict):
                    raise ValueError("not an object")
                self._head, self._parts = head, []
                return None
            if self._head is None:
                raise RelayError("relayed data without its beginning: the pod log lost lines")
            if kind == "data":
                seq, _, data = rest.partition(":")
                if int(seq) != len(self._parts):
                    raise RelayError("relayed lines are missing: the pod log lost lines")
                self._parts.append(base64.b64decode(data, validate=True))
                return None
            if kind == "end":
                count, _, digest = rest.partition(":")
                head, parts = self._head, self._parts
                self._head, self._parts = None, []
                body = b"".join(parts)
                if int(count) != len(parts) or hashlib.sha256(body).hexdigest() != digest:
                    raise RelayError("a relayed request arrived damaged: the pod log lost lines")
                headers = head.get("headers")
                return RelayedRequest(
                    method=str(head["method"]),
                    path=str(head["path"]),
                    headers={str(k): str(v) for k, v in headers.items()} if isinstance(headers, dict) else {},
                    body=body,
                )
        except (ValueError, KeyError, TypeError) as exc:
            self._head, self._parts = None, []
            raise RelayError(f"a relayed request is damaged ({type(exc).__name__})") from None
        raise RelayError(f"unknown relay line {kind!r}")


class RelayTransport(httpx.BaseTransport):
    """An httpx transport for requests to ``origin`` (all when empty): ``GET``/``HEAD`` from
    ``directory``, everything else out through ``out``. Other origins (an S3 bucket the job
    pod reaches itself) get an ordinary connection."""

    def __init__(self, directory: Path, mark: str, out: BinaryIO | None = None, *, origin: str = "") -> None:
        self.directory = directory
        self.mark = mark
        self.out = out
        self.origin = transport_origin(origin) if origin else None
        self._direct: httpx.BaseTransport | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.origin is not None and transport_origin(str(request.url)) != self.origin:
            if self._direct is None:
                self._direct = httpx.HTTPTransport(verify=tls_context(None))
            return self._direct.handle_request(request)
        path = request.url.raw_path.decode("ascii", "replace")
        if request.method in ("GET", "HEAD"):
            return self._answer(request, path.split("?", 1)[0])
        body = request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        out = self.out if self.out is not None else sys.stdout.buffer
        try:
            lines = list(request_lines(self.mark, request.method, path, headers, body))
        except RelayError as exc:
            return httpx.Response(413, json={"message": str(exc)}, request=request)
        sys.stdout.flush()
        out.write(("\n".join(lines) + "\n").encode("ascii"))
        out.flush()
        return httpx.Response(201 if request.method == "POST" else 200, json={}, request=request)

    def close(self) -> None:
        if self._direct is not None:
            self._direct.close()

    def _answer(self, request: httpx.Request, path: str) -> httpx.Response:
        key = response_key(request.method if request.method != "HEAD" else "GET", path)
        parts = sorted(self.directory.glob(key + PART_GLOB))
        if not parts:
            return httpx.Response(
                404,
                json={"message": "404 Not Found (not carried into the pod by kuberunner exec)"},
                request=request,
            )
        status, headers, body = _decode_response(b"".join(p.read_bytes() for p in parts))
        headers.pop("content-length", None)
        headers.pop("Content-Length", None)
        return httpx.Response(
            status, headers=headers, content=b"" if request.method == "HEAD" else body, request=request
        )


def relay_transport_from_env(environ: Mapping[str, str] | None = None) -> RelayTransport | None:
    """The transport the executor asked for through the environment, or None."""
    env = os.environ if environ is None else environ
    directory = env.get(RELAY_DIR_ENV, "")
    if not directory:
        return None
    return RelayTransport(Path(directory), env.get(RELAY_MARK_ENV, ""), origin=env.get(RELAY_ORIGIN_ENV, ""))
