"""The job log pipeline: what an executor writes, as GitLab receives it.

Every byte of a job's log passes through :class:`LogPipeline` before it leaves
the runner: invalid UTF-8 becomes U+FFFD, masked variable values and GitLab
tokens become ``[MASKED]``, and the log is cut (with a notice) at the output
limit. The pipeline is pure and I/O-free, so the same bytes come out however
the input is split into writes; :class:`JobTrace` puts it behind the small
writing API executors use (sections, coloured messages, command echoes).

Format reference: ``gitlab-runner-api.md``, section "The job log format".
"""

from __future__ import annotations

import codecs
import re
import string
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

__all__ = [
    "BOLD_CYAN",
    "BOLD_GREEN",
    "BOLD_RED",
    "CLEAR_LINE",
    "DEFAULT_LIMIT_BYTES",
    "MASK",
    "RESET",
    "TOKEN_PREFIXES",
    "YELLOW",
    "JobTrace",
    "LogPipeline",
    "command_echo",
    "header",
    "limit_notice",
    "section_end",
    "section_start",
]

CLEAR_LINE = "\x1b[0K"
RESET = "\x1b[0;m"
BOLD_GREEN = "\x1b[32;1m"
BOLD_CYAN = "\x1b[36;1m"
YELLOW = "\x1b[0;33m"
BOLD_RED = "\x1b[31;1m"

DEFAULT_LIMIT_BYTES = 4 * 1024 * 1024
MASK = b"[MASKED]"

# Prefixes of GitLab-issued tokens; the characters after one are a secret.
TOKEN_PREFIXES: tuple[str, ...] = (
    "glpat-",
    "gloas-",
    "gldt-",
    "glrt-",
    "glrtr-",
    "glcbt-",
    "glptt-",
    "glft-",
    "glimt-",
    "glagent-",
    "glsoat-",
    "glffct-",
    "GR1348941",
)

_SECTION_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def _encode(text: str) -> bytes:
    """UTF-8 that never raises: lone surrogates become bytes the pipeline turns into U+FFFD."""
    return text.encode("utf-8", "surrogatepass")


def _check_section_name(name: str) -> None:
    # GitLab only folds sections whose names match this; anything else shows up as raw text.
    if not _SECTION_NAME.fullmatch(name):
        raise ValueError(f"invalid log section name {name!r}: use only letters, digits, '_', '.' and '-'")


def section_start(name: str, ts: int, *, collapsed: bool = False) -> bytes:
    """The marker GitLab folds the log at; ``collapsed`` starts the section folded."""
    _check_section_name(name)
    options = "[collapsed=true]" if collapsed else ""
    return _encode(f"section_start:{ts}:{name}{options}\r{CLEAR_LINE}")


def section_end(name: str, ts: int) -> bytes:
    """The marker closing the section opened by :func:`section_start` with the same name."""
    _check_section_name(name)
    return _encode(f"section_end:{ts}:{name}\r{CLEAR_LINE}")


def header(runner_name: str, version: str, revision: str, short_token: str) -> bytes:
    """First lines of every job log, telling the user which runner ran the job.

    ``short_token`` should be the token's short form without its ``glrt-`` prefix
    (as gitlab-runner shows it); a prefixed token is masked by the pipeline.
    """
    return _encode(f"Running with kuberunner {version} ({revision})\n  on {runner_name} {short_token}\n")


def command_echo(cmd: str) -> bytes:
    """The bold-green ``$ cmd`` line shown before each script command runs."""
    return _encode(f"{BOLD_GREEN}$ {cmd}{RESET}\n")


def limit_notice(limit_bytes: int) -> bytes:
    """The notice appended where the log is cut at the output limit."""
    return _encode(
        f"\n{BOLD_RED}Job's log exceeded limit of {limit_bytes} bytes.\n"
        f"Job execution will continue but no more output will be collected.{RESET}\n"
    )


def _longest_first(value: bytes) -> tuple[int, bytes]:
    return (-len(value), value)


# Partial matches up to this length are looked up in a set; longer ones (only
# possible with very long masked values) are found with bytes.find.
_SHORT_PARTIAL = 64
# The sieve is derived from the byte counts of this many bytes, taken again every _RESAMPLE_EVERY bytes.
_SAMPLE_SIZE = 32 * 1024
_RESAMPLE_EVERY = 16 * 1024 * 1024
_DEFAULT_SIEVE = (string.ascii_lowercase + " \t\r\n").encode()
# Up to this size, a text is first searched for any value at all with one regular expression.
_PRECHECK_MAX = 128


