"""What a job pod's state means: why it waits, and how the job ended. Pure functions over pod JSON.

Only the job's own containers count (``init``, ``build``, ``helper``): a
service, as a native sidecar or as an ordinary container, is stopped by the
kubelet when the job is done, and its exit code never says anything about the
job (``pod-lifecycle-success-watch``: a sidecar killed after its grace period
reports 137 in a ``Succeeded`` pod).

Failure reasons, chosen for the people who run the runner:

- a script that exits non-zero (also in get_sources, the artifact download or
  an upload, as gitlab-runner reports it) → ``script_failure`` with its code;
- the **build** container ``OOMKilled`` → ``script_failure`` (exit code 137),
  "container build was OOMKilled (memory limit 512Mi)": the job used more
  memory than the limit it runs under; its owner fixes it (less memory, or
  ``KUBERNETES_MEMORY_LIMIT`` up to the allowed maximum). It must not page the
  platform team nor be retried as a system failure. The **init/helper**
  containers being OOMKilled is ``runner_system_failure``: their limits are the
  platform's (``helper_memory_limit``);
- evicted (condition ``DisruptionTarget``, or ``status.reason`` ``Evicted``):
  ``runner_system_failure`` "pod was evicted: <message>": a drain, preemption,
  node pressure or spot reclaim, nothing the job did;
- the pod deleted by someone else, or its node lost: ``runner_system_failure``;
- an image that cannot be pulled: ``image_pull_failure`` naming the image,
  the registry, its message and the pull secrets used;
- ``activeDeadlineSeconds`` (the pod's backstop): ``job_execution_timeout``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from kuberunner.executors.base import FailureReason, JobOutcome
from kuberunner.executors.kubernetes.podspec import (
    BUILD_CONTAINER,
    HELPER_CONTAINER,
    INIT_CONTAINER,
    registry_of,
)

__all__ = [
    "JOB_CONTAINERS",
    "Outcome",
    "PullFailure",
    "container_state",
    "decide",
    "disruption",
    "image_pull_failure",
    "is_started",
    "is_terminated",
    "memory_limit",
    "pending_reasons",
    "start_problem",
    "waiting_summary",
]

Pod = Mapping[str, Any]
JOB_CONTAINERS = (INIT_CONTAINER, BUILD_CONTAINER, HELPER_CONTAINER)

_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})
_CONFIG_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError", "RunContainerError"})
_BENIGN_WAITING = frozenset({"ContainerCreating", "PodInitializing", ""})


@dataclass(frozen=True)
class Outcome:
    """A decision about the job. ``finished`` False: the job's containers are still going."""

    finished: bool
    state: Literal["success", "failed"] | None = None
    failure_reason: FailureReason | None = None
    exit_code: int | None = None
    message: str = ""
    container: str = ""  # the container the decision comes from

    def job_outcome(self) -> JobOutcome:
        if self.state == "success":
            return JobOutcome.success()
        return JobOutcome.failed(self.failure_reason or "unknown_failure", self.message, self.exit_code)


RUNNING = Outcome(False)


def _failed(
    reason: FailureReason, message: str, exit_code: int | None = None, container: str = ""
) -> Outcome:
    return Outcome(True, "failed", reason, exit_code, message, container)


# ---------------------------------------------------------------------------- lookups


def _spec_containers(pod: Pod) -> list[Mapping[str, Any]]:
    spec = pod.get("spec") or {}
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]


def _spec(pod: Pod, name: str) -> Mapping[str, Any] | None:
    return next((c for c in _spec_containers(pod) if c.get("name") == name), None)


def _statuses(pod: Pod) -> list[Mapping[str, Any]]:
    status = pod.get("status") or {}
    return [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]


def _status(pod: Pod, name: str) -> Mapping[str, Any] | None:
    return next((s for s in _statuses(pod) if s.get("name") == name), None)


def container_state(pod: Pod, name: str) -> Mapping[str, Any]:
    """The container's ``state`` (``{}`` before the kubelet reported it)."""
    status = _status(pod, name)
    return (status or {}).get("state") or {}


def is_terminated(pod: Pod, name: str) -> bool:
    return "terminated" in container_state(pod, name)


def is_started(pod: Pod, name: str) -> bool:
    """Whether the container ran (so pods/log has something for it): running or terminated after a start."""
    status = _status(pod, name) or {}
    state = status.get("state") or {}
    if "running" in state:
        return True
    terminated = state.get("terminated")
    if isinstance(terminated, Mapping):  # a container that was never located has no log either
        return terminated.get("reason") != "ContainerStatusUnknown"
    return "terminated" in (status.get("lastState") or {})


def _is_sidecar(container: Mapping[str, Any]) -> bool:
    return container.get("restartPolicy") == "Always"


def _job_container_names(pod: Pod) -> list[str]:
    names = {c.get("name") for c in _spec_containers(pod)}
    return [n for n in JOB_CONTAINERS if n in names]


