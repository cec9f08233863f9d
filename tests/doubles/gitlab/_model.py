"""State the GitLab double keeps: runners, jobs, recorded requests and contract violations.

All mutable state is guarded by the double's single `threading.Condition`; every change notifies it, so
tests wait on conditions (`job.wait_finished()`) instead of sleeping.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

KUBERNETES_FEATURES: tuple[str, ...] = (
    "variables",
    "image",
    "services",
    "artifacts",
    "cache",
    "fallback_cache_keys",
    "upload_multiple_artifacts",
    "upload_raw_artifacts",
    "refspecs",
    "masking",
    "raw_variables",
    "artifacts_exclude",
    "multi_build_steps",
    "return_exit_code",
    "trace_reset",
    "trace_checksum",
    "trace_size",
    "cancelable",
    "cancel_gracefully",
    "service_variables",
    "service_multiple_aliases",
)
"""Every key a runner must send in `info.features` (the contract: "every key always sent")."""

FAILURE_REASONS: tuple[str, ...] = (
    "unknown_failure",
    "script_failure",
    "api_failure",
    "stuck_or_timeout_failure",
    "runner_system_failure",
    "missing_dependency_failure",
    "runner_unsupported",
    "job_execution_timeout",
    "trace_size_exceeded",
    "runner_configuration_error",
    "runner_external_dependency_failure",
    "runner_interrupted",
    "job_token_expired",
)
"""What `features.failure_reasons` lists in the fixture payload, i.e. what this GitLab accepts."""

ACTIVE_STATES = frozenset({"assigned", "running", "canceling"})
"""Job states in which the job token is valid (GitLab: "processing on runner")."""

TERMINAL_STATES = frozenset({"success", "failed", "canceled"})

_STATUS_OF_STATE = {
    "queued": "pending",
    "assigned": "running",
    "running": "running",
    "canceling": "canceling",
    "canceled": "canceled",
    "success": "success",
    "failed": "failed",
}


@dataclass(frozen=True)
class Violation:
    """A request that GitLab may accept but the contract forbids; the fixture fails the test on these."""

    endpoint: str
    job_id: int | None
    message: str

    def __str__(self) -> str:
        where = f"job {self.job_id} " if self.job_id is not None else ""
        return f"{self.endpoint}: {where}{self.message}"


@dataclass(frozen=True)
class Artifact:
    """An uploaded artifact, as stored per (job, artifact_type)."""

    artifact_type: str
    artifact_format: str
    filename: str
    expire_in: str | None
    content_type: str | None
    data: bytes = field(repr=False)

    @property
    def size(self) -> int:
        """Bytes stored."""
        return len(self.data)


@dataclass(eq=False)
class RunnerRecord:
    """A runner as GitLab knows it; `token` never appears in the repr."""

    id: int
    token: str = field(repr=False)
    description: str
    tags: tuple[str, ...]
    run_untagged: bool
    locked: bool
    access_level: str
    maximum_timeout: int | None
    paused: bool
    created_via: str
    token_expires_at: str | None = None
    orphaned: bool = False
    info: dict[str, Any] = field(default_factory=dict, repr=False)
    managers: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    """system_id -> last `info` seen from that runner manager."""
    deleted: bool = False


@dataclass(eq=False)
class RecordedRequest:
    """One request the double answered (or dropped), for assertions; secrets stay out of the repr."""

    method: str
    path: str
    endpoint: str
    status: int | None
    """The answer's status; None when the double closed the connection without answering (`drop`)."""
    body_length: int
    connection_id: int
    job_id: int | None
    fault: str | None
    query_string: str = field(repr=False)
    headers: dict[str, str] = field(repr=False)
    """Lower-cased names; repeated headers joined with ", "."""
    body: bytes = field(repr=False)
    response_headers: dict[str, str] = field(repr=False, default_factory=dict)
    started: float = field(repr=False, default=0.0)
    """`time.monotonic()` when the request line arrived."""
    finished: float = field(repr=False, default=0.0)
    delivered: bool = True
    """False when writing the answer failed (the client had gone, e.g. after a `delay` fault)."""

    def header(self, name: str) -> str | None:
        """A request header by case-insensitive name."""
        return self.headers.get(name.lower())

    def json(self) -> Any:
        """The request body decoded as JSON."""
        return json.loads(self.body)