def _any_of(needles: Iterable[bytes]) -> re.Pattern[bytes]:
    """A pattern that finds any of the needles (none: never matches)."""
    unique = sorted(set(needles), key=_longest_first)
    return re.compile(b"|".join(re.escape(n) for n in unique) if unique else b"(?!)")


class _Partials:
    """Finds the earliest point from which the end of a buffer may begin a needle.

    Holds the needles' prefixes; all of them that could end a buffer share the
    buffer's last two bytes, so only those lengths are tried (no byte loop).
    """

    __slots__ = ("_all", "_by_end", "_single")

    def __init__(self, prefixes: Iterable[bytes]) -> None:
        self._all = frozenset(prefixes)
        by_end: dict[bytes, set[int]] = {}
        for prefix in self._all:
            if len(prefix) >= 2:
                by_end.setdefault(prefix[-2:], set()).add(len(prefix))
        self._by_end = {end: tuple(sorted(lengths, reverse=True)) for end, lengths in by_end.items()}
        self._single = frozenset(p for p in self._all if len(p) == 1)

    def __contains__(self, text: bytes) -> bool:
        return text in self._all

    def first(self, buf: bytes, start: int) -> int:
        """Earliest q >= start with buf[q:] one of the prefixes; len(buf) if none."""
        n = len(buf)
        for length in self._by_end.get(buf[-2:], ()):
            q = n - length
            if q >= start and buf[q:] in self._all:
                return q
        if n > start and buf[-1:] in self._single:
            return n - 1
        return n