def memory_limit(pod: Pod, name: str) -> str:
    """The container's memory limit as written in the spec (or reported in its status); "" if none."""
    spec = _spec(pod, name) or {}
    limit = ((spec.get("resources") or {}).get("limits") or {}).get("memory")
    if not limit:
        status = _status(pod, name) or {}
        limit = ((status.get("resources") or {}).get("limits") or {}).get("memory")
    return str(limit or "")


def _condition(pod: Pod, kind: str) -> Mapping[str, Any] | None:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return condition  # type: ignore[no-any-return]
    return None


def disruption(pod: Pod) -> str | None:
    """Why Kubernetes is taking the pod away (eviction, preemption, node lost), or None."""
    condition = _condition(pod, "DisruptionTarget")
    if condition is not None and condition.get("status") == "True":
        reason, message = condition.get("reason") or "", condition.get("message") or ""
        return f"{message} ({reason})" if message and reason else message or reason or "DisruptionTarget"
    status = pod.get("status") or {}
    if status.get("reason") == "Evicted":
        return str(status.get("message") or "Evicted")
    return None


# ---------------------------------------------------------------------------- waiting


@dataclass(frozen=True)
class PullFailure:
    """A container whose image cannot be pulled."""

    container: str
    image: str
    reason: str
    message: str
    pull_secrets: tuple[str, ...]

    @property
    def registry(self) -> str:
        return registry_of(self.image)

    def describe(self) -> str:
        secrets = ", ".join(self.pull_secrets) if self.pull_secrets else "none"
        what = "is not a valid image name" if self.reason == "InvalidImageName" else "cannot be pulled"
        detail = f": {self.message}" if self.message else ""
        return (
            f'image "{self.image}" of container {self.container} {what} '
            f"(registry {self.registry}, {self.reason}, the pod's pull secrets: {secrets}){detail}"
        )


def _pull_message(reason: str, message: str) -> str:
    # ImagePullBackOff repeats the pull error behind 'Back-off pulling image "x": ErrImagePull: '
    marker = ": ErrImagePull: "
    if reason == "ImagePullBackOff" and marker in message:
        return message.split(marker, 1)[1]
    return message


def image_pull_failure(pod: Pod) -> PullFailure | None:
    """The first container (in start order) whose image cannot be pulled, or None."""
    secrets = tuple(
        str(s.get("name")) for s in (pod.get("spec") or {}).get("imagePullSecrets") or [] if s.get("name")
    )
    for container in _spec_containers(pod):
        name = str(container.get("name") or "")
        waiting = container_state(pod, name).get("waiting") or {}
        reason = str(waiting.get("reason") or "")
        if reason in _PULL_REASONS:
            image = str(container.get("image") or (_status(pod, name) or {}).get("image") or "")
            message = _pull_message(reason, str(waiting.get("message") or ""))
            return PullFailure(name, image, reason, message, secrets)
    return None


def start_problem(pod: Pod) -> Outcome | None:
    """A reason the pod's job containers can never start, or None: image pulls, broken config."""
    pull = image_pull_failure(pod)
    if pull is not None:
        return _failed("image_pull_failure", pull.describe(), container=pull.container)
    for name in _job_container_names(pod):
        waiting = container_state(pod, name).get("waiting") or {}
        reason = str(waiting.get("reason") or "")
        if reason in _CONFIG_REASONS:
            message = str(waiting.get("message") or "")
            return _failed(
                "runner_system_failure",
                f"container {name} cannot be created ({reason}): {message}".rstrip(": "),
                container=name,
            )
    return None


def pending_reasons(pod: Pod) -> list[str]:
    """What to tell the user while the pod waits: each a stable sentence (print each new one once)."""
    reasons: list[str] = []
    scheduled = _condition(pod, "PodScheduled")
    if scheduled is not None and scheduled.get("status") == "False":
        reason = scheduled.get("reason") or "not scheduled"
        message = scheduled.get("message") or ""
        reasons.append(f"the pod cannot be scheduled ({reason}): {message}".rstrip(": "))
    pull = image_pull_failure(pod)
    if pull is not None:
        reasons.append(pull.describe())
    for container in _spec_containers(pod):
        name = str(container.get("name") or "")
        status = _status(pod, name) or {}
        waiting = (status.get("state") or {}).get("waiting") or {}
        reason = str(waiting.get("reason") or "")
        if reason in _PULL_REASONS:
            continue
        message = str(waiting.get("message") or "")
        if reason and reason not in _BENIGN_WAITING:
            reasons.append(f"container {name} is waiting ({reason}): {message}".rstrip(": "))
        elif (
            _is_sidecar(container) and "running" in (status.get("state") or {}) and not status.get("started")
        ):
            probe = ((container.get("startupProbe") or {}).get("tcpSocket") or {}).get("port")
            if probe:
                reasons.append(f"service container {name} is not accepting connections on port {probe} yet")
        last = (status.get("lastState") or {}).get("terminated") or {}
        if _is_sidecar(container) and last:
            reasons.append(
                f"service container {name} exited with code {last.get('exitCode')} "
                f"({last.get('reason') or 'Error'}) and is restarted"
            )
    return list(dict.fromkeys(reasons))


