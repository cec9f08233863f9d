"""``kuberunner exec``: run a ``.gitlab-ci.yml`` on this machine, without GitLab.

Each job in scope becomes the payload GitLab would have sent
(:func:`kuberunner.pipeline.to_payload`) and runs through the same executor,
stage scripts, helper and :class:`~kuberunner.trace.JobTrace` log pipeline as a
production job; only GitLab itself is replaced:

- **Sources.** Every job gets its own copy of the project under
  ``<state_dir>/builds/<job slug>/`` and runs with ``GIT_STRATEGY=none``. The
  copy holds the files GitLab would see if you committed now: tracked files as
  they are on disk (uncommitted edits included, deleted files left out) plus
  untracked files that ``.gitignore`` does not exclude; ignored files (build
  output, ``node_modules``, the state directory) are not copied. When the
  project is the top of its git work tree, the copy is also a git repository
  (``git clone --shared``, HEAD detached at the commit, as GitLab checks it
  out), so ``git describe`` and friends work in jobs. A project that is not in
  a git repository at all is copied whole. A job whose ``GIT_STRATEGY`` is
  ``none`` gets an empty directory, as on GitLab.
- **Artifacts** go through :class:`ArtifactStore`, a local stand-in for GitLab's
  artifact endpoints, and reach only the jobs GitLab would give them to:
  ``dependencies:`` when set, else ``needs:`` entries with ``artifacts: true``
  (the default), else every job of an earlier stage. ``reports: dotenv``
  variables travel the same way.
- **Cache** lives in ``<state_dir>/cache`` and survives between runs.
- **Order.** Jobs start as soon as what they wait for is done (``needs:``, else
  the earlier stages), at most ``concurrency`` at a time. ``when``,
  ``allow_failure`` (``exit_codes`` too), ``retry`` (``max``, ``when``,
  ``exit_codes``) and ``timeout`` behave as on GitLab.

Job statuses are ``success``, ``failed``, ``warning`` (failed, allowed to fail),
``skipped``, ``manual`` (a ``when: manual`` job nobody triggered) and
``canceled``.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import fcntl
import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal

from kuberunner import REVISION, __version__

if TYPE_CHECKING:  # imported where used: `kuberunner exec` starts its helper and copies first
    from kuberunner.build import Build
    from kuberunner.config.schema import RunnerConfig
    from kuberunner.executors.base import Cancellation, Executor, JobOutcome
    from kuberunner.job import JobPayload
    from kuberunner.pipeline import (
        EnvironmentSpec,
        Pipeline,
        PipelineJob,
        PipelineVariable,
        ScopedJob,
        ScopedJobs,
    )
    from kuberunner.runner.artifact_store import ArtifactStore
    from kuberunner.runner.store_relay import StoreRelay
    from kuberunner.trace import JobTrace

__all__ = [
    "EXECUTORS",
    "HelperLauncher",
    "JobResult",
    "JobStatus",
    "LocalRunError",
    "PipelineResult",
    "Reporter",
    "RunStart",
    "SourceTree",
    "check_executor",
    "coverage_of",
    "kubernetes_runner",
    "list_sources",
    "populate",
    "preload_modules",
    "run_pipeline",
    "run_scoped",
]

JobStatus = Literal["success", "failed", "warning", "skipped", "manual", "canceled"]
EXECUTORS = ("shell", "kubernetes")

STATE_DIR_NAME = ".kuberunner"
_SECTION_MARKER = re.compile(r"section_(?:start|end):\d+:[A-Za-z0-9_.-]+(?:\[[^\]\r\n]*\])?\r(?:\x1b\[0K)?")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_GIT_TIMEOUT = 120.0
_TRASH = "trash"
_ZYGOTE_START_TIMEOUT = 10.0


class LocalRunError(Exception):
    """A local run cannot start (not a pipeline problem: see :class:`~kuberunner.pipeline.PipelineError`)."""


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class JobResult:
    """How one job of a local run ended."""

    name: str
    stage: str
    status: JobStatus
    #: seconds, all attempts together; None for a job that did not run.
    duration: float | None = None
    attempts: int = 0
    exit_code: int | None = None
    #: why it failed (the text after "Job failed:"), or why it did not run.
    reason: str = ""
    coverage: str | None = None
    #: the job's expanded environment, for a job that succeeded.
    environment: EnvironmentSpec | None = None
    #: the raw job log (as GitLab would store it), for a job that ran.
    log_path: Path | None = None
    #: other spellings of the name (gitlab-ci-local's, for ``parallel`` jobs).
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class PipelineResult:
    """Every job in scope, in pipeline order."""

    jobs: tuple[JobResult, ...]
    canceled: bool = False

    def get(self, name: str) -> JobResult | None:
        return next((j for j in self.jobs if j.name == name), None)

    @property
    def failed(self) -> list[JobResult]:
        """Jobs that failed and were not allowed to."""
        return [j for j in self.jobs if j.status == "failed"]

    @property
    def exit_code(self) -> int:
        """0 when no job that may not fail failed; 130 when interrupted; else 1."""
        if self.canceled:
            return 130
        return 1 if self.failed else 0


class Reporter:
    """What a local run tells its caller as it goes. Override what you need; all run in the event loop."""

    def pipeline_started(self, pipeline: Pipeline, scoped: ScopedJobs) -> None:
        """Before any job starts."""

    def job_started(self, job: PipelineJob, attempt: int, max_attempts: int) -> None:
        """A job (or a retry of it) starts."""

    def job_line(self, job: PipelineJob, line: str) -> None:
        """One line of the job's log as GitLab shows it: no section markers, ANSI colours kept."""

    def job_finished(self, job: PipelineJob, result: JobResult) -> None:
        """A job's final status, including jobs that were skipped or left manual."""


# --------------------------------------------------------------------------- log lines


class _LogLines:
    """Turns a job's trace bytes into the lines GitLab's log view shows (section markers removed)."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._partial = ""

    def feed(self, data: bytes) -> list[str]:
        text = self._partial + self._decoder.decode(data)
        *lines, self._partial = text.split("\n")
        return [self._render(line) for line in lines]

    def finish(self) -> list[str]:
        rest = self._partial + self._decoder.decode(b"", True)
        self._partial = ""
        return [self._render(rest)] if rest else []

    @staticmethod
    def _render(line: str) -> str:
        line = _SECTION_MARKER.sub("", line).rstrip("\r")
        if "\r" in line:  # a terminal shows what was written after the last carriage return
            line = line.rsplit("\r", 1)[1]
        return line


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def _coverage_regex(literal: str) -> re.Pattern[str] | None:
    """A ``coverage: /regex/flags`` value as a Python pattern (Ruby's ``m`` is Python's DOTALL)."""
    match = re.fullmatch(r"/(.*)/([a-z]*)", literal, re.DOTALL)
    if match is None:
        return None
    flags = 0
    for letter in match.group(2):
        flags |= {"i": re.IGNORECASE, "m": re.DOTALL, "x": re.VERBOSE}.get(letter, 0)
    try:
        return re.compile(match.group(1), flags)
    except re.error:
        return None


def coverage_of(regex: str, lines: Sequence[str]) -> str | None:
    """The coverage GitLab extracts from a log: scanning from the last line, the last group (or
    match) of the first line that matches, reduced to its first number."""
    pattern = _coverage_regex(regex)
    if pattern is None:
        return None
    for line in reversed(lines):
        found = pattern.findall(line)
        if not found:
            continue
        last = found[-1]
        text = last[-1] if isinstance(last, tuple) else last
        number = re.search(r"\d+(?:\.\d+)?", text)
        if number:
            return number.group(0)
    return None


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class SourceTree:
    """The files a job's copy of the project gets, listed once per run."""

    root: Path
    #: POSIX paths relative to ``root``: regular files and symlinks.
    files: tuple[str, ...]
    #: the commit the copy's git repository points at, when ``root`` is the top of a git work tree.
    git_sha: str | None = None


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        check=False,
        timeout=_GIT_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )


