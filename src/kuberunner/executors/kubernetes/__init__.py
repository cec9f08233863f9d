"""The Kubernetes executor (:class:`KubernetesExecutor`): the job's pod as a pure function
(:mod:`.podspec`), job overrides, the in-pod drivers, pod outcomes, log following and orphans."""

from __future__ import annotations

from kuberunner.executors.kubernetes.executor import (
    DEFAULT_HELPER_IMAGE,
    KubernetesExecutor,
    helper_command_for,
    is_official_helper_image,
)
from kuberunner.executors.kubernetes.orphans import remove_orphans
from kuberunner.executors.kubernetes.overrides import Overrides, resolve_overrides
from kuberunner.executors.kubernetes.podspec import (
    PodPlan,
    RenderedPod,
    build_pod,
    build_registry_secret,
    build_scripts_secret,
    container_pull_policies,
    next_pull_policy,
    render_pod,
)

__all__ = [
    "DEFAULT_HELPER_IMAGE",
    "KubernetesExecutor",
    "Overrides",
    "PodPlan",
    "RenderedPod",
    "build_pod",
    "build_registry_secret",
    "build_scripts_secret",
    "container_pull_policies",
    "helper_command_for",
    "is_official_helper_image",
    "next_pull_policy",
    "remove_orphans",
    "render_pod",
    "resolve_overrides",
]
