"""A container's log into the job's trace: follow it, resume it when cut, turn markers into sections.

:class:`LogFollower` reads ``pods/log?follow=true&timestamps=true`` for one
container. Every line starts with the kubelet's RFC 3339 timestamp (UTC, 9
fractional digits) and a space; the timestamp is stripped before the line
goes on. When the stream is cut (the connection drops mid-stream, or the
server ends the body while the container still runs), the log is reopened
with ``sinceTime`` = the last timestamp seen. The API counts ``sinceTime``
from the start of that second, so lines before the last timestamp are
skipped, and at the last timestamp as many lines as were already emitted
there (several lines can share one timestamp): nothing is lost or repeated.
A last line without a newline is held back and only emitted at a clean end
(the container has terminated), since a cut line comes again whole.

Answers before the container runs: 400 ``... is waiting to start`` (the watch
has not caught up, or the image cannot be pulled) waits for the next pod
update; 204 (not scheduled) and an empty body are a clean end while the
container is not terminated, which waits for the watch too; 404 means the
pod is gone and ends the follow.

:class:`StageSections` receives the lines: marker lines of this job
(:func:`.driver.parse_marker`) become ``section_start``/``section_end`` with
the runner's clock, under gitlab-runner's titles, and are never forwarded;
neither are the lines of requests a relay carries out of the pod
(:mod:`.relay`), which go to its callback; everything else goes to
:meth:`JobTrace.write` unchanged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from kuberunner.executors.kubernetes.driver import Marker, parse_marker
from kuberunner.executors.kubernetes.outcomes import is_started, is_terminated
from kuberunner.executors.kubernetes.podwatch import PodWatch
from kuberunner.helper.relay import RelayedRequest, RelayError, RelayReader
from kuberunner.kube import KubeAPIError, KubeClient, KubeInvalid, KubeNotFound, KubeUnreachable
from kuberunner.script import stage_title
from kuberunner.trace import JobTrace

__all__ = ["LogFollower", "StageEnd", "StageSections", "split_timestamp", "timestamp_key"]

log = logging.getLogger(__name__)


def split_timestamp(line: bytes) -> tuple[str, bytes]:
    """(timestamp, rest) of a ``timestamps=true`` log line; ("", line) when it has none."""
    space = line.find(b" ", 0, 40)
    if space < 20:
        return "", line
    stamp = line[:space]
    if stamp[4:5] != b"-" or stamp[10:11] != b"T" or not stamp.endswith(b"Z"):
        return "", line
    return stamp.decode("ascii", "replace"), line[space + 1 :]


def timestamp_key(stamp: str) -> tuple[str, int] | None:
    """A sortable key of an RFC 3339 UTC timestamp (fractions of any length); None if unparsable."""
    if not stamp.endswith("Z") or len(stamp) < 20:
        return None
    seconds, _, fraction = stamp[:-1].partition(".")
    if len(seconds) != 19 or (fraction and not fraction.isdigit()):
        return None
    return seconds, int((fraction or "0")[:9].ljust(9, "0"))


# ----------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class StageEnd:
    """A stage's end as its driver reported it: exit code, and ``canceled``/``timeout`` if stopped."""

    stage: str
    exit_code: int
    note: str = ""


@dataclass
class StageSections:
    """Turns this job's marker lines into log sections; everything else is job output.

    ``on_end`` may return a warning to show at the end of a stage (inside its
    section), e.g. "after_script failed, but job will continue unaffected".
    """

    trace: JobTrace
    nonce: str
    on_end: Callable[[StageEnd], str | None] = lambda _: None
    ends: list[StageEnd] = field(default_factory=list)
    result: tuple[int, str] | None = None
    finished: set[str] = field(default_factory=set)  # containers whose driver printed its last line
    open_stage: str | None = None
    # kuberunner exec (executors.kubernetes.relay): requests the helper sends out, and damage
    relay: Callable[[RelayedRequest], None] | None = None
    relay_lost: Callable[[str], None] = lambda _: None
    _reader: RelayReader = field(default_factory=RelayReader)

    def line(self, content: bytes) -> None:
        """One log line (timestamp removed), newline included unless it is the last, partial one."""
        parsed = parse_marker(content, self.nonce)
        if parsed is None:
            self._output(content)
            return
        before, marker = parsed
        if before:
            self._output(before)
        self._marker(marker)

    def _output(self, data: bytes) -> None:
        self.trace.write(data)

    def _marker(self, marker: Marker) -> None:
        if marker.kind == "relay":
            if self.relay is not None:
                try:
                    request = self._reader.feed(marker.note)
                except RelayError as exc:
                    self.relay_lost(str(exc))
                    return
                if request is not None:
                    self.relay(request)
        elif marker.kind == "start":
            self.close()
            self.trace.section_start(marker.stage, stage_title(marker.stage))
            self.open_stage = marker.stage
        elif marker.kind == "end":
            end = StageEnd(marker.stage, marker.exit_code, marker.note)
            self.ends.append(end)
            warning = self.on_end(end)
            if warning:
                self.trace.warning(warning)
            if self.open_stage == marker.stage:
                self.trace.section_end(marker.stage)
                self.open_stage = None
        elif marker.kind == "result":
            self.result = (marker.exit_code, marker.note)
            self.finished.add("build")
        else:
            self.finished.add(marker.stage)

    def close(self) -> None:
        """End a section whose stage was cut off (the container was killed mid-stage)."""
        if self.open_stage is not None:
            self.trace.section_end(self.open_stage)
            self.open_stage = None

    def end_of(self, stage: str) -> StageEnd | None:
        return next((e for e in reversed(self.ends) if e.stage == stage), None)


