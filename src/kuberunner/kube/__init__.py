"""The Kubernetes API client (on kubernetes_asyncio), its errors and its RBAC registry."""

from kuberunner.kube.client import KubeClient, WatchEvent
from kuberunner.kube.connection import ConnectionSettings, connect, context_namespace, resolve_settings
from kuberunner.kube.errors import (
    KubeAPIError,
    KubeConfigMissing,
    KubeConflict,
    KubeError,
    KubeForbidden,
    KubeGone,
    KubeInvalid,
    KubeNotFound,
    KubeTLSError,
    KubeUnauthorized,
    KubeUnreachable,
)
from kuberunner.kube.rbac import REGISTRY, Permission

__all__ = [
    "REGISTRY",
    "ConnectionSettings",
    "KubeAPIError",
    "KubeClient",
    "KubeConfigMissing",
    "KubeConflict",
    "KubeError",
    "KubeForbidden",
    "KubeGone",
    "KubeInvalid",
    "KubeNotFound",
    "KubeTLSError",
    "KubeUnauthorized",
    "KubeUnreachable",
    "Permission",
    "WatchEvent",
    "connect",
    "context_namespace",
    "resolve_settings",
]
