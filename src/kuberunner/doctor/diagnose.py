"""Kubernetes' own messages, read: what they mean for this runner and the fix to paste.

Pure functions over the API's texts (written against the recorded messages of a
v1.36 API server, see ``docs/fixtures/kubernetes``) and the runner's
``[runners.kubernetes]`` table. Used by doctor's checks and, at run time, by
:func:`kuberunner.doctor.explain.explain`. Imports only ``kuberunner.kube``
and ``kuberunner.config``, so it can move below the executors if needed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from kuberunner.config.schema import KubernetesConfig
from kuberunner.doctor.model import Fix
from kuberunner.doctor.token import service_account_of
from kuberunner.kube.errors import KubeAPIError, KubeForbidden, KubeInvalid, KubeNotFound

__all__ = [
    "Denial",
    "Diagnosis",
    "admission",
    "parse_denial",
    "pull_failure",
    "repository_path",
    "scheduling",
    "token_fix",
]

_DENIAL = re.compile(
    r'User "(?P<user>[^"]*)" cannot (?P<verb>\S+) resource "(?P<resource>[^"]+)"'
    r' in API group "(?P<group>[^"]*)"'
    r'(?: in the namespace "(?P<namespace>[^"]*)"| at the cluster scope)?'
)
_PSA = re.compile(r'violates PodSecurity "(?P<level>[a-z]+):(?P<version>[^"]+)": (?P<violations>.*)$', re.S)
_SA_LOOKUP = re.compile(r"error looking up service account (?P<ns>[^/\s]+)/(?P<name>[^:\s]+)")
_NS_NOT_FOUND = re.compile(r'namespaces "(?P<ns>[^"]+)" not found')


@dataclass(frozen=True)
class Denial:
    """An RBAC 403, parsed: ``User "U" cannot VERB resource "R" in API group "G" in the namespace "N"``."""

    user: str
    verb: str
    resource: str
    group: str
    namespace: str  # "" at the cluster scope


def parse_denial(message: str) -> Denial | None:
    match = _DENIAL.search(message)
    if match is None:
        return None
    return Denial(match["user"], match["verb"], match["resource"], match["group"], match["namespace"] or "")


@dataclass(frozen=True)
class Diagnosis:
    """One finding: a one-line summary, evidence lines, and fixes (first = best)."""

    summary: str
    evidence: tuple[str, ...] = ()
    fixes: tuple[Fix, ...] = field(default=())
    category: str = ""  # stable: "pod-security", "quota", "rbac", "network", ...


def _toml(*lines: str) -> str:
    return "\n".join(["[runners.kubernetes]", *(f"  {line}" for line in lines)])


def token_fix(namespace: str, service_account: str) -> tuple[Fix, ...]:
    """A new token for ``namespace/service_account`` and where it goes (or let ``rbac`` do it all)."""
    return (
        Fix(
            "kubectl",
            f"kubectl -n {namespace} create token {service_account} --duration=8760h",
            note="create a token for the runner's account (valid one year; the cluster may cap it) "
            "and paste it as bearer_token",
        ),
        Fix("toml", _toml('bearer_token = "<the token printed above>"')),
        Fix(
            "kubectl",
            f"kuberunner rbac --namespace {namespace} --service-account {service_account} --apply --write",
            note="or let kuberunner create the account, its Role and a long-lived token, and write them "
            "into config.toml (needs cluster-admin rights in your kubeconfig)",
        ),
    )


# ------------------------------------------------------------------------------- admission


def _violations(text: str) -> list[str]:
    """Split ``a (x), b (y, z), c`` at the top-level commas."""
    out: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            out.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    if "".join(current).strip():
        out.append("".join(current).strip())
    return out


def _pod_security(err: KubeForbidden, cfg: KubernetesConfig, namespace: str) -> Diagnosis:
    match = _PSA.search(err.message)
    level = match["level"] if match else "restricted"
    violations = _violations(match["violations"]) if match else [err.message]
    evidence = (f"Kubernetes: {err.message}", *(f"violation: {v}" for v in violations))
    label = "kubectl label --overwrite namespace {ns} pod-security.kubernetes.io/enforce={level}"
    privileged_wanted = bool(cfg.privileged) or any(v.startswith("privileged") for v in violations)
    if privileged_wanted:
        return Diagnosis(
            f'namespace "{namespace}" enforces Pod Security "{level}", which refuses privileged containers '
            "(privileged = true in config.toml)",
            evidence,
            (
                Fix(
                    "kubectl",
                    label.format(ns=namespace, level="privileged"),
                    note="privileged job pods (docker:dind) need a namespace of their own that allows them; "
                    "label it (cluster admin):",
                ),
                Fix(
                    "toml",
                    _toml("privileged = false"),
                    note="or, if jobs do not need Docker-in-Docker, stop asking for privileged pods:",
                ),
            ),
            "pod-security",
        )
    fixes: list[Fix] = [
        Fix(
            "toml",
            "\n".join(
                [
                    "[runners.kubernetes.pod_security_context]",
                    "  run_as_non_root = true",
                    "  run_as_user = 1000",
                    "  [runners.kubernetes.pod_security_context.seccomp_profile]",
                    '    type = "RuntimeDefault"',
                    *(
                        line
                        for key in (
                            "build_container_security_context",
                            "helper_container_security_context",
                            "service_container_security_context",
                        )
                        for line in (
                            f"[runners.kubernetes.{key}]",
                            "  allow_privilege_escalation = false",
                            f"  [runners.kubernetes.{key}.capabilities]",
                            '    drop = ["ALL"]',
                        )
                    ),
                ]
            ),
            note=f'make job pods meet "{level}" (job images must then run as a non-root user):',
        ),
        Fix(
            "kubectl",
            label.format(ns=namespace, level="baseline"),
            note='or relax the namespace to "baseline" (cluster admin), which CI pods usually meet:',
        ),
    ]
    return Diagnosis(
        f'namespace "{namespace}" enforces Pod Security "{level}" and the job pod violates it',
        evidence,
        tuple(fixes),
        "pod-security",
    )


def _quota(err: KubeForbidden, namespace: str) -> Diagnosis:
    message = err.message
    if "must specify" in message:
        return Diagnosis(
            f'a ResourceQuota in namespace "{namespace}" requires every container to declare '
            "requests/limits, and the job pod does not",
            (f"Kubernetes: {message}",),
            (
                Fix(
                    "toml",
                    _toml(
                        'cpu_request = "500m"',
                        'cpu_limit = "2"',
                        'memory_request = "512Mi"',
                        'memory_limit = "2Gi"',
                        'helper_cpu_request = "100m"',
                        'helper_cpu_limit = "500m"',
                        'helper_memory_request = "128Mi"',
                        'helper_memory_limit = "512Mi"',
                        'service_cpu_request = "250m"',
                        'service_cpu_limit = "1"',
                        'service_memory_request = "256Mi"',
                        'service_memory_limit = "1Gi"',
                    ),
                    note="declare requests and limits for every container (adjust the sizes):",
                ),
            ),
            "quota",
        )
    return Diagnosis(
        f'the ResourceQuota of namespace "{namespace}" is used up: the job pod does not fit',
        (f"Kubernetes: {message}",),
        (
            Fix("kubectl", f"kubectl -n {namespace} describe resourcequota", note="see what uses the quota:"),
            Fix(
                "text",
                "lower cpu_request/memory_request (and the helper_/service_ ones) in [runners.kubernetes], "
                "lower concurrent/limit so fewer jobs run at once, or raise the quota",
            ),
        ),
        "quota",
    )


def admission(err: KubeAPIError, cfg: KubernetesConfig, namespace: str) -> Diagnosis:
    """Why creating the job pod was refused (403 admission, 404 namespace, 422 invalid), and the fix."""
    message = err.message
    if isinstance(err, KubeForbidden) and err.is_pod_security:
        return _pod_security(err, cfg, namespace)
    if isinstance(err, KubeForbidden) and ("exceeded quota" in message or "failed quota" in message):
        return _quota(err, namespace)
    sa = _SA_LOOKUP.search(message)
    if isinstance(err, KubeForbidden) and sa is not None:
        return Diagnosis(
            f'the job pod asks for ServiceAccount "{sa["name"]}", which does not exist in namespace '
            f'"{sa["ns"]}" (service_account in config.toml)',
            (f"Kubernetes: {message}",),
            (
                Fix("kubectl", f"kubectl -n {sa['ns']} create serviceaccount {sa['name']}"),
                Fix(
                    "toml",
                    _toml('service_account = ""'),
                    note='or let job pods use the namespace\'s "default" account:',
                ),
            ),
            "service-account",
        )
    if isinstance(err, KubeForbidden) and "because it is being terminated" in message:
        return Diagnosis(
            f'namespace "{namespace}" is being deleted',
            (f"Kubernetes: {message}",),
            (Fix("text", "wait until it is gone and create it again, or choose another namespace"),),
            "namespace",
        )
    ns_missing = _NS_NOT_FOUND.search(message)
    if isinstance(err, KubeNotFound) and ns_missing is not None:
        return Diagnosis(
            f'namespace "{ns_missing["ns"]}" does not exist',
            (f"Kubernetes: {message}",),
            (Fix("kubectl", f"kubectl create namespace {ns_missing['ns']}"),),
            "namespace",
        )
    denial = parse_denial(message) if isinstance(err, KubeForbidden) else None
    if denial is not None:
        return rbac_denial(denial, namespace)
    if isinstance(err, KubeInvalid):
        causes = [f"{c.field}: {c.message}" if c.field else c.message for c in err.causes]
        return Diagnosis(
            "Kubernetes rejects the job pod as invalid: a value from config.toml it does not accept",
            (f"Kubernetes: {message}", *causes),
            (
                Fix(
                    "text",
                    "change the config.toml key behind the field named above; `kuberunner config check` "
                    "validates the file",
                ),
            ),
            "invalid",
        )
    return Diagnosis(
        f"Kubernetes refused the job pod: {message}", (f"HTTP {err.code} {err.reason}",), (), "other"
    )


def rbac_denial(denial: Denial, namespace: str) -> Diagnosis:
    """A plain RBAC 403 on one of the runner's calls."""
    ns = denial.namespace or namespace
    what = f"{denial.verb} {denial.resource}"
    sa_ns, sa_name = service_account_of(denial.user)
    if denial.user == "system:anonymous":
        return Diagnosis(
            "no credentials reached the API server: it sees the runner as system:anonymous",
            (f'Kubernetes: User "system:anonymous" cannot {what} in namespace "{ns}"',),
            (
                Fix(
                    "toml",
                    _toml('bearer_token = "<token of the runner\'s ServiceAccount>"'),
                    note="service_account only names the account job pods run as; the runner itself "
                    "authenticates with bearer_token (or cert_file/key_file):",
                ),
            ),
            "anonymous",
        )
    if sa_ns and sa_ns != ns:
        return Diagnosis(
            f'the runner works in namespace "{ns}", but its account {denial.user} belongs to '
            f'"{sa_ns}" and has no rights in "{ns}"',
            (f'Kubernetes: User "{denial.user}" cannot {what} in namespace "{ns}"',),
            (
                Fix(
                    "toml", _toml(f'namespace = "{sa_ns}"'), note="run jobs where the account has its rights:"
                ),
            ),
            "wrong-namespace",
        )
    role = sa_name or "kuberunner"
    who = f"--serviceaccount={sa_ns}:{sa_name}" if sa_name else f"--user={denial.user}"
    return Diagnosis(
        f'the runner\'s account {denial.user} may not {what} in namespace "{ns}"',
        (f'Kubernetes: User "{denial.user}" cannot {what} in namespace "{ns}"',),
        (
            Fix(
                "kubectl",
                f"kubectl create rolebinding {role} --namespace={ns} --role={role} {who}",
                note=f'if a Role "{role}" with the runner\'s permissions exists, bind it:',
            ),
            Fix(
                "kubectl",
                f"kuberunner rbac --namespace {ns}"
                + (f" --service-account {sa_name}" if sa_name else "")
                + " --apply",
                note="or create exactly the Role the runner needs and bind it (`kuberunner rbac` prints it):",
            ),
        ),
        "rbac",
    )


