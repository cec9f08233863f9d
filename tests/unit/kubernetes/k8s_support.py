"""Builders for pod-spec tests: a small job payload, a PodPlan, a config, and schema validation."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import kubernetes_validate

from kuberunner.config.schema import KubernetesConfig
from kuberunner.executors.kubernetes.podspec import PodPlan, RenderedPod, render_pod
from kuberunner.job import JobPayload

# The oldest Kubernetes with native sidecars (1.29) that kubernetes-validate
# ships strict schemas for is 1.30; the newest shows nothing became invalid since.
K8S_VERSIONS = ("1.30", kubernetes_validate.latest_version())

HELPER_IMAGE = "registry.example.com/kuberunner/helper:0.1.0"
BASE_LABELS = {"app.kubernetes.io/managed-by": "kuberunner", "kuberunner.io/job-id": "4821"}

_PAYLOAD: dict[str, Any] = {
    "id": 4821,
    "token": "glcbt-job-token-not-for-pods",
    "job_info": {"id": 4821, "name": "build-image", "project_id": 42, "project_name": "webapp"},
    "git_info": {"ref": "main", "sha": "3f1c0b9d", "before_sha": "00000000"},
    "runner_info": {"timeout": 3600},
    "variables": [
        {"key": "CI_JOB_ID", "value": "4821", "public": True},
        {"key": "CI_PROJECT_URL", "value": "https://gitlab.example.com/acme/webapp", "public": True},
        {"key": "CI_JOB_TOKEN", "value": "glcbt-job-token-not-for-pods", "public": False, "masked": True},
        {"key": "DEPLOY_PASSWORD", "value": "s3cr3t-project-variable", "public": False, "masked": True},
        {"key": "KUBECONFIG_DATA", "value": "apiVersion: v1", "public": True, "file": True},
        {"key": "GREETING", "value": "hello", "public": True},
    ],
    "steps": [{"name": "script", "script": ["make"], "timeout": 3600, "when": "on_success"}],
    "image": {"name": "golang:1.22"},
    "services": [
        {
            "name": "postgres:16",
            "alias": "db",
            "variables": [{"key": "POSTGRES_PASSWORD", "value": "p$(GREETING)w"}],
        }
    ],
}


def payload(**changes: Any) -> JobPayload:
    """The small job above, with top-level keys replaced."""
    data = copy.deepcopy(_PAYLOAD)
    data.update(changes)
    return JobPayload.parse(data)


def make_plan(job: JobPayload | None = None, **changes: Any) -> PodPlan:
    job = job or payload()
    plan = PodPlan(
        job=job,
        pod_name="runner-abc123-project-42-job-4821",
        namespace="ci",
        labels=BASE_LABELS,
        builds_dir="/builds",
        cache_dir="/cache",
        scripts_secret="runner-abc123-project-42-job-4821-scripts",
        registry_secret=None,
        variables=tuple((v.key, v.value) for v in job.variables),
        helper_image=HELPER_IMAGE,
        timeout=3600,
        after_script_timeout=300,
        native_sidecars=True,
    )
    return replace(plan, **changes)


def config(**values: Any) -> KubernetesConfig:
    return KubernetesConfig.model_validate(values)


def validate(obj: dict[str, Any], versions: tuple[str, ...] = K8S_VERSIONS) -> None:
    """Fail unless ``obj`` fits the strict schemas (unknown fields included) of every version."""
    for version in versions:
        kubernetes_validate.validate(obj, version, strict=True)


def render(plan: PodPlan | None = None, cfg: KubernetesConfig | None = None, **kw: Any) -> RenderedPod:
    """render_pod, with the result validated against the Kubernetes schemas."""
    rendered = render_pod(plan or make_plan(), cfg or config(), **kw)
    validate(rendered.pod)
    return rendered


def pod_of(plan: PodPlan | None = None, cfg: KubernetesConfig | None = None, **kw: Any) -> dict[str, Any]:
    return render(plan, cfg, **kw).pod


def containers(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every container (init and regular) by name."""
    spec = pod["spec"]
    return {c["name"]: c for c in [*spec.get("initContainers", []), *spec.get("containers", [])]}


def container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    return containers(pod)[name]


def env_of(container_spec: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container_spec.get("env", [])}
