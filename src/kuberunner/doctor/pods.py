"""The job pod itself: a server-side dry run, or with ``--probe`` a short-lived pod that really starts.

Both use the pod a job of this runner would get (:func:`render_pod`: helper and
job images, privileged, volumes, node selector, service account, services).
The probe replaces only the stage scripts with one-line ones (a scripts Secret
holding ``exit 0``-like scripts), so what it proves is what a job needs:
admission, scheduling, image pulls and the time until every container ran,
measured against ``poll_timeout``. The probe pod and its Secret are deleted in
every case, Ctrl-C included.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kuberunner.config.schema import KubernetesConfig, RunnerConfig
from kuberunner.doctor.cluster import Cluster
from kuberunner.doctor.diagnose import Diagnosis, admission, pull_failure, scheduling
from kuberunner.doctor.images import compare_registries, helper_image
from kuberunner.doctor.model import CheckResult, Fix, RunnerReport, skipped
from kuberunner.executors.base import BuildError
from kuberunner.executors.kubernetes.podspec import (
    BUILD_CONTAINER,
    HELPER_CONTAINER,
    INIT_CONTAINER,
    PodPlan,
    build_scripts_secret,
    registry_of,
    render_pod,
)
from kuberunner.job import JobPayload
from kuberunner.kube.client import KubeClient
from kuberunner.kube.errors import KubeAPIError, KubeError, KubeGone, KubeNotFound

__all__ = ["PROBE_LABELS", "check_pod", "job_pod", "pending_diagnosis", "probe_outcome"]

Obj = dict[str, Any]

PROBE_LABELS = {"app.kubernetes.io/managed-by": "kuberunner", "app.kubernetes.io/component": "doctor-probe"}
_SCRIPTED = (INIT_CONTAINER, BUILD_CONTAINER, HELPER_CONTAINER)
# Waiting reasons that will not go away by waiting (the executor fails fast on them too).
_HOPELESS = {
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
    "CrashLoopBackOff",
}
_PULL_REASONS = {"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull"}


def job_pod(
    runner: RunnerConfig, cfg: KubernetesConfig, namespace: str, *, name: str, native_sidecars: bool
) -> Obj:
    """The pod a job of this runner would get (no job image: the config's ``image``, else the helper's)."""
    image = cfg.image or helper_image(cfg)
    job = JobPayload.parse(
        {
            "id": 0,
            "token": "",
            "job_info": {"name": "kuberunner-doctor"},
            "image": {"name": image},
            "steps": [{"name": "script", "script": ["true"]}],
        }
    )
    plan = PodPlan(
        job=job,
        pod_name=name,
        namespace=namespace,
        labels=PROBE_LABELS,
        builds_dir=runner.builds_dir or "/builds",
        cache_dir=runner.cache_dir or "/cache",
        scripts_secret=f"{name}-scripts",
        registry_secret=None,
        variables=(),
        helper_image=helper_image(cfg),
        timeout=job.runner_info.timeout,
        after_script_timeout=300,
        native_sidecars=native_sidecars,
    )
    return render_pod(plan, cfg, read_file=_read_text).pod


def _read_text(path: str) -> str:
    """``pod_spec`` ``patch_path`` files, read as the executor reads them."""
    return Path(path).read_text(encoding="utf-8")


def _all_containers(pod: Obj) -> list[Obj]:
    spec = pod.get("spec") or {}
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]


def _statuses(pod: Obj) -> dict[str, Obj]:
    status = pod.get("status") or {}
    entries = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
    return {str(e.get("name")): e for e in entries}


def _role(name: str) -> str:
    return {INIT_CONTAINER: "helper", HELPER_CONTAINER: "helper", BUILD_CONTAINER: "build"}.get(
        name, "service"
    )


@dataclass(frozen=True)
class ProbeOutcome:
    """``started``: every container ran; else ``diagnosis`` says why not (``None`` while waiting)."""

    started: bool
    diagnosis: Diagnosis | None = None


def probe_outcome(pod: Obj, cfg: KubernetesConfig) -> ProbeOutcome:
    """Judge one observed state of the probe pod: started, hopeless (with why) or still waiting."""
    statuses = _statuses(pod)
    images = {str(c.get("name")): str(c.get("image", "")) for c in _all_containers(pod)}
    job_registries = compare_registries(cfg).job_registries
    for name, entry in statuses.items():
        state = entry.get("state") or {}
        waiting = state.get("waiting") or {}
        reason = str(waiting.get("reason") or "")
        message = str(waiting.get("message") or "")
        image = images.get(name, str(entry.get("image", "")))
        if reason in _PULL_REASONS or reason == "InvalidImageName":
            mirror = next((r for r in job_registries if r != registry_of(image)), "")
            return ProbeOutcome(
                False,
                pull_failure(
                    name,
                    image,
                    registry_of(image),
                    message or reason,
                    role=_role(name),
                    mirror_registry=mirror,
                ),
            )
        if reason in _HOPELESS:
            return ProbeOutcome(
                False,
                Diagnosis(
                    f"container {name!r} cannot start: {reason}",
                    (f"Kubernetes: {message}" if message else f"reason: {reason}", f"image {image}"),
                    (),
                    "container",
                ),
            )
        terminated = state.get("terminated") or {}
        code = terminated.get("exitCode")
        if name in _SCRIPTED and code not in (None, 0):
            return ProbeOutcome(
                False,
                Diagnosis(
                    f"container {name!r} (image {image}) exited {code} running a one-line script",
                    (
                        f"reason: {terminated.get('reason', '')} {terminated.get('message', '')}".rstrip(),
                        "a job's image needs a POSIX sh at /bin/sh (scripts run as `sh <file>`)",
                    ),
                    (),
                    "container",
                ),
            )
    phase = (pod.get("status") or {}).get("phase")
    if phase == "Failed":
        status = pod.get("status") or {}
        return ProbeOutcome(
            False,
            Diagnosis(
                f"the probe pod failed: {status.get('reason', '')} {status.get('message', '')}".rstrip(),
                (),
                (),
                "container",
            ),
        )
    started = all(
        (statuses.get(str(c.get("name"))) or {}).get("state", {}).get("running") is not None
        or (statuses.get(str(c.get("name"))) or {}).get("state", {}).get("terminated") is not None
        for c in _all_containers(pod)
    )
    return ProbeOutcome(started or phase == "Succeeded")


def _event_lines(events: Sequence[Obj]) -> list[str]:
    lines = []
    for event in events:
        count = event.get("count") or 1
        times = f" (x{count})" if count > 1 else ""
        lines.append(
            f"event {event.get('type', '')} {event.get('reason', '')}: {event.get('message', '')}{times}"
        )
    return lines


def _quoted(event: Obj) -> str:
    """The image named in a kubelet ``Pulling image "X"`` / ``... pulled image "X" ...`` event."""
    parts = str(event.get("message", "")).split('"')
    return parts[1] if len(parts) > 2 else ""


def pending_diagnosis(
    pod: Obj, events: Sequence[Obj], cfg: KubernetesConfig, namespace: str, waited: float
) -> Diagnosis:
    """Why the pod had not started when ``poll_timeout`` ran out (the seed's failure 8)."""
    status = pod.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            found = scheduling(str(condition.get("message") or condition.get("reason") or ""), cfg, namespace)
            return Diagnosis(
                f"the pod was not scheduled within poll_timeout ({cfg.poll_timeout}s): {found.summary}",
                found.evidence,
                found.fixes,
                found.category,
            )
    pulled = {_quoted(e) for e in events if e.get("reason") == "Pulled"}
    pulling = [_quoted(e) for e in events if e.get("reason") == "Pulling"]
    slow = [image for image in dict.fromkeys(pulling) if image and image not in pulled]
    waiting = [
        f"container {name!r}: {(entry.get('state') or {}).get('waiting', {}).get('reason', '')}"
        for name, entry in _statuses(pod).items()
        if (entry.get("state") or {}).get("waiting")
    ]
    evidence = (
        f"phase {status.get('phase', 'Pending')} after {waited:.0f}s",
        *waiting,
        *_event_lines(events)[-6:],
    )
    raise_timeout = Fix(
        "toml",
        f"[runners.kubernetes]\n  poll_timeout = {max(600, cfg.poll_timeout * 3)}",
        note="or give pods longer to start (jobs wait this long before failing):",
    )
    if slow:
        image = slow[0]
        return Diagnosis(
            f"the pod did not start within poll_timeout ({cfg.poll_timeout}s): image {image} was still being "
            f"pulled from {registry_of(image)}",
            evidence,
            (
                Fix(
                    "kubectl",
                    f"ctr -n k8s.io image pull {image}",
                    note="pre-pull it on every node (containerd; `crictl pull` works too), or use a closer "
                    "mirror in config.toml:",
                ),
                raise_timeout,
            ),
            "slow-pull",
        )
    return Diagnosis(
        f"the pod did not start within poll_timeout ({cfg.poll_timeout}s)",
        evidence,
        (raise_timeout,),
        "pending",
    )


async def _events(client: KubeClient, name: str) -> list[Obj]:
    with contextlib.suppress(KubeError):
        answer = await client.list_events(name)
        return list(answer.get("items") or [])
    return []


async def _watch_until_decided(
    client: KubeClient, pod: Obj, cfg: KubernetesConfig, deadline: float
) -> tuple[Obj, ProbeOutcome]:
    name = str(pod["metadata"]["name"])
    outcome = probe_outcome(pod, cfg)
    resource_version = str(pod["metadata"].get("resourceVersion") or "")
    loop = asyncio.get_running_loop()
    while not outcome.started and outcome.diagnosis is None:
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        try:
            async with asyncio.timeout(remaining):
                async for kind, obj in client.watch_pod(
                    name, resource_version=resource_version, timeout_seconds=int(remaining) + 1
                ):
                    resource_version = str(
                        (obj.get("metadata") or {}).get("resourceVersion") or resource_version
                    )
                    if kind == "BOOKMARK":
                        continue
                    if kind == "DELETED":
                        return obj, ProbeOutcome(
                            False, Diagnosis("the probe pod was deleted while starting (by someone else)")
                        )
                    pod = obj
                    outcome = probe_outcome(pod, cfg)
                    if outcome.started or outcome.diagnosis is not None:
                        break
        except TimeoutError:
            break
        except KubeGone:
            resource_version = ""
        if not outcome.started and outcome.diagnosis is None:
            pod = await client.get_pod(name)
            resource_version = str(pod["metadata"].get("resourceVersion") or "")
            outcome = probe_outcome(pod, cfg)
    return pod, outcome


async def _cleanup(client: KubeClient, name: str, secret: str) -> list[str]:
    problems = []
    for what, delete in (
        (f"pod {name}", client.delete_pod(name, grace_period=0)),
        (f"secret {secret}", client.delete_secret(secret)),
    ):
        try:
            await delete
        except KubeNotFound:
            pass
        except KubeError as exc:
            problems.append(
                f"could not delete the probe's {what}: {exc}; delete it with "
                f"`kubectl -n {client.namespace} delete {what}`"
            )
    return problems


async def _run_probe(cluster: Cluster, client: KubeClient, pod: Obj, secret: Obj) -> CheckResult:
    cfg, ns = cluster.cfg, cluster.namespace
    name = str(pod["metadata"]["name"])
    title = "job pod (probe)"
    loop = asyncio.get_running_loop()
    started_at = loop.time()
    try:
        await client.create_secret(secret)
        created = await client.create_pod(pod)
    except KubeAPIError as exc:
        found = admission(exc, cfg, ns)
        return CheckResult("pod", title, "fail", found.summary, found.evidence, found.fixes)
    pod, outcome = await _watch_until_decided(client, created, cfg, started_at + cfg.poll_timeout)
    waited = loop.time() - started_at
    if outcome.started:
        images = ", ".join(dict.fromkeys(str(c.get("image")) for c in _all_containers(pod)))
        node = (pod.get("spec") or {}).get("nodeName", "")
        summary = (
            f"a job pod started in {waited:.1f}s (poll_timeout {cfg.poll_timeout}s) on node {node or '?'}"
        )
        pulled: tuple[str, ...] = (f"images pulled: {images}",)
        if waited > cfg.poll_timeout / 2:
            return CheckResult(
                "pod",
                title,
                "warn",
                summary + ": close to the limit",
                pulled,
                (
                    Fix(
                        "toml",
                        f"[runners.kubernetes]\n  poll_timeout = {cfg.poll_timeout * 3}",
                        note="jobs on a node without the images cached may time out; give them longer:",
                    ),
                ),
            )
        return CheckResult("pod", title, "pass", summary, pulled)
    events = await _events(client, name)
    found = outcome.diagnosis or pending_diagnosis(pod, events, cfg, ns, waited)
    evidence = found.evidence
    if outcome.diagnosis is not None:
        evidence = (*evidence, *_event_lines([e for e in events if e.get("type") == "Warning"])[-4:])
    return CheckResult("pod", title, "fail", found.summary, evidence, found.fixes)


async def _probe(cluster: Cluster, pod: Obj) -> CheckResult:
    """Create, watch, judge; the pod and its Secret are deleted whatever happens (Ctrl-C too)."""
    assert cluster.client is not None
    client = cluster.client
    name = str(pod["metadata"]["name"])
    secret = build_scripts_secret(
        f"{name}-scripts",
        cluster.namespace,
        PROBE_LABELS,
        {c: f'echo "kuberunner doctor: container {c} started"\n' for c in _SCRIPTED},
    )
    try:
        result = await _run_probe(cluster, client, pod, secret)
    finally:
        leftovers = await asyncio.shield(_cleanup(client, name, f"{name}-scripts"))
    if leftovers:
        status = "warn" if result.status == "pass" else result.status
        result = replace(result, status=status, evidence=(*result.evidence, *leftovers))
    return result


async def _dry_run(cluster: Cluster, pod: Obj) -> CheckResult:
    assert cluster.client is not None
    title = "job pod (dry run)"
    try:
        await cluster.client.create_pod(pod, dry_run=True)
    except KubeAPIError as exc:
        found = admission(exc, cluster.cfg, cluster.namespace)
        return CheckResult("pod", title, "fail", found.summary, found.evidence, found.fixes)
    return CheckResult(
        "pod",
        title,
        "pass",
        "the API server admits a job pod (RBAC, Pod Security, quota); `--probe` also pulls its images "
        "and starts it",
    )


async def check_pod(report: RunnerReport, cluster: Cluster, runner: RunnerConfig, *, probe: bool) -> None:
    """Check 7/8: dry run of the job pod, or with ``probe`` a real one (always deleted)."""
    title = "job pod (probe)" if probe else "job pod (dry run)"
    if not cluster.ready or cluster.client is None:
        report.add(skipped("pod", title, cluster.blocker or "Kubernetes access"))
        return
    name = f"kuberunner-doctor-{secrets.token_hex(3)}"
    native = cluster.server_minor >= 29 if cluster.version else True
    try:
        pod = job_pod(runner, cluster.cfg, cluster.namespace, name=name, native_sidecars=native)
    except BuildError as exc:
        report.add(
            CheckResult(
                "pod",
                title,
                "fail",
                f"no job pod can be built from config.toml: {exc}",
                (),
                (Fix("text", "fix the key named above; `kuberunner config check` lists every problem"),),
            )
        )
        return
    try:
        result = await (_probe(cluster, pod) if probe else _dry_run(cluster, pod))
    except KubeError as exc:  # not an answer: the connection itself failed
        result = CheckResult("pod", title, "fail", f"the API server stopped answering: {exc}")
    report.add(result)