class _ValueMasker:
    """Replaces masked values in a stream of valid UTF-8 bytes.

    Semantics, identical however the stream is split: scanning left to right,
    at each position the longest value that starts there is replaced by
    ``[MASKED]``; scanning resumes after it. Only the shortest tail that could
    still be the start of a value is held back.

    Speed comes from a sieve: deleting the bytes that are common in the log
    (``bytes.translate``) keeps any occurrence of a value contiguous in the much
    smaller remainder, so the per-value ``in`` checks run on a fraction of the
    data; only values that really occur are then located with ``bytes.find``.
    """

    __slots__ = (
        "_any_direct",
        "_any_sifted",
        "_counts",
        "_direct",
        "_hold",
        "_long_values",
        "_sampled",
        "_short_partials",
        "_sieve",
        "_sifted",
        "_since_sample",
        "_tail",
        "_values",
    )

    def __init__(self) -> None:
        self._values: list[bytes] = []
        self._short_partials = _Partials(())
        self._long_values: list[bytes] = []
        self._hold = 0
        self._tail = b""
        self._sieve = _DEFAULT_SIEVE
        self._sifted: list[tuple[bytes, bytes]] = []
        self._direct: list[bytes] = []
        self._any_direct = self._any_sifted = _any_of(())
        self._counts = [0] * 256
        self._sampled = 0
        self._since_sample = _RESAMPLE_EVERY  # sample the first bytes seen

    @property
    def pending(self) -> int:
        return len(self._tail)

    @property
    def active(self) -> bool:
        return bool(self._values)

    def add(self, values: Iterable[bytes]) -> None:
        merged = set(self._values)
        merged.update(v for v in values if v)
        self._values = sorted(merged, key=_longest_first)
        self._short_partials = _Partials(
            v[:k] for v in self._values for k in range(1, min(len(v), _SHORT_PARTIAL + 1))
        )
        self._long_values = [v for v in self._values if len(v) > _SHORT_PARTIAL + 1]
        self._hold = max((len(v) for v in self._values), default=1) - 1
        self._resift()

    def drop(self) -> None:
        self._tail = b""

    def _resift(self) -> None:
        self._sifted = []
        self._direct = []
        for value in self._values:
            sifted = value.translate(None, self._sieve) if self._sieve else b""
            if sifted:
                self._sifted.append((value, sifted))
            else:  # made only of common bytes (or no sieve): nothing to sift on
                self._direct.append(value)
        self._any_direct = _any_of(self._direct)
        self._any_sifted = _any_of(s for _, s in self._sifted)

    def _sample(self, buf: bytes) -> None:
        """Count bytes (across writes, so small writes get a sieve too); then choose the sieve.

        The sieve is the bytes that make up most of this log, each at least 0.5 %.
        """
        part = buf[: _SAMPLE_SIZE - self._sampled]
        self._counts = [count + part.count(b) for b, count in enumerate(self._counts)]
        self._sampled += len(part)
        if self._sampled < _SAMPLE_SIZE:
            return
        counts, total = self._counts, self._sampled
        sieve = bytes(b for b in range(256) if counts[b] * 200 > total)
        kept = total - sum(counts[b] for b in sieve)
        # If the sieve would not shrink the text a lot, plain searches are cheaper.
        self._sieve = sieve if kept * 3 < total else b""
        self._counts = [0] * 256
        self._sampled = self._since_sample = 0
        self._resift()

    def _locate(self, buf: bytes) -> tuple[list[int], list[bytes]]:
        """First position of each value that occurs in buf (longest values first)."""
        self._since_sample += len(buf)
        if self._since_sample >= _RESAMPLE_EVERY:
            self._sample(buf)
        # On short text one regular-expression search beats a Python loop over the values.
        candidates: list[bytes] = []
        if self._direct and (len(buf) > _PRECHECK_MAX or self._any_direct.search(buf)):
            candidates += self._direct
        if self._sifted:
            small = buf.translate(None, self._sieve)
            if len(small) > _PRECHECK_MAX or self._any_sifted.search(small):
                candidates += [v for v, s in self._sifted if s in small]
        hits = [(at, v) for at, v in ((buf.find(v), v) for v in candidates) if at >= 0]
        hits.sort(key=lambda hit: _longest_first(hit[1]))
        return [at for at, _ in hits], [v for _, v in hits]

    def _first_partial(self, buf: bytes, start: int) -> int:
        """Earliest position >= start where the rest of buf may begin a value; len(buf) if none."""
        n = len(buf)
        best = n
        for value in self._long_values:
            # Partials longer than _SHORT_PARTIAL: find the value's head, then compare the rest.
            head = value[:_SHORT_PARTIAL]
            end = min(best, n - _SHORT_PARTIAL) + _SHORT_PARTIAL - 1
            q = buf.find(head, max(start, n - len(value) + 1), end)
            while q != -1:
                if value.startswith(buf[q:]):
                    best = q
                    break
                q = buf.find(head, q + 1, end)
        if best < n:
            return best
        return self._short_partials.first(buf, start)

    def process(self, data: bytes, final: bool) -> bytes:
        buf = self._tail + data if self._tail else data
        self._tail = b""
        if not buf:
            return b""
        n = len(buf)
        out: list[bytes] = []
        pos = 0
        starts, found = self._locate(buf)
        decided_before = n - self._hold  # a match starting earlier has seen all it needs to see
        while starts:
            # Leftmost occurrence; on a tie the first, i.e. longest, value wins.
            start = min(starts)
            if not final and start >= decided_before:
                held = self._first_partial(buf, pos)
                if held <= start:  # a longer value, or an earlier one, may still match here
                    out.append(buf[pos:held])
                    self._tail = buf[held:]
                    return b"".join(out)
            index = starts.index(start)
            out.append(buf[pos:start])
            out.append(MASK)
            pos = start + len(found[index])
            for i, value in enumerate(found):
                if starts[i] < pos:  # overlapped by this match: look again after it
                    starts[i] = buf.find(value, pos)
            while -1 in starts:
                i = starts.index(-1)
                del starts[i], found[i]
        held = len(buf) if final else self._first_partial(buf, pos)
        if pos == 0 and held == len(buf):
            return buf
        out.append(buf[pos:held])
        self._tail = buf[held:]
        return b"".join(out)


_TOKEN_CHARS = b"[A-Za-z0-9_-]"
_TOKEN_RE = re.compile(
    b"("
    + b"|".join(re.escape(p.encode()) for p in sorted(TOKEN_PREFIXES, key=len, reverse=True))
    + b")"
    + _TOKEN_CHARS
    + b"+"
)
_TOKEN_RUN = re.compile(_TOKEN_CHARS + b"*")
# Cheap pre-checks: most writes contain no token prefix at all.
_GL_PREFIX = re.compile(
    b"gl(?:" + b"|".join(re.escape(p[2:].encode()) for p in TOKEN_PREFIXES if p.startswith("gl")) + b")"
)
_OTHER_PREFIXES = tuple(p.encode() for p in TOKEN_PREFIXES if not p.startswith("gl"))
# A bare prefix at the end of a write is held too: the next byte decides whether it is a token.
_TOKEN_PARTIALS = _Partials(p.encode()[:k] for p in TOKEN_PREFIXES for k in range(1, len(p) + 1))
_TOKEN_HOLD = max(len(p) for p in TOKEN_PREFIXES)