# ------------------------------------------------------------------------------ image pulls


def repository_path(image: str) -> str:
    """The image without its registry host: ``registry.gitlab.com/a/b:t`` → ``a/b:t``."""
    first, slash, rest = image.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return rest
    return image


_NETWORK = (
    "connection refused",
    "no such host",
    "i/o timeout",
    "network is unreachable",
    "no route to host",
    "tls handshake timeout",
    "dial tcp",
    "context deadline exceeded",
)
_AUTH = ("unauthorized", "authentication required", "pull access denied", "denied", "401", "403 forbidden")
_MISSING = ("not found", "manifest unknown", "notfound")


def pull_failure(
    container: str,
    image: str,
    registry: str,
    message: str,
    *,
    role: str,
    mirror_registry: str = "",
) -> Diagnosis:
    """An image that cannot be pulled. ``role``: "helper", "build" or "service"; ``mirror_registry``:
    a registry the nodes can reach (e.g. the job images' one), proposed for a helper mirror."""
    lower = message.lower()
    evidence = (f"container {container!r}, image {image}, registry {registry}", f"Kubernetes: {message}")
    key = {"helper": "helper_image", "build": "image"}.get(role, "")
    prepull = Fix(
        "kubectl",
        f"ctr -n k8s.io image pull {image}",
        note="or pre-pull it on every node (containerd; `crictl pull` works too):",
    )
    if "x509" in lower or "certificate" in lower:
        return Diagnosis(
            f"the nodes do not trust the TLS certificate of registry {registry} (pulling {image})",
            evidence,
            (
                Fix(
                    "text",
                    f"add the CA of {registry} to the container runtime of every node "
                    f"(containerd: /etc/containerd/certs.d/{registry}/hosts.toml, ca = ...)",
                ),
            ),
            "registry-tls",
        )
    if any(word in lower for word in _AUTH):
        return Diagnosis(
            f"registry {registry} refused to hand out {image} without (valid) credentials",
            evidence,
            (
                Fix(
                    "kubectl",
                    "kubectl -n <namespace> create secret docker-registry registry-credentials "
                    f"--docker-server={registry} --docker-username=<user> --docker-password=<token>",
                ),
                Fix("toml", _toml('image_pull_secrets = ["registry-credentials"]')),
            ),
            "registry-auth",
        )
    if any(word in lower for word in _NETWORK):
        target = mirror_registry or "<a registry your nodes can reach>"
        mirrored = f"{target}/{repository_path(image).split('@', 1)[0]}"
        fixes: list[Fix] = []
        if key:
            fixes.append(
                Fix(
                    "toml",
                    _toml(f'{key} = "{mirrored}"'),
                    note=f"the nodes cannot reach {registry}: copy the image to a registry they can reach "
                    f"(`skopeo copy docker://{image} docker://{mirrored}`) and use that:",
                )
            )
        fixes.append(prepull)
        return Diagnosis(
            f"the nodes cannot reach registry {registry} to pull {image}",
            evidence,
            tuple(fixes),
            "network",
        )
    if any(word in lower for word in _MISSING):
        return Diagnosis(
            f"image {image} does not exist in registry {registry} (wrong name or tag?)",
            evidence,
            (Fix("toml", _toml(f'{key} = "<an existing image>"')),) if key else (),
            "missing-image",
        )
    return Diagnosis(f"image {image} cannot be pulled from {registry}", evidence, (prepull,), "pull")


