"""Defaulting and admission mutations the API server applies to new objects, in its field order."""

from __future__ import annotations

import contextlib
from decimal import Decimal
from typing import Any

from ._util import JSON, parse_quantity, random_suffix

_METADATA_ORDER = [
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
]
_POD_SPEC_ORDER = [
    "volumes",
    "initContainers",
    "containers",
    "ephemeralContainers",
    "restartPolicy",
    "terminationGracePeriodSeconds",
    "activeDeadlineSeconds",
    "dnsPolicy",
    "nodeSelector",
    "serviceAccountName",
    "serviceAccount",
    "automountServiceAccountToken",
    "nodeName",
    "hostNetwork",
    "hostPID",
    "hostIPC",
    "shareProcessNamespace",
    "securityContext",
    "imagePullSecrets",
    "hostname",
    "subdomain",
    "affinity",
    "schedulerName",
    "tolerations",
    "hostAliases",
    "priorityClassName",
    "priority",
    "dnsConfig",
    "readinessGates",
    "runtimeClassName",
    "enableServiceLinks",
    "preemptionPolicy",
    "overhead",
    "topologySpreadConstraints",
    "setHostnameAsFQDN",
    "os",
    "hostUsers",
    "schedulingGates",
    "resourceClaims",
    "resources",
]
_CONTAINER_ORDER = [
    "name",
    "image",
    "command",
    "args",
    "workingDir",
    "ports",
    "envFrom",
    "env",
    "resources",
    "resizePolicy",
    "restartPolicy",
    "restartPolicyRules",
    "volumeMounts",
    "volumeDevices",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
    "terminationMessagePath",
    "terminationMessagePolicy",
    "imagePullPolicy",
    "securityContext",
    "stdin",
    "stdinOnce",
    "tty",
]
_TOP_ORDER = ["kind", "apiVersion", "metadata", "spec", "status"]


def ordered(obj: JSON, order: list[str]) -> JSON:
    """Same dict with known keys in the server's struct order, unknown ones after."""
    out: JSON = {k: obj[k] for k in order if k in obj}
    out.update({k: v for k, v in obj.items() if k not in out})
    return out


def order_object(obj: JSON) -> JSON:
    result = ordered(obj, _TOP_ORDER)
    if isinstance(result.get("metadata"), dict):
        result["metadata"] = ordered(result["metadata"], _METADATA_ORDER)
    return result


def order_pod(pod: JSON) -> JSON:
    pod = order_object(pod)
    spec = pod.get("spec")
    if isinstance(spec, dict):
        for key in ("containers", "initContainers"):
            if isinstance(spec.get(key), list):
                spec[key] = [ordered(c, _CONTAINER_ORDER) if isinstance(c, dict) else c for c in spec[key]]
        pod["spec"] = ordered(spec, _POD_SPEC_ORDER)
    return pod


def _has_tag_or_digest(image: str) -> bool:
    if "@" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last


def default_pull_policy(image: str) -> str:
    if not image or not _has_tag_or_digest(image) or image.endswith(":latest"):
        return "Always"
    return "IfNotPresent"


def default_container(c: JSON) -> None:
    c.setdefault("resources", {})
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    c.setdefault("imagePullPolicy", default_pull_policy(c.get("image") or ""))
    for port in c.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
    for env in c.get("env") or []:
        field_ref = (env.get("valueFrom") or {}).get("fieldRef") if isinstance(env, dict) else None
        if isinstance(field_ref, dict):
            field_ref.setdefault("apiVersion", "v1")


def default_pod(pod: JSON) -> None:
    """Scheme defaulting (what shows up in the request's managedFields)."""
    spec = pod.setdefault("spec", {})
    for key in ("containers", "initContainers"):
        for c in spec.get(key) or []:
            if isinstance(c, dict):
                default_container(c)
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("enableServiceLinks", True)
    for vol in spec.get("volumes") or []:
        if not isinstance(vol, dict):
            continue
        for kind in ("secret", "configMap", "downwardAPI", "projected"):
            if isinstance(vol.get(kind), dict):
                vol[kind].setdefault("defaultMode", 420)
        if isinstance(vol.get("hostPath"), dict):
            vol["hostPath"].setdefault("type", "")
        if "emptyDir" in vol and vol["emptyDir"] is None:
            vol["emptyDir"] = {}


