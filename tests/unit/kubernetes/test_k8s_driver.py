"""The in-pod drivers, run for real under dash, bash and busybox sh in temporary directories.

Each test builds a small "container": a bin directory whose ``sh`` is the shell under test
(no bash on the PATH, so stages run with that shell too) plus the few tools an image has,
stand-in stage scripts in a scripts directory, and a state directory shared by the drivers.
"""

from __future__ import annotations

import dataclasses
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kuberunner.build import Build
from kuberunner.config.schema import RunnerConfig
from kuberunner.executors.kubernetes.driver import (
    DriverPlan,
    Marker,
    ServiceWait,
    after_script_key,
    build_driver,
    driver_plan,
    helper_driver,
    init_driver,
    job_scripts,
    parse_marker,
)
from kuberunner.executors.kubernetes.executor import helper_command_for
from kuberunner.job import JobPayload

SHELLS = {"dash": ["dash"], "bash": ["bash"], "busybox": ["busybox", "sh"]}
NONCE = "t3st0nce"
MARK = re.compile(rb"\x1ekuberunner:" + NONCE.encode() + rb":([^\n]*)\n")


@pytest.fixture(params=sorted(SHELLS))
def shell(request: pytest.FixtureRequest) -> str:
    if shutil.which(SHELLS[request.param][0]) is None:
        pytest.fail(f"{request.param} is needed for these tests: install it")
    return str(request.param)


def _tool(name: str, shell: str) -> str:
    if shell == "busybox":
        return shutil.which("busybox") or "/bin/busybox"
    found = shutil.which(name)
    assert found, f"{name} is not installed"
    return found


