"""The probe pod: a job's real pod spec, judged on the pod states a real cluster recorded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate

from kuberunner.config.schema import KubernetesConfig, RunnerConfig
from kuberunner.doctor.pods import PROBE_LABELS, job_pod, pending_diagnosis, probe_outcome

SEED_KUBERNETES: dict[str, Any] = {
    "host": "https://192.168.80.130:6443",
    "namespace": "gitlab",
    "privileged": True,
    "service_account": "gitlab-runner",
    "helper_image": "gitlab/gitlab-runner-helper:x86_64-v14.10.2",
    "node_selector": {"kubernetes.io/os": "linux"},
    "volumes": {"host_path": [{"name": "docker", "mount_path": "/var/run/docker.sock"}]},
    "host_aliases": [{"ip": "192.168.80.14", "hostnames": ["gitlab.example.com"]}],
    "services": [{"name": "docker:dind", "alias": "docker-dind"}],
}


def watch_objects(shared_dir: Path, scenario: str) -> list[dict[str, Any]]:
    data = json.loads((shared_dir / "docs/fixtures/kubernetes" / f"{scenario}.json").read_text())
    for exchange in data["exchanges"]:
        if exchange["response"].get("stream_mode", "").startswith("watch"):
            return [item["event"]["object"] for item in exchange["response"]["stream"] if "event" in item]
    raise KeyError(scenario)


def events(shared_dir: Path, scenario: str) -> list[dict[str, Any]]:
    data = json.loads((shared_dir / "docs/fixtures/kubernetes" / f"{scenario}.json").read_text())
    for exchange in data["exchanges"]:
        if exchange["name"] == "events for the pod":
            items: list[dict[str, Any]] = exchange["response"]["body"]["items"]
            return items
    raise KeyError(scenario)


def test_probe_uses_the_jobs_real_pod_spec() -> None:
    cfg = KubernetesConfig.model_validate(SEED_KUBERNETES)
    runner = RunnerConfig.model_validate({"name": "k8s-runner", "executor": "kubernetes"})
    pod = job_pod(runner, cfg, "gitlab", name="kuberunner-doctor-abc123", native_sidecars=True)
    kubernetes_validate.validate(pod, kubernetes_validate.latest_version(), strict=True)
    spec = pod["spec"]
    containers = {c["name"]: c for c in [*spec["initContainers"], *spec["containers"]]}
    assert set(containers) == {"docker-dind", "init", "build", "helper"}
    assert containers["init"]["image"] == containers["helper"]["image"] == SEED_KUBERNETES["helper_image"]
    assert containers["build"]["image"] == SEED_KUBERNETES["helper_image"]  # no default job image in the seed
    assert all(c["securityContext"]["privileged"] for c in containers.values())
    assert spec["serviceAccountName"] == "gitlab-runner"
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert {"name": "docker", "hostPath": {"path": "/var/run/docker.sock"}} in spec["volumes"]
    assert {"ip": "192.168.80.14", "hostnames": ["gitlab.example.com"]} in spec["hostAliases"]
    assert pod["metadata"]["labels"] == PROBE_LABELS
    # the stage scripts come from the probe's own scripts Secret
    assert containers["build"]["command"] == ["sh", "/kuberunner/scripts/build"]
    scripts = next(v for v in spec["volumes"] if v["name"] == "scripts")
    assert scripts["secret"]["secretName"] == "kuberunner-doctor-abc123-scripts"


def test_recorded_pull_error_is_decided_at_once(shared_dir: Path) -> None:
    cfg = KubernetesConfig.model_validate({"image": "registry.example.com/ci/maven:3"})
    states = [probe_outcome(pod, cfg) for pod in watch_objects(shared_dir, "pod-image-pull-error")]
    decided = [s for s in states if s.diagnosis is not None]
    assert not states[0].started and states[0].diagnosis is None  # ContainerCreating: wait
    assert decided, "ErrImagePull must decide the probe"
    assert decided[0].diagnosis is not None
    assert decided[0].diagnosis.summary == (
        "the nodes cannot reach registry registry.example.invalid to pull registry.example.invalid/nothing:1"
    )
    assert decided[0].diagnosis.fixes[0].text == (
        '[runners.kubernetes]\n  image = "registry.example.com/nothing:1"'  # mirror where job images live
    )


def test_recorded_success_is_started(shared_dir: Path) -> None:
    cfg = KubernetesConfig.model_validate({})
    states = [probe_outcome(pod, cfg) for pod in watch_objects(shared_dir, "pod-lifecycle-success-watch")]
    assert not states[0].started
    first_started = next(i for i, s in enumerate(states) if s.started)
    pod = watch_objects(shared_dir, "pod-lifecycle-success-watch")[first_started]
    assert pod["status"]["phase"] == "Running"
    assert all(s.diagnosis is None for s in states)


def test_recorded_unschedulable_pod_reported_at_poll_timeout(shared_dir: Path) -> None:
    cfg = KubernetesConfig.model_validate({"poll_timeout": 10, "node_selector": {"disktype": "ssd"}})
    pods = watch_objects(shared_dir, "pod-unschedulable")
    assert all(probe_outcome(p, cfg).diagnosis is None and not probe_outcome(p, cfg).started for p in pods)
    found = pending_diagnosis(pods[1], events(shared_dir, "pod-unschedulable"), cfg, "kr-rec", 10.0)
    assert found.summary == (
        "the pod was not scheduled within poll_timeout (10s): "
        "no node matches the job pod's node_selector/affinity"
    )
    assert any("1 node(s) didn't match Pod's node affinity/selector" in line for line in found.evidence)


def test_still_pulling_at_poll_timeout(shared_dir: Path) -> None:
    cfg = KubernetesConfig.model_validate({"poll_timeout": 180})
    pod = watch_objects(shared_dir, "pod-image-pull-error")[0]
    pulling = [
        e for e in events(shared_dir, "pod-image-pull-error") if e["reason"] in ("Scheduled", "Pulling")
    ]
    found = pending_diagnosis(pod, pulling, cfg, "kr-rec", 180.0)
    assert found.summary == (
        "the pod did not start within poll_timeout (180s): "
        "image registry.example.invalid/nothing:1 was still being pulled from registry.example.invalid"
    )
    assert found.fixes[0].text == "ctr -n k8s.io image pull registry.example.invalid/nothing:1"
    assert found.fixes[1].text == "[runners.kubernetes]\n  poll_timeout = 600"
