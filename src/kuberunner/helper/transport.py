"""HTTP plumbing shared by artifacts and cache transfers: retries, clean URLs, tokens.

Retries follow the GitLab contract: 408, 429, 500, 502, 503, 504 and >= 512
and network errors are retried, up to 5 attempts in all, waiting for
``RateLimit-ResetTime`` (an HTTP date) if present, else ``Retry-After``, else an
exponential backoff from 100 ms capped at 60 s. The sleep is injectable so
tests do not wait.

Loading a TLS trust store takes tens of milliseconds, more than a small transfer:
verifying contexts are built once per process and kept (:func:`tls_context`), so a
process that forks helpers (``kuberunner exec``) builds them before it forks.
"""

from __future__ import annotations

import email.utils
import functools
import http
import json
import os
import platform
import re
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

from kuberunner.helper.log import Log

__all__ = [
    "RETRY_STATUSES",
    "JobCredentials",
    "RetryPolicy",
    "clean_url",
    "describe_error",
    "human_size",
    "is_retryable",
    "make_client",
    "origin",
    "server_message",
    "short_token",
    "status_text",
    "tls_context",
    "user_agent",
]

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_MAX_WAIT_S = 600.0


def is_retryable(status: int) -> bool:
    return status in RETRY_STATUSES or status >= 512


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a transfer."""

    attempts: int = 5
    base_delay_s: float = 0.1
    max_delay_s: float = 60.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    clock: Callable[[], float] = field(default=time.time, repr=False)

    def delay(self, attempt: int, response: httpx.Response | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 1)."""
        if response is not None:
            reset = response.headers.get("RateLimit-ResetTime")
            if reset:
                try:
                    when = email.utils.parsedate_to_datetime(reset).timestamp()
                    return min(max(when - self.clock(), 0.0), _MAX_WAIT_S)
                except (TypeError, ValueError):
                    pass
            retry_after = response.headers.get("Retry-After")
            if retry_after:
                retry_after = retry_after.strip()
                if retry_after.isdigit():
                    return min(float(retry_after), _MAX_WAIT_S)
                try:
                    when = email.utils.parsedate_to_datetime(retry_after).timestamp()
                    return min(max(when - self.clock(), 0.0), _MAX_WAIT_S)
                except (TypeError, ValueError):
                    pass
        backoff: float = self.base_delay_s * (2 ** (attempt - 1))
        return min(backoff, self.max_delay_s)

    def wait(self, attempt: int, response: httpx.Response | None = None, *, log: Log) -> None:
        """Say how long the retry waits, then wait."""
        seconds = self.delay(attempt, response)
        log.info(f"Retrying in {seconds:g} s (attempt {attempt + 1} of {self.attempts})")
        self.sleep(seconds)


@dataclass(frozen=True)
class JobCredentials:
    """Where GitLab is and the job token that authorizes one job's artifact calls."""

    url: str
    token: str = field(repr=False)
    job_id: int
    ca_file: Path | None = None

    @property
    def api_base(self) -> str:
        """``url`` with a trailing ``/`` or ``/ci`` removed, then ``/api/v4/`` (the contract's rule)."""
        base = self.url.rstrip("/")
        if base.endswith("/ci"):
            base = base[: -len("/ci")]
        return base + "/api/v4/"

    def artifacts_url(self) -> str:
        return f"{self.api_base}jobs/{self.job_id}/artifacts"


def short_token(token: str) -> str:
    """The few characters of a token gitlab-runner shows in logs; never the whole token."""
    for prefix in ("glcbt-", "glrtr-", "glrt-"):
        if token.startswith(prefix):
            token = token[len(prefix) :]
            break
    if len(token) < 16:
        return "[MASKED]"
    return token[:8]


def clean_url(url: str) -> str:
    """``url`` without user info, query or fragment: safe to print (presigned signatures stay out)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) with the default port filled in: what decides where a token may go."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return scheme, (parts.hostname or "").lower(), port


def status_text(status: int) -> str:
    try:
        return f"{status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


_XML_FIELD = re.compile(r"<(Code|Message)>([^<]{1,300})</\1>")


def server_message(response: httpx.Response) -> str:
    """The server's own one-line reason: GitLab's JSON ``message``/``error`` or S3's XML Code/Message."""
    try:
        body = response.read()[:8192].decode("utf-8", "replace")
    except httpx.HTTPError:
        return ""
    text = body.strip()
    if not text:
        return ""
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict):
            for key in ("message", "error"):
                value = data.get(key)
                if isinstance(value, str | int | float):
                    return " ".join(str(value).split())[:300]
                if isinstance(value, dict | list):
                    return " ".join(json.dumps(value).split())[:300]
            return ""
    if text.startswith("<"):
        fields = dict(_XML_FIELD.findall(text))
        if fields:
            return ": ".join(v for v in (fields.get("Code"), fields.get("Message")) if v)
        return ""
    return " ".join(text.split())[:200]


def describe_error(exc: BaseException, url: str | None = None) -> str:
    """A one-line description of a network error, with any full URL reduced to its clean form."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if url:
        text = text.replace(url, clean_url(url))
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


@functools.cache
def user_agent() -> str:
    try:
        version = metadata.version("kuberunner")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return f"kuberunner-helper {version} ({platform.system().lower()}; {platform.machine()})"


# The environment variables that choose the trust store (OpenSSL's and httpx's).
_TRUST_ENV = ("SSL_CERT_FILE", "SSL_CERT_DIR")


def _stamp(path: str | None) -> tuple[str, int, int] | None:
    """What identifies a file's or directory's contents well enough to reuse what was loaded from it."""
    if not path:
        return None
    path = os.path.abspath(path)  # a relative name means another file in another directory
    try:
        st = os.stat(path)
    except OSError:
        return (path, -1, -1)
    return (path, st.st_mtime_ns, st.st_size)


def tls_context(ca_file: Path | None = None) -> ssl.SSLContext:
    """The verifying context for GitLab's HTTPS: httpx's default trust store, or (``ca_file``,
    like gitlab-runner) the system's roots plus that CA file.

    Built once per process for the same trust inputs (the CA file and the ``SSL_CERT_FILE``
    and ``SSL_CERT_DIR`` locations, each by path, size and modification time), then reused:
    the same certificates are trusted, only the loading is saved.
    """
    trust = tuple(_stamp(os.environ.get(name)) for name in _TRUST_ENV)
    return _tls_context(_stamp(str(ca_file)) if ca_file is not None else None, trust)


@functools.lru_cache(maxsize=8)
def _tls_context(
    ca_file: tuple[str, int, int] | None, trust: tuple[tuple[str, int, int] | None, ...]
) -> ssl.SSLContext:
    del trust  # part of the cache key only: the loaders below read the environment themselves
    if ca_file is None:
        return httpx.create_ssl_context(verify=True)
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=ca_file[0])
    return context


def make_client(
    *,
    ca_file: Path | None = None,
    timeout_s: float = 600.0,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """A client that never follows redirects by itself (callers decide where tokens go)."""
    return httpx.Client(
        verify=tls_context(ca_file),
        timeout=httpx.Timeout(timeout_s, connect=min(30.0, timeout_s)),
        follow_redirects=False,
        headers={"User-Agent": user_agent()},
        transport=transport,
        event_hooks={"request": [_add_request_id]},
    )


def _add_request_id(request: httpx.Request) -> None:
    request.headers.setdefault("X-Request-Id", uuid.uuid4().hex)