class _TokenMasker:
    """Keeps a GitLab token's prefix and replaces the token characters after it by ``[MASKED]``.

    A prefix followed by no token character is left alone. Once a token has
    been seen, ``prefix[MASKED]`` is emitted at once and the rest of the run is
    swallowed as it arrives, so an endless token costs no memory.
    """

    __slots__ = ("_in_token", "_tail")

    def __init__(self) -> None:
        self._tail = b""
        self._in_token = False

    @property
    def pending(self) -> int:
        return len(self._tail)

    def drop(self) -> None:
        self._tail = b""

    def process(self, data: bytes, final: bool) -> bytes:
        buf = self._tail + data if self._tail else data
        self._tail = b""
        if self._in_token and buf:
            skipped = _TOKEN_RUN.match(buf)
            assert skipped is not None  # the pattern also matches the empty string
            if skipped.end() == len(buf):
                return b""
            self._in_token = False
            buf = buf[skipped.end() :]
        if not buf:
            return b""
        n = len(buf)
        out: list[bytes] = []
        pos = 0
        # Next candidate start for each way of finding a prefix; n when there is none.
        gl_next = other_next = -1
        while True:
            if gl_next < pos:
                found = _GL_PREFIX.search(buf, pos)
                gl_next = n if found is None else found.start()
            if other_next < pos:
                other_next = min(
                    (i for i in (buf.find(p, pos) for p in _OTHER_PREFIXES) if i >= 0), default=n
                )
            start = min(gl_next, other_next)
            if start >= n:
                break
            token = _TOKEN_RE.match(buf, start)
            if token is None and not final and n - start <= _TOKEN_HOLD and buf[start:] in _TOKEN_PARTIALS:
                break  # a bare prefix at the end: the next write decides
            if token is None:  # a prefix with no token characters after it stays as it is
                out.append(buf[pos : start + 1])
                pos = start + 1
                continue
            out.append(buf[pos:start])
            out.append(token.group(1))
            out.append(MASK)
            pos = token.end()
            if pos == n and not final:
                self._in_token = True  # the token may go on in the next write
                return b"".join(out)
        held = len(buf) if final else _TOKEN_PARTIALS.first(buf, pos)
        if pos == 0 and held == len(buf):
            return buf
        out.append(buf[pos:held])
        self._tail = buf[held:]
        return b"".join(out)


class LogPipeline:
    """Turns raw job output into the bytes GitLab may see; pure, no I/O.

    ``feed`` returns what can be emitted now (a possible start of a masked value
    or token is held back), ``finish`` returns the rest. The concatenated output
    does not depend on how the input was split. Stages, in order: UTF-8
    repair, masked values, token prefixes, output limit.
    """

    __slots__ = ("_bytesize", "_crc", "_decoder", "_finished", "_limit", "_tokens", "_truncated", "_values")

    def __init__(self, masked_values: Iterable[str], limit_bytes: int = DEFAULT_LIMIT_BYTES) -> None:
        if limit_bytes <= 0:
            raise ValueError(f"limit_bytes must be positive, got {limit_bytes}")
        self._limit = limit_bytes
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._values = _ValueMasker()
        self._tokens = _TokenMasker()
        self._bytesize = 0
        self._crc = 0
        self._truncated = False
        self._finished = False
        self.add_masked(*masked_values)

    def __repr__(self) -> str:
        return f"<LogPipeline bytesize={self._bytesize} truncated={self._truncated}>"

    @property
    def bytesize(self) -> int:
        """Bytes emitted so far, the notice included."""
        return self._bytesize

    @property
    def checksum(self) -> str:
        """``crc32:%08x`` over exactly the emitted bytes, as GitLab checks it."""
        return f"crc32:{self._crc:08x}"

    @property
    def truncated(self) -> bool:
        """Whether the output limit was hit (everything after the notice is dropped)."""
        return self._truncated

    @property
    def pending_bytes(self) -> int:
        """Bytes held back for now: less than the longest masked value plus 12 (token prefix, UTF-8)."""
        return len(self._decoder.getstate()[0]) + self._values.pending + self._tokens.pending

    def add_masked(self, *values: str) -> None:
        """Mask these values from now on (also in output still held back)."""
        encoded: list[bytes] = []
        for value in values:
            try:
                encoded.append(value.encode("utf-8"))
            except UnicodeEncodeError:
                # Lone surrogates never survive UTF-8 repair, so such a value cannot appear.
                continue
        self._values.add(encoded)

    def feed(self, data: bytes) -> bytes:
        """Process the next piece of output; returns the bytes that may be sent now."""
        if self._finished:
            raise RuntimeError("LogPipeline.feed() called after finish()")
        if self._truncated or not data:
            return b""
        if not isinstance(data, bytes):
            data = bytes(data)  # bytearray/memoryview from a stream reader
        if data.isascii() and not self._decoder.getstate()[0]:
            text = data
        else:
            text = self._decoder.decode(data).encode("utf-8")
        return self._emit(text, final=False)

    def finish(self) -> bytes:
        """Flush what was held back; the stream is over (later calls return nothing)."""
        if self._finished:
            return b""
        self._finished = True
        if self._truncated:
            return b""
        text = self._decoder.decode(b"", True).encode("utf-8")
        return self._emit(text, final=True)

    def _emit(self, text: bytes, final: bool) -> bytes:
        if self._values.active:
            text = self._values.process(text, final)
        text = self._tokens.process(text, final)
        if not text:
            return b""
        room = self._limit - self._bytesize
        if len(text) > room:
            cut = room
            while cut > 0 and (text[cut] & 0xC0) == 0x80:  # never split a UTF-8 character
                cut -= 1
            text = text[:cut] + limit_notice(self._limit)
            self._truncated = True
            self._decoder.reset()
            self._values.drop()
            self._tokens.drop()
        self._bytesize += len(text)
        self._crc = zlib.crc32(text, self._crc)
        return text