# ----------------------------------------------------------------------------- follower


class LogFollower:
    """Follows one container's log to its end, whatever happens to the stream on the way.

    ``on_line`` gets each line once, in order. ``max_outage``: how long the
    log may stay unreadable (cut again and again without progress) before
    :meth:`run` gives up and sets :attr:`lost`. ``complete`` tells from the log
    itself that the container printed its last line (its driver's final
    marker): reading stops there, without waiting more than ``linger`` for
    the stream's end (a real API server ends it ~1 s after the exit) nor for
    the watch to report the exit.
    """

    def __init__(
        self,
        client: KubeClient,
        watch: PodWatch,
        container: str,
        on_line: Callable[[bytes], None],
        *,
        complete: Callable[[], bool] = lambda: False,
        linger: float = 0.1,
        settle: float = 3.0,
        max_outage: float = 120.0,
        first_retry: float = 0.05,
        max_retry: float = 2.0,
    ) -> None:
        self.client = client
        self.watch = watch
        self.container = container
        self.on_line = on_line
        self.complete = complete
        self.linger = linger
        self.settle = settle
        self.max_outage = max_outage
        self.first_retry = first_retry
        self.max_retry = max_retry
        self.lines = 0
        self.opens = 0
        self.lost: str | None = None  # why the rest of the log could not be read
        self._last_ts = ""
        self._at_last = 0  # lines already emitted with timestamp _last_ts
        self._skip_until: tuple[str, int] | None = None
        self._skip_left = 0
        self._partial = b""

    # -- the state the watch reports

    def _started(self, w: PodWatch) -> bool:
        return w.pod is not None and is_started(w.pod, self.container)

    def _terminated(self, w: PodWatch) -> bool:
        return w.pod is not None and is_terminated(w.pod, self.container)

    async def run(self) -> None:
        """Follow until the container has terminated and its log is read (or the pod is gone)."""
        loop = asyncio.get_running_loop()
        delay = self.first_retry
        outage_since: float | None = None
        while True:
            await self.watch.wait_until(lambda w: self._started(w) or w.done)
            if not self._started(self.watch) and self.watch.done:
                return  # the pod went away before this container ran
            seen = self.watch.events
            progress = self.lines
            try:
                await self._read()
            except KubeNotFound:
                self._flush()
                return  # the pod is gone: whatever was not read is lost with it
            except KubeInvalid as exc:
                if "waiting to start" not in exc.message:
                    self.lost = exc.message
                    return
                # started per our watch, not yet per the kubelet: wait for the next update
                await self.watch.wait_for_update(seen, timeout=self.settle)
                continue
            except KubeAPIError as exc:  # e.g. 403: the account may not read pods/log
                self.lost = exc.message or str(exc)
                return
            except KubeUnreachable as exc:
                if self.lines != progress:
                    outage_since, delay = None, self.first_retry
                outage_since = outage_since or loop.time()
                if loop.time() - outage_since > self.max_outage:
                    self.lost = str(exc)
                    return
                log.debug("log of %s cut, resuming from %s: %s", self.container, self._last_ts, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_retry)
                continue
            # a clean end: the container ended, or the server closed the stream while it runs
            if self.complete() or self._terminated(self.watch) or self.watch.done:
                self._flush()
                return
            await self.watch.wait_until(lambda w: self._terminated(w) or w.done, timeout=self.settle)
            if self._terminated(self.watch) or self.watch.done:
                self._flush()
                return
            if self.lines == progress:
                # nothing new and still running: do not hammer the API
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_retry)

    async def _read(self) -> None:
        """One request: emit complete lines as they come; keep a trailing partial line aside."""
        self.opens += 1
        self._partial = b""
        if self._last_ts:
            self._skip_until = timestamp_key(self._last_ts)
            self._skip_left = self._at_last
        buffer = b""
        stream = self.client.pod_log(self.watch.name, self.container, follow=True, since_time=self._last_ts)
        pieces = aiter(stream)
        try:
            while True:
                try:
                    if self.complete():
                        # the driver's last line was read: the body usually ends at once (and the
                        # connection can be reused); a server that keeps it open is not waited for
                        piece = await asyncio.wait_for(anext(pieces), self.linger)
                    else:
                        piece = await anext(pieces)
                except (StopAsyncIteration, TimeoutError):
                    break
                buffer += piece
                while True:
                    newline = buffer.find(b"\n")
                    if newline < 0:
                        break
                    self._line(buffer[: newline + 1])
                    buffer = buffer[newline + 1 :]
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        self._partial = buffer

    def _line(self, raw: bytes) -> None:
        stamp, content = split_timestamp(raw)
        key = timestamp_key(stamp) if stamp else None
        if self._skip_until is not None and key is not None:
            if key < self._skip_until:
                return
            if key == self._skip_until and self._skip_left > 0:
                self._skip_left -= 1
                return
            self._skip_until = None
        if stamp:
            if stamp == self._last_ts:
                self._at_last += 1
            else:
                self._last_ts, self._at_last = stamp, 1
        self.lines += 1
        self.on_line(content)

    def _flush(self) -> None:
        """Emit the partial last line: the stream ended cleanly, so it is complete as it is."""
        if self._partial:
            partial, self._partial = self._partial, b""
            self._line(partial)
