"""Every ``[runners.kubernetes]`` key that shapes the pod, one table row each (or more).

Each row sets a key, renders the pod (validated against the strict Kubernetes
schemas, with and without native sidecars) and compares the part the key
controls with what gitlab-runner would produce. A meta-test fails when a key of
:class:`KubernetesConfig` has no row and is not listed as not shaping the pod.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from k8s_support import config, container, containers, make_plan, payload, render

from kuberunner.config.schema import KubernetesConfig, field_flags

Extract = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class Case:
    key: str
    values: dict[str, Any]
    extract: Extract
    expected: Any
    variables: tuple[tuple[str, str], ...] = ()
    plan: dict[str, Any] = field(default_factory=dict)
    job: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    @property
    def id(self) -> str:
        return f"{self.key}-{self.label}" if self.label else self.key


def spec(key: str) -> Extract:
    return lambda pod: pod["spec"].get(key)


def in_container(name: str, key: str) -> Extract:
    return lambda pod: container(pod, name).get(key)


def per_container(key: str, names: tuple[str, ...] = ("init", "build", "helper", "db")) -> Extract:
    return lambda pod: {n: container(pod, n).get(key) for n in names}


def security(key: str) -> Extract:
    return lambda pod: {name: c["securityContext"].get(key) for name, c in containers(pod).items()}


def volume_and_mount(volume: str) -> Extract:
    def extract(pod: dict[str, Any]) -> Any:
        vol = next(v for v in pod["spec"]["volumes"] if v["name"] == volume)
        mounts = [m for m in container(pod, "build")["volumeMounts"] if m["name"] == volume]
        return vol, mounts

    return extract


# ------------------------------------------------------------------- resource rows

_KINDS = {
    "build": ("", ("build",)),
    "helper": ("helper_", ("init", "helper")),
    "service": ("service_", ("db",)),
}
_VARIABLE_PREFIX = {"build": "KUBERNETES_", "helper": "KUBERNETES_HELPER_", "service": "KUBERNETES_SERVICE_"}
# resource: (API name, configured value, maximum, job's value)
_AMOUNTS = {
    "cpu": ("cpu", "500m", "2", "1500m"),
    "memory": ("memory", "256Mi", "1Gi", "512Mi"),
    "ephemeral_storage": ("ephemeral-storage", "1Gi", "4Gi", "2Gi"),
}


def _resource_cases() -> list[Case]:
    cases: list[Case] = []
    for kind, (prefix, names) in _KINDS.items():
        for resource, (api, value, maximum, wanted) in _AMOUNTS.items():
            for which in ("request", "limit"):
                key = f"{prefix}{resource}_{which}"
                field_name = f"{which}s"
                cases.append(
                    Case(
                        key,
                        {key: value},
                        per_container("resources", names),
                        {n: {field_name: {api: value}} for n in names},
                    )
                )
                variable = f"{_VARIABLE_PREFIX[kind]}{resource.upper()}_{which.upper()}"
                cases.append(
                    Case(
                        f"{key}_overwrite_max_allowed",
                        {key: value, f"{key}_overwrite_max_allowed": maximum},
                        per_container("resources", names),
                        {n: {field_name: {api: wanted}} for n in names},
                        variables=((variable, wanted),),
                    )
                )
    return cases


# ---------------------------------------------------------------------- volume rows


def _volume_cases() -> list[Case]:
    rows: list[tuple[str, dict[str, Any], Any]] = [
        (
            "host_path",
            {
                "name": "docker-sock",
                "mount_path": "/var/run/docker.sock",
                "host_path": "/run/docker.sock",
                "read_only": True,
                "mount_propagation": "HostToContainer",
            },
            (
                {"name": "docker-sock", "hostPath": {"path": "/run/docker.sock"}},
                [
                    {
                        "name": "docker-sock",
                        "mountPath": "/var/run/docker.sock",
                        "readOnly": True,
                        "mountPropagation": "HostToContainer",
                    }
                ],
            ),
        ),
        (
            "host_path",
            {"name": "legacy", "mount_path": "/opt/tools"},
            (
                {"name": "legacy", "hostPath": {"path": "/opt/tools"}},
                [{"name": "legacy", "mountPath": "/opt/tools"}],
            ),
        ),
        (
            "pvc",
            {"name": "m2-$CI_JOB_ID", "mount_path": "/root/.m2", "sub_path": "project-$CI_JOB_ID"},
            (
                {"name": "m2-4821", "persistentVolumeClaim": {"claimName": "m2-4821"}},
                [{"name": "m2-4821", "mountPath": "/root/.m2", "subPath": "project-4821"}],
            ),
        ),
        (
            "config_map",
            {
                "name": "ca-bundle",
                "mount_path": "/etc/ssl/custom",
                "read_only": True,
                "items": {"ca.crt": "ca.pem"},
            },
            (
                {
                    "name": "ca-bundle",
                    "configMap": {"name": "ca-bundle", "items": [{"key": "ca.crt", "path": "ca.pem"}]},
                },
                [{"name": "ca-bundle", "mountPath": "/etc/ssl/custom", "readOnly": True}],
            ),
        ),
        (
            "secret",
            {
                "name": "netrc",
                "mount_path": "/home/ci/.netrc",
                "sub_path": ".netrc",
                "items": {"netrc": ".netrc"},
            },
            (
                {
                    "name": "netrc",
                    "secret": {"secretName": "netrc", "items": [{"key": "netrc", "path": ".netrc"}]},
                },
                [{"name": "netrc", "mountPath": "/home/ci/.netrc", "subPath": ".netrc"}],
            ),
        ),
        (
            "empty_dir",
            {"name": "scratch", "mount_path": "/scratch", "medium": "Memory", "size_limit": "1Gi"},
            (
                {"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
                [{"name": "scratch", "mountPath": "/scratch"}],
            ),
        ),
        (
            "csi",
            {
                "name": "inline",
                "mount_path": "/data",
                "driver": "csi.example.com",
                "fs_type": "ext4",
                "read_only": True,
                "volume_attributes": {"size": "2Gi"},
            },
            (
                {
                    "name": "inline",
                    "csi": {
                        "driver": "csi.example.com",
                        "fsType": "ext4",
                        "readOnly": True,
                        "volumeAttributes": {"size": "2Gi"},
                    },
                },
                [{"name": "inline", "mountPath": "/data", "readOnly": True}],
            ),
        ),
        (
            "nfs",
            {
                "name": "shared",
                "mount_path": "/shared",
                "server": "nfs.example.com",
                "path": "/exports/ci",
                "read_only": True,
            },
            (
                {
                    "name": "shared",
                    "nfs": {"server": "nfs.example.com", "path": "/exports/ci", "readOnly": True},
                },
                [{"name": "shared", "mountPath": "/shared", "readOnly": True}],
            ),
        ),
    ]
    cases = []
    for number, (kind, entry, expected) in enumerate(rows):
        name = expected[0]["name"]
        cases.append(
            Case(
                "volumes",
                {"volumes": {kind: [entry]}},
                volume_and_mount(name),
                expected,
                label=f"{kind}{number}",
            )
        )
    return cases


# ------------------------------------------------------------------------ the table

_ALL = ("init", "build", "helper", "db")
_AFFINITY = {
    "node_affinity": {
        "required_during_scheduling_ignored_during_execution": {
            "node_selector_terms": [
                {"match_expressions": [{"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}]}
            ]
        },
        "preferred_during_scheduling_ignored_during_execution": [
            {"weight": 10, "preference": {"match_expressions": [{"key": "pool", "operator": "Exists"}]}}
        ],
    },
    "pod_anti_affinity": {
        "preferred_during_scheduling_ignored_during_execution": [
            {
                "weight": 50,
                "pod_affinity_term": {
                    "label_selector": {"match_labels": {"app_name": "ci"}},
                    "topology_key": "kubernetes.io/hostname",
                },
            }
        ]
    },
}
_AFFINITY_API = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {"matchExpressions": [{"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}]}
            ]
        },
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "preference": {"matchExpressions": [{"key": "pool", "operator": "Exists"}]}}
        ],
    },
    "podAntiAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {
                "weight": 50,
                # a label key is data, not a field name: app_name stays app_name
                "podAffinityTerm": {
                    "labelSelector": {"matchLabels": {"app_name": "ci"}},
                    "topologyKey": "kubernetes.io/hostname",
                },
            }
        ]
    },
}
_POD_SECURITY = {
    "fs_group": 2000,
    "run_as_group": 3000,
    "run_as_non_root": True,
    "run_as_user": 1000,
    "supplemental_groups": [4000],
    "selinux_type": "spc_t",
    "fs_group_change_policy": "OnRootMismatch",
    "seccomp_profile": {"type": "RuntimeDefault"},
    "sysctls": {"net.ipv4.ip_local_port_range": "1024 65000"},
}
_POD_SECURITY_API = {
    "fsGroup": 2000,
    "runAsGroup": 3000,
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "supplementalGroups": [4000],
    "seLinuxOptions": {"type": "spc_t"},
    "fsGroupChangePolicy": "OnRootMismatch",
    "seccompProfile": {"type": "RuntimeDefault"},
    "sysctls": [{"name": "net.ipv4.ip_local_port_range", "value": "1024 65000"}],
}
_BUILD_SECURITY = {
    "run_as_user": 65534,
    "run_as_group": 65534,
    "run_as_non_root": True,
    "read_only_root_filesystem": False,
    "privileged": False,
    "allow_privilege_escalation": False,
    "capabilities": {"add": ["NET_ADMIN"]},
    "se_linux_options": {"type": "container_t", "level": "s0:c1"},
    "proc_mount": "Default",
    "seccomp_profile": {"type": "Localhost", "localhost_profile": "profiles/ci.json"},
}
_BUILD_SECURITY_API = {
    "capabilities": {"add": ["NET_ADMIN"], "drop": ["NET_RAW"]},
    "privileged": False,
    "allowPrivilegeEscalation": False,
    "runAsUser": 65534,
    "runAsGroup": 65534,
    "runAsNonRoot": True,
    "readOnlyRootFilesystem": False,
    "seLinuxOptions": {"type": "container_t", "level": "s0:c1"},
    "procMount": "Default",
    "seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/ci.json"},
}
_DEFAULT_SC = {"capabilities": {"drop": ["NET_RAW"]}}
_JSON_PATCH = '[{"op": "add", "path": "/hostUsers", "value": false}]'

CASES: list[Case] = [
    Case(
        "image", {"image": "alpine:3.20"}, in_container("build", "image"), "alpine:3.20", job={"image": None}
    ),
    Case(
        "pull_policy",
        {"pull_policy": ["always", "if-not-present"]},
        per_container("imagePullPolicy"),
        dict.fromkeys(_ALL, "Always"),
    ),
    Case(
        "pull_policy",
        {"pull_policy": "never"},
        per_container("imagePullPolicy"),
        dict.fromkeys(_ALL, "Never"),
        label="string",
    ),
    Case("allowed_images", {"allowed_images": ["golang:*"]}, in_container("build", "image"), "golang:1.22"),
    Case(
        "allowed_services",
        {"allowed_services": ["postgres:*", "redis:*"]},
        in_container("db", "image"),
        "postgres:16",
    ),
    Case(
        "allowed_pull_policies",
        {"allowed_pull_policies": ["if-not-present"]},
        per_container("imagePullPolicy"),
        dict.fromkeys(_ALL, "IfNotPresent"),
    ),
    Case(
        "image_pull_secrets",
        {"image_pull_secrets": ["regcred", "mirror"]},
        spec("imagePullSecrets"),
        [{"name": "regcred"}, {"name": "mirror"}, {"name": "job-registry"}],
        plan={"registry_secret": "job-registry"},
    ),
    Case(
        "use_service_account_image_pull_secrets",
        {"image_pull_secrets": ["regcred"], "use_service_account_image_pull_secrets": True},
        spec("imagePullSecrets"),
        None,
        plan={"registry_secret": "job-registry"},
    ),
    Case("privileged", {"privileged": True}, security("privileged"), dict.fromkeys(_ALL, True)),
    Case(
        "allow_privilege_escalation",
        {"allow_privilege_escalation": False},
        security("allowPrivilegeEscalation"),
        dict.fromkeys(_ALL, False),
    ),
    Case(
        "cap_add",
        {"cap_add": ["SYS_TIME", "NET_RAW"]},
        security("capabilities"),
        {n: {"add": ["NET_RAW", "SYS_TIME"]} for n in _ALL},
    ),
    Case(
        "cap_drop",
        {"cap_add": ["SYS_TIME"], "cap_drop": ["SYS_ADMIN", "SYS_TIME"]},
        security("capabilities"),
        {n: {"drop": ["NET_RAW", "SYS_TIME", "SYS_ADMIN"]} for n in _ALL},
    ),
    *_resource_cases(),
    Case(
        "node_selector",
        {"node_selector": {"kubernetes.io/arch": "amd64"}},
        spec("nodeSelector"),
        {"kubernetes.io/arch": "amd64"},
    ),
    Case(
        "node_selector_overwrite_allowed",
        {"node_selector": {"pool": "ci", "zone": "a"}, "node_selector_overwrite_allowed": "^pool=.*"},
        spec("nodeSelector"),
        {"pool": "big", "zone": "a"},
        variables=(("KUBERNETES_NODE_SELECTOR_POOL", "pool=big"),),
    ),
    Case(
        "node_tolerations",
        {
            "node_tolerations": {
                "node-role.kubernetes.io/master": "NoSchedule",
                "custom.toleration=value": "NoSchedule",
                "empty.value=": "PreferNoSchedule",
                "onlyKey": "",
            }
        },
        spec("tolerations"),
        [
            {"key": "custom.toleration", "operator": "Equal", "value": "value", "effect": "NoSchedule"},
            {"key": "empty.value", "operator": "Equal", "value": "", "effect": "PreferNoSchedule"},
            {"key": "node-role.kubernetes.io/master", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "onlyKey", "operator": "Exists"},
        ],
    ),
    Case(
        "node_tolerations_overwrite_allowed",
        {"node_tolerations_overwrite_allowed": ".*"},
        spec("tolerations"),
        [{"operator": "Exists"}, {"key": "gpu", "operator": "Equal", "value": "true", "effect": "NoExecute"}],
        variables=(
            ("KUBERNETES_NODE_TOLERATIONS_1", "gpu=true:NoExecute"),
            ("KUBERNETES_NODE_TOLERATIONS_2", ""),
        ),
    ),
    Case("affinity", {"affinity": _AFFINITY}, spec("affinity"), _AFFINITY_API),
    Case(
        "pod_labels",
        {"pod_labels": {"team": "backend", "job": "$CI_JOB_ID", "branch": "feat/x y"}},
        lambda pod: pod["metadata"]["labels"],
        {
            "app.kubernetes.io/managed-by": "kuberunner",
            "kuberunner.io/job-id": "4821",
            "team": "backend",
            "job": "4821",
            "branch": "feat_x_y",
        },
    ),
    Case(
        "pod_labels_overwrite_allowed",
        {"pod_labels": {"team": "backend"}, "pod_labels_overwrite_allowed": "^team="},
        lambda pod: pod["metadata"]["labels"]["team"],
        "frontend",
        variables=(("KUBERNETES_POD_LABELS_1", "team=frontend"),),
    ),
    Case(
        "pod_annotations",
        {"pod_annotations": {"example.com/owner": "$GREETING team"}},
        lambda pod: pod["metadata"]["annotations"]["example.com/owner"],
        "hello team",
    ),
    Case(
        "pod_annotations_overwrite_allowed",
        {"pod_annotations_overwrite_allowed": ".*"},
        lambda pod: pod["metadata"]["annotations"]["job.runner.gitlab.com/name"],
        "renamed",
        variables=(("KUBERNETES_POD_ANNOTATIONS_1", "job.runner.gitlab.com/name=renamed"),),
    ),
    Case(
        "pod_security_context",
        {"pod_security_context": _POD_SECURITY},
        spec("securityContext"),
        _POD_SECURITY_API,
    ),
    Case(
        "build_container_security_context",
        {"build_container_security_context": _BUILD_SECURITY},
        lambda pod: {n: container(pod, n)["securityContext"] for n in ("build", "helper")},
        {"build": _BUILD_SECURITY_API, "helper": _DEFAULT_SC},
    ),
    Case(
        "helper_container_security_context",
        {"helper_container_security_context": {"run_as_user": 1000}},
        security("runAsUser"),
        {"init": 1000, "build": None, "helper": 1000, "db": None},
    ),
    Case(
        "service_container_security_context",
        {"service_container_security_context": {"run_as_user": 999, "capabilities": {"drop": ["ALL"]}}},
        in_container("db", "securityContext"),
        {"capabilities": {"drop": ["NET_RAW", "ALL"]}, "runAsUser": 999},
    ),
    Case("hostname", {"hostname": "ci-runner"}, spec("hostname"), "ci-runner"),
    Case(
        "host_aliases",
        {"host_aliases": [{"ip": "10.0.0.5", "hostnames": ["git.internal"]}]},
        spec("hostAliases"),
        [
            {"ip": "127.0.0.1", "hostnames": ["postgres", "db"]},
            {"ip": "10.0.0.5", "hostnames": ["git.internal"]},
        ],
    ),
    Case(
        "dns_policy",
        {"dns_policy": "cluster-first"},
        spec("dnsPolicy"),
        "ClusterFirst",
        label="cluster-first",
    ),
    Case(
        "dns_policy",
        {"dns_policy": "cluster-first-with-host-net"},
        spec("dnsPolicy"),
        "ClusterFirstWithHostNet",
        label="host-net",
    ),
    Case("dns_policy", {"dns_policy": "default"}, spec("dnsPolicy"), "Default", label="default"),
    Case(
        "dns_policy",
        {"dns_policy": "none", "dns_config": {"nameservers": ["10.0.0.10"]}},
        spec("dnsPolicy"),
        "None",
        label="none",
    ),
    Case(
        "dns_config",
        {
            "dns_config": {
                "nameservers": ["1.1.1.1"],
                "searches": ["svc.cluster.local"],
                "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
            }
        },
        spec("dnsConfig"),
        {
            "nameservers": ["1.1.1.1"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
            "searches": ["svc.cluster.local"],
        },
    ),
    Case("runtime_class_name", {"runtime_class_name": "gvisor"}, spec("runtimeClassName"), "gvisor"),
    Case("priority_class_name", {"priority_class_name": "ci-low"}, spec("priorityClassName"), "ci-low"),
    Case("scheduler_name", {"scheduler_name": "bin-packing"}, spec("schedulerName"), "bin-packing"),
    Case(
        "termination_grace_period_seconds",
        {"termination_grace_period_seconds": 45, "pod_termination_grace_period_seconds": 600},
        spec("terminationGracePeriodSeconds"),
        45,
    ),
    Case(
        "pod_termination_grace_period_seconds",
        {"pod_termination_grace_period_seconds": 600},
        spec("terminationGracePeriodSeconds"),
        600,
    ),
    Case(
        "pod_spec",
        {"pod_spec": [{"name": "hostUsers", "patch": _JSON_PATCH, "patch_type": "json"}]},
        spec("hostUsers"),
        False,
    ),
    Case(
        "poll_timeout",
        {"poll_timeout": 60},
        lambda pod: (
            pod["spec"]["activeDeadlineSeconds"],
            container(pod, "db")["startupProbe"]["failureThreshold"],
        ),
        (60 + 3600 + 300 + 300, 60),
        plan={"service_ports": {"postgres": [5432]}},
    ),
    *_volume_cases(),
    Case(
        "services",
        {
            "services": [
                {
                    "name": "redis:7",
                    "alias": "cache-redis",
                    "entrypoint": ["docker-entrypoint.sh"],
                    "command": ["redis-server", "--save", ""],
                    "ports": [{"number": 6379}],
                }
            ]
        },
        lambda pod: [
            (
                c["name"],
                c.get("command"),
                c.get("args"),
                c.get("ports"),
                c.get("startupProbe", {}).get("tcpSocket"),
            )
            for c in pod["spec"]["initContainers"]
        ],
        [
            (
                "cache-redis",
                ["docker-entrypoint.sh"],
                ["redis-server", "--save", ""],
                [{"containerPort": 6379}],
                {"port": 6379},
            ),
            ("db", None, None, None, None),
            ("init", ["sh", "/kuberunner/scripts/init"], None, None, None),
        ],
    ),
    Case("service_account", {"service_account": "ci-bot"}, spec("serviceAccountName"), "ci-bot"),
    Case(
        "service_account_overwrite_allowed",
        {"service_account": "ci-bot", "service_account_overwrite_allowed": "^ci-"},
        spec("serviceAccountName"),
        "ci-deployer",
        variables=(("KUBERNETES_SERVICE_ACCOUNT_OVERWRITE", "ci-deployer"),),
    ),
    Case(
        "automount_service_account_token",
        {"automount_service_account_token": False},
        spec("automountServiceAccountToken"),
        False,
    ),
]

# Keys that do not shape the pod, and what they do instead.
NOT_IN_POD: dict[str, str] = {
    "host": "connection",
    "context": "connection",
    "cert_file": "connection",
    "key_file": "connection",
    "ca_file": "connection",
    "bearer_token": "connection (KUBERNETES_BEARER_TOKEN: test_k8s_overrides)",
    "bearer_token_overwrite_allowed": "connection (test_k8s_overrides)",
    "namespace": "resolved by resolve_overrides into PodPlan.namespace (test_k8s_overrides)",
    "namespace_overwrite_allowed": "resolved by resolve_overrides (test_k8s_overrides)",
    "namespace_per_job": "not supported yet",
    "helper_image": "resolved by the executor into PodPlan.helper_image",
    "helper_image_flavor": "resolved by the executor into PodPlan.helper_image",
    "helper_image_autoset_arch_and_os": "not supported yet",
    "allowed_users": "not supported yet",
    "allowed_groups": "not supported yet",
    "init_permissions_container_security_context": "not supported yet (no init-permissions container)",
    "poll_interval": "waiting (kuberunner watches instead of polling)",
    "cleanup_grace_period_seconds": "cleanup",
    "cleanup_resources_timeout": "cleanup",
    "retry_limit": "API retries",
    "retry_backoff_max": "API retries",
    "retry_limits": "API retries",
    "print_pod_warning_events": "job log while waiting",
    "logs_base_dir": "not supported yet",
    "scripts_base_dir": "not supported yet",
}


def test_every_config_key_has_a_case_or_a_reason() -> None:
    keys = set(KubernetesConfig.model_fields)
    covered = {case.key for case in CASES}
    assert not covered - keys, f"rows for keys that do not exist: {sorted(covered - keys)}"
    assert not set(NOT_IN_POD) - keys, f"listed keys that do not exist: {sorted(set(NOT_IN_POD) - keys)}"
    assert not covered & set(NOT_IN_POD), f"keys both tested and listed: {sorted(covered & set(NOT_IN_POD))}"
    missing = keys - covered - set(NOT_IN_POD)
    assert not missing, f"[runners.kubernetes] keys with no pod-spec case: {sorted(missing)}"


def test_keys_listed_as_not_supported_are_flagged_so_in_the_schema() -> None:
    """``config check`` reports them as not supported yet; the pod must not pretend otherwise."""
    for key, reason in NOT_IN_POD.items():
        not_supported, _ = field_flags(KubernetesConfig, key)
        assert not_supported == reason.startswith("not supported yet"), key


@pytest.mark.parametrize("native_sidecars", [True, False], ids=["sidecars", "containers"])
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_config_key_shapes_the_pod(case: Case, native_sidecars: bool) -> None:
    job = payload(**case.job)
    plan = make_plan(job, native_sidecars=native_sidecars, **case.plan)
    if case.variables:
        plan = replace(plan, variables=(*plan.variables, *case.variables))
    pod = render(plan, config(**case.values), read_file=None).pod
    if not native_sidecars and case.key in ("poll_timeout", "services"):
        # Without native sidecars, services are ordinary containers with no startup probe.
        assert all("startupProbe" not in c for c in pod["spec"]["containers"])
        assert [c["name"] for c in pod["spec"]["initContainers"]] == ["init"]
        return
    assert case.extract(pod) == case.expected


def test_an_unset_config_leaves_every_optional_field_out() -> None:
    """Defaults are Kubernetes' own: nothing the config did not ask for appears in the pod."""
    pod = render(make_plan(), config()).pod
    assert set(pod["spec"]) == {
        "restartPolicy",
        "activeDeadlineSeconds",
        "terminationGracePeriodSeconds",
        "hostAliases",
        "initContainers",
        "containers",
        "volumes",
    }
    for c in containers(pod).values():
        assert "resources" not in c
        assert "imagePullPolicy" not in c
        assert c["securityContext"] == _DEFAULT_SC
