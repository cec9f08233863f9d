"""HTTPS/1.1 front end: TLS (optional client certificates), keep-alive, chunked watch/log streams."""

from __future__ import annotations

import contextlib
import hashlib
import select
import socket
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .api import Request, Response, audit_id
from .logs import Cut

_REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    410: "Gone",
    415: "Unsupported Media Type",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], context: ssl.SSLContext, app: Callable[[Request], Response]
    ) -> None:
        self.context = context
        self.app = app
        self.connections: set[socket.socket] = set()
        self.conn_lock = threading.Lock()
        self.stopping = threading.Event()
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = self.socket.accept()
        tls = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        with self.conn_lock:
            self.connections.add(tls)
        return tls, addr

    def shutdown_request(self, request: Any) -> None:
        with self.conn_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """TLS failures and hang-ups are the client's business (e.g. an untrusted CA); stay quiet."""

    def close_all(self) -> None:
        with self.conn_lock:
            conns = list(self.connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kube-double"
    sys_version = ""
    timeout = 300
    server: _Server

    def setup(self) -> None:
        conn = self.request
        conn.settimeout(10)
        conn.do_handshake()
        conn.settimeout(None)
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        """Silence: the double keeps its own request log."""

    def _body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            data = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0] or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        body = self._body()
        cert = self.request.getpeercert()
        subject = cert.get("subject") if cert else None
        fingerprint = ""
        if cert:
            der = self.request.getpeercert(binary_form=True) or b""
            fingerprint = hashlib.sha256(der).hexdigest()
        headers = {k.lower(): v for k, v in self.headers.items()}
        req = Request(self.command, self.path, headers, body, subject, fingerprint)
        response = self.server.app(req)
        self._send(response)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch

    def _start(self, response: Response, chunked: bool, length: int = 0) -> None:
        self.send_response_only(response.status, _REASONS.get(response.status, ""))
        self.send_header("Audit-Id", audit_id())
        self.send_header("Cache-Control", "no-cache, private")
        if response.content_type is not None:
            self.send_header("Content-Type", response.content_type)
        for key, value in response.headers:
            self.send_header(key, value)
        self.send_header("X-Kubernetes-Pf-Flowschema-Uid", "kube-double")
        self.send_header("X-Kubernetes-Pf-Prioritylevel-Uid", "kube-double")
        self.send_header("Date", self.date_time_string())
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif response.status != 204:
            self.send_header("Content-Length", str(length))
        self.end_headers()

    def _send(self, response: Response) -> None:
        if response.stream is None:
            self._start(response, chunked=False, length=len(response.body))
            if self.command != "HEAD" and response.status != 204:
                self.wfile.write(response.body)
            self.wfile.flush()
            return
        self._start(response, chunked=True)
        self.wfile.flush()
        stream = response.stream
        try:
            for chunk in stream:
                if chunk is None:
                    if self._client_gone() or self.server.stopping.is_set():
                        self.close_connection = True
                        return
                    continue
                if isinstance(chunk, Cut):
                    self.close_connection = True
                    self.request.shutdown(socket.SHUT_RDWR)
                    return
                if not chunk:
                    continue
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.flush()
                if self.server.stopping.is_set():
                    self.close_connection = True
                    return
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            self.close_connection = True
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()

    def _client_gone(self) -> bool:
        """A client that hung up makes the socket readable (EOF or close_notify) while we stream."""
        try:
            readable, _, _ = select.select([self.request], [], [], 0)
        except (OSError, ValueError):
            return True
        if not readable:
            return False
        try:
            self.request.settimeout(0.05)
            data = self.request.recv(1)
        except (ssl.SSLWantReadError, TimeoutError):
            return False
        except (OSError, ssl.SSLError):
            return True
        finally:
            with contextlib.suppress(OSError):
                self.request.settimeout(None)
        return not data


class HttpsServer:
    """The listening socket on 127.0.0.1 and its accept thread."""

    def __init__(
        self, context: ssl.SSLContext, app: Callable[[Request], Response], host: str = "127.0.0.1"
    ) -> None:
        self._server = _Server((host, 0), context, app)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="kube-double-https",
            daemon=True,
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.stopping.set()
        self._server.shutdown()
        self._server.close_all()
        self._server.server_close()
        self._thread.join(5)