def waiting_summary(pod: Pod | None, containers: Iterable[str] = JOB_CONTAINERS) -> str:
    """One sentence naming what is still pending (for the poll_timeout message)."""
    if pod is None:
        return "the pod was never seen by the API"
    parts = pending_reasons(pod)
    for name in containers:
        spec = _spec(pod, name)
        if spec is None or is_started(pod, name):
            continue
        waiting = container_state(pod, name).get("waiting") or {}
        reason = waiting.get("reason") or "not created yet"
        if reason in _PULL_REASONS:
            continue
        parts.append(f'container {name} (image "{spec.get("image", "")}") is waiting: {reason}')
        break  # the first one not started is what everything after it waits for
    if not parts:
        parts.append(f"pod phase {(pod.get('status') or {}).get('phase') or 'unknown'}")
    return "; ".join(dict.fromkeys(part.rstrip(". ") for part in parts))


# ---------------------------------------------------------------------------- decision


def _terminated(pod: Pod, name: str) -> Mapping[str, Any] | None:
    terminated = container_state(pod, name).get("terminated")
    return terminated if isinstance(terminated, Mapping) else None


def _container_failure(pod: Pod, name: str, term: Mapping[str, Any]) -> Outcome:
    code = int(term.get("exitCode") or 0)
    reason = str(term.get("reason") or "")
    if reason == "OOMKilled":
        limit = memory_limit(pod, name)
        limit_text = f" (memory limit {limit})" if limit else " (no memory limit: the node ran out of memory)"
        kind: FailureReason = "script_failure" if name == BUILD_CONTAINER else "runner_system_failure"
        return _failed(kind, f"container {name} was OOMKilled{limit_text}", code or 137, name)
    if reason in ("StartError", "ContainerCannotRun"):
        detail = str(term.get("message") or reason)
        if name == BUILD_CONTAINER:
            return _failed(
                "script_failure",
                f"container {name} could not start: {detail} (the job image needs a POSIX sh)",
                code,
                name,
            )
        return _failed("runner_system_failure", f"container {name} could not start: {detail}", code, name)
    if reason == "ContainerStatusUnknown":
        return _failed("runner_system_failure", f"container {name} was lost: {term.get('message') or reason}")
    return _failed("script_failure", f"exit code {code}", code, name)


def _failed_code(term: Mapping[str, Any] | None) -> bool:
    return term is not None and (int(term.get("exitCode") or 0) != 0 or term.get("reason") == "OOMKilled")


def decide(pod: Pod, *, deleted: bool = False) -> Outcome:
    """How the job ended, from the pod alone (``deleted``: the pod is gone from the API).

    Not finished while the job's containers still run. Once they are done, in
    this order: success; an OOMKilled container; an eviction (``DisruptionTarget``);
    a pod-level failure (``status.reason``: node shutdown, admission...); a
    deletion nobody here asked for (``deletionTimestamp``: the kubelet stopped
    the containers, their exit codes say nothing); then the first failing job
    container (init, build, helper) with its exit code. The executor adds what
    only it knows: its own cancel or timeout, and which stage failed.
    """
    status = pod.get("status") or {}
    phase = status.get("phase") or ""
    names = _job_container_names(pod)
    done = {name: _terminated(pod, name) for name in names}
    init_term = done.get(INIT_CONTAINER)
    init_failed = _failed_code(init_term)
    mains = [n for n in names if n != INIT_CONTAINER]
    mains_done = bool(mains) and all(done[n] is not None for n in mains)
    finished = init_failed or mains_done or phase in ("Succeeded", "Failed") or deleted

    if status.get("reason") == "DeadlineExceeded":
        deadline = (pod.get("spec") or {}).get("activeDeadlineSeconds")
        return _failed(
            "job_execution_timeout",
            f"the pod reached its activeDeadlineSeconds ({deadline}s): "
            f"{status.get('message') or 'DeadlineExceeded'}",
        )
    if not finished:
        problem = start_problem(pod)
        return problem if problem is not None else RUNNING
    if mains_done and not init_failed and not any(_failed_code(done[n]) for n in mains):
        return Outcome(True, "success")
    for name in names:
        term = done[name]
        if term is not None and term.get("reason") == "OOMKilled":
            return _container_failure(pod, name, term)
    disrupted = disruption(pod)
    if disrupted is not None:
        return _failed("runner_system_failure", f"pod was evicted: {disrupted}")
    if phase == "Failed" and status.get("reason"):
        return _failed(
            "runner_system_failure",
            f"pod failed ({status.get('reason')}): {status.get('message') or 'no message'}",
        )
    if deleted or (pod.get("metadata") or {}).get("deletionTimestamp"):
        return _failed(
            "runner_system_failure",
            "pod was deleted before the job finished (by someone else, or its node was lost)",
        )
    for name in names:
        term = done[name]
        if term is not None and _failed_code(term):
            return _container_failure(pod, name, term)
    problem = start_problem(pod)
    if problem is not None:
        return problem
    return _failed("runner_system_failure", f"pod ended ({phase}) before the job's containers finished")
