"""The relay of ``kuberunner exec`` on Kubernetes, pod side: its Secrets, mounts, env and script."""

from __future__ import annotations

import base64
import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
from k8s_support import container, env_of, make_plan, payload, pod_of, validate

from kuberunner.build import Build
from kuberunner.config.schema import RunnerConfig
from kuberunner.executors.base import BuildError
from kuberunner.executors.kubernetes.driver import driver_plan, job_scripts, parse_marker
from kuberunner.executors.kubernetes.logs import StageSections
from kuberunner.executors.kubernetes.relay import (
    MAX_SECRETS,
    PART_BYTES,
    RELAY_DIR,
    SOURCES_FILE,
    RelayPlan,
    relay_secrets,
    sources_glob,
)
from kuberunner.helper.relay import RELAY_DIR_ENV, RELAY_MARK_ENV, RelayedRequest, RelayReader, request_lines
from kuberunner.runner.store_relay import pack_sources
from kuberunner.script import Stage
from kuberunner.trace import JobTrace

LABELS = {"app.kubernetes.io/managed-by": "kuberunner"}


def _reassemble(secrets: list[dict[str, object]]) -> dict[str, bytes]:
    parts: dict[str, bytes] = {}
    for secret in secrets:
        data = secret["data"]
        assert isinstance(data, dict)
        for key, value in data.items():
            parts[key] = base64.b64decode(value)
    files: dict[str, bytes] = {}
    for key in sorted(parts):
        name, _, number = key.rpartition(".")
        assert len(number) == 3 and number.isdigit()
        files[name] = files.get(name, b"") + parts[key]
    return files


def test_files_are_split_into_parts_that_fit_secrets_and_come_back_whole() -> None:
    files = {SOURCES_FILE: os.urandom(2 * PART_BYTES + 5), "get-abc": b"answer", "empty": b""}
    secrets = relay_secrets("runner-x-job-1", "ci", LABELS, files)
    for secret in secrets:
        validate(secret)
        data = secret["data"]
        assert sum(len(base64.b64decode(v)) for v in data.values()) <= PART_BYTES
        assert secret["metadata"]["labels"] == LABELS
    assert [s["metadata"]["name"] for s in secrets] == [
        f"runner-x-job-1-relay-{n}" for n in range(len(secrets))
    ]
    assert _reassemble(secrets) == files


def test_more_than_the_secrets_can_carry_fails_naming_the_sizes_and_the_way_out() -> None:
    files = {SOURCES_FILE: b"x" * (MAX_SECRETS * PART_BYTES + 1)}
    with pytest.raises(BuildError) as info:
        relay_secrets("runner-x-job-1", "ci", LABELS, files)
    message = str(info.value)
    assert info.value.reason == "runner_configuration_error"
    assert "12.0 MiB" in message and ".gitignore" in message and "GIT_STRATEGY: none" in message


def test_the_relay_is_mounted_and_announced_in_init_and_helper_only() -> None:
    relay = RelayPlan(("pod-relay-0", "pod-relay-1"), "kuberunner:abcd1234:", has_sources=True)
    pod = pod_of(make_plan(relay=relay))
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "kuberunner-relay")
    assert [s["secret"]["name"] for s in volume["projected"]["sources"]] == ["pod-relay-0", "pod-relay-1"]
    for name in ("init", "helper"):
        spec = container(pod, name)
        assert {"name": "kuberunner-relay", "mountPath": RELAY_DIR, "readOnly": True} in spec["volumeMounts"]
        assert env_of(spec)[RELAY_DIR_ENV] == RELAY_DIR
        assert env_of(spec)[RELAY_MARK_ENV] == "kuberunner:abcd1234:"
    build = container(pod, "build")  # the job's own script never sees the relay (nor its tokens)
    assert all(m["name"] != "kuberunner-relay" for m in build["volumeMounts"])
    assert RELAY_DIR_ENV not in env_of(build)


def test_a_relay_without_files_has_no_volume_but_still_sends_out() -> None:
    pod = pod_of(make_plan(relay=RelayPlan((), "kuberunner:abcd1234:")))
    assert all(v["name"] != "kuberunner-relay" for v in pod["spec"]["volumes"])
    assert env_of(container(pod, "helper"))[RELAY_MARK_ENV] == "kuberunner:abcd1234:"


def test_no_relay_no_trace_of_it() -> None:
    pod = pod_of(make_plan())
    assert "kuberunner-relay" not in str(pod) and RELAY_DIR_ENV not in str(pod)