# ------------------------------------------------------------------------------ scheduling

_TAINT = re.compile(r"untolerated taint\(?s?\)? \{(?P<key>[^:}]+): ?(?P<value>[^}]*)\}")


def scheduling(message: str, cfg: KubernetesConfig, namespace: str) -> Diagnosis:
    """The scheduler's ``0/N nodes are available: ...`` message, with the config key behind it."""
    evidence = (f"scheduler: {message}",)
    if "didn't match Pod's node affinity/selector" in message:
        selector = ", ".join(f'"{k}" = "{v}"' for k, v in cfg.node_selector.items()) or "(none)"
        return Diagnosis(
            "no node matches the job pod's node_selector/affinity",
            (*evidence, f"node_selector in config.toml: {selector}"),
            (
                Fix("kubectl", "kubectl get nodes --show-labels", note="see the labels nodes have:"),
                Fix(
                    "toml",
                    '[runners.kubernetes.node_selector]\n  "kubernetes.io/os" = "linux"',
                    note="then select labels that exist (or remove node_selector/affinity):",
                ),
            ),
            "selector",
        )
    taint = _TAINT.search(message)
    if taint is not None or "untolerated taint" in message:
        key = taint["key"].strip() if taint else "<key>"
        value = taint["value"].strip() if taint else ""
        spec = f"{key}={value}" if value else key
        return Diagnosis(
            "every node has a taint the job pod does not tolerate",
            evidence,
            (
                Fix(
                    "toml",
                    f'[runners.kubernetes.node_tolerations]\n  "{spec}" = "NoSchedule"',
                    note="tolerate it (if CI pods belong on those nodes):",
                ),
            ),
            "taint",
        )
    if "Insufficient" in message:
        return Diagnosis(
            "no node has room for the job pod's resource requests",
            evidence,
            (
                Fix(
                    "text",
                    "lower cpu_request/memory_request (and helper_/service_ ones) in [runners.kubernetes], "
                    "or add nodes",
                ),
            ),
            "resources",
        )
    if "persistentvolumeclaim" in message.lower():
        return Diagnosis(
            "a PersistentVolumeClaim the job pod mounts is missing or unbound",
            evidence,
            (Fix("kubectl", f"kubectl -n {namespace} get persistentvolumeclaims"),),
            "pvc",
        )
    return Diagnosis("the scheduler found no node for the job pod", evidence, (), "scheduling")
