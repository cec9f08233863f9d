"""Setup and diagnostic calls: what ``kuberunner rbac --apply`` and ``doctor`` ask beyond the runner's own.

The runner's Role is derived from :data:`kuberunner.kube.rbac.REGISTRY`, so these
calls must never land there: creating namespaces and Roles, issuing tokens or
reading RoleBindings is not something a running runner does. They are tagged with
:func:`setup_requires` instead, which records them in :data:`SETUP_REGISTRY` (a
separate dict, same :class:`~kuberunner.kube.rbac.Permission` values) and marks
the method with ``__kuberunner_rbac__`` (so "every call is tagged" still holds)
and ``__kuberunner_setup__ = True`` (so tools can tell the two kinds apart).

``rbac --apply`` runs these with an administrator's kubeconfig; ``doctor`` runs
the read-only ones (:meth:`SetupClient.get_namespace`, :meth:`SetupClient.list_roles`,
:meth:`SetupClient.list_role_bindings`) with the runner's own credentials and
treats a 403 as "cannot tell", never as a failure.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from ruamel.yaml import YAML

from kuberunner.kube.client import KubeClient
from kuberunner.kube.errors import KubeInvalid
from kuberunner.kube.rbac import REGISTRY, Permission, rules_for

__all__ = [
    "FIELD_MANAGER",
    "MANAGED_BY",
    "SETUP_REGISTRY",
    "SetupClient",
    "binding_command",
    "namespace_object",
    "role_binding_object",
    "role_object",
    "runner_permissions",
    "service_account_object",
    "setup_requires",
    "subject_for",
    "to_yaml",
    "token_secret_object",
]

F = TypeVar("F", bound=Callable[..., Any])
Obj = dict[str, Any]

RBAC_GROUP = "rbac.authorization.k8s.io"
FIELD_MANAGER = "kuberunner"
MANAGED_BY = {"app.kubernetes.io/managed-by": "kuberunner"}
SA_NAME_ANNOTATION = "kubernetes.io/service-account.name"

# operation name -> permission, for calls that are NOT part of the runner's Role.
SETUP_REGISTRY: dict[str, Permission | None] = {}


def setup_requires(resource: str, verb: str, *, group: str = "", why: str = "") -> Callable[[F], F]:
    """Tag a setup/diagnostic call with its permission, outside the runner's registry."""

    def tag(func: F) -> F:
        permission = Permission(resource, verb, group, optional=False, why=why)
        SETUP_REGISTRY[func.__name__] = permission
        func.__kuberunner_rbac__ = permission  # type: ignore[attr-defined]
        func.__kuberunner_setup__ = True  # type: ignore[attr-defined]
        return func

    return tag


_APPLY_PATHS: dict[str, tuple[str, bool]] = {
    # kind -> (collection path template, namespaced)
    "Namespace": ("/api/v1/namespaces", False),
    "ServiceAccount": ("/api/v1/namespaces/{ns}/serviceaccounts", True),
    "Secret": ("/api/v1/namespaces/{ns}/secrets", True),
    "Role": (f"/apis/{RBAC_GROUP}/v1/namespaces/{{ns}}/roles", True),
    "RoleBinding": (f"/apis/{RBAC_GROUP}/v1/namespaces/{{ns}}/rolebindings", True),
}