@dataclass
class Container:
    """One container of a job pod, as the drivers see it."""

    root: Path
    shell: str
    setsid: bool = True
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("bin", "scripts", "state", "builds"):
            (self.root / name).mkdir(exist_ok=True)
        sh = self.root / "bin" / "sh"
        if self.shell == "busybox":
            sh.symlink_to(_tool("busybox", "busybox"))  # busybox acts as its argv[0]
        else:
            sh.symlink_to(_tool(self.shell, self.shell))
        tools = ["sleep", "mv", "rm", "cat", "seq", "echo"] + (["setsid"] if self.setsid else [])
        for tool in tools:
            (self.root / "bin" / tool).symlink_to(_tool(tool, self.shell))

    @property
    def state(self) -> Path:
        return self.root / "state"

    def scripts(self, **stages: str) -> None:
        for key, body in stages.items():
            (self.root / "scripts" / key.replace("__", ".")).write_text(body + "\n")

    def start(self, driver: str) -> subprocess.Popen[bytes]:
        env = {
            "PATH": str(self.root / "bin"),
            "KUBERUNNER_SCRIPTS_DIR": str(self.root / "scripts"),
            "KUBERUNNER_STATE_DIR": str(self.state),
        }
        proc = subprocess.Popen(
            [str(self.root / "bin" / "sh"), str(self.root / "scripts" / driver)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def run(self, driver: str, timeout: float = 30) -> tuple[int, bytes]:
        proc = self.start(driver)
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out


@pytest.fixture
def container(shell: str, tmp_path: Path) -> Iterator[Container]:
    c = Container(tmp_path, shell)
    yield c
    for proc in c.procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def plan(container: Container, **changes: object) -> DriverPlan:
    base = DriverPlan(
        job_id=1,
        nonce=NONCE,
        builds_dir=str(container.root / "builds"),
        init_stages=(("prepare_script", 1), ("get_sources", 1)),
        steps=("step_script",),
        after_script=True,
        after_script_timeout=30,
        after_script_ignore_errors=True,
        script_timeout=None,
        on_success=("archive_cache", "upload_artifacts_on_success"),
        on_failure=("upload_artifacts_on_failure",),
        cleanup=True,
        kill_grace=5,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def install(container: Container, p: DriverPlan) -> None:
    container.scripts(init=init_driver(p), build=build_driver(p), helper=helper_driver(p))


def markers(output: bytes) -> list[str]:
    return [m.decode() for m in MARK.findall(output)]


def read_until(proc: subprocess.Popen[bytes], needle: bytes, timeout: float = 20) -> bytes:
    assert proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while needle not in seen:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not sel.select(remaining):
                raise TimeoutError(f"{needle!r} not seen: {seen!r}")
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                raise AssertionError(f"ended before {needle!r}: {seen!r}")
            seen += chunk
    return seen


def wait_term_trapped(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """Until the driver handles TERM (its trap is set): SigCgt in /proc/<pid>/status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = Path(f"/proc/{proc.pid}/status").read_text()
        caught = int(re.search(r"SigCgt:\s*([0-9a-f]+)", status)[1], 16)  # type: ignore[index]
        if caught & (1 << (signal.SIGTERM - 1)):
            return
        time.sleep(0.005)
    raise TimeoutError("the driver never set its TERM trap")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


STAGES = {
    "prepare_script": "echo preparing",
    "get_sources": "echo fetching",
    "step_script": "echo step; printf 'no newline'",
    "after_script__success": 'echo "after success"',
    "after_script__failed": 'echo "after failed"',
    "after_script__canceled": 'echo "after canceled"',
    "archive_cache": "echo caching",
    "upload_artifacts_on_success": "echo uploading for success",
    "upload_artifacts_on_failure": "echo uploading for failure",
    "cleanup_file_variables": "echo cleaning",
}


# ------------------------------------------------------------------------------ markers


def test_markers_are_found_after_output_without_a_newline_and_only_for_this_job() -> None:
    line = b"partial\x1ekuberunner:" + NONCE.encode() + b":stage:end:step_script:3:timeout\n"
    assert parse_marker(line, NONCE) == (b"partial", Marker("end", "step_script", 3, "timeout"))
    start = b"\x1ekuberunner:" + NONCE.encode() + b":stage:start:get_sources\n"
    assert parse_marker(start, NONCE) == (b"", Marker("start", "get_sources"))
    result = b"\x1ekuberunner:" + NONCE.encode() + b":result:0:success\n"
    assert parse_marker(result, NONCE) == (b"", Marker("result", exit_code=0, note="success"))
    done = b"\x1ekuberunner:" + NONCE.encode() + b":done:helper:1\n"
    assert parse_marker(done, NONCE) == (b"", Marker("done", "helper", 1))
    assert parse_marker(b"\x1ekuberunner:0therjob:stage:start:get_sources\n", NONCE) is None
    assert parse_marker(b"kuberunner:" + NONCE.encode() + b":stage:start:x\n", NONCE) is None
    assert parse_marker(b"\x1ekuberunner:" + NONCE.encode() + b":stage:start:$(rm)\n", NONCE) is None


# ------------------------------------------------------------------------------ init


def test_init_runs_its_stages_in_order_retries_and_stops_at_the_first_failure(container: Container) -> None:
    p = plan(
        container,
        init_stages=(
            ("prepare_script", 1),
            ("get_sources", 2),
            ("restore_cache", 1),
            ("download_artifacts", 1),
        ),
    )
    install(container, p)
    tried = container.root / "tried"
    container.scripts(
        prepare_script="echo preparing",
        get_sources=f'if [ -e "{tried}" ]; then echo fetched; else : > "{tried}"; exit 4; fi',
        restore_cache="echo restoring; exit 5",
        download_artifacts="echo never",
    )
    rc, out = container.run("init")

    assert rc == 5
    assert markers(out) == [
        "stage:start:prepare_script",
        "stage:end:prepare_script:0",
        "stage:start:get_sources",
        "stage:end:get_sources:4",
        "stage:start:get_sources",
        "stage:end:get_sources:0",
        "stage:start:restore_cache",
        "stage:end:restore_cache:5",
        "done:init:5",
    ]
    assert b"never" not in out and b"preparing\n" in out


# ------------------------------------------------------------------------------ build and helper


def test_a_successful_job_runs_steps_after_script_and_the_helper_in_order(container: Container) -> None:
    install(container, plan(container))
    container.scripts(**STAGES)
    helper = container.start("helper")
    rc, out = container.run("build")
    helper_out, _ = helper.communicate(timeout=30)

    assert rc == 0 and helper.returncode == 0
    assert (container.state / "build.rc").read_text() == "0 success\n"
    assert markers(out) == [
        "stage:start:step_script",
        "stage:end:step_script:0",
        "stage:start:after_script",
        "stage:end:after_script:0",
        "result:0:success",
    ]
    assert b"no newline\x1ekuberunner:" in out  # the end marker follows output without a newline
    assert b"after success" in out
    assert markers(helper_out) == [
        "stage:start:archive_cache",
        "stage:end:archive_cache:0",
        "stage:start:upload_artifacts_on_success",
        "stage:end:upload_artifacts_on_success:0",
        "stage:start:cleanup_file_variables",
        "stage:end:cleanup_file_variables:0",
        "done:helper:0",
    ]


def test_a_failing_step_runs_after_script_as_failed_and_the_on_failure_uploads(container: Container) -> None:
    install(container, plan(container))
    container.scripts(**{**STAGES, "step_script": "echo failing; exit 3"})
    helper = container.start("helper")
    rc, out = container.run("build")
    helper_out, _ = helper.communicate(timeout=30)

    assert rc == 3
    assert (container.state / "build.rc").read_text() == "3 failed\n"
    assert b"after failed" in out and "result:3:failed" in markers(out)
    assert "stage:start:upload_artifacts_on_failure" in markers(helper_out)
    assert b"uploading for success" not in helper_out
    assert helper.returncode == 0


def test_a_failed_upload_fails_the_helper_of_a_successful_job(container: Container) -> None:
    install(container, plan(container))
    container.scripts(**{**STAGES, "upload_artifacts_on_success": "echo 413 too large; exit 1"})
    helper = container.start("helper")
    assert container.run("build")[0] == 0
    helper_out, _ = helper.communicate(timeout=30)

    assert helper.returncode == 1
    assert "stage:end:cleanup_file_variables:0" in markers(helper_out)  # cleanup runs anyway


def test_term_stops_the_step_with_its_background_processes_and_after_script_runs(
    container: Container,
) -> None:
    install(container, plan(container))
    pid_file = container.state / "bg.pid"
    container.scripts(
        **{**STAGES, "step_script": f'sleep 300 & echo $! > "{pid_file}"; echo started; sleep 300'}
    )
    build = container.start("build")
    read_until(build, b"started\n")
    build.send_signal(signal.SIGTERM)
    out, _ = build.communicate(timeout=30)

    assert build.returncode == 143
    assert "stage:end:step_script:143:canceled" in markers(out)
    assert b"after canceled" in out
    assert (container.state / "build.rc").read_text() == "143 canceled\n"
    assert not alive(int(pid_file.read_text()))


def test_without_setsid_term_still_stops_the_whole_stage(shell: str, tmp_path: Path) -> None:
    container = Container(tmp_path, shell, setsid=False)
    try:
        install(container, plan(container))
        pid_file = container.state / "child.pid"
        container.scripts(
            **{**STAGES, "step_script": f"sh -c 'echo $$ > \"{pid_file}\"; sleep 300' & echo started; wait"}
        )
        build = container.start("build")
        read_until(build, b"started\n")
        build.send_signal(signal.SIGTERM)
        out, _ = build.communicate(timeout=30)
        assert "stage:end:step_script:143:canceled" in markers(out)
        assert not alive(int(pid_file.read_text()))
    finally:
        for proc in container.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)


def test_runner_script_timeout_stops_the_steps_and_after_script_runs_as_failed(container: Container) -> None:
    install(container, plan(container, script_timeout=1))
    container.scripts(**{**STAGES, "step_script": "echo started; sleep 300"})
    rc, out = container.run("build")

    assert rc == 143
    assert "stage:end:step_script:143:timeout" in markers(out)
    assert b"after failed" in out
    assert (container.state / "build.rc").read_text() == "143 failed\n"


def test_after_script_has_its_own_timeout_and_its_failure_is_ignored_by_default(container: Container) -> None:
    install(container, plan(container, after_script_timeout=1))
    container.scripts(**{**STAGES, "after_script__success": "echo slow; sleep 300"})
    rc, out = container.run("build")

    assert rc == 0
    assert "stage:end:after_script:143:timeout" in markers(out)
    assert (container.state / "build.rc").read_text() == "0 success\n"


def test_a_failing_after_script_fails_the_job_when_errors_are_not_ignored(container: Container) -> None:
    install(container, plan(container, after_script_ignore_errors=False))
    container.scripts(**{**STAGES, "after_script__success": "exit 9"})
    rc, _ = container.run("build")

    assert rc == 9
    assert (container.state / "build.rc").read_text() == "9 failed\n"


def test_the_helper_exits_on_term_when_the_build_never_started(container: Container) -> None:
    install(container, plan(container))
    container.scripts(**STAGES)
    helper = container.start("helper")
    wait_term_trapped(helper)
    helper.send_signal(signal.SIGTERM)
    out, _ = helper.communicate(timeout=10)

    assert helper.returncode == 143
    assert markers(out) == ["done:helper:143"]


def test_the_helper_keeps_waiting_on_term_while_the_build_runs_after_script(container: Container) -> None:
    install(container, plan(container))
    release = container.state / "release"
    container.scripts(
        **{
            **STAGES,
            "step_script": "echo started; sleep 300",
            "after_script__canceled": f'echo after; while [ ! -e "{release}" ]; do sleep 0.05; done',
        }
    )
    build = container.start("build")
    read_until(build, b"started\n")
    helper = container.start("helper")
    build.send_signal(signal.SIGTERM)
    read_until(build, b"after\n")
    wait_term_trapped(helper)
    helper.send_signal(signal.SIGTERM)  # the kubelet signals every container at once
    release.touch()
    build.communicate(timeout=30)
    out, _ = helper.communicate(timeout=30)

    assert "stage:start:upload_artifacts_on_failure" in markers(out)


def test_the_helper_treats_a_build_that_died_without_a_result_as_failed(tmp_path: Path) -> None:
    container = Container(tmp_path, "dash")
    install(container, plan(container))
    container.scripts(**STAGES)
    (container.state / "build.alive").touch()  # a build that started, beat once and died
    out, _ = container.start("helper").communicate(timeout=30)

    assert b"the build container stopped without a result" in out
    assert "stage:start:upload_artifacts_on_failure" in markers(out)


# ------------------------------------------------------------------------------ services


def test_the_build_waits_for_a_service_to_listen_before_the_script(container: Container) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        install(container, plan(container, services=(ServiceWait("db", (port,)),), service_timeout=60))
        container.scripts(**STAGES)
        build = container.start("build")
        seen = read_until(build, f"Waiting for service db to listen on port {port}".encode())
        assert markers(seen) == []  # the script has not started
        server.listen()
        out, _ = build.communicate(timeout=30)

    assert build.returncode == 0
    assert b"WARNING" not in out
    assert markers(out)[0] == "stage:start:step_script"


def test_a_service_that_never_listens_is_a_warning_and_the_script_runs(container: Container) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, never listening
        install(
            container, plan(container, services=(ServiceWait("docker", (port, port)),), service_timeout=1)
        )
        container.scripts(**STAGES)
        rc, out = container.run("build")

    assert rc == 0
    assert f"service docker is not listening on port {port} {port} after 1s".encode() in out
    assert "stage:end:step_script:0" in markers(out)


# ------------------------------------------------------------------------------ scripts Secret


def _build(helper_image: str, **payload: object) -> Build:
    data: dict[str, object] = {
        "id": 9,
        "token": "glcbt-64_TokenForDriverTests",
        "job_info": {"id": 9, "name": "test", "project_id": 3, "project_full_path": "acme/app"},
        "git_info": {"repo_url": "https://gitlab.example.com/acme/app.git", "ref": "main", "sha": "abc123"},
        "steps": [
            {"name": "script", "script": ["make"]},
            {"name": "after_script", "script": ['echo "status $CI_JOB_STATUS"']},
        ],
        "artifacts": [{"paths": ["out/"], "when": "always"}],
        "cache": [{"key": "deps", "paths": ["vendor/"]}],
        "variables": [{"key": "GET_SOURCES_ATTEMPTS", "value": "3", "public": True}],
    }
    data.update(payload)
    runner = RunnerConfig.model_validate(
        {"url": "https://gitlab.example.com", "token": "glrt-abc", "executor": "kubernetes"}
    )
    build = Build.create(JobPayload.parse(data), runner, executor_name="kubernetes")
    return dataclasses.replace(build, helper_command=helper_command_for(helper_image))


@pytest.mark.parametrize(
    ("image", "command"),
    [
        (
            "registry.gitlab.com/gitlab-org/gitlab-runner/gitlab-runner-helper:x86_64-v17.5.0",
            "gitlab-runner-helper",
        ),
        ("gitlab/gitlab-runner-helper:x86_64-v14.10.2", "gitlab-runner-helper"),
        ("mirror.example.com/gitlab-runner-helper@sha256:" + "a" * 64, "gitlab-runner-helper"),
        ("ghcr.io/kuberunner/helper:0.1.0", "kuberunner-helper"),
        ("registry.example.com/gitlab-runner-helper-fork:1", "kuberunner-helper"),
    ],
)
def test_the_stage_scripts_call_the_helper_the_helper_image_has(image: str, command: str) -> None:
    build = _build(image)
    scripts = job_scripts(build, driver_plan(build, nonce=NONCE))

    assert f"{command} artifacts-uploader" in scripts["upload_artifacts_on_success"]
    assert f"{command} cache-extractor" in scripts["restore_cache"]
    other = "kuberunner-helper" if command == "gitlab-runner-helper" else "gitlab-runner-helper"
    assert not any(f"{other} " in text for text in scripts.values())


def test_the_scripts_secret_holds_every_stage_once_and_after_script_per_status() -> None:
    build = _build("ghcr.io/kuberunner/helper:0.1.0")
    p = driver_plan(build, nonce=NONCE)
    scripts = job_scripts(build, p)

    assert p.init_stages == (("prepare_script", 1), ("get_sources", 3), ("restore_cache", 1))
    assert set(scripts) == {
        "init",
        "build",
        "helper",
        "prepare_script",
        "get_sources",
        "restore_cache",
        "step_script",
        *(after_script_key(s) for s in ("success", "failed", "canceled")),
        "archive_cache",
        "upload_artifacts_on_success",
        "upload_artifacts_on_failure",
    }
    for status in ("success", "failed", "canceled"):
        assert f"export CI_JOB_STATUS={status}" in scripts[after_script_key(status)]
    assert "kr_stage get_sources get_sources 3" in scripts["init"]