def _build(project_dir: str = "/builds/acme/webapp") -> Build:
    runner = RunnerConfig.model_validate(
        {"name": "t", "url": "http://127.0.0.1:1", "token": "local", "executor": "kubernetes"}
    )
    job = payload(variables=[{"key": "GIT_STRATEGY", "value": "none", "public": True}])
    return Build.create(job, runner, executor_name="kubernetes", shared_builds_dir=False)


def test_get_sources_unpacks_the_working_tree_into_the_project_directory(tmp_path: Path) -> None:
    """The generated script, run for real: the parts, concatenated, unpacked where the job runs."""
    tree = tmp_path / "tree"
    (tree / "src").mkdir(parents=True)
    (tree / "src" / "main.py").write_text("print('hi')\n")
    (tree / "run.sh").write_text("#!/bin/sh\n")
    (tree / "run.sh").chmod(0o755)
    os.symlink("src/main.py", tree / "link")
    archive = pack_sources(tree, ["link", "run.sh", "src/main.py"])
    relay_dir = tmp_path / "relay"
    relay_dir.mkdir()
    half = len(archive) // 2
    (relay_dir / f"{SOURCES_FILE}.000").write_bytes(archive[:half])
    (relay_dir / f"{SOURCES_FILE}.001").write_bytes(archive[half:])
    build = _build()
    plan = driver_plan(build, nonce="abcd1234", sources_archive=sources_glob())
    script = job_scripts(build, plan)[Stage.GET_SOURCES]
    project = tmp_path / "project"
    script = script.replace(RELAY_DIR, str(relay_dir)).replace(build.project_dir, str(project))
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "Unpacking the working tree" in done.stdout
    assert (project / "src" / "main.py").read_text() == "print('hi')\n"
    assert os.access(project / "run.sh", os.X_OK)
    assert os.readlink(project / "link") == "src/main.py"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        assert {m.uid for m in tar.getmembers()} == {0}  # the pod's user owns what it unpacks


def test_a_damaged_working_tree_fails_get_sources(tmp_path: Path) -> None:
    relay_dir = tmp_path / "relay"
    relay_dir.mkdir()
    (relay_dir / f"{SOURCES_FILE}.000").write_bytes(b"not a tar.gz")
    build = _build()
    plan = driver_plan(build, nonce="abcd1234", sources_archive=sources_glob())
    script = job_scripts(build, plan)[Stage.GET_SOURCES]
    script = script.replace(RELAY_DIR, str(relay_dir)).replace(build.project_dir, str(tmp_path / "p"))
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode != 0


def test_relay_lines_are_markers_of_this_job_only() -> None:
    lines = list(request_lines("kuberunner:abcd1234:", "POST", "/x", {"JOB-TOKEN": "t"}, b"body"))
    reader = RelayReader()
    got = None
    for line in lines:
        parsed = parse_marker((line + "\n").encode(), "abcd1234")
        assert parsed is not None and parsed[1].kind == "relay"
        got = reader.feed(parsed[1].note) or got
        assert parse_marker(line.encode(), "other999") is None  # another job's nonce: plain output
    assert got is not None and got.body == b"body"


def _relay_log(body: bytes) -> list[bytes]:
    lines = request_lines(
        "kuberunner:abcd1234:", "POST", "/api/v4/jobs/1/artifacts", {"JOB-TOKEN": "tok"}, body
    )
    return [(line + "\n").encode() for line in lines]


def test_the_log_follower_hands_relay_lines_over_and_writes_only_the_job_s_output() -> None:
    out: list[bytes] = []
    got: list[RelayedRequest] = []
    lost: list[str] = []
    sections = StageSections(JobTrace(out.append, []), "abcd1234", relay=got.append, relay_lost=lost.append)
    sections.line(b"Uploading artifacts...\n")
    for line in _relay_log(b"x" * 9000):
        sections.line(line)
    sections.line(b"done\n")
    assert [r.body for r in got] == [b"x" * 9000] and lost == []
    written = b"".join(out)
    assert b"Uploading artifacts...\n" in written and b"done\n" in written
    assert b"relay" not in written and b"tok" not in written


def test_a_request_with_lines_missing_is_reported_lost_and_never_delivered() -> None:
    got: list[RelayedRequest] = []
    lost: list[str] = []
    sections = StageSections(
        JobTrace(lambda _: None, []), "abcd1234", relay=got.append, relay_lost=lost.append
    )
    lines = _relay_log(b"y" * 9000)
    for line in [lines[0], *lines[2:]]:  # a log resumed after the kubelet rotated it away
        sections.line(line)
    assert got == [] and lost and "lost lines" in lost[0]
