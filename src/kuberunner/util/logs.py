"""The service's own logs: text or JSON (``log_format``), with every known secret redacted.

Secrets (runner tokens, job tokens, masked values) are registered as they
become known; a logging filter replaces them, and GitLab token prefixes, in
every record before any handler formats it.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from typing import Any, TextIO

__all__ = ["REDACTED", "SECRETS", "SecretRegistry", "configure_logging", "redact"]

REDACTED = "[MASKED]"
_TOKEN = re.compile(
    r"\b(glpat-|gloas-|gldt-|glrt-|glrtr-|glcbt-|glptt-|glft-|glimt-|glagent-|glsoat-|glffct-|GR1348941)"
    r"[A-Za-z0-9_\-]+"
)


class SecretRegistry:
    """Secrets known to this process; thread-safe because logging is."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()

    def add(self, *values: str | None) -> None:
        with self._lock:
            self._values.update(v for v in values if v and len(v) >= 4)

    def discard(self, *values: str | None) -> None:
        with self._lock:
            self._values.difference_update(v for v in values if v)

    def redact(self, text: str) -> str:
        with self._lock:
            values = sorted(self._values, key=len, reverse=True)
        for value in values:
            if value in text:
                text = text.replace(value, REDACTED)
        return _TOKEN.sub(lambda m: m.group(1) + REDACTED, text)


SECRETS = SecretRegistry()


def redact(text: str) -> str:
    return SECRETS.redact(text)


class _RedactFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = SECRETS.redact(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = SECRETS.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class _JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
            "logger": record.name,
        }
        for key in ("runner", "job"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_text:
            entry["error"] = record.exc_text
        return json.dumps(entry)


def configure_logging(level: str = "info", fmt: str = "runner", stream: TextIO | None = None) -> None:
    """Set up the root logger once for the CLI's long-running commands."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(_RedactFilter())
    if fmt == "json":
        handler.setFormatter(_JSONFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%dT%H:%M:%S")
        )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    levels = {"warn": "WARNING", "fatal": "CRITICAL", "panic": "CRITICAL"}
    root.setLevel(levels.get(level, level.upper()))
    # one line per HTTP request is noise at info level; the runner logs what matters
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING if root.level < logging.WARNING else root.level)