class JobTrace:
    """What executors write a job's log to: masked, limited, formatted, then sent to ``sink``.

    Not thread-safe by design: one job's log is written from one event loop.
    ``sink`` receives every emitted chunk (never an empty one) in order;
    ``bytesize``/``checksum`` describe exactly what it received.
    """

    __slots__ = ("_clock", "_pipeline", "_sections", "_sink")

    def __init__(
        self,
        sink: Callable[[bytes], None],
        masked_values: Iterable[str],
        *,
        limit_bytes: int = DEFAULT_LIMIT_BYTES,
        sections: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sink = sink
        self._pipeline = LogPipeline(masked_values, limit_bytes)
        self._sections = sections
        self._clock = clock

    def __repr__(self) -> str:
        return f"<JobTrace bytesize={self.bytesize} truncated={self.truncated}>"

    @property
    def bytesize(self) -> int:
        return self._pipeline.bytesize

    @property
    def checksum(self) -> str:
        return self._pipeline.checksum

    @property
    def truncated(self) -> bool:
        return self._pipeline.truncated

    def write(self, data: bytes) -> None:
        """Raw job output (e.g. a container's stdout), masked before it reaches the sink."""
        out = self._pipeline.feed(data)
        if out:
            self._sink(out)

    def add_masked(self, value: str) -> None:
        """Mask a secret learnt while the job runs, from now on."""
        self._pipeline.add_masked(value)

    def section_start(self, name: str, title: str | None = None, collapsed: bool = False) -> None:
        """Open a foldable section (marker only with trace sections) and show its title."""
        if self._sections:
            self.write(section_start(name, int(self._clock()), collapsed=collapsed))
        else:
            _check_section_name(name)
        if title is not None:
            self.write(_encode(f"{CLEAR_LINE}{BOLD_CYAN}{title}{RESET}\n"))

    def section_end(self, name: str) -> None:
        if self._sections:
            self.write(section_end(name, int(self._clock())))
        else:
            _check_section_name(name)

    @contextmanager
    def section(self, name: str, title: str | None = None, *, collapsed: bool = False) -> Iterator[None]:
        """Section around a block; it is closed even when the block raises."""
        self.section_start(name, title, collapsed)
        try:
            yield
        finally:
            self.section_end(name)

    def info(self, msg: str) -> None:
        self.write(_encode(f"{msg}\n"))

    def notice(self, msg: str) -> None:
        self.write(_encode(f"{BOLD_GREEN}{msg}{RESET}\n"))

    def warning(self, msg: str) -> None:
        self.write(_encode(f"{YELLOW}WARNING: {msg}{RESET}\n"))

    def error(self, msg: str) -> None:
        self.write(_encode(f"{BOLD_RED}ERROR: {msg}{RESET}\n"))

    def command(self, cmd: str) -> None:
        self.write(command_echo(cmd))

    def finish(self) -> None:
        """Send what the pipeline held back; safe to call more than once."""
        out = self._pipeline.finish()
        if out:
            self._sink(out)
