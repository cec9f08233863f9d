"""Streams a job's log to GitLab with ``PATCH /jobs/:id/trace``, never losing or repeating a byte.

The sender keeps every byte the log pipeline emitted (bounded by the job's
``output_limit``), and an offset: what GitLab confirmed it holds. Each tick it
sends the next slice (at most 1 MiB) from that offset. GitLab's ``Range``
answer moves the offset, also backwards after server-side loss (416), so a
resend always starts exactly where GitLab's copy ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from kuberunner.gitlab import GitLabClient, GitLabError, GitLabForbidden, GitLabNotFound

__all__ = ["MAX_PATCH_BYTES", "TraceSender"]

MAX_PATCH_BYTES = 1024 * 1024
DEFAULT_INTERVAL = 3.0
KEEPALIVE_AFTER = 30.0

log = logging.getLogger(__name__)


class TraceSender:
    """The sink of a job's :class:`~kuberunner.trace.JobTrace`, and its delivery loop.

    ``on_status`` is called with every ``Job-Status`` GitLab reports
    (``canceling``, ``canceled``, ...) so the job can react.
    """

    def __init__(
        self,
        client: GitLabClient,
        job_id: int,
        job_token: str,
        *,
        on_status: Callable[[str], None],
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self._client = client
        self._job_id = job_id
        self._token = job_token
        self._on_status = on_status
        self.interval = interval
        self._clock = clock
        self._buffer = bytearray()
        self.sent = 0  # bytes GitLab confirmed it holds
        self._closing = False
        self._last_contact = clock()
        self._task: asyncio.Task[None] | None = None
        self.forbidden = False  # GitLab refuses more log (force-cancel or size limit)
        self.patches = 0

    # -------------------------------------------------------------- the sink

    def append(self, data: bytes) -> None:
        """Called by the log pipeline with bytes already masked and limited."""
        if data:
            self._buffer += data

    @property
    def size(self) -> int:
        return len(self._buffer)

    @property
    def content(self) -> bytes:
        return bytes(self._buffer)

    # -------------------------------------------------------------- the loop

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"trace-{self._job_id}")

    async def _loop(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.interval)
            try:
                await self.send_once()
                if self._clock() - self._last_contact >= KEEPALIVE_AFTER:
                    await self._keepalive()
            except Exception:  # the loop must outlive any surprise; close() still delivers
                log.exception("job %d: the log sender hit an unexpected error", self._job_id)

    async def send_once(self) -> str:
        """Send the next slice if there is one.

        Returns ``"done"`` (GitLab holds everything, or refuses more),
        ``"progress"`` (GitLab answered with a position: send the next slice
        now) or ``"retry"`` (network error, 409, 5xx: try again later).
        """
        if self.forbidden or self.sent >= len(self._buffer):
            return "done"
        chunk = bytes(self._buffer[self.sent : self.sent + MAX_PATCH_BYTES])
        try:
            answer = await self._client.patch_trace(self._job_id, self._token, chunk, start=self.sent)
        except GitLabError as exc:
            log.warning("job %d: sending the log failed, will retry: %s", self._job_id, exc)
            return "retry"
        self.patches += 1
        self._last_contact = self._clock()
        if answer.update_interval:
            self.interval = max(0.0, answer.update_interval)
        if answer.job_status:
            self._on_status(answer.job_status)
        if answer.status == 403:
            self.forbidden = True
            return "done"
        if answer.status == 202:
            self.sent = answer.remote_size if answer.remote_size is not None else self.sent + len(chunk)
        elif answer.status == 416 and answer.remote_size is not None:
            # GitLab holds remote_size bytes: resume there (less than we sent after server-side loss).
            self.sent = answer.remote_size
        else:
            return "retry"
        self.sent = max(0, min(self.sent, len(self._buffer)))
        return "done" if self.sent >= len(self._buffer) else "progress"

    async def _keepalive(self) -> None:
        try:
            answer = await self._client.update_job(self._job_id, self._token, state="running")
        except (GitLabForbidden, GitLabNotFound):
            self._on_status("canceled")
            return
        except GitLabError as exc:
            log.warning("job %d: keep-alive failed: %s", self._job_id, exc)
            return
        self._last_contact = self._clock()
        if answer.job_status:
            self._on_status(answer.job_status)

    async def close(
        self, *, deadline: float = 600.0, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    ) -> bool:
        """Stop the loop and deliver everything left; True when GitLab holds the whole log.

        Keeps trying through network errors, 409 and 5xx until ``deadline``
        seconds pass: the log must reach GitLab before the final state is sent.
        """
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        give_up = self._clock() + deadline
        delay = 0.1
        while True:
            result = await self.send_once()
            if result == "done":
                return not self.forbidden or self.sent >= len(self._buffer)
            if result == "progress":
                delay = 0.1
                continue
            if self._clock() >= give_up:
                return False
            await sleep(min(delay, 5.0))
            delay *= 2
