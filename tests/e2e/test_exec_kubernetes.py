"""``kuberunner exec --executor kubernetes``: a local pipeline whose jobs run as pods.

The Kubernetes double runs the pods as real processes (see tests/doubles/kube). Nothing in a
pod talks to the runner's machine directly: the working tree and the artifacts a job depends
on go in through Secrets, uploads come back through the pod log (the relay), as they must
with a cluster that cannot reach the developer's laptop. The runner's account has the seed
guide's Role only.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomlkit
from tests.doubles.kube import KubeDouble, Timings
from tests.e2e.test_kubernetes_executor import SEED_ROLE, helper_path_patch

from kuberunner.config.schema import RunnerConfig
from kuberunner.executors import Cancellation
from kuberunner.executors.kubernetes import relay as relay_module
from kuberunner.pipeline import PipelineJob
from kuberunner.runner.local import LocalRunError, PipelineResult, Reporter, kubernetes_runner, run_pipeline

NS = "ci"
KUBERUNNER = str(Path(sys.executable).parent / "kuberunner")

PIPELINE = """\
stages: [build, test]

build:
  stage: build
  image: alpine:3.19
  script:
    - cat input.txt
    - test ! -e ignored.log && echo "ignored files stay out"
    - test ! -e .git && echo "no .git in the pod"
    - mkdir -p out && echo "built from $(cat input.txt)" > out/result.txt
    - echo "VERSION=1.2.3" > build.env
  artifacts:
    paths: [out/]
    reports:
      dotenv: build.env

test:
  stage: test
  image: alpine:3.19
  script:
    - cat out/result.txt
    - echo "version is $VERSION"
    - echo "in $(pwd)"

no-sources:
  stage: test
  variables:
    GIT_STRATEGY: none
  dependencies: []
  script:
    - ls -A | wc -l
