"""Container logs as the kubelet keeps them: timestamped lines per container instance, and pods/log reads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ._util import now_ns, rfc3339_nano


class ContainerLog:
    """One run of one container. A partial line is held until its newline (or the end), so long
    lines come back whole with a single timestamp, as CRI logs reassembled by the kubelet do."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.lines: list[tuple[int, bytes]] = []
        self.closed = False
        self._partial = b""
        self._partial_ts = 0
        self.on_line: Callable[[bytes], None] | None = None

    def feed(self, data: bytes) -> None:
        ts = now_ns()
        new: list[bytes] = []
        with self.cond:
            if not self._partial:
                self._partial_ts = ts
            buffer = self._partial + data
            *complete, rest = buffer.split(b"\n")
            for line in complete:
                self.lines.append((self._partial_ts, line + b"\n"))
                new.append(line)
                self._partial_ts = ts
            self._partial = rest
            if complete:
                self.cond.notify_all()
        if self.on_line is not None:
            for line in new:
                self.on_line(line)

    def close(self) -> None:
        with self.cond:
            if self._partial:
                self.lines.append((self._partial_ts, self._partial))
                self._partial = b""
            self.closed = True
            self.cond.notify_all()

    def text(self) -> str:
        with self.cond:
            return b"".join(line for _, line in self.lines).decode(errors="replace")


class LogStore:
    """Instances per (pod uid, container): the last one is current, the one before is `previous`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._logs: dict[tuple[str, str], list[ContainerLog]] = {}

    def new_instance(self, pod_uid: str, container: str) -> ContainerLog:
        log = ContainerLog()
        with self._lock:
            self._logs.setdefault((pod_uid, container), []).append(log)
        return log

    def current(self, pod_uid: str, container: str) -> ContainerLog | None:
        with self._lock:
            instances = self._logs.get((pod_uid, container))
            return instances[-1] if instances else None

    def previous(self, pod_uid: str, container: str) -> ContainerLog | None:
        with self._lock:
            instances = self._logs.get((pod_uid, container)) or []
            return instances[-2] if len(instances) >= 2 else None

    def drop_pod(self, pod_uid: str) -> None:
        with self._lock:
            for key in [k for k in self._logs if k[0] == pod_uid]:
                for log in self._logs.pop(key):
                    log.close()


@dataclass
class LogOptions:
    follow: bool = False
    timestamps: bool = False
    since_ns: int | None = None
    tail_lines: int | None = None
    limit_bytes: int | None = None


class Cut:
    """Sentinel a stream yields to make the server drop the connection without ending the body."""


CUT = Cut()


def read(
    log: ContainerLog,
    opts: LogOptions,
    should_stop: Callable[[], bool],
    cut_requested: Callable[[], bool] = lambda: False,
    heartbeat: float = 1.0,
) -> Iterator[bytes | Cut | None]:
    """Chunks for a pods/log answer: one line per chunk; None while waiting (a heartbeat)."""
    sent = 0

    def fmt(ts: int, line: bytes) -> bytes:
        return (rfc3339_nano(ts).encode() + b" " + line) if opts.timestamps else line

    with log.cond:
        selected = [
            (i, ts, line)
            for i, (ts, line) in enumerate(log.lines)
            if opts.since_ns is None or ts >= opts.since_ns
        ]
        if opts.tail_lines is not None:
            selected = selected[-opts.tail_lines :] if opts.tail_lines > 0 else []
        position = len(log.lines)
    pending = [fmt(ts, line) for _, ts, line in selected]
    while True:
        for chunk in pending:
            if opts.limit_bytes is not None:
                room = opts.limit_bytes - sent
                if room <= 0:
                    return
                chunk = chunk[:room]
            if cut_requested() and len(chunk) > 1:
                yield chunk[: len(chunk) // 2]
                yield CUT
                return
            sent += len(chunk)
            yield chunk
        pending = []
        if not opts.follow:
            return
        with log.cond:
            if position >= len(log.lines) and not log.closed:
                log.cond.wait(heartbeat)
            new = log.lines[position:]
            position = len(log.lines)
            finished = log.closed
        pending = [fmt(ts, line) for ts, line in new]
        if not pending:
            if finished or should_stop():
                return
            yield None


def wait_closed(log: ContainerLog, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    with log.cond:
        while not log.closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            log.cond.wait(remaining)
    return True
