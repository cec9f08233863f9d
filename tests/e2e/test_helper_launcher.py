"""``HelperLauncher``: ``kuberunner-helper`` calls through the zygote, and every way around it.

Each test runs real clients (the bash one, the Python one, the ordinary helper) and compares
what a job sees, exit code, stdout, stderr and the files made, with what calling
``default_helper_command()`` directly gives. The fallback the launcher is given is the real
helper behind a script that notes each start, so a test also knows which way a call went.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time
import zipfile
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

from kuberunner.build import default_helper_command
from kuberunner.runner import local
from kuberunner.runner.local import HelperLauncher

TIMEOUT = 60  # seconds: a call that hangs fails its test rather than the whole run
UMASK = 0o027  # not the usual one: the helper must make its files with the caller's
BASH = shutil.which("bash")


# --------------------------------------------------------------------------- calling the helper


@dataclass(frozen=True)
class Outcome:
    """What a job can see of a few helper calls: their results and the files they made."""

    calls: tuple[tuple[int, str, str], ...]
    files: tuple[tuple[str, int, bytes], ...]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env


def _run(
    command: Sequence[str],
    cwd: Path,
    *,
    stdout: IO[bytes] | int = subprocess.PIPE,
    stderr: IO[bytes] | int = subprocess.PIPE,
    **env: str,
) -> tuple[int, str, str]:
    done = subprocess.run(
        command,
        cwd=cwd,
        env=_env(**env),
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        umask=UMASK,
        timeout=TIMEOUT,
        check=False,
    )
    return done.returncode, (done.stdout or b"").decode(), (done.stderr or b"").decode()


def _tree(root: Path) -> tuple[tuple[str, int, bytes], ...]:
    """Every path under ``root`` with its permissions, and its content (a zip's entries)."""
    out = []
    for path in sorted(root.rglob("*")):
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                content = b"\n".join(name.encode() + b"=" + archive.read(name) for name in archive.namelist())
        else:
            content = path.read_bytes() if path.is_file() else b""
        out.append((path.relative_to(root).as_posix(), mode, content))
    return tuple(out)


def scenario(command: Sequence[str], workdir: Path) -> Outcome:
    """A cache saved, restored and missed, as jobs do, in a fresh ``workdir``.

    Arguments with spaces, a setting read from the environment (a compression level the
    helper warns about), the working directory and the umask all have to reach the helper.
    """
    (workdir / "job" / "out dir").mkdir(parents=True)
    (workdir / "job" / "out dir" / "f.txt").write_text("data\n")
    (workdir / "restore").mkdir()
    calls = (
        _run(
            [*command, "cache-archiver", "--file", "../cache/key/cache.zip", "--path", "out dir"],
            workdir / "job",
            CACHE_COMPRESSION_LEVEL="bogus",
        ),
        _run([*command, "cache-extractor", "--file", "../cache/key/cache.zip"], workdir / "restore"),
        _run([*command, "cache-extractor", "--file", "../cache/none/cache.zip"], workdir / "restore"),
    )
    return Outcome(calls, _tree(workdir))


@pytest.fixture(scope="module")
def direct(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    """:func:`scenario` with the helper run directly, the way every other one must match."""
    outcome = scenario(default_helper_command(), tmp_path_factory.mktemp("direct"))
    codes = [code for code, _, _ in outcome.calls]
    assert codes == [0, 0, 1], outcome  # saved, restored, missed: the scenario means something
    assert "WARNING: compression level 'bogus'" in outcome.calls[0][1]
    return outcome


@dataclass(frozen=True)
class Fallback:
    """The ordinary helper, behind a script that notes every start in ``log``."""

    command: list[str]
    log: Path

    @property
    def starts(self) -> int:
        return len(self.log.read_text().splitlines()) if self.log.exists() else 0


@pytest.fixture
def fallback(tmp_path: Path) -> Fallback:
    log = tmp_path / "fallback.log"
    script = tmp_path / "fallback.sh"
    script.write_text(
        f'#!/bin/sh\necho "$$" >> {shlex.quote(str(log))}\nexec {shlex.join(default_helper_command())} "$@"\n'
    )
    script.chmod(0o755)
    return Fallback([str(script)], log)


@contextlib.asynccontextmanager
async def _launched(launcher: HelperLauncher) -> AsyncIterator[list[str]]:
    try:
        yield await launcher.start()
    finally:
        await launcher.stop()


def _is_bash_client(command: list[str]) -> bool:
    return len(command) == 1 and Path(command[0]).read_text().startswith(f"#!{BASH} ")


def _socket_file(command: list[str]) -> Path:
    """The zygote's UNIX socket: the Python client's only way to it."""
    (path,) = (p for p in Path(command[-1]).parent.iterdir() if p.is_socket())
    return path


async def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.01)


def _exited(pid: int) -> bool:
    """Whether ``pid`` is gone or a zombie (its sockets closed either way)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _children(pid: int) -> set[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(p) for p in text.split()}


def _without_bash(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without bash, for the launcher: its command is then the Python client."""
    which = shutil.which  # the launcher looks bash up with it
    monkeypatch.setattr(
        shutil, "which", lambda name, *a, **k: None if name == "bash" else which(name, *a, **k)
    )


def _waiting_calls(zygote: int, unix_socket: Path) -> int:
    """How many connections wait in the accept queues of the zygote's sockets."""
    inodes = set()
    for fd in Path(f"/proc/{zygote}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    waiting = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()  # sl local remote state tx_queue:rx_queue ... inode
        if fields[3] == "0A" and fields[9] in inodes:  # LISTEN: rx_queue is the accept queue
            waiting += int(fields[4].split(":")[1], 16)
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()  # num refcount protocol flags type state inode path
        if fields[5] == "02" and fields[7:] == [str(unix_socket)]:  # connecting: not accepted yet
            waiting += 1
    return waiting


async def _scenario(command: Sequence[str], workdir: Path) -> Outcome:
    return await asyncio.to_thread(scenario, command, workdir)


# --------------------------------------------------------------------------- the zygote serves


async def test_helper_launcher_behaves_like_the_helper(
    tmp_path: Path, direct: Outcome, fallback: Fallback
) -> None:
    """Argv, environment, working directory, umask and stdio reach the forked helper."""
    async with _launched(HelperLauncher(fallback.command)) as command:
        assert await _scenario(command, tmp_path / "via") == direct
        assert fallback.starts == 0, "the zygote served no call"


async def test_helper_launcher_child_dies_with_its_caller(tmp_path: Path) -> None:
    """A job killed on its timeout takes the helper it runs with it."""
    launcher = HelperLauncher(default_helper_command())
    async with _launched(launcher) as command:
        zygote = launcher.pid
        assert zygote is not None
        # a download from a port nobody listens on: the helper retries for a long while
        proc = await asyncio.create_subprocess_exec(
            *command,
            "artifacts-downloader",
            "--url",
            "http://127.0.0.1:9",
            "--token",
            "t",
            "--id",
            "1",
            cwd=tmp_path,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await _until(lambda: bool(_children(zygote)), "the forked helper runs")
        proc.kill()  # as the job's process group is killed on a timeout
        await proc.wait()
        await _until(lambda: not _children(zygote), "the helper died with its caller")


async def test_bash_client_is_served_over_tcp(tmp_path: Path, direct: Outcome, fallback: Fallback) -> None:
    """The fast path: with the UNIX socket gone, the Python client could only have started
    the (logged) fallback; a matching outcome with no start logged came over TCP."""
    async with _launched(HelperLauncher(fallback.command)) as command:
        assert _is_bash_client(command)
        _socket_file(command).unlink()
        assert await _scenario(command, tmp_path / "via") == direct
        assert fallback.starts == 0


# --------------------------------------------------------------------------- the bash client hands over


async def test_regular_file_output_goes_through_the_python_client(tmp_path: Path, fallback: Fallback) -> None:
    """/proc/<pid>/fd/1 opened again would write at offset 0: a regular file's output must
    follow what the file already holds, whether it was opened to append or not."""
    missing = ["cache-extractor", "--file", "none.zip"]
    code, out, err = _run([*default_helper_command(), *missing], tmp_path)
    assert (code, out.count("\n"), err.startswith("WARNING: cache not found")) == (1, 2, True)
    async with _launched(HelperLauncher(fallback.command)) as command:
        assert _is_bash_client(command)
        # a job's `cmd >> job.log`, `exec > job.log 2>&1` then more output, and `cmd >> job.log`
        # once more, the Python client's way to the zygote gone: it starts the ordinary helper
        for attempt, (mode, with_stderr) in enumerate([("ab", False), ("wb", True), ("ab", False)]):
            log = tmp_path / f"job-{attempt}.log"
            with log.open(mode) as f:
                f.write(b"before\n")
                f.flush()
                if attempt == 2:
                    _socket_file(command).unlink()
                stderr = f if with_stderr else subprocess.PIPE
                result = await asyncio.to_thread(
                    _run, [*command, *missing], tmp_path, stdout=f, stderr=stderr
                )
                f.write(b"after\n")
            assert result == (code, "", "" if with_stderr else err)
            assert log.read_text() == f"before\n{out}{err if with_stderr else ''}after\n"
        # the zygote served the calls until its socket went: so the bash client had handed over
        assert fallback.starts == 1


async def test_python_client_without_bash(
    tmp_path: Path, direct: Outcome, fallback: Fallback, monkeypatch: pytest.MonkeyPatch
) -> None:
    _without_bash(monkeypatch)
    async with _launched(HelperLauncher(fallback.command)) as command:
        assert command[0] == sys.executable
        assert await _scenario(command, tmp_path / "via") == direct
        assert fallback.starts == 0, "the zygote served no call"


async def test_bash_client_without_loopback_hands_over(
    tmp_path: Path, direct: Outcome, fallback: Fallback
) -> None:
    """In a network namespace of its own, bash's /dev/tcp cannot reach the zygote's port
    (loopback is down there): the calls go through the UNIX socket to the zygote."""
    async with _launched(HelperLauncher(fallback.command)) as command:
        assert _is_bash_client(command)
        isolated = ["unshare", "--net", "--map-root-user", *command]
        no_tcp = _run([*isolated[:-1], "bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/1"], tmp_path)
        assert no_tcp[0] != 0 and "unreachable" in no_tcp[2], no_tcp
        assert await _scenario(isolated, tmp_path / "via") == direct
        assert fallback.starts == 0, "the zygote served no call"


async def test_zygote_without_proc_hands_over(
    tmp_path: Path, direct: Outcome, fallback: Fallback, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A zygote that cannot read /proc/<caller> (here: none mounted where it runs) cannot
    serve the bash client: the call goes through the Python client to the zygote."""
    python = tmp_path / "python-without-proc"
    python.write_text(
        "#!/bin/sh\n"
        "exec unshare --mount --map-root-user sh -c "
        "'mount -t tmpfs no-proc /proc && exec \"$@\"' sh " + shlex.quote(sys.executable) + ' "$@"\n'
    )
    python.chmod(0o755)
    launcher = HelperLauncher(fallback.command)
    with monkeypatch.context() as patch:
        patch.setattr(sys, "executable", str(python))  # for the zygote only
        launcher.spawn()
    async with _launched(launcher) as command:
        assert _is_bash_client(command)
        assert await _scenario(command, tmp_path / "via") == direct
        assert fallback.starts == 0, "the zygote served no call"


# --------------------------------------------------------------------------- no zygote


@pytest.mark.parametrize("client", ["bash", "python"])
async def test_without_the_zygote_calls_run_the_ordinary_helper(
    tmp_path: Path, direct: Outcome, fallback: Fallback, monkeypatch: pytest.MonkeyPatch, client: str
) -> None:
    if client == "python":
        _without_bash(monkeypatch)
    launcher = HelperLauncher(fallback.command)
    async with _launched(launcher) as command:
        assert _is_bash_client(command) == (client == "bash")
        zygote = launcher.pid
        assert zygote is not None
        os.kill(zygote, signal.SIGKILL)
        await _until(lambda: _exited(zygote), "the zygote is gone")
        assert await _scenario(command, tmp_path / "via") == direct
        assert fallback.starts == 3


@pytest.mark.parametrize("client", ["bash", "python"])
async def test_calls_waiting_for_a_zygote_that_dies_run_the_ordinary_helper(
    tmp_path: Path, direct: Outcome, fallback: Fallback, monkeypatch: pytest.MonkeyPatch, client: str
) -> None:
    """Calls queue up at the zygote's sockets until it takes them: one that dies first ran
    none of them, so they run the ordinary helper rather than fail."""
    if client == "python":
        _without_bash(monkeypatch)
    launcher = HelperLauncher(fallback.command)
    with monkeypatch.context() as patch:
        patch.setenv("PYTHONPATH", str(_site(tmp_path, "stuck")))  # for the zygote only
        launcher.spawn()
    try:
        command = launcher.command()  # no ready(): it would end this zygote before any call
        assert _is_bash_client(command) == (client == "bash")
        zygote = launcher.pid
        assert zygote is not None
        unix_socket = _socket_file(command)
        calls = asyncio.create_task(_scenario(command, tmp_path / "via"))
        await _until(lambda: _waiting_calls(zygote, unix_socket) == 1, "a call waits for the zygote")
        os.kill(zygote, signal.SIGKILL)
        assert await calls == direct
        assert fallback.starts == 3
    finally:
        await launcher.stop()


# a zygote that never says it listens (sitecustomize runs before the zygote's own code), and
# one that says so, then cannot import the helper
NOT_READY = {
    "stuck": {"sitecustomize.py": "import select\nselect.select([], [], [])\n"},
    "broken": {"kuberunner/__init__.py": "raise ImportError('not this one')\n"},
}


def _site(tmp_path: Path, case: str) -> Path:
    """A directory for the zygote's PYTHONPATH that keeps it from taking calls."""
    site = tmp_path / "site"
    for name, text in NOT_READY[case].items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_text(text)
    return site


@pytest.mark.parametrize("case", sorted(NOT_READY))
async def test_a_zygote_that_never_takes_calls_leaves_them_to_the_ordinary_helper(
    tmp_path: Path, direct: Outcome, fallback: Fallback, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    monkeypatch.setattr(local, "_ZYGOTE_START_TIMEOUT", 0.5)
    launcher = HelperLauncher(fallback.command)
    with monkeypatch.context() as patch:
        patch.setenv("PYTHONPATH", str(_site(tmp_path, case)))  # for the zygote only
        launcher.spawn()
    async with _launched(launcher) as command:
        zygote = launcher.pid
        assert zygote is not None
        if case == "broken":  # it said it listens, then died on the import
            await _until(lambda: _exited(zygote), "the zygote is gone")
        assert await _scenario(command, tmp_path / "via") == direct
        assert fallback.starts == 3


async def test_the_project_directory_does_not_shadow_the_zygotes_imports(
    tmp_path: Path, direct: Outcome, fallback: Fallback, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``kuberunner exec`` runs in the project: a project module named like one the helper
    imports must not replace it (the installed ``kuberunner-helper`` never sees it either)."""
    project = tmp_path / "project"
    (project / "kuberunner").mkdir(parents=True)
    (project / "kuberunner" / "__init__.py").write_text("raise ImportError('the project, not the helper')\n")
    monkeypatch.chdir(project)
    async with _launched(HelperLauncher(fallback.command)) as command:
        assert await _scenario(command, tmp_path / "via") == direct
        assert fallback.starts == 0, "the zygote served no call"
