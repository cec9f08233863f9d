"""RBAC authorization over the stored Roles/Bindings, plus the cluster's default roles."""

from __future__ import annotations

from dataclasses import dataclass

from ._util import JSON
from .auth import UserInfo
from .resources import CLUSTERROLEBINDINGS, CLUSTERROLES, ROLEBINDINGS, ROLES
from .store import Store

RBAC_GROUP = "rbac.authorization.k8s.io"

_READ = ["get", "list", "watch"]
_WRITE = ["create", "delete", "deletecollection", "patch", "update"]
_CORE = [
    "pods",
    "pods/log",
    "pods/status",
    "secrets",
    "configmaps",
    "serviceaccounts",
    "events",
    "persistentvolumeclaims",
    "resourcequotas",
]

BUILTIN_CLUSTER_ROLES: dict[str, list[JSON]] = {
    "cluster-admin": [
        {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]},
        {"verbs": ["*"], "nonResourceURLs": ["*"]},
    ],
    "system:service-account-issuer-discovery": [
        {
            "verbs": ["get"],
            "nonResourceURLs": [
                "/.well-known/openid-configuration",
                "/.well-known/openid-configuration/",
                "/openid/v1/jwks",
                "/openid/v1/jwks/",
            ],
        }
    ],
    "system:basic-user": [
        {
            "verbs": ["create"],
            "apiGroups": ["authorization.k8s.io"],
            "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
        },
        {"verbs": ["create"], "apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"]},
    ],
    "system:discovery": [
        {
            "verbs": ["get"],
            "nonResourceURLs": [
                "/api",
                "/api/*",
                "/apis",
                "/apis/*",
                "/healthz",
                "/livez",
                "/openapi",
                "/openapi/*",
                "/readyz",
                "/version",
                "/version/",
            ],
        }
    ],
    "system:public-info-viewer": [
        {"verbs": ["get"], "nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"]}
    ],
    "view": [
        {"verbs": _READ, "apiGroups": [""], "resources": [*_CORE, "namespaces"]},
        {"verbs": _READ, "apiGroups": ["policy"], "resources": ["poddisruptionbudgets"]},
    ],
    "edit": [
        {"verbs": _READ + _WRITE, "apiGroups": [""], "resources": [r for r in _CORE if r != "pods/status"]},
        {
            "verbs": ["create", "get"],
            "apiGroups": [""],
            "resources": ["pods/attach", "pods/exec", "pods/portforward"],
        },
        {"verbs": ["create"], "apiGroups": [""], "resources": ["pods/eviction", "serviceaccounts/token"]},
        {"verbs": _READ, "apiGroups": [""], "resources": ["namespaces"]},
    ],
    "admin": [
        {"verbs": _READ + _WRITE, "apiGroups": [""], "resources": [r for r in _CORE if r != "pods/status"]},
        {
            "verbs": ["create", "get"],
            "apiGroups": [""],
            "resources": ["pods/attach", "pods/exec", "pods/portforward"],
        },
        {"verbs": ["create"], "apiGroups": [""], "resources": ["pods/eviction", "serviceaccounts/token"]},
        {"verbs": _READ + _WRITE, "apiGroups": [RBAC_GROUP], "resources": ["roles", "rolebindings"]},
        {"verbs": _READ, "apiGroups": [""], "resources": ["namespaces"]},
    ],
}

AUTH = "system:authenticated"

# Order matters: it is the order SelfSubjectRulesReview lists rules in (as recorded).
BUILTIN_CLUSTER_ROLE_BINDINGS: list[tuple[str, str, list[str]]] = [
    ("cluster-admin", "cluster-admin", ["system:masters"]),
    (
        "system:service-account-issuer-discovery",
        "system:service-account-issuer-discovery",
        ["system:serviceaccounts"],
    ),
    ("system:basic-user", "system:basic-user", [AUTH]),
    ("system:discovery", "system:discovery", [AUTH]),
    ("system:public-info-viewer", "system:public-info-viewer", [AUTH, "system:unauthenticated"]),
]


def builtin_objects() -> list[tuple[str, JSON]]:
    """(resource key, object) for the default ClusterRoles and ClusterRoleBindings."""
    objs: list[tuple[str, JSON]] = []
    for name, rules in BUILTIN_CLUSTER_ROLES.items():
        objs.append(
            (
                CLUSTERROLES.key,
                {
                    "kind": "ClusterRole",
                    "apiVersion": f"{RBAC_GROUP}/v1",
                    "metadata": {
                        "name": name,
                        "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
                        "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
                    },
                    "rules": rules,
                },
            )
        )
    for name, role, groups in BUILTIN_CLUSTER_ROLE_BINDINGS:
        objs.append(
            (
                CLUSTERROLEBINDINGS.key,
                {
                    "kind": "ClusterRoleBinding",
                    "apiVersion": f"{RBAC_GROUP}/v1",
                    "metadata": {
                        "name": name,
                        "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
                        "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
                    },
                    "subjects": [{"kind": "Group", "apiGroup": RBAC_GROUP, "name": g} for g in groups],
                    "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role},
                },
            )
        )
    return objs


@dataclass(frozen=True)
class Attributes:
    """What a request wants to do (the authorizer's view of it)."""

    verb: str
    resource_request: bool
    group: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    namespace: str = ""
    path: str = ""