class SetupClient(KubeClient):
    """A :class:`KubeClient` with the setup calls. Build one with :func:`connect` then :meth:`sharing`."""

    @classmethod
    def sharing(cls, client: KubeClient) -> SetupClient:
        """A SetupClient on the same connection as ``client`` (close only one of them)."""
        return cls(client._api, client.namespace, source=client.source)

    # ------------------------------------------------------------------ server-side apply

    async def _apply(self, obj: Obj, *, force: bool) -> Obj:
        kind = str(obj.get("kind", ""))
        template, namespaced = _APPLY_PATHS[kind]
        meta = obj.get("metadata") or {}
        name = str(meta.get("name", ""))
        ns = str(meta.get("namespace") or self.namespace)
        path = template.format(ns=ns) + f"/{name}"
        query: list[tuple[str, Any]] = [("fieldManager", FIELD_MANAGER), ("fieldValidation", "Strict")]
        if force:
            query.append(("force", "true"))
        where = f" in namespace {ns!r}" if namespaced else ""
        return await self._call(
            f"apply {kind} {name!r}{where}",
            "PATCH",
            path,
            query=query,
            body=obj,
            content_type="application/apply-patch+yaml",
        )

    async def apply(self, obj: Obj, *, force: bool = True) -> Obj:
        """Server-side apply (``fieldManager=kuberunner``) of one of the kinds ``rbac`` prints."""
        appliers: dict[str, Callable[..., Any]] = {
            "Namespace": self.apply_namespace,
            "ServiceAccount": self.apply_service_account,
            "Secret": self.apply_secret,
            "Role": self.apply_role,
            "RoleBinding": self.apply_role_binding,
        }
        kind = str(obj.get("kind", ""))
        if kind not in appliers:
            raise KubeInvalid(422, "Invalid", f"kuberunner does not apply objects of kind {kind!r}")
        result: Obj = await appliers[kind](obj, force=force)
        return result

    @setup_requires("namespaces", "patch", why="rbac --apply: the runner's namespace (cluster scope)")
    async def apply_namespace(self, obj: Obj, *, force: bool = True) -> Obj:
        return await self._apply(obj, force=force)

    @setup_requires("serviceaccounts", "patch", why="rbac --apply: the runner's ServiceAccount")
    async def apply_service_account(self, obj: Obj, *, force: bool = True) -> Obj:
        return await self._apply(obj, force=force)

    @setup_requires("secrets", "patch", why="rbac --apply: the long-lived token Secret")
    async def apply_secret(self, obj: Obj, *, force: bool = True) -> Obj:
        return await self._apply(obj, force=force)

    @setup_requires("roles", "patch", group=RBAC_GROUP, why="rbac --apply: the runner's Role")
    async def apply_role(self, obj: Obj, *, force: bool = True) -> Obj:
        return await self._apply(obj, force=force)

    @setup_requires("rolebindings", "patch", group=RBAC_GROUP, why="rbac --apply: binding Role to account")
    async def apply_role_binding(self, obj: Obj, *, force: bool = True) -> Obj:
        return await self._apply(obj, force=force)

    # ------------------------------------------------------------------ tokens and CA

    @setup_requires("serviceaccounts/token", "create", why="rbac --apply: a token when no Secret gets one")
    async def request_token(
        self, service_account: str, *, expiration_seconds: int, namespace: str | None = None
    ) -> tuple[str, str]:
        """TokenRequest: (token, expirationTimestamp). The server may shorten the duration."""
        ns = self._ns(namespace)
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": expiration_seconds},
        }
        answer = await self._call(
            f"request a token for service account {service_account!r} in namespace {ns!r}",
            "POST",
            f"/api/v1/namespaces/{ns}/serviceaccounts/{service_account}/token",
            body=body,
        )
        status = answer.get("status") or {}
        return str(status.get("token") or ""), str(status.get("expirationTimestamp") or "")

    @setup_requires("secrets", "get", why="rbac --apply: reading the token the token controller wrote")
    async def read_token_secret(self, name: str, *, namespace: str | None = None) -> Obj:
        ns = self._ns(namespace)
        return await self._call(f"get secret {name!r}", "GET", f"/api/v1/namespaces/{ns}/secrets/{name}")

    @setup_requires("configmaps", "get", why="rbac --apply: the cluster CA (kube-root-ca.crt)")
    async def root_ca(self, *, namespace: str | None = None) -> str:
        """The cluster CA bundle every namespace carries in ConfigMap ``kube-root-ca.crt``."""
        ns = self._ns(namespace)
        answer = await self._call(
            "get configmap 'kube-root-ca.crt'", "GET", f"/api/v1/namespaces/{ns}/configmaps/kube-root-ca.crt"
        )
        return str((answer.get("data") or {}).get("ca.crt") or "")

    # ------------------------------------------------------------------ diagnostics (doctor)

    @setup_requires("namespaces", "get", why="doctor: does the namespace exist (cluster scope)")
    async def get_namespace(self, name: str) -> Obj:
        return await self._call(f"get namespace {name!r}", "GET", f"/api/v1/namespaces/{name}")

    @setup_requires(
        "selfsubjectrulesreviews",
        "create",
        group="authorization.k8s.io",
        why="doctor: what the account may do beyond what it needs (allowed to every authenticated user)",
    )
    async def rules_review(self, *, namespace: str | None = None) -> Obj:
        """SelfSubjectRulesReview: ``status.resourceRules`` the account has in the namespace."""
        ns = self._ns(namespace)
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectRulesReview",
            "spec": {"namespace": ns},
        }
        return await self._call(
            f"review own rules in namespace {ns!r}",
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
            body=body,
        )

    @setup_requires("roles", "list", group=RBAC_GROUP, why="doctor: is there a Role that is not bound")
    async def list_roles(self, *, namespace: str | None = None) -> Obj:
        ns = self._ns(namespace)
        return await self._call(
            f"list roles in namespace {ns!r}", "GET", f"/apis/{RBAC_GROUP}/v1/namespaces/{ns}/roles"
        )

    @setup_requires("rolebindings", "list", group=RBAC_GROUP, why="doctor: which Roles are bound to us")
    async def list_role_bindings(self, *, namespace: str | None = None) -> Obj:
        ns = self._ns(namespace)
        return await self._call(
            f"list rolebindings in namespace {ns!r}",
            "GET",
            f"/apis/{RBAC_GROUP}/v1/namespaces/{ns}/rolebindings",
        )


