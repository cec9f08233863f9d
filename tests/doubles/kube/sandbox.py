"""Runs one container as a real process in its own mount namespace, ignoring the image.

Preferred runtime ("bwrap"): `unshare --mount` builds a throwaway overlay of the host root (writes
land in a tmpfs), then bubblewrap binds the volumes at their mountPaths and runs the command as
PID 1 of a new PID namespace with the host network. PID 1 semantics match a real container: a
process without a TERM handler ignores TERM and is killed after the grace period (exit 137).

Fallback ("unshare"): the same overlay and bind mounts with `mount` + `chroot`, no PID namespace;
the command is its own process group (TERM kills a handler-less process: exit 143).

Memory limits are enforced with a cgroup v1 memory controller when one is writable; the kernel's
OOM kill is then reported as OOMKilled.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

CGROUP_MEMORY = Path("/sys/fs/cgroup/memory")


class SandboxUnavailable(RuntimeError):
    """This machine cannot run containers (no bwrap/unshare, or no permission to mount)."""


@dataclass(frozen=True)
class Mount:
    source: str
    dest: str
    read_only: bool = False


@dataclass
class LaunchSpec:
    argv: list[str]
    env: list[tuple[str, str]]
    workdir: str
    mounts: list[Mount]
    hostname: str
    state_dir: Path
    memory_limit: int | None = None
    extra_files: dict[str, str] = field(
        default_factory=dict
    )  # container path -> host file (hosts, resolv.conf)


def _run_quiet(argv: list[str], timeout: float = 10) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, capture_output=True, timeout=timeout, check=False)


_PROBED: dict[str, str] = {}


def probe(preferred: str = "auto", scratch: Path | None = None) -> str:
    """Pick a runtime that works here (cached per process); SandboxUnavailable with the reasons otherwise."""
    if preferred not in _PROBED:
        _PROBED[preferred] = _probe(preferred, scratch)
    return _PROBED[preferred]


def _probe(preferred: str, scratch: Path | None) -> str:
    problems: list[str] = []
    base = scratch or Path("/tmp")
    test_dir = Path(base) / f".kube-double-probe-{os.getpid()}-{threading.get_ident()}"
    (test_dir / "upper").mkdir(parents=True, exist_ok=True)
    (test_dir / "root").mkdir(exist_ok=True)
    overlay = (
        f'mount -t tmpfs -o mode=0755 kube-double "{test_dir}/upper" && mkdir "{test_dir}/upper/d" '
        f'"{test_dir}/upper/w" '
        "&& mount -t overlay kube-double -o "
        f'"lowerdir=/,upperdir={test_dir}/upper/d,workdir={test_dir}/upper/w" '
        f'"{test_dir}/root"'
    )
    try:
        if shutil.which("unshare") is None:
            raise SandboxUnavailable("unshare (util-linux) is not installed")
        result = _run_quiet(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", overlay + " && true"]
        )
        if result.returncode != 0:
            raise SandboxUnavailable(
                "cannot mount an overlay root in a private mount namespace (needs root / CAP_SYS_ADMIN): "
                + result.stderr.decode(errors="replace").strip()
            )
        if preferred in ("auto", "bwrap"):
            if shutil.which("bwrap") is None:
                problems.append("bwrap is not installed")
            else:
                check = _run_quiet(
                    [
                        "bwrap",
                        "--bind",
                        "/",
                        "/",
                        "--dev",
                        "/dev",
                        "--proc",
                        "/proc",
                        "--unshare-pid",
                        "--as-pid-1",
                        "--unshare-uts",
                        "--hostname",
                        "probe",
                        "true",
                    ]
                )
                if check.returncode == 0:
                    return "bwrap"
                problems.append("bwrap does not work here: " + check.stderr.decode(errors="replace").strip())
            if preferred == "bwrap":
                raise SandboxUnavailable("; ".join(problems))
        return "unshare"
    finally:
        shutil.rmtree(test_dir, ignore_errors=True)


def resolve_in_root(path: str, root: str = "/") -> str:
    """Resolve symlinks of `path` as seen inside a container whose root mirrors `root` (absolute links stay
    inside it), so mount targets like /var/run/secrets/... land where the container will look."""
    parts = [p for p in path.split("/") if p]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        if os.path.islink(candidate) and hops < 40:
            hops += 1
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p] + parts
            continue
        resolved.append(part)
    return "/" + "/".join(resolved)


def memory_cgroup_root() -> Path | None:
    """A writable cgroup v1 memory hierarchy, or None (limits are then not enforced)."""
    if not (CGROUP_MEMORY / "cgroup.procs").exists() or not os.access(CGROUP_MEMORY, os.W_OK):
        return None
    for stale in CGROUP_MEMORY.glob("kube-double-*"):  # left behind by killed test processes
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            for child in stale.iterdir():
                if child.is_dir():
                    with contextlib.suppress(OSError):
                        child.rmdir()
            with contextlib.suppress(OSError):
                stale.rmdir()
    root = CGROUP_MEMORY / f"kube-double-{os.getpid()}"
    try:
        root.mkdir(exist_ok=True)
    except OSError:
        return None
    return root


class ContainerProcess:
    """A started container: signal it, wait for it, read its exit status."""

    def __init__(self, popen: subprocess.Popen[bytes], mode: str, cgroup: Path | None) -> None:
        self.popen = popen
        self.mode = mode
        self.cgroup = cgroup
        self.init_pid: int | None = popen.pid if mode == "unshare" else None
        self.init_known = threading.Event()
        if self.init_pid is not None:
            self.init_known.set()
        self._lock = threading.Lock()
        self.exit_code: int | None = None

    def signal(self, sig: int) -> None:
        """Deliver `sig` to the container's init (bwrap) or process group (unshare)."""
        if sig != signal.SIGKILL:
            self.init_known.wait(2)
        with self._lock:
            if self.exit_code is not None:
                return
            try:
                if self.mode == "unshare":
                    os.killpg(self.popen.pid, sig)
                elif self.init_pid is not None:
                    os.kill(self.init_pid, sig)
                elif sig == signal.SIGKILL:
                    self.popen.kill()
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.mode == "bwrap":
            with contextlib.suppress(ProcessLookupError):
                self.popen.kill()

    def wait(self) -> int:
        """Block until the container ends; exit code like the runtime reports it (128+N for signal N)."""
        code = self.popen.wait()
        if self.mode == "unshare":
            with contextlib.suppress(
                ProcessLookupError, PermissionError
            ):  # the container is over: reap its group
                os.killpg(self.popen.pid, signal.SIGKILL)
        result = 128 - code if code < 0 else code
        with self._lock:
            self.exit_code = result
        return result

    def oom_killed(self) -> bool:
        if self.cgroup is None:
            return False
        try:
            for line in (self.cgroup / "memory.oom_control").read_text().splitlines():
                if line.startswith("oom_kill ") and int(line.split()[1]) > 0:
                    return True
        except OSError:
            return False
        return False

    def release(self) -> None:
        if self.cgroup is not None:
            for _ in range(50):
                try:
                    self.cgroup.rmdir()
                    return
                except FileNotFoundError:
                    return
                except OSError:
                    time.sleep(0.02)


