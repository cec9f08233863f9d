"""Prometheus metrics and the health endpoint, served on ``listen_address``.

Labels carry runner names, endpoints, states and failure reasons; never a
token, never a variable value.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

__all__ = ["Metrics", "MetricsServer", "parse_listen_address"]


class Metrics:
    """The runner's metrics, in their own registry (tests can make as many as they like)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.jobs_running = Gauge(
            "kuberunner_jobs_running", "Jobs running now.", ["runner"], registry=self.registry
        )
        self.jobs_total = Counter(
            "kuberunner_jobs",
            "Jobs finished, by final state and failure reason.",
            ["runner", "state", "failure_reason"],
            registry=self.registry,
        )
        self.api_requests = Counter(
            "kuberunner_api_requests",
            "Requests to GitLab's API, by endpoint and HTTP status (0 = no answer).",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.trace_bytes = Counter(
            "kuberunner_trace_bytes",
            "Job log bytes produced (after masking and limits).",
            ["runner"],
            registry=self.registry,
        )
        self.job_duration = Histogram(
            "kuberunner_job_duration_seconds",
            "Wall time of a job from its confirmation to its final report.",
            ["runner"],
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, float("inf")),
            registry=self.registry,
        )

    def api_response(self, endpoint: str, status: int) -> None:
        self.api_requests.labels(endpoint=endpoint, status=str(status)).inc()


def parse_listen_address(value: str) -> tuple[str, int]:
    """``":9252"``, ``"0.0.0.0:9252"``, ``"[::1]:9252"`` → (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f'listen_address must look like "HOST:PORT" or ":PORT", got {value!r}')
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Access logs would go to stderr unstructured; the runner logs what matters itself."""


class MetricsServer:
    """``/metrics`` (Prometheus text format) and ``/health`` (JSON), in a daemon thread."""

    def __init__(self, metrics: Metrics, address: str, health: Callable[[], dict[str, Any]]) -> None:
        host, port = parse_listen_address(address)
        prometheus_app = make_wsgi_app(metrics.registry)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            path = environ.get("PATH_INFO", "")
            if path in ("/health", "/healthz", "/-/health"):
                state = health()
                status = "200 OK" if state.get("healthy", False) else "503 Service Unavailable"
                body = json.dumps(state).encode()
                start_response(status, [("Content-Type", "application/json")])
                return [body]
            if path == "/metrics":
                result: Iterable[bytes] = prometheus_app(environ, start_response)
                return result
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: try /metrics or /health\n"]

        self._server: WSGIServer = make_server(host, port, app, handler_class=_QuietHandler)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
