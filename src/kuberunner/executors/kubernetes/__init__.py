"""The Kubernetes executor: the job's pod as a pure function (:mod:`.podspec`) and job overrides."""

from __future__ import annotations

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
    "Overrides",
    "PodPlan",
    "RenderedPod",
    "build_pod",
    "build_registry_secret",
    "build_scripts_secret",
    "container_pull_policies",
    "next_pull_policy",
    "render_pod",
    "resolve_overrides",
]
