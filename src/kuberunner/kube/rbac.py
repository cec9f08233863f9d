"""Every Kubernetes call kuberunner makes, with the RBAC permission it needs. One place.

:class:`~kuberunner.kube.client.KubeClient` methods are tagged with
:func:`requires`; ``kuberunner rbac`` and ``kuberunner doctor`` read
:data:`REGISTRY`, and a test fails when a client method is not tagged. So the
Role we print can never drift from the calls we make.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["REGISTRY", "Permission", "requires", "rules_for"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, order=True)
class Permission:
    """One (verb, resource) pair in a namespace. ``optional`` ones only make messages richer."""

    resource: str  # "pods", "pods/log", "secrets", "events"
    verb: str
    group: str = ""
    optional: bool = False
    why: str = ""

    @property
    def base_resource(self) -> str:
        return self.resource.split("/", 1)[0]

    @property
    def subresource(self) -> str:
        return self.resource.split("/", 1)[1] if "/" in self.resource else ""


# operation name (client method) -> permission; None means "no namespaced RBAC
# needed" (e.g. /version, self-reviews allowed to every authenticated user).
REGISTRY: dict[str, Permission | None] = {}


def requires(
    resource: str | None, verb: str = "", *, group: str = "", optional: bool = False, why: str = ""
) -> Callable[[F], F]:
    """Tag a client method with the permission it needs (``resource=None``: none)."""

    def tag(func: F) -> F:
        REGISTRY[func.__name__] = (
            None if resource is None else Permission(resource, verb, group, optional, why)
        )
        func.__kuberunner_rbac__ = REGISTRY[func.__name__]  # type: ignore[attr-defined]
        return func

    return tag


def rules_for(permissions: Iterable[Permission]) -> list[dict[str, Any]]:
    """Role rules, one per (group, resource), verbs sorted: exactly the given permissions."""
    grouped: dict[tuple[str, str], set[str]] = {}
    for perm in permissions:
        grouped.setdefault((perm.group, perm.resource), set()).add(perm.verb)
    return [
        {"apiGroups": [group], "resources": [resource], "verbs": sorted(verbs)}
        for (group, resource), verbs in sorted(grouped.items())
    ]
