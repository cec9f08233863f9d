"""The resource types the double serves, and the discovery documents built from them."""

from __future__ import annotations

from dataclasses import dataclass, field

from ._util import JSON

_ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class ResourceType:
    """One REST resource: where it lives, what it is called, what it accepts."""

    name: str
    kind: str
    group: str
    version: str
    namespaced: bool
    singular: str
    model: str
    verbs: tuple[str, ...] = tuple(_ALL_VERBS)
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    storage_hash: str = ""
    returns_deleted_object: bool = False
    subresources: tuple[tuple[str, str, tuple[str, ...]], ...] = field(default=())
    stored: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        return f"{self.name}.{self.group}" if self.group else self.name

    @property
    def list_kind(self) -> str:
        return self.kind + "List"


PODS = ResourceType(
    "pods",
    "Pod",
    "",
    "v1",
    True,
    "pod",
    "V1Pod",
    short_names=("po",),
    categories=("all",),
    storage_hash="xPOwRZ+Yhw8=",
    returns_deleted_object=True,
    subresources=(
        ("attach", "PodAttachOptions", ("create", "get")),
        ("binding", "Binding", ("create",)),
        ("eviction", "Eviction", ("create",)),
        ("exec", "PodExecOptions", ("create", "get")),
        ("log", "Pod", ("get",)),
        ("status", "Pod", ("get", "patch", "update")),
    ),
)
SECRETS = ResourceType("secrets", "Secret", "", "v1", True, "secret", "V1Secret", storage_hash="S6u1pOWzb84=")
CONFIGMAPS = ResourceType(
    "configmaps",
    "ConfigMap",
    "",
    "v1",
    True,
    "configmap",
    "V1ConfigMap",
    short_names=("cm",),
    storage_hash="qFsyl6wFWjQ=",
)
SERVICEACCOUNTS = ResourceType(
    "serviceaccounts",
    "ServiceAccount",
    "",
    "v1",
    True,
    "serviceaccount",
    "V1ServiceAccount",
    short_names=("sa",),
    storage_hash="pbx9ZvyFpBE=",
    returns_deleted_object=True,
    subresources=(("token", "TokenRequest", ("create",)),),
)
EVENTS = ResourceType(
    "events",
    "Event",
    "",
    "v1",
    True,
    "event",
    "CoreV1Event",
    short_names=("ev",),
    storage_hash="r2yiGXH7wu8=",
)
NAMESPACES = ResourceType(
    "namespaces",
    "Namespace",
    "",
    "v1",
    False,
    "namespace",
    "V1Namespace",
    verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
    short_names=("ns",),
    storage_hash="Q3oi5N2YM8M=",
    returns_deleted_object=True,
    subresources=(
        ("finalize", "Namespace", ("update",)),
        ("status", "Namespace", ("get", "patch", "update")),
    ),
)
NODES = ResourceType(
    "nodes",
    "Node",
    "",
    "v1",
    False,
    "node",
    "V1Node",
    short_names=("no",),
    storage_hash="XwShjMxG9Fs=",
    subresources=(
        ("proxy", "NodeProxyOptions", ("create", "delete", "get", "patch", "update")),
        ("status", "Node", ("get", "patch", "update")),
    ),
)
PVCS = ResourceType(
    "persistentvolumeclaims",
    "PersistentVolumeClaim",
    "",
    "v1",
    True,
    "persistentvolumeclaim",
    "V1PersistentVolumeClaim",
    short_names=("pvc",),
    storage_hash="QWTyNDq0dC4=",
)
ROLES = ResourceType(
    "roles", "Role", "rbac.authorization.k8s.io", "v1", True, "role", "V1Role", storage_hash="7FuwZcIIItM="
)
ROLEBINDINGS = ResourceType(
    "rolebindings",
    "RoleBinding",
    "rbac.authorization.k8s.io",
    "v1",
    True,
    "rolebinding",
    "V1RoleBinding",
    storage_hash="eGsCzGH6b1g=",
)
CLUSTERROLES = ResourceType(
    "clusterroles",
    "ClusterRole",
    "rbac.authorization.k8s.io",
    "v1",
    False,
    "clusterrole",
    "V1ClusterRole",
    storage_hash="bYE5ZWDrJ44=",
)
CLUSTERROLEBINDINGS = ResourceType(
    "clusterrolebindings",
    "ClusterRoleBinding",
    "rbac.authorization.k8s.io",
    "v1",
    False,
    "clusterrolebinding",
    "V1ClusterRoleBinding",
    storage_hash="48tpQ8gZHFc=",
)
PDBS = ResourceType(
    "poddisruptionbudgets",
    "PodDisruptionBudget",
    "policy",
    "v1",
    True,
    "poddisruptionbudget",
    "V1PodDisruptionBudget",
    short_names=("pdb",),
    storage_hash="EVWiDmWqyJw=",
    subresources=(("status", "PodDisruptionBudget", ("get", "patch", "update")),),
)
RESOURCEQUOTAS = ResourceType(
    "resourcequotas",
    "ResourceQuota",
    "",
    "v1",
    True,
    "resourcequota",
    "V1ResourceQuota",
    short_names=("quota",),
    storage_hash="8uhSgffRX6w=",
)
SSAR = ResourceType(
    "selfsubjectaccessreviews",
    "SelfSubjectAccessReview",
    "authorization.k8s.io",
    "v1",
    False,
    "selfsubjectaccessreview",
    "V1SelfSubjectAccessReview",
    verbs=("create",),
    stored=False,
)
SSRR = ResourceType(
    "selfsubjectrulesreviews",
    "SelfSubjectRulesReview",
    "authorization.k8s.io",
    "v1",
    False,
    "selfsubjectrulesreview",
    "V1SelfSubjectRulesReview",
    verbs=("create",),
    stored=False,
)
SELFSUBJECTREVIEWS = ResourceType(
    "selfsubjectreviews",
    "SelfSubjectReview",
    "authentication.k8s.io",
    "v1",
    False,
    "selfsubjectreview",
    "V1SelfSubjectReview",
    verbs=("create",),
    stored=False,
)

