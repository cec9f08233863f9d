"""What a pod's state means for the job, table-tested against pods recorded from a real cluster.

The recordings (``shared/docs/fixtures/kubernetes``) name their containers ``init``, ``build`` and
``post``; ``post`` plays the part of our ``helper`` and is renamed so here. Everything else
is the recorded JSON as the API sent it.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from kuberunner.executors.kubernetes.outcomes import (
    Outcome,
    decide,
    image_pull_failure,
    is_started,
    pending_reasons,
    start_problem,
    waiting_summary,
)

Pod = dict[str, Any]


@cache
def _recording(shared: Path, scenario: str) -> list[tuple[str, Pod]]:
    data = json.loads((shared / "docs" / "fixtures" / "kubernetes" / f"{scenario}.json").read_text())
    for exchange in data["exchanges"]:
        response = exchange["response"]
        if "stream" in response and "watch=true" in exchange["request"]["path"]:
            return [(e["event"]["type"], e["event"]["object"]) for e in response["stream"] if "event" in e]
    raise AssertionError(f"{scenario}: no watch stream")


@pytest.fixture
def watch(shared_dir: Path) -> Any:
    """``watch(scenario)``: the recorded (type, pod) events, ``post`` renamed ``helper``."""

    def events(scenario: str) -> list[tuple[str, Pod]]:
        renamed = json.loads(json.dumps(_recording(shared_dir, scenario)).replace('"post"', '"helper"'))
        return [(kind, obj) for kind, obj in renamed]

    return events


def last(events: list[tuple[str, Pod]], predicate: Any = lambda pod: True) -> Pod:
    return copy.deepcopy(next(pod for _, pod in reversed(events) if predicate(pod)))


def first(events: list[tuple[str, Pod]], predicate: Any) -> Pod:
    return copy.deepcopy(next(pod for _, pod in events if predicate(pod)))


def state(pod: Pod, name: str) -> dict[str, Any]:
    statuses = [
        *(pod["status"].get("initContainerStatuses") or []),
        *(pod["status"].get("containerStatuses") or []),
    ]
    return next((s["state"] for s in statuses if s["name"] == name), {})


# ------------------------------------------------------------------------------ recorded endings


def test_success_counts_once_build_and_helper_are_done_even_while_the_sidecar_runs(watch: Any) -> None:
    events = watch("pod-lifecycle-success-watch")
    mains_done = first(
        events, lambda p: "terminated" in state(p, "helper") and "terminated" in state(p, "build")
    )
    assert mains_done["status"]["phase"] == "Running"  # the sidecar still holds the phase
    assert decide(mains_done) == Outcome(True, "success")
    final = last(events)  # Succeeded, sidecar killed with 137 after its grace: does not count
    assert state(final, "sidecar")["terminated"]["exitCode"] == 137
    assert decide(final, deleted=True) == Outcome(True, "success")
    running = first(events, lambda p: "running" in state(p, "build"))
    assert decide(running).finished is False


def test_a_script_exit_code_is_a_script_failure_once_the_helper_is_done(watch: Any) -> None:
    events = watch("pod-lifecycle-failure-watch")
    helper_first = first(events, lambda p: "terminated" in state(p, "helper"))
    assert "running" in state(helper_first, "build")
    assert decide(helper_first).finished is False  # the build decides; it still runs
    done = first(events, lambda p: "terminated" in state(p, "helper") and "terminated" in state(p, "build"))
    outcome = decide(done)
    assert (outcome.failure_reason, outcome.exit_code, outcome.message) == (
        "script_failure",
        3,
        "exit code 3",
    )
    assert outcome.container == "build"


def test_an_oom_killed_build_names_its_memory_limit(watch: Any) -> None:
    outcome = decide(last(watch("pod-oomkilled"), lambda p: p["status"].get("phase") == "Failed"))
    assert outcome.job_outcome().failure_reason == "script_failure"
    assert outcome.exit_code == 137
    assert outcome.message == "container build was OOMKilled (memory limit 16Mi)"


def test_an_evicted_pod_is_a_system_failure_with_the_eviction_message(watch: Any) -> None:
    events = watch("eviction")
    disrupted_running = first(
        events,
        lambda p: (
            any(c["type"] == "DisruptionTarget" for c in p["status"].get("conditions") or [])
            and "running" in state(p, "build")
        ),
    )
    assert decide(disrupted_running).finished is False  # after_script still runs on TERM
    outcome = decide(last(events), deleted=True)
    assert outcome.failure_reason == "runner_system_failure"
    assert outcome.message == "pod was evicted: Eviction API: evicting (EvictionByEvictionAPI)"


def test_a_pod_deleted_by_someone_else_is_not_blamed_on_the_script(watch: Any) -> None:
    final = last(watch("graceful-delete"))
    assert state(final, "build")["terminated"]["exitCode"] == 143
    outcome = decide(final, deleted=True)
    assert outcome.failure_reason == "runner_system_failure"
    assert outcome.message.startswith("pod was deleted before the job finished")


# ------------------------------------------------------------------------------ waiting


def test_an_image_that_cannot_be_pulled_is_named_with_its_registry_and_error(watch: Any) -> None:
    events = watch("pod-image-pull-error")
    err = first(events, lambda p: state(p, "build").get("waiting", {}).get("reason") == "ErrImagePull")
    backoff = first(
        events, lambda p: state(p, "build").get("waiting", {}).get("reason") == "ImagePullBackOff"
    )
    pull = image_pull_failure(err)
    assert pull is not None
    assert (pull.container, pull.image, pull.registry) == (
        "build",
        "registry.example.invalid/nothing:1",
        "registry.example.invalid",
    )
    assert pull.message.endswith("no such host")
    backoff_pull = image_pull_failure(backoff)
    assert backoff_pull is not None and backoff_pull.message == pull.message  # the back-off prefix is cut
    outcome = start_problem(err)
    assert outcome is not None and outcome.failure_reason == "image_pull_failure"
    assert 'image "registry.example.invalid/nothing:1" of container build cannot be pulled' in outcome.message
    assert decide(err).failure_reason == "image_pull_failure"
    creating = first(
        events, lambda p: state(p, "build").get("waiting", {}).get("reason") == "ContainerCreating"
    )
    assert decide(creating) == Outcome(False)


def test_an_unschedulable_pod_says_why_and_keeps_waiting(watch: Any) -> None:
    events = watch("pod-unschedulable")
    pending = last(events, lambda p: p["status"].get("conditions"))
    reasons = pending_reasons(pending)
    assert len(reasons) == 1
    assert reasons[0].startswith(
        "the pod cannot be scheduled (Unschedulable): 0/1 nodes are available: "
        "1 node(s) didn't match Pod's node affinity/selector."
    )
    assert decide(pending).finished is False
    summary = waiting_summary(pending, ["build"])
    assert "Unschedulable" in summary and 'container build (image "localhost/busybox:1.35")' in summary


def test_containers_count_as_started_once_running_or_terminated(watch: Any) -> None:
    events = watch("pod-lifecycle-success-watch")
    assert not is_started(events[0][1], "build")
    assert is_started(first(events, lambda p: "running" in state(p, "init")), "init")
    pulled = last(watch("pod-image-pull-error"))  # never started, terminated when deleted
    assert state(pulled, "build")["terminated"]["reason"] == "ContainerStatusUnknown"
    assert not is_started(pulled, "build")


# ------------------------------------------------------------------------------ made-up states


def _job_pod(**statuses: dict[str, Any]) -> Pod:
    return {
        "metadata": {"name": "p"},
        "spec": {
            "activeDeadlineSeconds": 4200,
            "initContainers": [
                {"name": "svc-db", "image": "postgres:16", "restartPolicy": "Always"},
                {"name": "init", "image": "helper:1"},
            ],
            "containers": [
                {"name": "build", "image": "golang:1.22", "resources": {"limits": {"memory": "512Mi"}}},
                {"name": "helper", "image": "helper:1", "resources": {"limits": {"memory": "128Mi"}}},
            ],
        },
        "status": {
            "phase": "Running",
            "initContainerStatuses": [
                {"name": n, "state": statuses[n]} for n in ("svc-db", "init") if n in statuses
            ],
            "containerStatuses": [
                {"name": n, "state": statuses[n]} for n in ("build", "helper") if n in statuses
            ],
        },
    }


def term(code: int, reason: str = "Error", message: str = "") -> dict[str, Any]:
    return {"terminated": {"exitCode": code, "reason": reason, "message": message}}


OK = term(0, "Completed")


@pytest.mark.parametrize(
    ("statuses", "reason", "code", "message"),
    [
        ({"init": term(1)}, "script_failure", 1, "exit code 1"),
        ({"init": term(137, "OOMKilled")}, "runner_system_failure", 137, "container init was OOMKilled"),
        ({"init": OK, "build": OK, "helper": term(1)}, "script_failure", 1, "exit code 1"),
        (
            {"init": OK, "build": OK, "helper": term(137, "OOMKilled")},
            "runner_system_failure",
            137,
            "container helper was OOMKilled (memory limit 128Mi)",
        ),
        (
            {"init": OK, "build": term(2), "helper": term(1)},  # the build's failure, not the upload's
            "script_failure",
            2,
            "exit code 2",
        ),
        (
            {
                "init": OK,
                "build": term(128, "StartError", 'exec: "sh": executable file not found'),
                "helper": OK,
            },
            "script_failure",
            128,
            "container build could not start",
        ),
        (
            {"svc-db": term(1), "init": OK, "build": OK, "helper": OK},  # a service's code never counts
            None,
            None,
            "",
        ),
    ],
)
def test_the_deciding_container_and_reason(
    statuses: dict[str, Any], reason: str | None, code: int | None, message: str
) -> None:
    outcome = decide(_job_pod(**statuses))
    assert outcome.finished
    if reason is None:
        assert outcome.state == "success"
        return
    assert (outcome.failure_reason, outcome.exit_code) == (reason, code)
    assert outcome.message.startswith(message)


def test_config_errors_and_the_deadline_end_the_job_with_the_api_s_words() -> None:
    waiting = _job_pod(
        init={"waiting": {"reason": "CreateContainerConfigError", "message": 'secret "ci-env" not found'}}
    )
    problem = decide(waiting)
    assert problem.failure_reason == "runner_system_failure"
    assert (
        problem.message
        == 'container init cannot be created (CreateContainerConfigError): secret "ci-env" not found'
    )

    late = _job_pod(init=OK, build=term(137), helper=term(143))
    late["status"].update(
        phase="Failed",
        reason="DeadlineExceeded",
        message="Pod was active on the node longer than the specified deadline",
    )
    outcome = decide(late)
    assert outcome.failure_reason == "job_execution_timeout"
    assert "activeDeadlineSeconds (4200s)" in outcome.message


def test_a_service_that_keeps_failing_its_probe_is_a_pending_reason() -> None:
    pod = _job_pod(**{"svc-db": {"running": {}}})
    pod["spec"]["initContainers"][0]["startupProbe"] = {"tcpSocket": {"port": 5432}}
    pod["status"]["initContainerStatuses"][0].update(started=False, lastState={"terminated": {"exitCode": 1}})
    assert pending_reasons(pod) == [
        "service container svc-db is not accepting connections on port 5432 yet",
        "service container svc-db exited with code 1 (Error) and is restarted",
    ]
    assert decide(pod).finished is False