def admit_pod(pod: JSON, automount: bool) -> None:
    """Admission plugins: ServiceAccount (token volume), DefaultTolerationSeconds, Priority."""
    spec = pod["spec"]
    spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
    spec["serviceAccount"] = spec["serviceAccountName"]
    pod_automount = spec.get("automountServiceAccountToken")
    if (pod_automount if pod_automount is not None else automount) and not any(
        str(v.get("name", "")).startswith("kube-api-access-") for v in spec.get("volumes") or []
    ):
        name = f"kube-api-access-{random_suffix()}"
        spec.setdefault("volumes", []).append(
            {
                "name": name,
                "projected": {
                    "sources": [
                        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                        {
                            "configMap": {
                                "name": "kube-root-ca.crt",
                                "items": [{"key": "ca.crt", "path": "ca.crt"}],
                            }
                        },
                        {
                            "downwardAPI": {
                                "items": [
                                    {
                                        "path": "namespace",
                                        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                                    }
                                ]
                            }
                        },
                    ],
                    "defaultMode": 420,
                },
            }
        )
        mount = {"name": name, "readOnly": True, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}
        for key in ("initContainers", "containers"):
            for c in spec.get(key) or []:
                if not any(m.get("mountPath") == mount["mountPath"] for m in c.get("volumeMounts") or []):
                    c.setdefault("volumeMounts", []).append(dict(mount))
    tolerations = spec.setdefault("tolerations", [])
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if not any(t.get("key") == key for t in tolerations):
            tolerations.append(
                {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            )
    spec.setdefault("priority", 0)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    pod["status"] = {"phase": "Pending", "qosClass": qos_class(pod)}


def qos_class(pod: JSON) -> str:
    spec = pod.get("spec") or {}
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    any_set = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        limits = res.get("limits") or {}
        requests = dict(res.get("requests") or {})
        for key, value in limits.items():
            requests.setdefault(key, value)
        if limits or requests:
            any_set = True
        for key in ("cpu", "memory"):
            if key not in limits or key not in requests:
                guaranteed = False
                continue
            try:
                if parse_quantity(limits[key]) != parse_quantity(requests[key]):
                    guaranteed = False
            except ValueError:
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def pod_requests(pod: JSON) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {"cpu": Decimal(0), "memory": Decimal(0)}
    for c in (pod.get("spec") or {}).get("containers") or []:
        requests = ((c.get("resources") or {}).get("requests")) or {}
        for key in totals:
            if key in requests:
                with contextlib.suppress(ValueError):
                    totals[key] += parse_quantity(requests[key])
    return totals


_REQUIRED_FIELDS = {"containers"}  # schema-required fields carry no "." entry of their own


def fields_v1(obj: Any, skip_meta: bool = True) -> JSON:
    """A FieldsV1 set for managedFields: `f:` for keys, `k:{"name":..}` for named list items, `.` for a
    set map/list/struct (top-level structs and schema-required lists have none, as the server writes it)."""
    if not isinstance(obj, dict):
        return {}
    out: JSON = {}
    for key, value in obj.items():
        if skip_meta and key in ("kind", "apiVersion", "status"):
            continue
        if skip_meta and key == "metadata":
            meta = {
                k: v
                for k, v in value.items()
                if k in ("labels", "annotations", "ownerReferences", "finalizers")
            }
            if meta:
                out["f:metadata"] = {f"f:{k}": _field_value(v, k) for k, v in meta.items()}
            continue
        if skip_meta and isinstance(value, dict):
            out[f"f:{key}"] = (
                {f"f:{k}": _field_value(v, k) for k, v in value.items()}
                if key == "spec"
                else _field_value(value, key)
            )
            continue
        out[f"f:{key}"] = _field_value(value, key)
    return out


_ATOMIC_FIELDS = {"nodeSelector"}  # x-kubernetes-map-type: atomic, owned as a whole


def _field_value(value: Any, name: str = "") -> JSON:
    if name in _ATOMIC_FIELDS:
        return {}
    dot: JSON = {} if name in _REQUIRED_FIELDS else {".": {}}
    if isinstance(value, dict):
        inner = {f"f:{k}": _field_value(v, k) for k, v in value.items()}
        return {**dot, **inner} if inner else {}
    if isinstance(value, list) and value and all(isinstance(v, dict) and "name" in v for v in value):
        items: JSON = {}
        for item in value:
            key = 'k:{"name":"' + str(item["name"]) + '"}'
            items[key] = {".": {}, **{f"f:{k}": _field_value(v, k) for k, v in item.items()}}
        return {**dot, **items}
    return {}


def managed_entry(
    manager: str, operation: str, api_version: str, time: str, fields: JSON, subresource: str = ""
) -> JSON:
    entry: JSON = {
        "manager": manager,
        "operation": operation,
        "apiVersion": api_version,
        "time": time,
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
    }
    if subresource:
        entry["subresource"] = subresource
    return entry


def manager_from_user_agent(user_agent: str) -> str:
    """kube-apiserver names the field manager after the User-Agent up to the first '/'."""
    return (user_agent or "unknown").split("/", 1)[0][:128] or "unknown"