def _fd_mover(fds: list[int]) -> Callable[[], None]:
    """Runs in the child between fork and exec: put `fds` at 3, 4, ... (only plain syscalls here)."""

    def move() -> None:
        copies = [os.dup(fd) for fd in fds]
        for target, fd in enumerate(copies, start=3):
            os.dup2(fd, target)

    return move


class Sandbox:
    """Launches containers with the chosen runtime."""

    def __init__(self, mode: str, cgroup_root: Path | None) -> None:
        self.mode = mode
        self.cgroup_root = cgroup_root

    def _cgroup(self, spec: LaunchSpec) -> Path | None:
        if spec.memory_limit is None or self.cgroup_root is None:
            return None
        path = self.cgroup_root / f"{spec.state_dir.parent.parent.name}-{spec.state_dir.name}"
        try:
            path.mkdir(exist_ok=True)
            (path / "memory.limit_in_bytes").write_text(str(spec.memory_limit))
            swap = path / "memory.memsw.limit_in_bytes"
            if swap.exists():
                swap.write_text(str(spec.memory_limit))
        except OSError:
            return None
        return path

    def _overlay_script(self, d: Path, cgroup: Path | None) -> list[str]:
        q = shlex.quote
        lines = ["set -e"]
        if cgroup is not None:
            lines.append(f"echo $$ > {q(str(cgroup / 'cgroup.procs'))}")
        lines += [
            f"mount -t tmpfs -o mode=0755 kube-double-upper {q(str(d / 'upper'))}",
            f"mkdir {q(str(d / 'upper' / 'data'))} {q(str(d / 'upper' / 'work'))}",
            "mount -t overlay kube-double-root -o "
            + q(f"lowerdir=/,upperdir={d / 'upper' / 'data'},workdir={d / 'upper' / 'work'}")
            + f" {q(str(d / 'root'))}",
        ]
        return lines

    def launch(self, spec: LaunchSpec, output_fd: int, marker_fd: int) -> ContainerProcess:
        """Start the container with stdout+stderr on output_fd; `started` is written to marker_fd at exec."""
        d = spec.state_dir
        (d / "upper").mkdir(parents=True, exist_ok=True)
        (d / "root").mkdir(exist_ok=True)
        cgroup = self._cgroup(spec)
        q = shlex.quote
        lines = self._overlay_script(d, cgroup)
        root = d / "root"
        for target in spec.extra_files:
            # make sure the target is a plain file in the overlay (it may be a symlink on the host)
            lines.append(f"rm -f {q(str(root) + target)}; : > {q(str(root) + target)}")
        # in the child the marker pipe is fd 3 (dash knows only single-digit fds), bwrap's info pipe fd 4
        stub = 'echo started >&3; exec 3>&-; exec "$@"'
        mounts = sorted(spec.mounts, key=lambda m: m.dest.rstrip("/").count("/"))
        info_r = info_w = -1
        if self.mode == "bwrap":
            info_r, info_w = os.pipe()
            args = [
                "bwrap",
                "--bind",
                str(root),
                "/",
                "--dev",
                "/dev",
                "--proc",
                "/proc",
                "--ro-bind",
                "/sys",
                "/sys",
                "--tmpfs",
                "/tmp",
                *[arg for path in kept_under_tmp() for arg in ("--ro-bind", path, path)],
                "--unshare-pid",
                "--as-pid-1",
                "--unshare-uts",
                "--unshare-ipc",
                "--hostname",
                spec.hostname,
                "--die-with-parent",
                "--info-fd",
                "4",
            ]
            for target, source in spec.extra_files.items():
                args += ["--bind", source, target]
            for m in mounts:
                args += ["--ro-bind" if m.read_only else "--bind", m.source, resolve_in_root(m.dest)]
            args += ["--clearenv"]
            for key, value in spec.env:
                args += ["--setenv", key, value]
            args += ["--chdir", spec.workdir or "/"]
            if spec.workdir and spec.workdir != "/":
                lines.append(f"mkdir -p {q(str(root) + spec.workdir)}")
            args += ["--", "/bin/sh", "-c", stub, "sh", *spec.argv]
            lines.append("exec " + " ".join(q(a) for a in args))
            wanted = [marker_fd, info_w]
        else:
            lines.append(f"hostname {q(spec.hostname)}")
            for sub in ("proc", "dev", "sys"):
                lines.append(f"mount --rbind /{sub} {q(str(root / sub))}")
            lines.append(f"mount -t tmpfs tmpfs {q(str(root / 'tmp'))}")
            for path in kept_under_tmp():
                lines.append(
                    f"mkdir -p {q(str(root) + path)} && mount --bind {q(path)} {q(str(root) + path)}"
                )
            for target, source in spec.extra_files.items():
                lines.append(f"mount --bind {q(source)} {q(str(root) + target)}")
            for m in mounts:
                dest = str(root) + resolve_in_root(m.dest)
                if os.path.isdir(m.source):
                    lines.append(f"mkdir -p {q(dest)}")
                else:
                    lines.append(f"mkdir -p {q(os.path.dirname(dest))}; [ -e {q(dest)} ] || : > {q(dest)}")
                lines.append(f"mount --bind {q(m.source)} {q(dest)}")
                if m.read_only:
                    lines.append(f"mount -o remount,bind,ro {q(dest)}")
            if spec.workdir and spec.workdir != "/":
                lines.append(f"mkdir -p {q(str(root) + spec.workdir)}")
            env_args = " ".join(q(f"{k}={v}") for k, v in spec.env)
            inner = f"cd {q(spec.workdir or '/')} && " + stub
            lines.append(
                f"exec chroot {q(str(root))} /usr/bin/env -i {env_args} /bin/sh -c {q(inner)} sh "
                + " ".join(q(a) for a in spec.argv)
            )
            wanted = [marker_fd]
        script = d / "launch.sh"
        script.write_text("\n".join(lines) + "\n")
        popen = subprocess.Popen(
            ["unshare", "--mount", "--uts", "--propagation", "private", "/bin/sh", str(script)],
            stdin=subprocess.DEVNULL,
            stdout=output_fd,
            stderr=output_fd,
            pass_fds=tuple(range(3, 3 + len(wanted))),
            preexec_fn=_fd_mover(wanted),
            start_new_session=True,
            close_fds=True,
        )
        proc = ContainerProcess(popen, self.mode, cgroup)
        if self.mode == "bwrap":
            os.close(info_w)
            threading.Thread(target=self._read_info, args=(info_r, proc), daemon=True).start()
        return proc

    @staticmethod
    def _read_info(fd: int, proc: ContainerProcess) -> None:
        data = b""
        try:
            while True:
                ready, _, _ = select.select([fd], [], [], 30)
                if not ready:
                    break
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                data += chunk
                try:
                    info = json.loads(data)
                except ValueError:
                    continue
                with proc._lock:
                    proc.init_pid = int(info["child-pid"])
                break
        finally:
            proc.init_known.set()
            os.close(fd)


def kept_under_tmp() -> list[str]:
    """Host paths under /tmp that containers must still see after /tmp becomes a tmpfs.

    The "images" are the host itself: when the checkout (and its virtualenv) lives
    under /tmp, as a CI clone may, the interpreter and kuberunner-helper live there too.
    """
    candidates = {sys.prefix, os.path.dirname(os.path.realpath(sys.executable)), os.getcwd(), *sys.path}
    kept: list[str] = []
    for path in sorted(os.path.realpath(p) for p in candidates if p):
        if not path.startswith("/tmp/") or not os.path.isdir(path):
            continue
        if any(path == k or path.startswith(k + "/") for k in kept):
            continue
        kept.append(path)
    return kept
