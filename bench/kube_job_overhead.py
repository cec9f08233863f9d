"""What the Kubernetes executor costs per job: API requests, and the latency it adds to the log.

Runs N jobs through the doubles (GitLab hands them out, the Kubernetes double runs their pods
as real processes) with every stage busy: a dependency's artifacts, a cache restored and
saved, after_script and an artifact upload. Prints:

- Kubernetes API requests per job (target <= 12), with the first job apart: it also asks for
  the server version and removes this runner's orphans, once per process;
- the runner-added log latency: from the kubelet's timestamp of a script's line to the
  moment that line reaches the job's trace (target < 50 ms), for the first script line
  ("Running on ...") and over every line of the job;
- from the init container's first output (its start) to the first script byte in the trace.

Run from the checkout: ``python bench/kube_job_overhead.py [--jobs 20]`` (needs root for the
double's containers, like the e2e tests).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.doubles.gitlab import GitLabDouble, make_bare_repo  # noqa: E402
from tests.doubles.kube import KubeDouble, Timings  # noqa: E402

from kuberunner.build import Build  # noqa: E402
from kuberunner.config.schema import RunnerConfig  # noqa: E402
from kuberunner.executors import Cancellation  # noqa: E402
from kuberunner.executors.kubernetes import KubernetesExecutor  # noqa: E402
from kuberunner.gitlab.client import GitLabClient, runner_info  # noqa: E402
from kuberunner.trace import JobTrace  # noqa: E402

NS = "ci"
SYSTEM_ID = "s_benchkube001"
ROLE = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "get", "watch", "create", "delete"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create", "delete"]},
]


def runner_config(
    kube: KubeDouble, gitlab: GitLabDouble, token: str, runner_token: str, cache: Path
) -> RunnerConfig:
    path = f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"
    patch = {
        "initContainers": [{"name": "init", "env": [{"name": "PATH", "value": path}]}],
        "containers": [{"name": "helper", "env": [{"name": "PATH", "value": path}]}],
    }
    return RunnerConfig.model_validate(
        {
            "name": "bench",
            "url": gitlab.url,
            "token": runner_token,
            "executor": "kubernetes",
            "kubernetes": {
                "host": kube.host,
                "ca_file": kube.ca_file,
                "bearer_token": token,
                "namespace": NS,
                "image": "alpine:3.19",
                "helper_image": "kuberunner/helper:bench",
                "pod_spec": [{"name": "path", "patch": json.dumps(patch)}],
                "volumes": {
                    "host_path": [{"name": "cache", "mount_path": "/cache", "host_path": str(cache)}]
                },
            },
        }
    )


class TimedSink:
    """The trace's sink, remembering when each chunk arrived."""

    def __init__(self) -> None:
        self.chunks: list[tuple[int, bytes]] = []

    def __call__(self, data: bytes) -> None:
        self.chunks.append((time.time_ns(), data))

    def arrival(self, needle: bytes) -> int | None:
        seen = b""
        for at, data in self.chunks:
            seen += data
            if needle in seen:
                return at
        return None


