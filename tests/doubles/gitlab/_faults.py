"""Scripted fault injection: per endpoint, consumed in the order they were added.

A fault stands for what sits in front of GitLab's application (load balancer, Workhorse, network), so it
applies before any authentication, except `trace_loss`, which is GitLab losing stored trace data.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._http import Response, reason

ENDPOINTS = frozenset(
    {
        "runners/register",
        "runners/verify",
        "runners/delete",
        "runners/managers/delete",
        "runners/reset_token",
        "jobs/request",
        "jobs/update",
        "trace",
        "artifacts/upload",
        "artifacts/download",
        "object_storage",
        "git",
    }
)

KINDS = frozenset({"status", "delay", "drop", "trace_loss", "redirect"})


@dataclass
class Fault:
    """One scripted fault; `remaining` counts the requests it still applies to."""

    endpoint: str
    kind: str
    remaining: int
    status: int | None = None
    body: Any = None
    headers: tuple[tuple[str, str], ...] = ()
    seconds: float = 0.0
    keep: int | None = None
    processed: bool = False
    location: str | None = None

    def status_response(self) -> Response:
        """The answer of a `status` fault: the given body, else GitLab's JSON error shape."""
        assert self.status is not None
        headers = list(self.headers)
        if self.body is None:
            body = json.dumps({"message": reason(self.status)}).encode()
            headers.insert(0, ("Content-Type", "application/json"))
        elif isinstance(self.body, bytes):
            body = self.body
        elif isinstance(self.body, str):
            body = self.body.encode()
            headers.insert(0, ("Content-Type", "text/plain; charset=utf-8"))
        else:
            body = json.dumps(self.body).encode()
            headers.insert(0, ("Content-Type", "application/json"))
        return Response(self.status, headers, body)


class FaultPlan:
    """`gitlab.faults`: add faults per endpoint; each request to that endpoint takes the oldest one."""

    def __init__(self, cond: threading.Condition) -> None:
        self._cond = cond
        self._queues: dict[str, deque[Fault]] = {}
        self.applied: list[tuple[str, str]] = []
        """(endpoint, kind) of every fault applied, in order."""

    def add(
        self,
        endpoint: str,
        kind: str | int,
        count: int = 1,
        *,
        status: int | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        retry_after: float | int | None = None,
        seconds: float | None = None,
        keep: int | None = None,
        processed: bool = False,
        location: str | None = None,
    ) -> None:
        """Script `count` faults for `endpoint`.

        Kinds: an HTTP status code (or `"status"` with `status=`): answer it with `body`/`headers`
        (`retry_after` sets `Retry-After`); `"delay"`: wait `seconds`, then handle normally (so a
        client timeout fires); `"drop"`: close the socket without answering (`processed=True`: handle
        the request first, so only the answer is lost); `"trace_loss"` (endpoint `trace` only): the next
        PATCH finds the stored trace truncated to `keep` bytes (default half) and answers 416;
        `"redirect"` (artifact endpoints): 307 for uploads / 302 for downloads, to `location` or to a
        path of the double that serves the same thing.
        """
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; known: {sorted(ENDPOINTS)}")
        if isinstance(kind, int):
            status, kind = kind, "status"
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {sorted(KINDS)} or an HTTP status")
        if count < 1:
            raise ValueError("count must be at least 1")
        if kind == "status" and (status is None or not 200 <= status <= 599):
            raise ValueError("a status fault needs status= between 200 and 599")
        if kind == "delay" and (seconds is None or seconds <= 0):
            raise ValueError("a delay fault needs seconds= > 0")
        if kind == "trace_loss" and endpoint != "trace":
            raise ValueError("trace_loss applies to the 'trace' endpoint only")
        if kind == "redirect" and endpoint not in ("artifacts/upload", "artifacts/download"):
            raise ValueError("redirect applies to artifacts/upload and artifacts/download only")
        if kind == "redirect" and status is None:
            status = 307 if endpoint == "artifacts/upload" else 302
        all_headers = dict(headers or {})
        if retry_after is not None:
            all_headers["Retry-After"] = str(retry_after)
        fault = Fault(
            endpoint=endpoint,
            kind=kind,
            remaining=count,
            status=status,
            body=body,
            headers=tuple(all_headers.items()),
            seconds=seconds or 0.0,
            keep=keep,
            processed=processed,
            location=location,
        )
        with self._cond:
            self._queues.setdefault(endpoint, deque()).append(fault)

    def take(self, endpoint: str) -> Fault | None:
        """The fault for this request, if any (consumes one use of the oldest fault)."""
        with self._cond:
            queue = self._queues.get(endpoint)
            if not queue:
                return None
            fault = queue[0]
            fault.remaining -= 1
            if fault.remaining == 0:
                queue.popleft()
            self.applied.append((endpoint, fault.kind))
            self._cond.notify_all()
            return fault

    def pending(self, endpoint: str | None = None) -> int:
        """How many fault uses are still scripted (for one endpoint, or all)."""
        with self._cond:
            queues = [self._queues.get(endpoint, deque())] if endpoint else list(self._queues.values())
            return sum(f.remaining for q in queues for f in q)

    def clear(self) -> None:
        """Forget every scripted fault."""
        with self._cond:
            self._queues.clear()
