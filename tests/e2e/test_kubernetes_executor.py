"""Real jobs on the Kubernetes executor: the GitLab double hands them out, the Kubernetes double runs
their pods as real processes (volumes mounted, logs kept by a kubelet), the runner watches and reads.

The runner's account has exactly the Role of the seed guide (pods, pods/log, secrets, no events),
so every test also shows that this Role is enough. Images are ignored by the double (containers
run the host's programs); the helper is this checkout's ``kuberunner-helper``, put on the PATH of
the helper containers with a ``pod_spec`` patch, as an administrator could do.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
from tests.doubles.gitlab import GitLabDouble, JobHandle, make_bare_repo
from tests.doubles.kube import KubeDouble, Timings

from kuberunner.build import Build
from kuberunner.config.schema import KubernetesConfig, RunnerConfig
from kuberunner.executors import Cancellation
from kuberunner.executors.kubernetes import KubernetesExecutor
from kuberunner.gitlab.client import GitLabClient, runner_info
from kuberunner.kube import connect
from kuberunner.runner.job import JobReport, run_gitlab_job

NS = "ci"
SYSTEM_ID = "s_e2ekube00001"
VENV_BIN = str(Path(sys.executable).parent)
SEED_ROLE: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "get", "watch", "create", "delete"]},
    {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["pods/attach"], "verbs": ["list", "get", "create", "delete", "update"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["list", "get", "create", "delete", "update"]},
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list", "get", "create", "delete", "update"]},
]
SECTION_MARK = re.compile(rb"section_(?:start|end):\d+:([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\r\x1b\[0K")


def helper_path_patch() -> str:
    """A pod_spec patch putting this checkout's kuberunner-helper on the helper containers' PATH."""
    env = [{"name": "PATH", "value": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin"}]
    return json.dumps(
        {
            "initContainers": [{"name": "init", "env": env}],
            "containers": [{"name": "helper", "env": env}],
        }
    )


@dataclass
class Env:
    kube: KubeDouble
    gitlab: GitLabDouble
    token: str
    runner_token: str
    tmp: Path

    def runner(self, namespace: str = NS, token: str | None = None, **kubernetes: Any) -> RunnerConfig:
        table: dict[str, Any] = {
            "host": self.kube.host,
            "ca_file": self.kube.ca_file,
            "bearer_token": token or self.token,
            "namespace": namespace,
            "image": "alpine:3.19",
            "helper_image": "registry.example.com/kuberunner/helper:e2e",
            "pod_spec": [{"name": "helper-path", "patch": helper_path_patch(), "patch_type": "strategic"}],
        }
        table.update(kubernetes)
        return RunnerConfig.model_validate(
            {
                "name": "kube-e2e",
                "url": self.gitlab.url,
                "token": self.runner_token,
                "executor": "kubernetes",
                "kubernetes": table,
            }
        )

    async def run(
        self,
        job: JobHandle,
        *,
        runner: RunnerConfig | None = None,
        executor: KubernetesExecutor | None = None,
        cancel: Cancellation | None = None,
    ) -> JobReport:
        runner = runner or self.runner()
        executor = executor or KubernetesExecutor(system_id=SYSTEM_ID)
        async with GitLabClient(self.gitlab.url) as client:
            answer = await client.request_job(self.runner_token, system_id=SYSTEM_ID, info=runner_info())
            assert answer.job is not None and answer.job.id == job.id
            report = await run_gitlab_job(
                client,
                answer.job,
                runner=runner,
                executor=executor,
                make_build=lambda p: Build.create(p, runner, executor_name="kubernetes"),
                cancel=cancel,
            )
        assert report is not None
        return report

    def leftovers(self, namespace: str = NS) -> list[str]:
        objects = [*self.kube.pods(namespace), *self.kube.secrets(namespace)]
        return [o["metadata"]["name"] for o in objects if o["metadata"]["name"].startswith("runner-")]

    def k8s_requests(self) -> list[tuple[str, str]]:
        return [(r.method, r.path) for r in self.kube.requests]


@pytest.fixture
def env(gitlab: GitLabDouble, tmp_path: Path) -> Iterator[Env]:
    repo = make_bare_repo(tmp_path / "repos", name="webapp", files={"data/input.txt": "from git\n"})
    gitlab.add_repo("acme/webapp", repo.path)
    with KubeDouble(state_dir=tmp_path / "kube", timings=Timings(grace_period_cap=5)) as kube:
        token = kube.add_service_account(NS, "runner", rules=SEED_ROLE)
        yield Env(kube, gitlab, token, gitlab.create_runner().token, tmp_path)
        assert kube.errors == []


def text(job: JobHandle) -> str:
    return job.trace.decode("utf-8", "replace")


def sections(job: JobHandle) -> list[str]:
    """Section names in the order they were opened."""
    return [m[1].decode() for m in SECTION_MARK.finditer(job.trace) if b"section_start" in m[0]]


def section_body(trace: bytes, name: str) -> bytes:
    start = re.search(rb"section_start:\d+:" + name.encode() + rb"\r\x1b\[0K", trace)
    end = re.search(rb"section_end:\d+:" + name.encode() + rb"\r\x1b\[0K", trace)
    assert start and end, f"no section {name}"
    return trace[start.end() : end.start()]


# ------------------------------------------------------------------------- success and failure


async def test_a_job_runs_in_its_pod_and_everything_is_removed_afterwards(env: Env) -> None:
    job = env.gitlab.enqueue(
        script=["echo hello from $CI_JOB_NAME", "cat data/input.txt", 'printf "no newline at the end"'],
        masked={"DEPLOY_TOKEN": "s3cr3t-Value-99"},
    )
    report = await env.run(job)

    assert report.outcome.state == "success", text(job)
    assert await job.wait_finished_async() == "success"
    trace = text(job)
    assert sections(job) == ["prepare_executor", "prepare_script", "get_sources", "step_script"]
    assert "hello from test\n" in trace and "from git\n" in trace
    assert "no newline at the end" in trace
    assert "\x1ekuberunner" not in trace  # markers never reach the log
    assert 'Preparing the "kubernetes" executor' in trace and "Using Kubernetes namespace: ci" in trace
    assert "s3cr3t-Value-99" not in trace
    assert env.leftovers() == []
    # secrets, pod, watch, three logs, deletes (+ /version and the orphan sweep once per process)
    per_job = [r for r in env.k8s_requests() if "/version" not in r[1] and "labelSelector" not in r[1]]
    assert len(per_job) <= 12, per_job
    assert not any("exec" in path or "attach" in path for _, path in env.k8s_requests())


async def test_a_failing_script_reports_its_exit_code_and_after_script_still_runs(env: Env) -> None:
    job = env.gitlab.enqueue(
        script=["echo before", "exit 7", "echo never"],
        after_script=['echo "after_script sees $CI_JOB_STATUS"'],
        artifacts=[{"paths": ["data/"], "when": "on_failure"}],
    )
    report = await env.run(job)

    assert (report.outcome.failure_reason, report.outcome.exit_code) == ("script_failure", 7)
    assert await job.wait_finished_async() == "failed"
    trace = text(job)
    assert "never" not in trace.replace("echo never", "")
    assert "after_script sees failed" in trace
    assert "ERROR: Job failed: exit code 7" in trace
    assert sections(job)[-2:] == ["after_script", "upload_artifacts_on_failure"]
    assert [a.filename for a in job.artifacts.values()] == ["artifacts.zip"]
    assert env.leftovers() == []


async def test_a_failing_get_sources_fails_the_job_with_git_s_exit_code(env: Env) -> None:
    job = env.gitlab.enqueue(repo="acme/missing", script=["echo never"], after_script=["echo never either"])
    report = await env.run(job)

    assert report.outcome.failure_reason == "script_failure"
    assert report.outcome.exit_code is not None and report.outcome.exit_code != 0
    assert sections(job) == ["prepare_executor", "prepare_script", "get_sources"]
    assert "never" not in text(job).replace("echo never", "")
    assert env.leftovers() == []


async def test_artifacts_and_cache_reach_the_next_job(env: Env) -> None:
    cache_dir = env.tmp / "node-cache"
    cache_dir.mkdir()
    runner = env.runner(
        volumes={"host_path": [{"name": "cache", "mount_path": "/cache", "host_path": str(cache_dir)}]}
    )
    first = env.gitlab.enqueue(
        name="compile",
        script=["mkdir -p out vendor", "echo compiled > out/app.txt", "echo deps > vendor/lib.txt"],
        artifacts=[{"paths": ["out/"]}],
        cache=[{"key": "deps", "paths": ["vendor/"]}],
    )
    assert (await env.run(first, runner=runner)).outcome.state == "success", text(first)
    second = env.gitlab.enqueue(
        name="test",
        script=["cat out/app.txt", "cat vendor/lib.txt"],
        cache=[{"key": "deps", "paths": ["vendor/"], "policy": "pull"}],
        dependencies=[first],
    )
    report = await env.run(second, runner=runner)

    assert report.outcome.state == "success", text(second)
    trace = text(second)
    assert "compiled\n" in trace and "deps\n" in trace
    assert "Successfully extracted cache" in trace
    assert sections(second)[:5] == [
        "prepare_executor",
        "prepare_script",
        "get_sources",
        "restore_cache",
        "download_artifacts",
    ]


# ------------------------------------------------------------------------- cancel


async def test_a_graceful_cancel_stops_the_script_and_runs_after_script(env: Env) -> None:
    job = env.gitlab.enqueue(
        script=["echo started", "sleep 60", "echo never"],
        after_script=['echo "cleaning up after $CI_JOB_STATUS"'],
        artifacts=[{"paths": ["data/"], "when": "on_failure"}],
    )
    cancel = Cancellation()
    running = asyncio.create_task(env.run(job, cancel=cancel))
    await asyncio.to_thread(job.wait_trace, "started", 30)
    cancel.cancel("the job was canceled in GitLab")
    report = await asyncio.wait_for(running, 60)

    assert report.outcome.failure_reason == "runner_interrupted"
    trace = text(job)
    assert "the job was canceled: its script was stopped" in trace
    assert "cleaning up after canceled" in trace
    assert "never" not in trace.replace("echo never", "")
    assert "Uploading artifacts for failed job" in trace  # the helper's log is still followed
    assert [a.filename for a in job.artifacts.values()] == ["artifacts.zip"]
    assert env.leftovers() == []


async def test_a_forced_cancel_ends_the_job_at_once_without_after_script(env: Env) -> None:
    job = env.gitlab.enqueue(script=["echo started", "sleep 60"], after_script=["echo after_script ran"])
    cancel = Cancellation()
    running = asyncio.create_task(env.run(job, cancel=cancel))
    await asyncio.to_thread(job.wait_trace, "started", 30)
    cancel.abort("the job was canceled in GitLab")
    report = await asyncio.wait_for(running, 30)

    assert report.outcome.failure_reason == "runner_interrupted"
    assert "after_script ran" not in text(job)
    assert env.leftovers() == []


async def test_the_job_timeout_stops_the_pod_and_still_runs_after_script(env: Env) -> None:
    job = env.gitlab.enqueue(
        script=["echo started", "sleep 60"], after_script=['echo "after_script: $CI_JOB_STATUS"'], timeout=3
    )
    report = await env.run(job)

    assert report.outcome.failure_reason == "job_execution_timeout"
    assert report.outcome.message == "execution took longer than 3s seconds"
    trace = text(job)
    assert "the job's timeout of 3s is over" in trace
    assert "after_script: canceled" in trace
    assert env.leftovers() == []


# ------------------------------------------------------------------------- services and the pod


async def test_a_dind_style_service_is_waited_for_and_reachable_by_its_alias(env: Env) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # a "daemon" that takes a moment to listen: without the wait, the script could not connect
    daemon = textwrap.dedent(
        f"""
        import socket, time
        time.sleep(0.7)
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", {port})); s.listen()
        while True:
            c, _ = s.accept(); c.sendall(b"daemon says hi\\n"); c.close()
        """
    )
    client = f"import socket; print(socket.create_connection(('docker', {port})).recv(100).decode())"
    job = env.gitlab.enqueue(
        image="docker:27",
        services=[
            {
                "name": "docker:27-dind",
                "alias": "docker",
                "entrypoint": [sys.executable, "-c", daemon],
                "ports": [{"number": port}],
                "variables": [{"key": "DOCKER_TLS_CERTDIR", "value": ""}],
            }
        ],
        script=[f'{sys.executable} -c "{client}"'],
    )
    report = await env.run(job)

    assert report.outcome.state == "success", text(job)
    assert "daemon says hi" in text(job)
    assert env.leftovers() == []


async def test_host_aliases_and_dns_config_are_visible_in_the_pod(env: Env) -> None:
    runner = env.runner(
        host_aliases=[{"ip": "10.1.2.3", "hostnames": ["gitlab.internal", "registry.internal"]}],
        dns_config={"nameservers": ["10.9.9.9"], "searches": ["corp.example"]},
    )
    job = env.gitlab.enqueue(script=["cat /etc/hosts", "cat /etc/resolv.conf"])
    report = await env.run(job, runner=runner)

    assert report.outcome.state == "success", text(job)
    trace = text(job)
    assert re.search(r"10\.1\.2\.3\s+gitlab\.internal\s+registry\.internal", trace)
    assert "nameserver 10.9.9.9" in trace and "corp.example" in trace


async def test_a_privileged_job_denied_by_pod_security_says_why_and_which_key(env: Env) -> None:
    env.kube.create_namespace("restricted", {"pod-security.kubernetes.io/enforce": "restricted"})
    token = env.kube.add_service_account("restricted", "runner", rules=SEED_ROLE)
    job = env.gitlab.enqueue(script=["echo never"])
    report = await env.run(job, runner=env.runner(namespace="restricted", token=token, privileged=True))

    outcome = report.outcome
    assert outcome.failure_reason == "runner_configuration_error"
    assert outcome.message.startswith(
        'the namespace enforces Pod Security "restricted" and refused the pod: '
        "set privileged = false in [runners.kubernetes] (the level also needs: "
    )
    assert 'violates PodSecurity "restricted:latest": privileged' in text(job)  # the API's own words
    assert env.leftovers("restricted") == []  # the scripts Secret too


async def test_no_api_address_rejected_credentials_and_an_untrusted_ca_say_what_to_fix(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(env.tmp / "home"))
    job = env.gitlab.enqueue(script=["echo never"])
    report = await env.run(job, runner=env.runner(host=""))
    assert report.outcome.failure_reason == "runner_configuration_error"
    assert report.outcome.message.startswith("no Kubernetes API to talk to: set host")
    assert 'host = "https://<api-server>:6443"' in text(job)  # the snippet that fixes it

    job = env.gitlab.enqueue(script=["echo never"])
    report = await env.run(job, runner=env.runner(token="not-a-valid-token"))
    assert report.outcome.failure_reason == "runner_configuration_error"
    assert "rejected the runner's credentials (401 Unauthorized)" in report.outcome.message
    assert "bearer_token" in report.outcome.message
    assert "not-a-valid-token" not in text(job)

    other_ca = env.tmp / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    job = env.gitlab.enqueue(script=["echo never"])
    report = await env.run(job, runner=env.runner(ca_file=str(other_ca)))
    assert report.outcome.failure_reason == "runner_configuration_error"
    assert "certificate" in report.outcome.message and "set ca_file" in report.outcome.message


# ------------------------------------------------------------------------- what Kubernetes does to pods


async def test_an_image_that_cannot_be_pulled_is_named_after_every_pull_policy(env: Env) -> None:
    job = env.gitlab.enqueue(image="registry.example.invalid/team/builder:1", script=["echo never"])
    runner = env.runner(pull_policy=["always", "if-not-present"])
    report = await env.run(job, runner=runner)

    assert report.outcome.failure_reason == "image_pull_failure"
    assert 'image "registry.example.invalid/team/builder:1"' in report.outcome.message
    assert "registry registry.example.invalid" in report.outcome.message
    trace = text(job)
    assert "trying again with pull_policy IfNotPresent for container build" in trace
    assert "no such host" in trace
    assert env.leftovers() == []


async def test_a_pod_that_cannot_be_scheduled_times_out_naming_the_reason(env: Env) -> None:
    runner = env.runner(node_selector={"disk": "ssd"}, poll_timeout=3)
    job = env.gitlab.enqueue(script=["echo never"])
    report = await env.run(job, runner=runner)

    assert report.outcome.failure_reason == "runner_system_failure"
    assert "did not start within 3s (poll_timeout)" in report.outcome.message
    assert "Unschedulable" in report.outcome.message and "node affinity/selector" in report.outcome.message
    trace = text(job)
    # the seed Role has no events: said once, never a failure of its own
    assert trace.count("events are not visible to this account") == 1
    assert env.leftovers() == []


async def test_warning_events_are_shown_while_the_pod_waits_when_the_account_may_see_them(env: Env) -> None:
    rules = [*SEED_ROLE, {"apiGroups": [""], "resources": ["events"], "verbs": ["list", "watch"]}]
    token = env.kube.add_service_account(NS, "runner-with-events", rules=rules)
    runner = env.runner(token=token, node_selector={"disk": "ssd"}, poll_timeout=3)
    job = env.gitlab.enqueue(script=["echo never"])
    report = await env.run(job, runner=runner)

    assert report.outcome.failure_reason == "runner_system_failure"
    trace = text(job)
    assert "Event retrieved from the cluster: FailedScheduling: 0/1 nodes are available" in trace
    assert "events are not visible" not in trace


async def test_an_oom_killed_build_is_named_with_its_memory_limit(env: Env) -> None:
    env.kube.faults.oom_kill_on_output("ALLOCATING-A-LOT", container="build")
    job = env.gitlab.enqueue(
        script=["echo ALLOCATING-A-LOT", "sleep 30"],
        artifacts=[{"paths": ["data/"], "when": "on_failure"}],
    )
    report = await env.run(job, runner=env.runner(memory_limit="64Mi"))

    outcome = report.outcome
    assert (outcome.failure_reason, outcome.exit_code) == ("script_failure", 137)
    assert outcome.message == "container build was OOMKilled (memory limit 64Mi)"
    trace = text(job)
    assert "the build container stopped without a result" in trace
    assert [a.filename for a in job.artifacts.values()] == ["artifacts.zip"]  # on-failure uploads still ran


async def test_an_evicted_pod_is_a_system_failure_naming_the_eviction(env: Env) -> None:
    job = env.gitlab.enqueue(
        script=["echo started", "sleep 60"], after_script=['echo "after_script: $CI_JOB_STATUS"']
    )
    running = asyncio.create_task(env.run(job))
    await asyncio.to_thread(job.wait_trace, "started", 30)
    pod = next(p["metadata"]["name"] for p in env.kube.pods(NS))
    await asyncio.to_thread(env.kube.faults.evict, NS, pod)
    report = await asyncio.wait_for(running, 60)

    assert report.outcome.failure_reason == "runner_system_failure"
    assert report.outcome.message == "pod was evicted: Eviction API: evicting (EvictionByEvictionAPI)"
    assert "after_script: canceled" in text(job)  # the build driver still ran it on TERM
    assert env.leftovers() == []


# ------------------------------------------------------------------------- logs


def _numbered_output_job(env: Env) -> JobHandle:
    # 30 bursts of 20 lines: each burst reaches the kubelet in one write, so its lines share a
    # timestamp, and a cut inside a burst must resume at the right line of that timestamp
    burst = 'for i in $(seq 1 30); do seq -f "line-$i-%02g" 1 20; sleep 0.03; done'
    return env.gitlab.enqueue(script=[burst])


async def test_a_cut_log_stream_is_resumed_without_losing_or_repeating_a_line(env: Env) -> None:
    clean_job = _numbered_output_job(env)
    assert (await env.run(clean_job)).outcome.state == "success"
    expected = section_body(clean_job.trace, "step_script")
    lines = [f"line-{i}-{n:02d}" for i in range(1, 31) for n in range(1, 21)]
    assert re.findall(rb"line-\d+-\d+", expected) == [line.encode() for line in lines]

    cut_job = _numbered_output_job(env)
    running = asyncio.create_task(env.run(cut_job))
    await asyncio.to_thread(cut_job.wait_trace, "line-5-01", 30)
    env.kube.faults.cut_log_follow(container="build")
    report = await asyncio.wait_for(running, 60)

    assert report.outcome.state == "success", text(cut_job)
    assert section_body(cut_job.trace, "step_script") == expected
    resumed = [p for m, p in env.k8s_requests() if "container=build" in p and "sinceTime=" in p]
    assert resumed, "the build log was never reopened"


# ------------------------------------------------------------------------- a runner that dies

_CRASHING_RUNNER = textwrap.dedent(
    """
    import asyncio, json, sys
    from kuberunner.build import Build
    from kuberunner.config.schema import RunnerConfig
    from kuberunner.executors import Cancellation
    from kuberunner.executors.kubernetes import KubernetesExecutor
    from kuberunner.gitlab.client import GitLabClient, runner_info
    from kuberunner.trace import JobTrace

    async def main():
        runner = RunnerConfig.model_validate(json.loads(sys.argv[1]))
        async with GitLabClient(runner.url) as client:
            answer = await client.request_job(runner.token, system_id=sys.argv[2], info=runner_info())
        build = Build.create(answer.job, runner, executor_name="kubernetes")
        def out(data):
            sys.stdout.buffer.write(data); sys.stdout.flush()
        trace = JobTrace(out, [answer.job.token])
        await KubernetesExecutor(system_id=sys.argv[2]).run(build, trace, Cancellation())

    asyncio.run(main())
    """
)


async def test_pods_of_a_killed_runner_are_removed_when_it_starts_again(env: Env) -> None:
    runner = env.runner()
    env.gitlab.enqueue(script=["echo started", "sleep 120"])
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CRASHING_RUNNER,
        runner.model_dump_json(by_alias=True),
        SYSTEM_ID,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert proc.stdout is not None
    try:
        seen = b""
        while b"\nstarted\n" not in seen:
            chunk = await asyncio.wait_for(proc.stdout.read(65536), 60)
            assert chunk, f"the runner ended early: {seen[-3000:]!r}"
            seen += chunk
    finally:
        proc.kill()  # SIGKILL: no cleanup of any kind
        await proc.wait()
    orphans = env.leftovers()
    assert len(orphans) == 3, orphans  # the pod, its scripts and registry secrets
    # a pod of the same runner token on another machine (system id) is none of this runner's business
    async with await connect(
        KubernetesConfig(host=env.kube.host, ca_file=env.kube.ca_file, bearer_token=env.kube.admin_token),
        namespace=NS,
    ) as admin:
        labels = {**env.kube.pods(NS)[0]["metadata"]["labels"], "kuberunner.io/system-id": "s_othermachine1"}
        await admin.create_pod(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "runner-other-machine", "labels": labels},
                "spec": {
                    "nodeSelector": {"never": "scheduled"},
                    "containers": [{"name": "build", "image": "alpine:3.19", "command": ["sleep", "60"]}],
                },
            }
        )
        # secrets of a job killed before its pod existed, this machine's and another's
        own = env.kube.pods(NS)[0]["metadata"]["labels"]
        for name, secret_labels in (
            ("runner-never-made-scripts", own),
            ("runner-other-machine-scripts", labels),
        ):
            await admin.create_secret(
                {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "labels": secret_labels}}
            )

    job = env.gitlab.enqueue(script=["echo fresh start"])
    report = await env.run(job, executor=KubernetesExecutor(system_id=SYSTEM_ID))

    assert report.outcome.state == "success", text(job)
    assert sorted(env.leftovers()) == ["runner-other-machine", "runner-other-machine-scripts"]


async def test_a_kubernetes_error_is_explained_as_doctor_would(env: Env) -> None:
    from kuberunner.doctor.explain import explain

    job = env.gitlab.enqueue(script=["echo never"])
    executor = KubernetesExecutor(system_id=SYSTEM_ID, explain=explain)
    report = await env.run(job, runner=env.runner(token="not-a-valid-token"), executor=executor)
    assert report.outcome.failure_reason == "runner_configuration_error"
    log = text(job)
    assert "fix:" in log and "kuberunner doctor" in log
    assert "not-a-valid-token" not in log