async def one_job(
    kube: KubeDouble, gitlab: GitLabDouble, runner: RunnerConfig, dependency: Any
) -> dict[str, Any]:
    job = gitlab.enqueue(
        script=["echo building", "mkdir -p out && echo result > out/app.txt", "seq 1 50"],
        after_script=["echo after"],
        artifacts=[{"paths": ["out/"]}],
        cache=[{"key": "bench", "paths": ["out/"]}],
        dependencies=[dependency] if dependency is not None else [],
    )
    async with GitLabClient(gitlab.url) as client:
        answer = await client.request_job(runner.token, system_id=SYSTEM_ID, info=runner_info())
    assert answer.job is not None and answer.job.id == job.id
    build = Build.create(answer.job, runner, executor_name="kubernetes")
    sink = TimedSink()
    trace = JobTrace(sink, [answer.job.token])
    before = len(kube.requests)
    pod_uid: dict[str, str] = {}

    def remember_pod() -> bool:
        pods = kube.pods(NS)
        if pods:
            pod_uid["uid"] = pods[0]["metadata"]["uid"]
        return bool(pods)

    watcher = asyncio.create_task(asyncio.to_thread(kube.wait_for, remember_pod, 60, "the job's pod"))
    outcome = await KubernetesExecutor(system_id=SYSTEM_ID).run(build, trace, Cancellation())
    trace.finish()
    await watcher
    if outcome.state != "success":
        text = b"".join(c for _, c in sink.chunks).decode(errors="replace")
        raise SystemExit(f"job {job.id} failed: {outcome}\n{text}")
    requests = kube.requests[before:]

    init = kube.logs.current(pod_uid["uid"], "init")
    assert init is not None
    first_output_ns = init.lines[0][0]  # the driver's first marker: the container runs
    running_on = next((ts, line) for ts, line in init.lines if line.startswith(b"Running on"))
    arrival = sink.arrival(b"Running on")
    assert arrival is not None
    delays: list[float] = []
    for container in ("init", "build", "helper"):
        log = kube.logs.current(pod_uid["uid"], container)
        assert log is not None
        for ts, line in log.lines:
            if line.startswith(b"\x1e") or not line.strip():
                continue
            at = sink.arrival(line.rstrip(b"\n"))
            if at is not None:
                delays.append((at - ts) / 1e6)
    return {
        "requests": requests,
        "first_line_ms": (arrival - running_on[0]) / 1e6,
        "start_to_first_byte_ms": (arrival - first_output_ns) / 1e6,
        "line_delays_ms": delays,
        "job": job,
    }


async def main(jobs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="kube-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        (tmp / "cache").mkdir()
        with GitLabDouble() as gitlab, KubeDouble(state_dir=tmp / "kube", timings=Timings()) as kube:
            repo = make_bare_repo(tmp / "repos", name="webapp")
            gitlab.add_repo("acme/webapp", repo.path)
            token = kube.add_service_account(NS, "runner", rules=ROLE)
            runner = runner_config(kube, gitlab, token, gitlab.create_runner().token, tmp / "cache")
            results: list[dict[str, Any]] = []
            dependency = None
            started = time.monotonic()
            for _ in range(jobs):
                result = await one_job(kube, gitlab, runner, dependency)
                dependency = result["job"]
                results.append(result)
            elapsed = time.monotonic() - started

    counts = [len(r["requests"]) for r in results]
    steady = counts[1:] or counts
    kinds = Counter(_kind(r.method, r.path) for r in results[-1]["requests"])
    first_line = [r["first_line_ms"] for r in results]
    start_byte = [r["start_to_first_byte_ms"] for r in results]
    all_lines = [d for r in results for d in r["line_delays_ms"]]
    print(f"{jobs} jobs (every stage busy) in {elapsed:.1f}s, {elapsed / jobs:.2f}s per job")
    print(f"Kubernetes API requests, first job:  {counts[0]} (server version and orphan sweep included)")
    print(
        f"Kubernetes API requests, per job:    {statistics.mean(steady):.1f} "
        f"(max {max(steady)}; target <= 12)"
    )
    print("  " + ", ".join(f"{kind} x{n}" for kind, n in sorted(kinds.items())))
    print(
        "log latency added by the runner, first script line: "
        f"median {statistics.median(first_line):.1f} ms, max {max(first_line):.1f} ms (target < 50 ms)"
    )
    print(
        "log latency added by the runner, every line:       "
        f"median {statistics.median(all_lines):.1f} ms, p95 {_p95(all_lines):.1f} ms "
        f"over {len(all_lines)} lines"
    )
    print(
        "init container start -> first script byte in the trace: "
        f"median {statistics.median(start_byte):.1f} ms (includes starting the stage's shell in the pod)"
    )


def _kind(method: str, path: str) -> str:
    if "/log" in path:
        return "log"
    if "watch=true" in path:
        return "watch"
    if "labelSelector" in path:
        return "list pods"
    if "/version" in path:
        return "version"
    resource = "secret" if "/secrets" in path else "pod"
    return f"{method.lower()} {resource}"


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=20)
    asyncio.run(main(parser.parse_args().jobs))