@dataclass(frozen=True, eq=False)
class JobSpec:
    """What `GitLabDouble.enqueue` was asked for; the payload is built from it when a runner takes the job."""

    name: str
    stage: str
    script: tuple[str, ...]
    before_script: tuple[str, ...]
    after_script: tuple[str, ...]
    variables: tuple[dict[str, Any], ...] = field(repr=False)
    image: dict[str, Any] | None
    services: tuple[dict[str, Any], ...]
    artifacts: tuple[dict[str, Any], ...] | None
    cache: tuple[dict[str, Any], ...]
    hooks: tuple[dict[str, Any], ...]
    tags: tuple[str, ...]
    dependencies: tuple[int, ...]
    repo: str
    ref: str
    ref_type: str
    sha: str
    before_sha: str
    depth: int
    timeout: int
    pipeline_id: int
    project_id: int
    required_features: tuple[str, ...]
    failure_reasons: tuple[str, ...]
    trace_sections: bool
    payload_overrides: Mapping[str, Any] | None = field(repr=False)


class JobHandle:
    """A job in the double, seen from a test: its state, trace, artifacts, and controls (cancel, waits).

    `state` is the double's own view: `queued` (no runner yet), `assigned` (201 sent, waiting for
    `PUT state=running`), `running`, `canceling`, then `success`/`failed`/`canceled`. `status` is what
    GitLab reports in `Job-Status` (an assigned job is already `running` for GitLab).
    """

    def __init__(
        self,
        cond: threading.Condition,
        job_id: int,
        token: str,
        spec: JobSpec,
        *,
        final_put_202: int,
        trace_update_interval: str,
        max_trace_size: int,
    ) -> None:
        self._cond = cond
        self.id = job_id
        self._token = token
        self.spec = spec
        self.state = "queued"
        self.enqueued_at = time.monotonic()
        self.runner_id: int | None = None
        self.system_id: str | None = None
        self.payload: dict[str, Any] | None = None
        """The JSON sent with the 201, frozen when a runner took the job."""
        self.started = False
        """True once `PUT state=running` arrived (phase two of starting)."""
        self.keepalives = 0
        self.trace_update_interval = trace_update_interval
        self.max_trace_size = max_trace_size
        self.final_put_202_remaining = final_put_202
        self.final_put_attempts = 0
        self.final_state: str | None = None
        self.failure_reason: str | None = None
        self.exit_code: int | None = None
        self.reported_checksum: str | None = None
        self.reported_bytesize: int | None = None
        self.checksum_ok: bool | None = None
        """After the final PUT: did `output.checksum`/`bytesize` match the stored trace? None if not sent."""
        self.trace_patches = 0
        self.artifacts: dict[str, Artifact] = {}
        self.violations: list[Violation] = []
        self._trace = bytearray()
        self._leaks_reported: set[str] = set()

    def __repr__(self) -> str:
        return f"JobHandle(id={self.id}, name={self.spec.name!r}, state={self.state!r})"

    @property
    def token(self) -> str:
        """The job token (`glcbt-…`); kept out of the repr."""
        return self._token

    @property
    def name(self) -> str:
        """The job's name."""
        return self.spec.name

    @property
    def status(self) -> str:
        """What GitLab would report in `Job-Status`."""
        return _STATUS_OF_STATE[self.state]

    @property
    def trace(self) -> bytes:
        """The trace bytes the double has stored."""
        with self._cond:
            return bytes(self._trace)

    def trace_crc(self) -> str:
        """`crc32:%08x` over the stored trace, as the runner must report it in the final PUT."""
        with self._cond:
            return f"crc32:{zlib.crc32(self._trace) & 0xFFFFFFFF:08x}"

    @property
    def finished(self) -> bool:
        """True once the job reached success, failed or canceled."""
        return self.state in TERMINAL_STATES

    def secret_values(self) -> list[tuple[str, str]]:
        """(name, value) of what must never reach the trace: masked variables and the job token."""
        found = [("CI_JOB_TOKEN", self._token)]
        for var in self.spec.variables:
            if var.get("masked") and isinstance(var.get("value"), str):
                found.append((str(var["key"]), var["value"]))
        return found

    # -- controls -----------------------------------------------------------------------------------

    def cancel(self) -> None:
        """Cancel gracefully: answers now say `Job-Status: canceling`; a queued job is canceled outright."""
        with self._cond:
            if self.state == "queued":
                self.state = "canceled"
            elif self.state in ("assigned", "running"):
                self.state = "canceling"
            self._cond.notify_all()

    def force_cancel(self) -> None:
        """Force-cancel: the job is `canceled`; trace PATCH and PUT now answer 403."""
        with self._cond:
            if self.state not in TERMINAL_STATES:
                self.state = "canceled"
            self._cond.notify_all()

    # -- waits ----------------------------------------------------------------------------------------

    def wait_for(self, predicate: Callable[[JobHandle], bool], timeout: float, what: str) -> None:
        """Block until `predicate(job)` holds (checked on every state change) or raise TimeoutError."""
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self), timeout):
                raise TimeoutError(
                    f"job {self.id}: {what} not reached within {timeout}s "
                    f"(state {self.state}, trace {len(self._trace)} bytes)"
                )

    def wait_assigned(self, timeout: float = 5.0) -> None:
        """Until a runner took the job (201 sent)."""
        self.wait_for(lambda j: j.runner_id is not None, timeout, "assignment")

    def wait_running(self, timeout: float = 5.0) -> None:
        """Until the runner confirmed with `PUT state=running`."""
        self.wait_for(lambda j: j.started, timeout, "state=running")

    def wait_status(self, *statuses: str, timeout: float = 5.0) -> str:
        """Until `status` is one of `statuses`; returns it."""
        self.wait_for(lambda j: j.status in statuses, timeout, f"status in {statuses}")
        return self.status

    def wait_finished(self, timeout: float = 10.0) -> str:
        """Until success, failed or canceled; returns the final status."""
        self.wait_for(lambda j: j.finished, timeout, "a final state")
        return self.status

    def wait_trace(self, text: str | bytes, timeout: float = 5.0) -> None:
        """Until the stored trace contains `text`."""
        needle = text.encode() if isinstance(text, str) else text
        self.wait_for(lambda j: needle in j._trace, timeout, "trace text")

    async def wait_finished_async(self, timeout: float = 10.0) -> str:
        """`wait_finished` for asyncio tests (waits in a worker thread, not on the event loop)."""
        return await asyncio.to_thread(self.wait_finished, timeout)

    async def wait_running_async(self, timeout: float = 5.0) -> None:
        """`wait_running` for asyncio tests."""
        await asyncio.to_thread(self.wait_running, timeout)

    # -- used by the server (caller holds the condition) ----------------------------------------------

    def _append_trace(self, data: bytes) -> None:
        self._trace += data

    def _truncate_trace(self, size: int) -> None:
        del self._trace[size:]

    def _trace_size(self) -> int:
        return len(self._trace)

    def _new_leaks(self, since: int) -> list[str]:
        """Names of secrets that appear in the trace in a region touching bytes from `since` on."""
        names: list[str] = []
        for name, value in self.secret_values():
            if not value or name in self._leaks_reported:
                continue
            needle = value.encode()
            window = self._trace[max(0, since - len(needle) + 1) :]
            if needle in window:
                self._leaks_reported.add(name)
                names.append(name)
        return names