def _subject_text(subject: JSON, binding_ns: str) -> str:
    kind = subject.get("kind", "")
    if kind == "ServiceAccount":
        return f'ServiceAccount "{subject.get("name")}/{subject.get("namespace") or binding_ns}"'
    return f'{kind} "{subject.get("name")}"'


def _applies(subject: JSON, user: UserInfo, binding_ns: str) -> bool:
    kind = subject.get("kind")
    if kind == "User":
        return bool(subject.get("name") == user.username)
    if kind == "Group":
        return subject.get("name") in user.groups
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or binding_ns
        return user.username == f"system:serviceaccount:{ns}:{subject.get('name')}"
    return False


def _verb_ok(rule: JSON, verb: str) -> bool:
    verbs = rule.get("verbs") or []
    return "*" in verbs or verb in verbs


def rule_allows(rule: JSON, attrs: Attributes) -> bool:
    if not _verb_ok(rule, attrs.verb):
        return False
    if not attrs.resource_request:
        for url in rule.get("nonResourceURLs") or []:
            if url == "*" or url == attrs.path or (url.endswith("*") and attrs.path.startswith(url[:-1])):
                return True
        return False
    groups = rule.get("apiGroups")
    if groups is None or not ("*" in groups or attrs.group in groups):
        return False
    resources = rule.get("resources") or []
    combined = attrs.resource + (f"/{attrs.subresource}" if attrs.subresource else "")
    resource_ok = "*" in resources or combined in resources
    if attrs.subresource and not resource_ok:
        resource_ok = f"{attrs.resource}/*" in resources or f"*/{attrs.subresource}" in resources
    if not resource_ok:
        return False
    names = rule.get("resourceNames") or []
    return not names or attrs.name in names


class Authorizer:
    """Evaluates RBAC like kube-apiserver: ClusterRoleBindings first, then the namespace's RoleBindings."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _cluster_bindings(self) -> list[JSON]:
        bindings = self.store.list(CLUSTERROLEBINDINGS.key)
        order = {name: i for i, (name, _, _) in enumerate(BUILTIN_CLUSTER_ROLE_BINDINGS)}
        return sorted(
            bindings, key=lambda b: (order.get(b["metadata"]["name"], len(order)), b["metadata"]["name"])
        )

    def _role_rules(self, ref: JSON, namespace: str) -> tuple[list[JSON], str] | None:
        kind = ref.get("kind")
        name = ref.get("name", "")
        if kind == "ClusterRole":
            role = self.store.peek(CLUSTERROLES.key, "", name)
        elif kind == "Role":
            role = self.store.peek(ROLES.key, namespace, name)
        else:
            return None
        if role is None:
            return None
        return list(role.get("rules") or []), f'{kind} "{name}"'

    def _visit(self, user: UserInfo, namespace: str) -> list[tuple[str, str, str, list[JSON]]]:
        """(binding text, role text, subject text, rules) for every binding that names this user."""
        out: list[tuple[str, str, str, list[JSON]]] = []
        for binding in self._cluster_bindings():
            for subject in binding.get("subjects") or []:
                if _applies(subject, user, ""):
                    resolved = self._role_rules(binding.get("roleRef") or {}, "")
                    if resolved is not None:
                        text = f'ClusterRoleBinding "{binding["metadata"]["name"]}"'
                        out.append((text, resolved[1], _subject_text(subject, ""), resolved[0]))
                    break
        if namespace:
            for binding in self.store.list(ROLEBINDINGS.key, namespace):
                for subject in binding.get("subjects") or []:
                    if _applies(subject, user, namespace):
                        resolved = self._role_rules(binding.get("roleRef") or {}, namespace)
                        if resolved is not None:
                            text = f'RoleBinding "{binding["metadata"]["name"]}/{namespace}"'
                            out.append((text, resolved[1], _subject_text(subject, namespace), resolved[0]))
                        break
        return out

    def authorize(self, user: UserInfo, attrs: Attributes) -> tuple[bool, str]:
        """(allowed, reason); the reason reads `RBAC: allowed by RoleBinding "b/ns" of Role "r" to ...`."""
        with self.store.lock:
            for binding_text, role_text, subject_text, rules in self._visit(user, attrs.namespace):
                for rule in rules:
                    if rule_allows(rule, attrs):
                        return True, f"RBAC: allowed by {binding_text} of {role_text} to {subject_text}"
        return False, ""

    def rules_for(self, user: UserInfo, namespace: str) -> tuple[list[JSON], list[JSON]]:
        """The SelfSubjectRulesReview answer: resource rules and non-resource rules, in visit order."""
        resource_rules: list[JSON] = []
        non_resource: list[JSON] = []
        with self.store.lock:
            for _, _, _, rules in self._visit(user, namespace):
                for rule in rules:
                    if rule.get("nonResourceURLs"):
                        non_resource.append(
                            {"verbs": list(rule["verbs"]), "nonResourceURLs": list(rule["nonResourceURLs"])}
                        )
                        continue
                    entry: JSON = {
                        "verbs": list(rule.get("verbs") or []),
                        "apiGroups": list(rule.get("apiGroups") or []),
                        "resources": list(rule.get("resources") or []),
                    }
                    if rule.get("resourceNames"):
                        entry["resourceNames"] = list(rule["resourceNames"])
                    resource_rules.append(entry)
        return resource_rules, non_resource