"""


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def make_project(root: Path, pipeline: str = PIPELINE, files: dict[str, str | bytes] | None = None) -> Path:
    root.mkdir(parents=True)
    (root / ".gitlab-ci.yml").write_text(pipeline)
    (root / "input.txt").write_text("the working tree\n")
    (root / ".gitignore").write_text("*.log\n.kuberunner/\n")
    (root / "ignored.log").write_text("never copied\n")
    for name, content in (files or {}).items():
        path = root / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    _git(root, "init", "-q", "-b", "main")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@example.com", "add", "-A")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "first")
    return root


@dataclass
class Cluster:
    kube: KubeDouble
    token: str
    tmp: Path

    def kubernetes_table(self, **extra: Any) -> dict[str, Any]:
        table: dict[str, Any] = {
            "host": self.kube.host,
            "ca_file": self.kube.ca_file,
            "bearer_token": self.token,
            "namespace": NS,
            "image": "alpine:3.19",
            "helper_image": "registry.example.com/kuberunner/helper:e2e",
            "pod_spec": [{"name": "helper-path", "patch": helper_path_patch(), "patch_type": "strategic"}],
        }
        table.update(extra)
        return table

    def runner(self, **extra: Any) -> RunnerConfig:
        return RunnerConfig.model_validate(
            {
                "name": "kube",
                "url": "https://gitlab.example.com",
                "token": "glrt-unused",
                "executor": "kubernetes",
                "kubernetes": self.kubernetes_table(**extra),
            }
        )

    def leftovers(self) -> list[str]:
        return [o["metadata"]["name"] for o in [*self.kube.pods(NS), *self.kube.secrets(NS)]]

    def config_file(self, **extra: Any) -> Path:
        doc = {
            "concurrent": 2,
            "runners": [
                {
                    "name": "kube",
                    "url": "https://gitlab.example.com",
                    "token": "glrt-unused",
                    "executor": "kubernetes",
                    "kubernetes": self.kubernetes_table(**extra),
                }
            ],
        }
        path = self.tmp / "config.toml"
        path.write_text(tomlkit.dumps(doc))
        return path


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with KubeDouble(state_dir=tmp_path / "kube", timings=Timings(grace_period_cap=5)) as kube:
        token = kube.add_service_account(NS, "runner", rules=SEED_ROLE)
        yield Cluster(kube, token, tmp_path)
        assert kube.errors == []


def _log(result: PipelineResult, name: str) -> str:
    job = result.get(name)
    assert job is not None and job.log_path is not None
    return job.log_path.read_text(errors="replace")


async def test_jobs_run_as_pods_with_the_working_tree_and_their_artifacts(cluster: Cluster) -> None:
    project = make_project(cluster.tmp / "project")
    result = await run_pipeline(project, executor="kubernetes", runner=cluster.runner(), concurrency=2)
    statuses = {j.name: j.status for j in result.jobs}
    assert statuses == {"build": "success", "test": "success", "no-sources": "success"}, [
        (j.name, j.reason) for j in result.jobs
    ]
    build = _log(result, "build")
    assert "the working tree" in build
    assert "ignored files stay out" in build
    assert "no .git in the pod" in build
    assert "Using Kubernetes namespace: ci" in build
    test = _log(result, "test")
    assert "built from the working tree" in test  # the artifact came back out and went in again
    assert "version is 1.2.3" in test  # the dotenv report too
    assert "in /builds/" in test  # the Kubernetes executor's directories, not this machine's
    assert _log(result, "no-sources").splitlines().count("0") == 1  # GIT_STRATEGY: none: empty
    for name in ("build", "test"):
        text = _log(result, name)
        assert "relay:" not in text and "\x1e" not in text  # the relay's lines never reach the log
    # every pod and Secret is gone; the pods only ever reached the API through Secrets and logs
    assert cluster.leftovers() == []
    created = [r.path for r in cluster.kube.requests if r.method == "POST" and "/secrets" in r.path]
    assert len(created) == 2 + 2 + 1  # scripts and relay for build and test; no-sources: scripts only


async def test_a_working_tree_too_large_for_secrets_fails_the_job_saying_what_to_do(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(relay_module, "PART_BYTES", 4096)
    monkeypatch.setattr(relay_module, "MAX_SECRETS", 2)
    pipeline = "job:\n  script: [echo never]\n"
    project = make_project(cluster.tmp / "project", pipeline, {"blob.bin": os.urandom(20000)})
    result = await run_pipeline(project, executor="kubernetes", runner=cluster.runner())
    job = result.get("job")
    assert job is not None and job.status == "failed"
    assert "more than the 8.0 KiB" in job.reason  # the limit, in a size a person reads
    assert "can carry into a pod" in job.reason and ".gitignore" in job.reason
    assert "GIT_STRATEGY: none" in job.reason
    assert "never" not in _log(result, "job").replace("echo never", "")
    assert cluster.leftovers() == []


async def test_a_dotenv_report_the_store_refuses_fails_the_job_that_uploaded_it(cluster: Cluster) -> None:
    pipeline = textwrap.dedent(
        """\
        job:
          script:
            - echo "not a dotenv line" > bad.env
          artifacts:
            reports:
              dotenv: bad.env
        """
    )
    project = make_project(cluster.tmp / "project", pipeline)
    result = await run_pipeline(project, executor="kubernetes", runner=cluster.runner())
    job = result.get("job")
    assert job is not None and job.status == "failed"
    assert "uploading artifacts failed" in job.reason
    assert "400" in job.reason and "line 1" in job.reason
    assert "Uploading artifacts failed: POST /api/v4/jobs/1/artifacts: 400" in _log(result, "job")
    assert cluster.leftovers() == []


async def test_gitlab_runner_s_helper_image_is_refused_with_the_key_to_change(cluster: Cluster) -> None:
    project = make_project(cluster.tmp / "project", "job:\n  script: [echo hi]\n")
    runner = cluster.runner(
        helper_image="registry.gitlab.com/gitlab-org/gitlab-runner/gitlab-runner-helper:x86_64-v17.0.0"
    )
    result = await run_pipeline(project, executor="kubernetes", runner=runner)
    job = result.get("job")
    assert job is not None and job.status == "failed"
    assert "helper_image" in job.reason and "kuberunner's helper image" in job.reason
    assert cluster.leftovers() == []


def test_without_any_cluster_exec_says_where_the_address_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(LocalRunError) as info:
        kubernetes_runner(None)
    message = str(info.value)
    assert "--executor kubernetes" in message and "kubeconfig" in message and "host =" in message


def test_the_kubeconfig_context_s_namespace_is_used_when_config_toml_names_none(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    kubeconfig = cluster.kube.kubeconfig(cluster.tmp / "kubeconfig", token=cluster.token, namespace=NS)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    runner = kubernetes_runner(None)
    assert runner.executor == "kubernetes"
    assert runner.kubernetes is not None and runner.kubernetes.namespace == NS


def test_the_command_line_runs_a_pipeline_on_the_kubeconfig_s_cluster(cluster: Cluster) -> None:
    """The user's path: kubeconfig for the connection, --config for the helper image settings."""
    project = make_project(cluster.tmp / "project")
    kubeconfig = cluster.kube.kubeconfig(cluster.tmp / "kubeconfig", token=cluster.token, namespace=NS)
    config = cluster.config_file(host="", ca_file="", bearer_token="", namespace="")
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "NO_COLOR": "1"}
    done = subprocess.run(
        [KUBERUNNER, "exec", "--cwd", str(project), "--executor", "kubernetes", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(r"^test +> version is 1\.2\.3$", done.stdout, re.M)
    assert re.search(r"^build +> the working tree$", done.stdout, re.M)
    assert re.search(r"^test +> Using Kubernetes namespace: ci$", done.stdout, re.M)  # the context's
    summary = done.stdout[done.stdout.index("Summary") :]
    assert summary.count("success") == 3
    assert cluster.leftovers() == []
    assert json.dumps(cluster.token) not in done.stdout + done.stderr


async def test_the_cache_survives_from_one_run_to_the_next_through_the_store(cluster: Cluster) -> None:
    pipeline = textwrap.dedent(
        """\
        job:
          cache:
            key: deps
            paths: [vendor/]
          script:
            - if [ -f vendor/stamp ]; then echo "cache hit $(cat vendor/stamp)"; else echo "cache miss"; fi
            - mkdir -p vendor && echo "from run $RUN" > vendor/stamp
        """
    )
    project = make_project(cluster.tmp / "project", pipeline)
    first = await run_pipeline(
        project, executor="kubernetes", runner=cluster.runner(), variables={"RUN": "1"}
    )
    assert first.exit_code == 0
    assert "cache miss" in _log(first, "job")
    second = await run_pipeline(
        project, executor="kubernetes", runner=cluster.runner(), variables={"RUN": "2"}
    )
    assert second.exit_code == 0
    log = _log(second, "job")
    assert "cache hit from run 1" in log, log
    assert "Successfully extracted cache" in log
    assert cluster.leftovers() == []


async def test_interrupting_the_run_stops_the_pod_and_removes_everything(cluster: Cluster) -> None:
    pipeline = (
        "job:\n  script:\n    - echo started\n    - sleep 300\n  after_script:\n    - echo cleaning up\n"
    )
    project = make_project(cluster.tmp / "project", pipeline)
    cancel = Cancellation()

    class CancelOnStart(Reporter):
        def job_line(self, job: PipelineJob, line: str) -> None:
            if line == "started":
                cancel.cancel("interrupted by the test")

    result = await run_pipeline(
        project, executor="kubernetes", runner=cluster.runner(), reporter=CancelOnStart(), cancel=cancel
    )
    job = result.get("job")
    assert job is not None and job.status == "canceled"
    assert "cleaning up" in _log(result, "job")  # a graceful cancel still runs after_script
    assert cluster.leftovers() == []


def test_what_a_killed_run_left_in_the_cluster_is_removed_by_the_next_run(cluster: Cluster) -> None:
    project = make_project(cluster.tmp / "project", "job:\n  script:\n    - echo started\n    - sleep 300\n")
    config = cluster.config_file()
    command = [KUBERUNNER, "exec", "--cwd", str(project), "--executor", "kubernetes", "--config", str(config)]
    env = {**os.environ, "NO_COLOR": "1"}
    killed = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert killed.stdout is not None
        for line in killed.stdout:  # the job's pod runs its script
            if line.rstrip().endswith("> started"):
                break
        else:
            pytest.fail("the job never started")
    finally:
        killed.kill()  # as kill -9 would: no clean-up at all
        killed.wait()
    assert [p["metadata"]["name"] for p in cluster.kube.pods(NS)]  # left behind
    # the next run of the same project (same state directory) removes them before its own job
    (project / ".gitlab-ci.yml").write_text("job:\n  script: [echo second run]\n")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    cluster.kube.wait_for(lambda: cluster.leftovers() == [])


async def test_a_service_of_the_yaml_runs_beside_the_job_under_its_alias(cluster: Cluster) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    daemon = (
        "import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
        f"s.bind(('127.0.0.1', {port})); s.listen()\n"
        "while True:\n    c, _ = s.accept(); c.sendall(b'service says hi'); c.close()"
    )
    client = (
        "import socket, time\n"
        "for _ in range(200):\n"
        "    try:\n"
        f"        print(socket.create_connection(('db', {port})).recv(100).decode()); break\n"
        "    except OSError:\n"
        "        time.sleep(0.05)"
    )
    pipeline = {
        "job": {
            "image": "python:3.11",
            "services": [
                {"name": "postgres-like:1", "alias": "db", "entrypoint": [sys.executable, "-c", daemon]}
            ],
            "script": [f"{sys.executable} -c {shlex.quote(client)}"],
        }
    }
    project = make_project(cluster.tmp / "project", json.dumps(pipeline))
    result = await run_pipeline(project, executor="kubernetes", runner=cluster.runner())
    assert result.exit_code == 0, _log(result, "job")
    assert "service says hi" in _log(result, "job")
    assert cluster.leftovers() == []