ALL: tuple[ResourceType, ...] = (
    CONFIGMAPS,
    EVENTS,
    NAMESPACES,
    NODES,
    PVCS,
    PODS,
    RESOURCEQUOTAS,
    SECRETS,
    SERVICEACCOUNTS,
    ROLES,
    ROLEBINDINGS,
    CLUSTERROLES,
    CLUSTERROLEBINDINGS,
    PDBS,
    SSAR,
    SSRR,
    SELFSUBJECTREVIEWS,
)

BY_KEY = {rt.key: rt for rt in ALL}
GROUP_VERSIONS: dict[str, list[ResourceType]] = {}
for _rt in ALL:
    GROUP_VERSIONS.setdefault(_rt.api_version, []).append(_rt)


def lookup(group: str, version: str, name: str) -> ResourceType | None:
    for rt in GROUP_VERSIONS.get(f"{group}/{version}" if group else version, []):
        if rt.name == name:
            return rt
    return None


def resource_list(group_version: str) -> JSON:
    """APIResourceList for /api/v1 or /apis/G/V. The core list has no apiVersion field (as recorded)."""
    resources: list[JSON] = []
    for rt in sorted(GROUP_VERSIONS[group_version], key=lambda r: r.name):
        entry: JSON = {
            "name": rt.name,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": list(rt.verbs),
        }
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        if rt.categories:
            entry["categories"] = list(rt.categories)
        if rt.storage_hash:
            entry["storageVersionHash"] = rt.storage_hash
        resources.append(entry)
        for sub, kind, verbs in rt.subresources:
            sub_entry: JSON = {"name": f"{rt.name}/{sub}", "singularName": "", "namespaced": rt.namespaced}
            if sub == "eviction":
                sub_entry.update({"group": "policy", "version": "v1"})
            sub_entry.update({"kind": kind, "verbs": list(verbs)})
            resources.append(sub_entry)
    body: JSON = {"kind": "APIResourceList"}
    if group_version != "v1":
        body["apiVersion"] = "v1"
    body["groupVersion"] = group_version
    body["resources"] = resources
    return body


def group_list() -> JSON:
    groups: list[JSON] = []
    for gv in GROUP_VERSIONS:
        if "/" not in gv:
            continue
        group, version = gv.split("/")
        entry = {"groupVersion": gv, "version": version}
        groups.append({"name": group, "versions": [entry], "preferredVersion": entry})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def group(name: str) -> JSON | None:
    for gv in GROUP_VERSIONS:
        if gv.startswith(name + "/"):
            version = gv.split("/")[1]
            entry = {"groupVersion": gv, "version": version}
            return {
                "kind": "APIGroup",
                "apiVersion": "v1",
                "name": name,
                "versions": [entry],
                "preferredVersion": entry,
            }
    return None