# ---------------------------------------------------------------------- setup objects
#
# The objects ``kuberunner rbac`` prints and applies, and the ones doctor's fixes
# quote: built in one place so the two can never disagree.


def runner_permissions() -> list[Permission]:
    """Every permission the runner's own calls need (REGISTRY), required winning over optional."""
    best: dict[tuple[str, str, str], Permission] = {}
    for perm in REGISTRY.values():
        if perm is None:
            continue
        key = (perm.group, perm.resource, perm.verb)
        if key not in best or (best[key].optional and not perm.optional):
            best[key] = perm
    return sorted(best.values(), key=lambda p: (p.group, p.resource, p.verb))


def _meta(name: str, namespace: str | None = None, **extra: Any) -> Obj:
    meta: Obj = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["labels"] = dict(MANAGED_BY)
    meta.update(extra)
    return meta


def namespace_object(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(name)}


def service_account_object(name: str, namespace: str) -> Obj:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(name, namespace)}


def role_object(name: str, namespace: str, permissions: Iterable[Permission]) -> Obj:
    """A Role granting exactly ``permissions`` (one rule per group and resource)."""
    return {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "Role",
        "metadata": _meta(name, namespace),
        "rules": rules_for(permissions),
    }


def subject_for(username: str, default_namespace: str) -> Obj:
    """The RoleBinding subject for an API username (ServiceAccounts by namespace and name)."""
    parts = username.split(":")
    if len(parts) == 4 and parts[:2] == ["system", "serviceaccount"]:
        return {"kind": "ServiceAccount", "name": parts[3], "namespace": parts[2]}
    if username.startswith("system:serviceaccount:"):
        return {"kind": "ServiceAccount", "name": username.rsplit(":", 1)[-1], "namespace": default_namespace}
    return {"kind": "User", "apiGroup": RBAC_GROUP, "name": username}


def role_binding_object(name: str, namespace: str, role: str, subject: Obj) -> Obj:
    return {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "RoleBinding",
        "metadata": _meta(name, namespace),
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": role},
        "subjects": [dict(subject)],
    }


def token_secret_object(service_account: str, namespace: str) -> Obj:
    """A ``kubernetes.io/service-account-token`` Secret: the token controller fills in a long-lived token."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(
            f"{service_account}-token", namespace, annotations={SA_NAME_ANNOTATION: service_account}
        ),
        "type": "kubernetes.io/service-account-token",
    }


def binding_command(name: str, namespace: str, role: str, subject: Obj) -> str:
    """The ``kubectl create rolebinding`` one-liner for the same binding."""
    if subject.get("kind") == "ServiceAccount":
        who = f"--serviceaccount={subject.get('namespace') or namespace}:{subject['name']}"
    else:
        who = f"--user={subject['name']}"
    return f"kubectl create rolebinding {name} --namespace={namespace} --role={role} {who}"


def to_yaml(objects: Sequence[Obj]) -> str:
    """One YAML stream (``---`` between documents), keys in the order given, as kubectl prints."""
    yaml = YAML()
    yaml.default_flow_style = False
    yaml.explicit_start = True
    buffer = io.StringIO()
    yaml.dump_all(list(objects), buffer)
    return buffer.getvalue()