def _git_start(cwd: Path, *args: str) -> subprocess.Popen[bytes] | None:
    """Start a git command without waiting for it (None when git cannot be started)."""
    try:
        return subprocess.Popen(
            ["git", *args],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except OSError:
        return None


def _git_end(proc: subprocess.Popen[bytes] | None) -> subprocess.CompletedProcess[bytes] | None:
    """What a :func:`_git_start` command did (None when it did not start or timed out)."""
    if proc is None:
        return None
    try:
        out, err = proc.communicate(timeout=_GIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def list_sources(project_dir: Path, exclude: Collection[Path] = ()) -> SourceTree:
    """The files GitLab would see if the project were committed now (see the module docstring)."""
    root = project_dir.resolve()
    excluded = []
    for path in exclude:
        with contextlib.suppress(ValueError):
            excluded.append(path.resolve().relative_to(root).as_posix())
    excluded = [e for e in excluded if e not in ("", ".")]

    def kept(rel: str) -> bool:
        return not any(rel == e or rel.startswith(e + "/") for e in excluded)

    # two questions for git, asked at once: each answer is mostly git's start-up time. The
    # second prints the work tree's top, then HEAD's sha (exit 0) or nothing more (exit 1:
    # no commit yet); nothing at all outside a work tree.
    started = [
        _git_start(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "."),
        _git_start(root, "rev-parse", "--show-toplevel", "--verify", "-q", "HEAD"),
    ]
    listed, head = (_git_end(proc) for proc in started)
    if listed is not None and listed.returncode == 0:
        names = sorted({n for n in listed.stdout.decode("utf-8", "surrogateescape").split("\0") if n})
        files = [n for n in names if kept(n) and (os.path.islink(root / n) or (root / n).is_file())]
        git_sha = None
        if head is not None and head.returncode == 0:
            top, _, sha = head.stdout.rstrip(b"\n").rpartition(b"\n")
            if top and Path(os.fsdecode(top)).resolve() == root:
                git_sha = sha.decode().strip() or None
        return SourceTree(root, tuple(files), git_sha)
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = sorted(d for d in dirnames if d != ".git" and kept(prefix + d))
        for name in sorted(filenames):
            if kept(prefix + name):
                files.append(prefix + name)
        for name in dirnames:  # symlinks to directories are copied as links, not followed
            if os.path.islink(os.path.join(dirpath, name)):
                files.append(prefix + name)
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
    return SourceTree(root, tuple(sorted(files)), None)


def _clone_args(tree_root: Path, dest: Path) -> list[str]:
    return ["clone", "--shared", "--no-checkout", "--quiet", str(tree_root), str(dest)]


def _check(done: subprocess.CompletedProcess[bytes] | None, what: str) -> None:
    """Raise OSError with git's last line when ``done`` failed."""
    if done is None:
        raise OSError(f"git {what} failed: git did not run")
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise OSError(f"git {what} failed: {message[-1] if message else done.returncode}")


def _detach_at(dest: Path, sha: str) -> None:
    """HEAD detached at ``sha`` and the index at its tree, as GitLab checks a job out."""
    for args in (["update-ref", "--no-deref", "HEAD", sha], ["reset", "--quiet"]):
        _check(_git(dest, *args), args[0])


def _copy_files(tree: SourceTree, dest: Path) -> None:
    made: set[str] = set()
    for rel in tree.files:
        source = tree.root / rel
        target = dest / rel
        parent = os.path.dirname(rel)
        if parent and parent not in made:
            target.parent.mkdir(parents=True, exist_ok=True)
            made.add(parent)
        try:
            shutil.copy2(source, target, follow_symlinks=False)
        except FileNotFoundError:
            continue  # deleted since it was listed
        except IsADirectoryError:
            continue


def populate(tree: SourceTree, dest: Path) -> None:
    """Make ``dest`` a fresh copy of ``tree`` (a git repository at the commit when ``tree`` has one)."""
    if dest.exists() or dest.is_symlink():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if tree.git_sha is not None:
        _check(_git(dest.parent, *_clone_args(tree.root, dest)), "clone")
        _detach_at(dest, tree.git_sha)
    else:
        dest.mkdir()
    _copy_files(tree, dest)


def _populate_template(project_dir: Path, exclude: Path, dest: Path) -> tuple[SourceTree, Path | None]:
    """List the sources and make one copy of them at ``dest`` (which must not exist), for each
    job's copy to be copied from: one ``cp`` per job instead of three git commands and a copy
    of every file. The clone starts while the files are listed. The template is None when it
    could not be made (each job then makes its copy itself, and reports the failure)."""
    root = project_dir.resolve()
    dest.parent.mkdir(parents=True, exist_ok=True)
    clone = _git_start(dest.parent, *_clone_args(root, dest))  # wasted, and undone, without a commit
    tree = list_sources(project_dir, [exclude])
    cloned = _git_end(clone)
    try:
        if tree.git_sha is not None:
            _check(cloned, "clone")
            _detach_at(dest, tree.git_sha)
        else:
            if os.path.lexists(dest):
                shutil.rmtree(dest)
            dest.mkdir()
        _copy_files(tree, dest)
    except OSError:
        shutil.rmtree(dest, ignore_errors=True)
        return tree, None
    return tree, dest


async def _copy_tree(source: Path, dest: Path) -> None:
    """``dest`` as a copy of ``source`` (which it must not exist before): ``cp -a``, a process of
    its own that copies in C while the event loop goes on; Python's copy where cp fails."""
    _mkdirs(dest.parent)
    try:
        proc = await asyncio.create_subprocess_exec(
            "cp",
            "-a",
            "--",
            str(source),
            str(dest),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        code = await proc.wait()
    except OSError:
        code = -1
    if code != 0:
        await asyncio.to_thread(_copy_tree_slowly, source, dest)


def _copy_tree_slowly(source: Path, dest: Path) -> None:
    if os.path.lexists(dest):
        shutil.rmtree(dest)
    shutil.copytree(source, dest, symlinks=True)


# --------------------------------------------------------------------------- helper launcher

# The helper is a Python program whose start (interpreter plus httpx, click...) costs
# far more than the small archives of a local pipeline; a job calls it several times.
# For a local run, one "zygote" process imports it once and forks a child per call.
# Each call is still a separate ``kuberunner-helper`` process with the job's argv, working
# directory, environment, umask and stdin/stdout/stderr, and it dies with its caller: when
# the stage script is killed, the connection closes and so does the child.
#
# Two clients reach the zygote. The Python one passes its stdin/stdout/stderr over a UNIX
# socket (SCM_RIGHTS). The bash one, which starts in a sixth of the time, connects over
# loopback TCP with the run's secret token and its pid; the child then takes the caller's
# argv, environment, working directory, umask and stdin/stdout/stderr from /proc/<pid>
# (Linux). Only pipes and character devices can be opened again that way with the same
# meaning: for anything else (a regular file would lose its offset), and wherever /proc,
# bash or its /dev/tcp is missing, the bash client hands over to the Python one. Without
# fork or UNIX sockets, or if the zygote is gone (even with the call waiting for it: nothing
# ran until the zygote's child says "S"), the Python client runs the helper the ordinary way.

_ZYGOTE = r"""
import gc, hmac, os, select, signal, socket, stat, sys, threading, traceback
servers = [socket.socket(fileno=int(fd)) for fd in sys.argv[1:] if int(fd) >= 0]
tcp = servers[1] if len(servers) > 1 else None
token = b""
while not token.endswith(b"\n"):  # the first line on stdin: what a TCP caller must show
    chunk = os.read(0, 1)
    if not chunk:
        os._exit(0)
    token += chunk
token = token.strip()
os.write(1, b"R")  # ready: calls queue up from now on, while the import below runs
# httpx's own command line (and the terminal library it draws with) is no part of the helper:
# without it, httpx falls back to a stub `httpx.main`, and the import takes half the time.
sys.modules.setdefault("httpx._main", None)
from kuberunner.helper.cli import main as helper_main, preload_steps  # done once, for every child
# what commands load on first use (HTTP stack, trust store), loaded while no call waits
pending = preload_steps()
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # forked children are reaped by the kernel

def recv_exact(conn, size):
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data

def from_unix(conn):
    import array
    fds = array.array("i")
    head, ancdata, _, _ = conn.recvmsg(8, socket.CMSG_SPACE(3 * fds.itemsize))
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    if len(head) != 8 or len(fds) != 3:
        return None
    # cwd, umask, argc, argv..., NAME=value... as bytes, NUL-separated (see the client)
    fields = recv_exact(conn, int.from_bytes(head, "big")).split(b"\0")
    argc = int(fields[2])
    argv = [os.fsdecode(arg) for arg in fields[3 : 3 + argc]]
    env = [item.split(b"=", 1) for item in fields[3 + argc :]]
    return list(fds), fields[0], int(fields[1]), argv, env

def from_proc(conn):
    conn.settimeout(10)
    line = b""
    while not line.endswith(b"\n") and len(line) < 256:
        chunk = conn.recv(256 - len(line))
        if not chunk:
            raise EOFError
        line += chunk
    conn.settimeout(None)
    shown, pid, argc, err = line.split()  # err: the caller's fd that holds its stderr
    if not hmac.compare_digest(shown, token):
        raise PermissionError("wrong token")
    base = "/proc/%d" % int(pid)
    argc = int(argc)
    fds = []
    try:  # an OSError (no /proc mounted here, say): the caller hands over
        with open(base + "/cmdline", "rb") as f:
            cmdline = f.read().split(b"\0")[:-1]
        argv = [os.fsdecode(arg) for arg in cmdline[len(cmdline) - argc :]] if argc else []
        with open(base + "/environ", "rb") as f:
            env = [item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item]
        with open(base + "/status", "rb") as f:
            umask = [int(l.split()[1], 8) for l in f if l.startswith(b"Umask:")]
        for number, flags in ((0, os.O_RDONLY), (1, os.O_WRONLY), (int(err), os.O_WRONLY)):
            path = "%s/fd/%d" % (base, number)
            mode = os.stat(path).st_mode
            if not (stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)):
                raise OSError("not a pipe or a device: only the descriptor itself would do")
            fds.append(os.open(path, flags))
        if not umask:
            raise OSError("no umask in /proc")
    except OSError:
        for fd in fds:
            os.close(fd)
        return None
    return fds, base.encode() + b"/cwd", umask[0], argv, env

def serve(conn, by_tcp):
    request = from_proc(conn) if by_tcp else from_unix(conn)
    if request is None:
        if by_tcp:  # the caller hands over to the Python client
            conn.sendall(b"F\n")
            return 0
        return 70
    fds, cwd, umask, argv, env = request
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(cwd)
    os.environb.clear()
    os.environb.update(env)
    os.umask(umask)
    def watch():  # the caller went away (killed with its stage script): so do we
        conn.recv(1)
        os.kill(os.getpid(), signal.SIGKILL)
    threading.Thread(target=watch, daemon=True).start()
    conn.sendall(b"S\n" if by_tcp else b"S")  # the call is the helper's from here on
    try:
        helper_main(args=argv, prog_name="kuberunner-helper")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    conn.sendall(b"%d\n" % code if by_tcp else code.to_bytes(4, "big", signed=True))
    return code

while True:
    ready, _, _ = select.select([*servers, sys.stdin], [], [], 0 if pending else None)
    if not ready:
        try:
            pending.pop(0)()
        except Exception:
            pass  # the helper command that needs it reports the error
        continue
    if sys.stdin in ready and not os.read(sys.stdin.fileno(), 1):
        # the runner closed our stdin: the run is over (or the runner died). Nothing to
        # flush or clean up here, and tearing the interpreter down would only cost time.
        os._exit(0)
    for server in servers:
        if server not in ready:
            continue
        conn, _ = server.accept()
        gc.freeze()  # a child's collections then leave the inherited objects (and their pages) alone
        if os.fork() == 0:
            code = 70
            try:
                for other in servers:
                    other.close()
                for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
                    signal.signal(sig, signal.SIG_DFL)
                code = serve(conn, server is tcp)
            except BaseException:
                traceback.print_exc()
            os._exit(code & 0xFF)
        conn.close()
"""

# Only built-in modules: the client starts for every call, and ``socket``/``json`` would
# double its start-up time.
_CLIENT = r"""
import _socket, os, sys
PATH = {path!r}
FALLBACK = {fallback!r}
argv = sys.argv[1:]
conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
try:
    conn.connect(PATH)
except OSError:
    os.execv(FALLBACK[0], FALLBACK + argv)
umask = os.umask(0)
os.umask(umask)
env = [key + b"=" + value for key, value in os.environb.items()]
body = b"\0".join([os.getcwdb(), b"%d" % umask, b"%d" % len(argv), *map(os.fsencode, argv), *env])
fds = b"".join(fd.to_bytes(4, sys.byteorder) for fd in (0, 1, 2))
def receive(size):
    data = b""
    while len(data) < size:
        try:
            chunk = conn.recv(size - len(data))
        except OSError:  # reset: the zygote died with the call queued
            chunk = b""
        if not chunk:
            return None
        data += chunk
    return data
try:
    conn.sendmsg([len(body).to_bytes(8, "big")], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
    conn.sendall(body)
    started = receive(1)
except OSError:
    started = None
if started is None:  # the zygote went before the helper started: nothing ran
    conn.close()
    os.execv(FALLBACK[0], FALLBACK + argv)
code = receive(4)
if code is None:
    sys.stderr.write("ERROR: kuberunner-helper stopped unexpectedly\n")
    sys.exit(1)
sys.exit(int.from_bytes(code, "big", signed=True))
"""

# Bash's /dev/tcp, its pid, its argument count and where its stderr is: the zygote's child
# reads the rest in /proc.
# A job's environment must not change what this script does: -p ignores BASH_ENV, exported
# functions and SHELLOPTS; POSIXLY_CORRECT would make a failed connection fatal, and TMOUT
# would time the wait out (both only for this shell: the helper gets the job's environment).
_BASH_CLIENT = r"""#!{bash} -p
# kuberunner-helper, run by this kuberunner exec's helper zygote (kuberunner.runner.local)
set +o posix
unset TMOUT
# The caller's stderr waits in fd 9, where the zygote's child takes it from, and bash's own
# (complaints about a zygote gone) goes nowhere. Redirected for one command instead, fd 2
# could be /dev/null just when the child looks.
exec 9>&2 2>/dev/null
{{ exec 3<>/dev/tcp/127.0.0.1/{port}; }} || exec 2>&9 9>&- {python} "$@"
printf '%s %s %s 9\n' {token} "$$" "$#" >&3 || exec 3>&- 2>&9 9>&- {python} "$@"
# the helper starts (S), or the call goes to the Python client: handed over (F), zygote gone
IFS= read -r -u 3 reply && [ "$reply" = S ] || exec 3>&- 2>&9 9>&- {python} "$@"
IFS= read -r -u 3 reply || {{ echo "ERROR: kuberunner-helper stopped unexpectedly" >&9; exit 1; }}
exit "$reply"
"""


class HelperLauncher:
    """Runs ``kuberunner-helper`` commands by forking a process that has it imported already.

    ``await start()`` returns the helper command for :meth:`Build.create`; ``await stop()``
    ends the zygote. The command works the ordinary way (``fallback``, by default
    :func:`~kuberunner.build.default_helper_command`) when the zygote is not there.
    ``spawn()``, ``command()`` and ``ready()`` are ``start()`` in parts, for a caller with
    other work to do while the zygote starts.
    """

    def __init__(self, fallback: Sequence[str] | None = None) -> None:
        self.fallback = list(fallback) if fallback is not None else None
        self._dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._command: list[str] | None = None
        self._ready = False
        self._token = ""
        self._port: int | None = None

    @staticmethod
    def supported() -> bool:
        return hasattr(os, "fork") and hasattr(socket, "AF_UNIX")

    @property
    def pid(self) -> int | None:
        """The zygote's process id while it runs."""
        return self._process.pid if self._process is not None else None

    async def start(self) -> list[str]:
        """Start the zygote and wait until it takes calls; returns the helper command."""
        self.spawn()
        command = self.command()
        await self.ready()
        return command

    def spawn(self) -> None:
        """Start the zygote (once), without waiting for it: calls queue up until it listens."""
        if self._process is not None:
            return
        import tempfile

        # AF_UNIX paths are short (108 bytes): a private directory under the temp dir
        self._dir = Path(tempfile.mkdtemp(prefix="kuberunner-helper-"))
        self._ready = False
        self._command = None
        self._token = secrets.token_hex(16)
        with contextlib.ExitStack() as sockets:
            unix = sockets.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
            unix.bind(str(self._dir / "helper.sock"))
            unix.listen(128)
            tcp = sockets.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            try:
                tcp.bind(("127.0.0.1", 0))
                tcp.listen(128)
                self._port, tcp_fd = tcp.getsockname()[1], tcp.fileno()
            except OSError:  # no loopback: the Python client only
                self._port, tcp_fd = None, -1
            fds = [unix.fileno(), tcp_fd]
            # -P: the working directory (a project, as a rule) is not on sys.path, so none of
            # its modules stands in for the helper's (the installed helper never sees them)
            self._process = subprocess.Popen(
                [sys.executable, "-P", "-c", _ZYGOTE, *map(str, fds)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                pass_fds=[fd for fd in fds if fd >= 0],
            )
        assert self._process.stdin is not None
        self._process.stdin.write(self._token.encode() + b"\n")
        self._process.stdin.flush()

    def command(self) -> list[str]:
        """The helper command (after :meth:`spawn`)."""
        if self._command is None:
            assert self._dir is not None, "spawn() first"
            if self.fallback is None:
                from kuberunner.build import default_helper_command

                self.fallback = default_helper_command()
            client = self._dir / "helper-client.py"
            sock = self._dir / "helper.sock"
            client.write_text(_CLIENT.format(path=str(sock), fallback=self.fallback), encoding="utf-8")
            python = [sys.executable, "-I", "-S", str(client)]
            self._command = python
            bash = shutil.which("bash")
            if bash is not None and self._port is not None and sys.platform == "linux":
                script = self._dir / "helper-client.sh"
                text = _BASH_CLIENT.format(
                    bash=bash, port=self._port, token=shlex.quote(self._token), python=shlex.join(python)
                )
                fd = os.open(script, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o700)
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(text)
                self._command = [str(script)]
        return self._command

    async def ready(self) -> None:
        """Wait until the zygote takes calls (if it never does, calls run the ordinary helper)."""
        process = self._process
        if process is None or self._ready:
            return
        self._ready = True
        assert process.stdout is not None
        if not await asyncio.to_thread(_read_byte, process.stdout, _ZYGOTE_START_TIMEOUT):
            # stuck, its sockets would hold calls forever (or dead already): once it is gone,
            # calls find nothing to connect to and run the ordinary helper
            process.kill()
            await asyncio.to_thread(process.wait)

    async def stop(self) -> None:
        await asyncio.to_thread(self._stop)

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            _end_zygote(process)
        directory, self._dir = self._dir, None
        if directory is not None:
            shutil.rmtree(directory, True)  # the socket and the client


def _read_byte(stream: IO[bytes], timeout: float) -> bool:
    """Read the byte the zygote writes once it listens (at most ``timeout`` seconds' wait);
    False if it did not come."""
    import select

    readable, _, _ = select.select([stream], [], [], timeout)
    return bool(readable) and os.read(stream.fileno(), 1) == b"R"


def _end_zygote(process: subprocess.Popen[bytes]) -> None:
    """Close the zygote's stdin, which ends it, and reap it (killed if it lingers)."""
    if process.stdin is not None:
        process.stdin.close()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()


# --------------------------------------------------------------------------- state dir


class _StateDir:
    """The state directory, locked for one run (two runs would share the jobs' directories)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock: IO[str] | None = None

    def acquire(self) -> int:
        """Create and lock the directory; returns this run's pipeline number (one more than the last)."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            ignore = self.path / ".gitignore"
            if not ignore.exists():  # keeps the state out of `git status` and out of the jobs' copies
                ignore.write_text("# kuberunner exec's state: builds, cache, logs\n*\n", encoding="utf-8")
            lock = (self.path / "lock").open("a+", encoding="utf-8")
        except OSError as exc:
            raise LocalRunError(
                f"cannot use the state directory {self.path}: {exc.strerror} "
                "(choose another with --state-dir)"
            ) from None
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise LocalRunError(
                f"another kuberunner exec is running with the state directory {self.path}; "
                "wait for it, or give this run another --state-dir"
            ) from None
        self._lock = lock
        counter = self.path / "pipeline-id"
        try:
            number = int(counter.read_text(encoding="utf-8").strip()) + 1
        except (OSError, ValueError):
            number = 1
        counter.write_text(f"{number}\n", encoding="utf-8")
        return number

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing drops the flock
            self._lock = None


# --------------------------------------------------------------------------- the run


class _Trash:
    """Directories a run no longer wants, deleted in the background.

    A job's directory from the previous run is moved aside (one rename) rather than
    deleted before the job can start; :meth:`sweep` deletes what was moved aside, in
    processes of their own, and the run waits for them at its end.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._tasks: set[asyncio.Task[None]] = set()
        self._deleting: set[str] = set()

    def discard(self, path: Path) -> None:
        """Move ``path`` (if it exists) into the trash; where it cannot be moved, it stays put
        (and the caller deletes it as before)."""
        _set_aside(path, self.root, delete=False)

    def sweep(self) -> None:
        """Start deleting what is in the trash (also what an earlier run left there)."""
        try:
            names = os.listdir(self.root)
        except OSError:
            return
        for name in names:
            if name not in self._deleting:
                self._deleting.add(name)
                task = asyncio.create_task(_delete_tree(self.root / name))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def wait(self) -> None:
        """Delete what is left in the trash, and wait for the deletions under way."""
        self.sweep()
        while self._tasks:
            await asyncio.wait(set(self._tasks))


async def _delete_tree(path: Path) -> None:
    """``rm -rf``: a process of its own, which deletes while this one goes on undisturbed
    (a thread here would compete with the event loop); Python's rmtree where rm fails."""
    try:
        proc = await asyncio.create_subprocess_exec(
            "rm",
            "-rf",
            "--",
            str(path),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        code = await proc.wait()
    except OSError:
        code = -1
    if code != 0:
        await asyncio.to_thread(_remove, path)


def _remove(path: Path) -> None:
    if path.is_symlink():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


@dataclass(frozen=True)
class _Sources:
    """What every job's copy of the project is made from: the listed files, and one copy of them."""

    tree: SourceTree
    #: a copy of ``tree`` (a git repository when it has a commit); None when it could not be made
    template: Path | None

    @classmethod
    def make(cls, project_dir: Path, state_dir: Path) -> _Sources:
        """List the project's files (the state directory left out) and copy them once, to
        ``<state_dir>/sources`` (the previous run's copy is moved into the trash)."""
        template = state_dir / "sources"
        _set_aside(template, state_dir / _TRASH)
        tree, made = _populate_template(project_dir, state_dir, template)
        return cls(tree, made)


def _set_aside(path: Path, trash: Path, *, delete: bool = True) -> None:
    """Move ``path`` (if it exists) into ``trash``, for :meth:`_Trash.sweep` to delete; where it
    cannot be moved, delete it at once (``delete``) or leave it."""
    if not os.path.lexists(path):
        return
    try:
        trash.mkdir(parents=True, exist_ok=True)
        os.rename(path, trash / f"{path.name}-{secrets.token_hex(4)}")
    except OSError:
        if delete:
            _remove(path)


def _mkdirs(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)


def _exists(path: str) -> bool:
    return os.path.lexists(path)


@dataclass
class _Slot:
    """A job's bookkeeping during the run."""

    scoped: ScopedJob
    job_id: int
    slug: str
    token: str = field(default_factory=lambda: "glcbt-" + secrets.token_hex(16), repr=False)
    result: JobResult | None = None
    ran: bool = False  # started at least once (its artifacts may exist)
    no_sources: bool = False  # GIT_STRATEGY: none — an empty project directory, as on GitLab

    @property
    def job(self) -> PipelineJob:
        return self.scoped.job


_RETRY_REASONS: dict[str, tuple[str, ...]] = {
    "script_failure": ("script_failure",),
    "job_execution_timeout": ("job_execution_timeout", "stuck_or_timeout_failure"),
    "runner_system_failure": ("runner_system_failure",),
    "runner_configuration_error": ("script_failure",),
    "runner_external_dependency_failure": ("runner_system_failure",),
    "image_pull_failure": ("runner_system_failure",),
    "unknown_failure": ("unknown_failure",),
}


class _Run:
    def __init__(
        self,
        pipeline: Pipeline,
        scoped: ScopedJobs,
        *,
        state_dir: Path,
        cache_dir: Path,
        concurrency: int,
        executor: Executor,
        store: ArtifactStore,
        reporter: Reporter,
        cancel: Cancellation,
        helper_command: list[str] | None,
        sources: _Sources | None = None,
        trash: _Trash | None = None,
        runner: RunnerConfig | None = None,
    ) -> None:
        from kuberunner.config.schema import RunnerConfig
        from kuberunner.pipeline.gitdata import slugify

        self.pipeline = pipeline
        self.scoped = scoped
        self.state_dir = state_dir
        self.cache_dir = cache_dir
        self.executor = executor
        self.store = store
        self.reporter = reporter
        self.cancel = cancel
        self.helper_command = helper_command
        self.limit = asyncio.Semaphore(max(concurrency, 1))
        local = {"name": socket.gethostname() or "localhost", "url": store.url, "token": "local"}
        if runner is None:
            self.runner = RunnerConfig.model_validate({**local, "executor": executor.name})
        else:
            self.runner = runner.model_copy(update={**local, "executor": executor.name})
        self.relay: StoreRelay | None = None
        if executor.name == "kubernetes":
            from kuberunner.executors.kubernetes import KubernetesExecutor
            from kuberunner.runner.store_relay import StoreRelay
            from kuberunner.runner.system_id import load_or_create_system_id

            self.relay = StoreRelay(store.url, self._pack_sources, self._wants_sources)
            if isinstance(executor, KubernetesExecutor):
                if executor.relay is None:
                    executor.relay = self.relay
                if not executor.system_id:
                    # the state directory's own id: the first job removes what a killed run of this
                    # directory left in the cluster (the directory is locked: no run of it is alive)
                    executor.system_id = load_or_create_system_id(state_dir / "config.toml")
        self.slots: dict[str, _Slot] = {}
        used: set[str] = set()
        for index, sj in enumerate(scoped.jobs, 1):
            slug = slugify(sj.job.name) or "job"
            unique, n = slug, 2
            while unique in used:
                unique, n = f"{slug}-{n}", n + 1
            used.add(unique)
            self.slots[sj.job.name] = _Slot(sj, job_id=index, slug=unique)
        self.next_id = len(self.slots) + 1
        self.finished: dict[str, asyncio.Future[JobStatus]] = {}
        self.sources = sources
        self.trash = trash if trash is not None else _Trash(state_dir / _TRASH)

    # ------------------------------------------------------------------ schedule

    async def run(self) -> PipelineResult:
        loop = asyncio.get_running_loop()
        if self.sources is None:
            self.sources = await asyncio.to_thread(_Sources.make, self.pipeline.project_dir, self.state_dir)
            self.trash.sweep()  # the previous run's copy of the sources
        self.finished = {name: loop.create_future() for name in self.slots}
        self.reporter.pipeline_started(self.pipeline, self.scoped)
        tasks = []
        for slot in self.slots.values():
            if slot.scoped.state == "manual":
                self._finish(
                    slot, JobResult(slot.job.name, slot.job.stage, "manual", aliases=slot.job.aliases)
                )
            else:
                tasks.append(asyncio.create_task(self._job(slot), name=f"job {slot.job.name}"))
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            self.cancel.abort("kuberunner exec was stopped")
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        results = tuple(s.result for s in self.slots.values() if s.result is not None)
        return PipelineResult(results, canceled=self.cancel.requested)

    def _finish(self, slot: _Slot, result: JobResult) -> None:
        slot.result = result
        future = self.finished[slot.job.name]
        if not future.done():
            future.set_result(result.status)
        self.reporter.job_finished(slot.job, result)

    async def _job(self, slot: _Slot) -> None:
        job = slot.job
        try:
            statuses = [await self.finished[name] for name in slot.scoped.waits_for if name in self.finished]
            why_not = self._why_not(job, statuses)
            if why_not is None and self.cancel.requested:
                why_not = "the pipeline was canceled"
            if why_not is not None:
                status: JobStatus = "canceled" if self.cancel.requested else "skipped"
                self._finish(
                    slot, JobResult(job.name, job.stage, status, reason=why_not, aliases=job.aliases)
                )
                return
            async with self.limit:
                if self.cancel.requested:
                    self._finish(
                        slot,
                        JobResult(
                            job.name,
                            job.stage,
                            "canceled",
                            reason="the pipeline was canceled",
                            aliases=job.aliases,
                        ),
                    )
                    return
                self._finish(slot, await self._run_with_retries(slot))
        finally:
            if slot.result is None:  # cancelled from outside while waiting or running
                self._finish(
                    slot, JobResult(job.name, job.stage, "canceled", reason="stopped", aliases=job.aliases)
                )

    @staticmethod
    def _why_not(job: PipelineJob, statuses: Sequence[JobStatus]) -> str | None:
        """Why ``job`` does not run given what it waits for (GitLab's rules), or None when it runs."""
        failed = any(s in ("failed", "canceled") for s in statuses)
        if job.trigger is not None:
            return "trigger jobs start downstream pipelines, which do not run locally"
        if job.when == "always":
            return None
        if job.when == "on_failure":
            return None if failed else "when: on_failure, and nothing it waits for failed"
        if failed:
            return "a job it waits for failed"
        if job.needs is not None and "skipped" in statuses:
            return "a job it needs was skipped"
        return None

    # ------------------------------------------------------------------ one job

    async def _run_with_retries(self, slot: _Slot) -> JobResult:
        job = slot.job
        attempts = 0
        total = 0.0
        max_attempts = job.retry.max + 1
        lines: list[str] = []
        log_path = self.state_dir / "logs" / f"{slot.slug}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as log:
            while True:
                attempts += 1
                if attempts > 1:
                    slot.job_id, self.next_id = self.next_id, self.next_id + 1
                    slot.token = "glcbt-" + secrets.token_hex(16)
                    lines.clear()
                self.reporter.job_started(job, attempts, max_attempts)
                started = time.monotonic()
                outcome = await self._attempt(slot, log, lines)
                total += time.monotonic() - started
                if outcome.state == "success" or attempts >= max_attempts or self.cancel.requested:
                    break
                if not self._retryable(job, outcome):
                    break
        return self._result(slot, outcome, attempts, total, lines, log_path)

    @staticmethod
    def _retryable(job: PipelineJob, outcome: JobOutcome) -> bool:
        reasons = _RETRY_REASONS.get(outcome.failure_reason or "script_failure", ())
        if not reasons:  # canceled jobs are not retried
            return False
        when_ok = "always" in job.retry.when or any(r in job.retry.when for r in reasons)
        codes_ok = not job.retry.exit_codes or outcome.exit_code in job.retry.exit_codes
        return when_ok and codes_ok

    def _result(
        self, slot: _Slot, outcome: JobOutcome, attempts: int, duration: float, lines: list[str], log: Path
    ) -> JobResult:
        from kuberunner.runner.outcome import final_line

        job = slot.job
        status: JobStatus
        if outcome.state == "success":
            status = "success"
        elif self.cancel.requested and outcome.failure_reason == "runner_interrupted":
            status = "canceled"
        elif job.allow_failure or (
            outcome.exit_code is not None and outcome.exit_code in job.allow_failure_exit_codes
        ):
            status = "warning"
        else:
            status = "failed"
        coverage = coverage_of(job.coverage, [strip_ansi(line) for line in lines]) if job.coverage else None
        return JobResult(
            name=job.name,
            stage=job.stage,
            status=status,
            duration=duration,
            attempts=attempts,
            exit_code=outcome.exit_code,
            reason="" if outcome.state == "success" else final_line(outcome)[0].removeprefix("Job failed: "),
            coverage=coverage,
            environment=job.environment if status == "success" else None,
            log_path=log,
            aliases=job.aliases,
        )

    async def _attempt(self, slot: _Slot, log: IO[bytes], lines: list[str]) -> JobOutcome:
        from kuberunner.build import BuildConfigError
        from kuberunner.executors.base import BuildError, JobOutcome
        from kuberunner.runner.outcome import final_line
        from kuberunner.trace import JobTrace, header

        job = slot.job
        renderer = _LogLines()

        def sink(data: bytes) -> None:
            log.write(data)
            for line in renderer.feed(data):
                lines.append(line)
                self.reporter.job_line(job, line)

        slot.ran = True
        self.store.register_job(slot.job_id, slot.token)
        trace = JobTrace(sink, [slot.token], limit_bytes=self.runner.output_limit * 1024, sections=True)
        trace.write(header(self.runner.name, __version__, REVISION, self.runner.short_token))
        try:
            payload = self._payload(slot)
            for secret in payload.masked_values:
                trace.add_masked(secret)
            build = self._build(slot, payload)
            await self._prepare_sources(slot, build)
            outcome = await self.executor.run(build, trace, self.cancel)
            if self.relay is not None:
                outcome = await self._deliver(slot, trace, outcome)
        except BuildConfigError as exc:
            outcome = JobOutcome.failed("runner_configuration_error", str(exc))
        except BuildError as exc:
            outcome = exc.outcome()
        except OSError as exc:
            outcome = JobOutcome.failed("runner_system_failure", f"cannot prepare the job's directory: {exc}")
        except Exception as exc:  # the job must still end with a status and a last log line
            outcome = JobOutcome.failed(
                "runner_system_failure", f"kuberunner internal error: {type(exc).__name__}: {exc}"
            )
        if self.cancel.force.is_set() and outcome.state == "success":
            outcome = JobOutcome.failed("runner_interrupted", self.cancel.reason or "canceled")
        text, is_error = final_line(outcome)
        if is_error:
            trace.error(text)
        else:
            trace.notice(text)
        trace.finish()
        for line in renderer.finish():
            lines.append(line)
            self.reporter.job_line(job, line)
        log.flush()
        return outcome

    async def _deliver(self, slot: _Slot, trace: JobTrace, outcome: JobOutcome) -> JobOutcome:
        """Hand the store what the job's pod uploaded; a refused upload fails the job, as it would
        have failed the upload stage in a pod that could reach the store."""
        from kuberunner.executors.base import JobOutcome

        assert self.relay is not None
        delivery = await self.relay.deliver(slot.job_id)
        for warning in delivery.warnings:
            trace.warning(f"Creating cache failed: {warning}")
        for error in delivery.errors:
            trace.error(f"Uploading artifacts failed: {error}")
        if delivery.errors and outcome.state == "success":
            return JobOutcome.failed("script_failure", f"uploading artifacts failed: {delivery.errors[0]}", 1)
        return outcome

    async def _prepare_sources(self, slot: _Slot, build: Build) -> None:
        if self.relay is not None:
            return  # a pod: the relay carries the sources in (see _pack_sources)
        await self._populate(build.builds_dir, build.project_dir, no_sources=slot.no_sources)

    def _pack_sources(self) -> bytes:
        """The working tree as a pod gets it: the files a local copy has, without ``.git``."""
        from kuberunner.runner.store_relay import pack_sources

        assert self.sources is not None
        tree = self.sources.tree
        return pack_sources(tree.root, tree.files)

    def _wants_sources(self, job_id: int) -> bool:
        return not any(s.no_sources for s in self.slots.values() if s.job_id == job_id)

    async def _populate(self, builds_dir: str, project_dir: str, *, no_sources: bool) -> None:
        """A fresh ``builds_dir`` with the project's copy (empty for ``GIT_STRATEGY: none``)."""
        assert self.sources is not None
        tree, template = self.sources.tree, self.sources.template
        self.trash.discard(Path(builds_dir))  # the previous run's: deleted in the background

        def prepare() -> None:
            if os.path.lexists(builds_dir):  # it could not be moved to the trash
                shutil.rmtree(builds_dir)
            if no_sources:
                populate(SourceTree(tree.root, ()), Path(project_dir))
            elif template is None:
                populate(tree, Path(project_dir))

        if no_sources or template is None or _exists(builds_dir):
            await asyncio.to_thread(prepare)
        if not no_sources and template is not None:
            await _copy_tree(template, Path(project_dir))
        self.trash.sweep()  # now that the copy is made: the two would compete

    def _build(self, slot: _Slot, payload: JobPayload) -> Build:
        from kuberunner.build import Build

        if self.relay is not None:  # a pod: the Kubernetes executor's directories, the runner's cache
            from kuberunner.runner.factory import cache_presigner

            return Build.create(
                payload,
                self.runner,
                executor_name=self.executor.name,
                shared_builds_dir=False,
                cache_presigner=cache_presigner(self.runner) or self.store.cache_url,
            )
        return Build.create(
            payload,
            self.runner,
            executor_name=self.executor.name,
            builds_dir=str(self.state_dir / "builds" / slot.slug),
            cache_dir=str(self.cache_dir),
            shared_builds_dir=False,
            helper_command=self.helper_command,
        )

    def _no_sources(self, job: PipelineJob) -> bool:
        return self.pipeline.expanded_variables(job).get("GIT_STRATEGY", "") == "none"

    # ------------------------------------------------------------------ payload

    def _payload(self, slot: _Slot) -> JobPayload:
        """GitLab's payload for the job, plus what GitLab adds once earlier jobs ran."""
        from kuberunner.job import ArtifactsFile, Dependency, JobVariable
        from kuberunner.pipeline import to_payload

        job = slot.job
        pipeline = self.pipeline
        payload = to_payload(
            job, pipeline, job_id=slot.job_id, project_dir=pipeline.project_dir, token=slot.token
        )
        user_keys = set(job.variables) | set(pipeline.cli_variables) | set(pipeline.project_variables)
        # GitLab never sends where the job runs: the runner decides CI_PROJECT_DIR and CI_BUILDS_DIR.
        variables = [
            v
            for v in payload.variables
            if v.key not in ("CI_PROJECT_DIR", "CI_BUILDS_DIR") or v.key in user_keys
        ]
        sources = self._artifact_sources(job)
        dependencies = []
        dotenv: dict[str, str] = {}
        for name in sources:
            dep = self.slots[name]
            if not dep.ran:
                continue
            dotenv.update(self.store.dotenv(dep.job_id))
            archive = self.store.archive(dep.job_id)
            if archive is not None:
                dependencies.append(
                    Dependency(
                        id=dep.job_id,
                        name=dep.job.name,
                        token=dep.token,
                        artifacts_file=ArtifactsFile(filename=archive.filename, size=archive.size),
                    )
                )
        # dotenv variables rank above the YAML's, below project and --variable values
        outranking = set(pipeline.cli_variables) | set(pipeline.project_variables)
        for key, value in dotenv.items():
            if key in outranking or key in pipeline.unset_variables:
                continue
            variables = [v for v in variables if v.key != key]
            variables.append(JobVariable(key=key, value=value, public=False))
        slot.no_sources = self._no_sources(job)
        if not slot.no_sources:  # the sources are copied in beforehand (see _prepare_sources)
            variables = [v for v in variables if v.key != "GIT_STRATEGY"]
            variables.append(JobVariable(key="GIT_STRATEGY", value="none", public=True))
        return payload.model_copy(update={"variables": variables, "dependencies": dependencies})

    def _artifact_sources(self, job: PipelineJob) -> list[str]:
        """Names of the jobs whose artifacts (and dotenv variables) ``job`` receives, in pipeline order.

        GitLab's rule (``Ci::BuildDependencies``): the ``needs:`` entries with ``artifacts: true``
        for a job with ``needs:``, else every job of an earlier stage; narrowed to the
        ``dependencies:`` list when there is one, and nothing for ``dependencies: []``.
        """
        names: set[str]
        if job.needs is not None:
            names = {t for need in job.needs if need.is_local and need.artifacts for t in need.instances}
        else:
            index = self.pipeline.stage_index(job)
            names = {n for n, s in self.slots.items() if self.pipeline.stage_index(s.job) < index}
        if job.dependencies is not None:
            names = {n for n in names if any(self.slots[n].job.matches(d) for d in job.dependencies)}
        return [n for n in self.slots if n in names and n != job.name]


# --------------------------------------------------------------------------- API


def _make_executor(name: str) -> Executor:
    check_executor(name)
    if name == "kubernetes":
        from kuberunner.doctor.explain import explain
        from kuberunner.executors.kubernetes import KubernetesExecutor

        return KubernetesExecutor(explain=explain)
    from kuberunner.executors.shell import ShellExecutor

    return ShellExecutor()


def check_executor(name: str) -> None:
    """Raise :class:`LocalRunError` (saying what to use instead) unless ``name`` runs jobs locally."""
    if name not in EXECUTORS:
        raise LocalRunError(f"unknown executor {name!r}: use one of {', '.join(EXECUTORS)}")


def kubernetes_runner(runner: RunnerConfig | None = None) -> RunnerConfig:
    """The ``[[runners]]`` entry a local run on Kubernetes uses.

    ``runner``'s ``[runners.kubernetes]`` (and ``[runners.cache]``), else the defaults;
    without ``host`` the connection is the current kubeconfig context's, and without
    ``namespace`` so is the namespace, as for ``kubectl``. Raises :class:`LocalRunError`
    saying what to set when there is no cluster to talk to.
    """
    from kuberunner.config.schema import KubernetesConfig, RunnerConfig
    from kuberunner.kube import KubeConfigMissing, context_namespace, resolve_settings

    base = runner or RunnerConfig.model_validate(
        {"name": "local", "url": "http://127.0.0.1", "token": "local", "executor": "kubernetes"}
    )
    cfg = base.kubernetes or KubernetesConfig.model_validate({})
    try:
        settings = resolve_settings(cfg)
    except KubeConfigMissing as exc:
        raise LocalRunError(f"--executor kubernetes: {exc}") from None
    if not cfg.namespace:
        namespace = context_namespace(settings)
        if namespace:
            cfg = cfg.model_copy(update={"namespace": namespace})
    return base.model_copy(update={"executor": "kubernetes", "kubernetes": cfg})


async def run_scoped(
    pipeline: Pipeline,
    scoped: ScopedJobs,
    *,
    state_dir: Path,
    cache_dir: Path | None = None,
    concurrency: int | None = None,
    executor: str | Executor = "shell",
    reporter: Reporter | None = None,
    cancel: Cancellation | None = None,
    helper_command: list[str] | None = None,
    runner: RunnerConfig | None = None,
) -> PipelineResult:
    """Run the jobs ``pipeline.select()`` chose, in ``state_dir`` (absolute; see :func:`run_pipeline`).

    ``helper_command`` is how jobs start ``kuberunner-helper``; by default a
    :class:`HelperLauncher` for this run.
    """
    if executor == "kubernetes":
        runner = kubernetes_runner(runner)
    return await _run_scoped(
        pipeline,
        scoped,
        state_dir=state_dir,
        cache_dir=cache_dir,
        concurrency=concurrency,
        executor=executor,
        reporter=reporter,
        cancel=cancel,
        helper_command=helper_command,
        helper=None,
        sources=None,
        runner=runner,
    )


async def _run_scoped(
    pipeline: Pipeline,
    scoped: ScopedJobs,
    *,
    state_dir: Path,
    cache_dir: Path | None,
    concurrency: int | None,
    executor: str | Executor,
    reporter: Reporter | None,
    cancel: Cancellation | None,
    helper_command: list[str] | None,
    helper: _HelperCommand | None,
    sources: _Sources | None,
    runner: RunnerConfig | None = None,
) -> PipelineResult:
    """:func:`run_scoped`, with the helper already started and the sources already listed
    (None: do it now)."""
    from kuberunner.executors.base import Cancellation
    from kuberunner.runner.artifact_store import ArtifactStore

    runner_executor = _make_executor(executor) if isinstance(executor, str) else executor
    cache_dir = state_dir / "cache" if cache_dir is None else cache_dir
    if not state_dir.is_absolute() or not cache_dir.is_absolute():
        raise LocalRunError(
            f"the state and cache directories must be absolute paths ({state_dir}, {cache_dir})"
        )
    async with contextlib.AsyncExitStack() as stack:
        if helper is None:
            helper = await stack.enter_async_context(_helper(helper_command))
        artifacts = state_dir / "artifacts"
        trash = _Trash(state_dir / _TRASH)
        store: ArtifactStore | None = None
        try:
            # a previous run's archives: their jobs' ids and tokens are gone
            trash.discard(artifacts)
            trash.sweep()
            if _exists(str(artifacts)):  # it could not be moved to the trash
                await asyncio.to_thread(shutil.rmtree, artifacts, ignore_errors=True)
            # pods cannot write here: their cache goes to the store, which keeps it in cache_dir
            kube = runner_executor.name == "kubernetes"
            store = ArtifactStore(artifacts, cache_root=cache_dir / "objects" if kube else None).__enter__()
            run = _Run(
                pipeline,
                scoped,
                state_dir=state_dir,
                cache_dir=cache_dir,
                concurrency=concurrency or os.cpu_count() or 1,
                executor=runner_executor,
                store=store,
                reporter=reporter or Reporter(),
                cancel=cancel or Cancellation(),
                helper_command=helper.command,
                sources=sources,
                trash=trash,
                runner=runner,
            )
            await helper.ready()
            return await run.run()
        finally:
            # both wait a moment (the store's server for its poll interval): at once, then
            ends = [trash.wait()]
            if store is not None:
                ends.append(asyncio.to_thread(store.__exit__, None, None, None))
            await asyncio.gather(*ends)


@dataclass(frozen=True)
class _HelperCommand:
    """How jobs start the helper, and what to await before the first one does."""

    command: list[str] | None
    launcher: HelperLauncher | None = None

    async def ready(self) -> None:
        if self.launcher is not None:
            await self.launcher.ready()


@contextlib.asynccontextmanager
async def _helper(command: list[str] | None) -> AsyncIterator[_HelperCommand]:
    """``command`` if given, else a :class:`HelperLauncher`'s for as long as the block runs.

    The launcher's zygote is started, not waited for: see :meth:`_HelperCommand.ready`.
    """
    if command is not None or not HelperLauncher.supported():
        yield _HelperCommand(command)
        return
    launcher = HelperLauncher()
    try:
        launcher.spawn()
        yield _HelperCommand(launcher.command(), launcher)
    finally:
        await launcher.stop()


class RunStart:
    """The part of a local run that can start before anything else: the state directory's
    lock, the helper's zygote and the copy of the sources (see the module docstring).

    ``kuberunner exec`` makes one first thing, so that these go on (in other processes and
    a thread) while its heavier modules load; :func:`run_pipeline` takes it over with
    ``start=`` and ends it. Raises :class:`LocalRunError` when the run cannot start.
    """

    def __init__(
        self, project_dir: Path, *, state_dir: Path | None = None, helper_command: list[str] | None = None
    ) -> None:
        project_dir = project_dir.resolve()
        if not project_dir.is_dir():
            raise LocalRunError(f"{project_dir} is not a directory")
        self.project_dir = project_dir
        self.state = _StateDir(
            (state_dir if state_dir is not None else project_dir / STATE_DIR_NAME).resolve()
        )
        self.pipeline_id = self.state.acquire()
        self._launcher: HelperLauncher | None = None
        self._helper_command = helper_command
        self._pool = ThreadPoolExecutor(2, thread_name_prefix="kuberunner-start")
        self._loading: tuple[_LoadOptions, Future[tuple[Pipeline, ScopedJobs]]] | None = None
        self._closed = False
        try:
            if helper_command is None and HelperLauncher.supported():
                self._launcher = HelperLauncher()
                self._launcher.spawn()
            # listing and copying the sources mostly waits for git and the file system
            self.sources = self._pool.submit(_Sources.make, project_dir, self.state.path)
        except BaseException:
            self.close()
            raise

    def load(
        self,
        *,
        file: str = ".gitlab-ci.yml",
        job_names: Sequence[str] = (),
        with_needs: bool = False,
        manual: Collection[str] = (),
        stage: str | None = None,
        variables: Mapping[str, str | PipelineVariable] | None = None,
        project_variables: Mapping[str, str | PipelineVariable] | None = None,
        unset_variables: Collection[str] = (),
        inputs: Sequence[str] = (),
        inputs_file: Path | None = None,
    ) -> Future[tuple[Pipeline, ScopedJobs]]:
        """Begin loading the pipeline and choosing its jobs, in the background (once: a second
        call with the same arguments, those of :func:`run_pipeline`, returns the same future).

        Import :mod:`kuberunner.pipeline` in the calling thread first: two threads importing
        the same modules at once can see each other's half-made modules.
        """
        options = _LoadOptions(
            file,
            tuple(job_names),
            with_needs,
            tuple(manual),
            stage,
            dict(variables or {}),
            dict(project_variables or {}),
            tuple(unset_variables),
            tuple(inputs),
            inputs_file,
        )
        if self._loading is not None:
            if self._loading[0] != options:
                raise ValueError("the pipeline is loading already, with other arguments")
            return self._loading[1]
        future = self._pool.submit(_load, self.project_dir, self.pipeline_id, options)
        self._loading = (options, future)
        return future

    def helper(self) -> _HelperCommand:
        if self._launcher is None:
            return _HelperCommand(self._helper_command)
        return _HelperCommand(self._launcher.command(), self._launcher)

    def close(self) -> None:
        """End what was started (blocking a moment) and unlock the state directory; idempotent."""
        if self._closed:
            return
        self._closed = True
        launcher, self._launcher = self._launcher, None
        if launcher is not None:
            launcher._stop()
        self._pool.shutdown(wait=True)
        self.state.release()

    async def aclose(self) -> None:
        """:meth:`close`, from the event loop."""
        if not self._closed:
            await asyncio.to_thread(self.close)


@dataclass(frozen=True)
class _LoadOptions:
    file: str
    job_names: tuple[str, ...]
    with_needs: bool
    manual: tuple[str, ...]
    stage: str | None
    variables: dict[str, str | PipelineVariable]
    project_variables: dict[str, str | PipelineVariable]
    unset_variables: tuple[str, ...]
    inputs: tuple[str, ...]
    inputs_file: Path | None


def _load(project_dir: Path, pipeline_id: int, options: _LoadOptions) -> tuple[Pipeline, ScopedJobs]:
    from kuberunner.pipeline import load_pipeline

    pipeline = load_pipeline(
        project_dir,
        file=options.file,
        variables=options.variables,
        project_variables=options.project_variables,
        unset_variables=options.unset_variables,
        inputs=list(options.inputs),
        inputs_file=options.inputs_file,
        pipeline_id=pipeline_id,
    )
    scoped = pipeline.select(
        options.job_names, with_needs=options.with_needs, manual=options.manual, stage=options.stage
    )
    return pipeline, scoped


def preload_modules() -> None:
    """Import what running jobs needs (executor, build, artifact store...), in this thread:
    for a caller with a moment to spare, such as while :meth:`RunStart.load` works."""
    import kuberunner.build
    import kuberunner.executors.shell
    import kuberunner.runner.artifact_store
    import kuberunner.runner.outcome
    import kuberunner.trace  # noqa: F401


async def run_pipeline(
    project_dir: Path,
    *,
    file: str = ".gitlab-ci.yml",
    job_names: Sequence[str] = (),
    with_needs: bool = False,
    manual: Collection[str] = (),
    stage: str | None = None,
    variables: Mapping[str, str | PipelineVariable] | None = None,
    project_variables: Mapping[str, str | PipelineVariable] | None = None,
    unset_variables: Collection[str] = (),
    inputs: Sequence[str] = (),
    inputs_file: Path | None = None,
    concurrency: int | None = None,
    executor: str = "shell",
    cache_dir: Path | None = None,
    state_dir: Path | None = None,
    reporter: Reporter | None = None,
    cancel: Cancellation | None = None,
    helper_command: list[str] | None = None,
    start: RunStart | None = None,
    runner: RunnerConfig | None = None,
) -> PipelineResult:
    """Load ``file`` of ``project_dir``, choose the jobs and run them (see the module docstring).

    ``variables`` are ``--variable`` values, ``project_variables`` stand in for the
    project's CI/CD settings, ``inputs``/``inputs_file`` are ``spec:inputs`` values (see
    :func:`~kuberunner.pipeline.load_pipeline`). ``state_dir`` (default
    ``<project_dir>/.kuberunner``) holds the jobs' directories, logs, artifacts and, unless
    ``cache_dir`` says otherwise, the cache; it is locked for the run. ``cancel`` stops the
    run: ``cancel()`` lets running jobs run their after_script, ``abort()`` kills them.
    ``start`` is a :class:`RunStart` made for ``project_dir`` beforehand (its state
    directory and helper command are then the ones used); the run ends it.
    ``executor="kubernetes"`` runs each job as a pod (see :func:`kubernetes_runner` for
    where, and ``runner`` for a config.toml entry's ``[runners.kubernetes]``): the working
    tree (without ``.git``) and the artifacts a job depends on go into its pod through
    Secrets, its uploads come back through its log (:mod:`kuberunner.runner.store_relay`).
    Raises :class:`~kuberunner.pipeline.PipelineError` for an invalid pipeline or selection
    (before any job runs) and :class:`LocalRunError` when the run cannot start.
    """
    import kuberunner.pipeline  # noqa: F401 - here, before a thread loads the pipeline

    try:
        runner_executor = _make_executor(executor)
        if executor == "kubernetes":
            runner = kubernetes_runner(runner)
        if start is None:
            start = await asyncio.to_thread(
                RunStart, Path(project_dir), state_dir=state_dir, helper_command=helper_command
            )
    except BaseException:
        if start is not None:
            await start.aclose()
        raise
    run_start = start
    try:
        loading = run_start.load(
            file=file,
            job_names=job_names,
            with_needs=with_needs,
            manual=manual,
            stage=stage,
            variables=variables,
            project_variables=project_variables,
            unset_variables=unset_variables,
            inputs=inputs,
            inputs_file=inputs_file,
        )
        pipeline, scoped = await asyncio.wrap_future(loading)
        sources = await asyncio.wrap_future(run_start.sources)
        return await _run_scoped(
            pipeline,
            scoped,
            state_dir=run_start.state.path,
            cache_dir=cache_dir,
            concurrency=concurrency,
            executor=runner_executor,
            reporter=reporter,
            cancel=cancel,
            helper_command=None,
            helper=run_start.helper(),
            sources=sources if sources.tree.root == pipeline.project_dir else None,
            runner=runner,
        )
    finally:
        await run_start.aclose()
