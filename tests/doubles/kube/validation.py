"""Object validation with the API server's field paths, reasons and wording (422 Invalid causes)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from ._util import JSON, parse_quantity
from .errors import (
    Cause,
    duplicate,
    forbidden_field,
    invalid_value,
    not_found_field,
    not_supported,
    required,
)

DNS1123_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
CONFIG_KEY_RE = re.compile(r"^[-._a-zA-Z0-9]+$")

LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
    "start and end "
    "with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and "
    "must start "
    "and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
CONFIG_KEY_MSG = (
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or "
    "'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
)


def dns_label(value: str, field: str) -> list[Cause]:
    causes: list[Cause] = []
    if len(value) > 63:
        causes.append(invalid_value(field, value, "must be no more than 63 characters"))
    if not DNS1123_LABEL_RE.match(value):
        causes.append(invalid_value(field, value, LABEL_MSG))
    return causes


def dns_subdomain(value: str, field: str) -> list[Cause]:
    causes: list[Cause] = []
    if len(value) > 253:
        causes.append(invalid_value(field, value, "must be no more than 253 characters"))
    if not DNS1123_SUBDOMAIN_RE.match(value):
        causes.append(invalid_value(field, value, SUBDOMAIN_MSG))
    return causes


def path_segment_name(value: str, field: str) -> list[Cause]:
    for bad in (".", ".."):
        if value == bad:
            return [invalid_value(field, value, f"may not be '{bad}'")]
    for bad in ("/", "%"):
        if bad in value:
            return [invalid_value(field, value, f"may not contain '{bad}'")]
    return []


def validate_metadata(meta: JSON, name_rule: str) -> list[Cause]:
    """Name present and well formed; labels/annotations shaped right."""
    causes: list[Cause] = []
    name = meta.get("name")
    if not name:
        causes.append(required("metadata.name", "name or generateName is required"))
    elif name_rule == "label":
        causes.extend(dns_label(name, "metadata.name"))
    elif name_rule == "subdomain":
        causes.extend(dns_subdomain(name, "metadata.name"))
    else:
        causes.extend(path_segment_name(name, "metadata.name"))
    for value in (meta.get("labels") or {}).values():
        if len(str(value)) > 63 or (
            value and not re.match(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$", str(value))
        ):
            causes.append(
                invalid_value(
                    "metadata.labels",
                    value,
                    "a valid label must be an empty string or consist of alphanumeric characters, '-', "
                    "'_' or '.', "
                    "and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
                    "'my_value',  or "
                    "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
                )
            )
    return causes


# --------------------------------------------------------------------------- pods
_POD_RESTART = ["Always", "OnFailure", "Never"]
_INIT_RESTART = ["Always", "Never", "OnFailure"]
_PULL = ["Always", "IfNotPresent", "Never"]
_DNS_POLICIES = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"]
# every volume source a Pod may name (also what Pod Security inspects)
VOLUME_SOURCES = (
    "hostPath",
    "emptyDir",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
)


def _validate_volumes(volumes: list[JSON]) -> tuple[list[Cause], set[str]]:
    causes: list[Cause] = []
    names: set[str] = set()
    for i, vol in enumerate(volumes):
        path = f"spec.volumes[{i}]"
        name = vol.get("name") or ""
        if not name:
            causes.append(required(f"{path}.name"))
        else:
            causes.extend(dns_label(name, f"{path}.name"))
            if name in names:
                causes.append(duplicate(f"{path}.name", name))
            names.add(name)
        sources = [s for s in VOLUME_SOURCES if s in vol]
        if not sources:
            causes.append(required(path, "must specify a volume type"))
        elif len(sources) > 1:
            causes.append(forbidden_field(f"{path}.{sources[1]}", "may not specify more than 1 volume type"))
        if "hostPath" in vol and not (vol["hostPath"] or {}).get("path"):
            causes.append(required(f"{path}.hostPath.path"))
        if "secret" in vol and not (vol["secret"] or {}).get("secretName"):
            causes.append(required(f"{path}.secret.secretName"))
        if "configMap" in vol and not (vol["configMap"] or {}).get("name"):
            causes.append(required(f"{path}.configMap.name"))
        if "persistentVolumeClaim" in vol and not (vol["persistentVolumeClaim"] or {}).get("claimName"):
            causes.append(required(f"{path}.persistentVolumeClaim.claimName"))
    return causes, names


def _validate_resources(res: JSON, path: str) -> list[Cause]:
    causes: list[Cause] = []
    limits = res.get("limits") or {}
    requests = res.get("requests") or {}
    for kind, values in (("limits", limits), ("requests", requests)):
        for key, value in values.items():
            try:
                parse_quantity(value)
            except ValueError:
                causes.append(
                    invalid_value(
                        f"{path}.{kind}[{key}]",
                        value,
                        "quantities must match the regular expression "
                        "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                    )
                )
    for key, value in requests.items():
        if key in limits:
            try:
                if parse_quantity(value) > parse_quantity(limits[key]):
                    causes.append(
                        invalid_value(
                            f"{path}.requests",
                            str(value),
                            f"must be less than or equal to {key} limit of {limits[key]}",
                        )
                    )
            except ValueError:
                pass
    return causes


def _validate_container(c: JSON, path: str, volumes: set[str], names: set[str], init: bool) -> list[Cause]:
    causes: list[Cause] = []
    name = c.get("name") or ""
    if not name:
        causes.append(required(f"{path}.name"))
    else:
        causes.extend(dns_label(name, f"{path}.name"))
        if name in names:
            causes.append(duplicate(f"{path}.name", name))
        names.add(name)
    if not c.get("image"):
        causes.append(required(f"{path}.image"))
    for j, port in enumerate(c.get("ports") or []):
        number = port.get("containerPort")
        if not isinstance(number, int) or not 0 < number < 65536:
            causes.append(
                invalid_value(
                    f"{path}.ports[{j}].containerPort", number, "must be between 1 and 65535, inclusive"
                )
            )
    for j, env in enumerate(c.get("env") or []):
        if not env.get("name"):
            causes.append(required(f"{path}.env[{j}].name"))
        source = env.get("valueFrom")
        if source is not None and env.get("value"):
            causes.append(
                invalid_value(
                    f"{path}.env[{j}].valueFrom", "", "may not be specified when `value` is not empty"
                )
            )
        if source is not None:
            ref = source.get("secretKeyRef") or source.get("configMapKeyRef")
            if ref is not None and not ref.get("key"):
                kind = "secretKeyRef" if "secretKeyRef" in source else "configMapKeyRef"
                causes.append(required(f"{path}.env[{j}].valueFrom.{kind}.key"))
            field_ref = source.get("fieldRef")
            if field_ref is not None and not field_ref.get("fieldPath"):
                causes.append(required(f"{path}.env[{j}].valueFrom.fieldRef.fieldPath"))
    mount_paths: set[str] = set()
    for j, mount in enumerate(c.get("volumeMounts") or []):
        mpath = f"{path}.volumeMounts[{j}]"
        mname = mount.get("name") or ""
        if not mname:
            causes.append(required(f"{mpath}.name"))
        elif mname not in volumes:
            causes.append(not_found_field(f"{mpath}.name", mname))
        mount_path = mount.get("mountPath") or ""
        if not mount_path:
            causes.append(required(f"{mpath}.mountPath"))
        elif mount_path in mount_paths:
            causes.append(invalid_value(f"{mpath}.mountPath", mount_path, "must be unique"))
        mount_paths.add(mount_path)
        sub = mount.get("subPath") or ""
        if sub and (sub.startswith("/") or ".." in sub.split("/")):
            causes.append(invalid_value(f"{mpath}.subPath", sub, "must be a relative path without '..'"))
    pull = c.get("imagePullPolicy")
    if pull not in _PULL:
        causes.append(not_supported(f"{path}.imagePullPolicy", pull or "", _PULL))
    causes.extend(_validate_resources(c.get("resources") or {}, f"{path}.resources"))
    if init and "restartPolicy" in c and c["restartPolicy"] != "Always":
        causes.append(not_supported(f"{path}.restartPolicy", c["restartPolicy"], _INIT_RESTART))
    if not init and "restartPolicy" in c:
        causes.append(forbidden_field(f"{path}.restartPolicy", "may not be set for non-init containers"))
    return causes


def validate_pod(pod: JSON) -> list[Cause]:
    """The common PodSpec checks, in the server's order (metadata, volumes, containers, init, ...)."""
    causes = validate_metadata(pod.get("metadata") or {}, "subdomain")
    spec = pod.get("spec") or {}
    vol_causes, volumes = _validate_volumes(spec.get("volumes") or [])
    causes.extend(vol_causes)
    names: set[str] = set()
    containers = spec.get("containers") or []
    if not containers:
        causes.append(required("spec.containers"))
    for i, c in enumerate(containers):
        causes.extend(_validate_container(c, f"spec.containers[{i}]", volumes, names, init=False))
    for i, c in enumerate(spec.get("initContainers") or []):
        causes.extend(_validate_container(c, f"spec.initContainers[{i}]", volumes, names, init=True))
    restart = spec.get("restartPolicy")
    if restart not in _POD_RESTART:
        causes.append(not_supported("spec.restartPolicy", restart or "", _POD_RESTART))
    dns = spec.get("dnsPolicy")
    if dns not in _DNS_POLICIES:
        causes.append(not_supported("spec.dnsPolicy", dns or "", _DNS_POLICIES))
    if dns == "None" and not (spec.get("dnsConfig") or {}).get("nameservers"):
        causes.append(
            required(
                "spec.dnsConfig.nameservers",
                "must provide at least one DNS nameserver when `dnsPolicy` is None",
            )
        )
    grace = spec.get("terminationGracePeriodSeconds")
    if isinstance(grace, int) and grace < 0:
        causes.append(
            invalid_value("spec.terminationGracePeriodSeconds", grace, "must be greater than or equal to 0")
        )
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and (not isinstance(deadline, int) or not 0 < deadline <= 2147483647):
        causes.append(
            invalid_value(
                "spec.activeDeadlineSeconds", deadline, "must be between 1 and 2147483647, inclusive"
            )
        )
    for i, alias in enumerate(spec.get("hostAliases") or []):
        if not alias.get("ip"):
            causes.append(required(f"spec.hostAliases[{i}].ip"))
    return causes


# --------------------------------------------------------------------------- secrets, configmaps
def validate_secret(secret: JSON) -> list[Cause]:
    causes = validate_metadata(secret.get("metadata") or {}, "subdomain")
    data = secret.get("data") or {}
    for key in data:
        if not CONFIG_KEY_RE.match(key):
            causes.append(invalid_value(f"data[{key}]", key, CONFIG_KEY_MSG))
    kind = secret.get("type") or "Opaque"
    specials = {
        "kubernetes.io/dockerconfigjson": ".dockerconfigjson",
        "kubernetes.io/dockercfg": ".dockercfg",
    }
    if kind in specials:
        key = specials[kind]
        if key not in data:
            causes.append(required(f"data[{key}]"))
        else:
            try:
                json.loads(base64.b64decode(data[key]))
            except ValueError as exc:
                detail = _go_json_error(base64.b64decode(data[key], validate=False))
                del exc
                causes.append(invalid_value(f"data[{key}]", "<secret contents redacted>", detail))
    if kind == "kubernetes.io/basic-auth" and "username" not in data and "password" not in data:
        causes.append(required("data[username]"))
    if kind == "kubernetes.io/ssh-auth" and "ssh-privatekey" not in data:
        causes.append(required("data[ssh-privatekey]"))
    if kind == "kubernetes.io/tls":
        for key in ("tls.crt", "tls.key"):
            if key not in data:
                causes.append(required(f"data[{key}]"))
    return causes


def _go_json_error(raw: bytes) -> str:
    from .schema import JsonSyntaxError, decode

    try:
        decode(raw)
    except JsonSyntaxError as exc:
        return _literal_error(raw) or str(exc)
    return "invalid JSON"


def _literal_error(raw: bytes) -> str | None:
    """encoding/json's literal errors: `invalid character 'o' in literal null (expecting 'u')`."""
    text = raw.decode("utf-8", errors="replace").lstrip()
    for literal in ("null", "true", "false"):
        if text[:1] == literal[0]:
            for i, expected in enumerate(literal):
                if i >= len(text):
                    return "unexpected end of JSON input"
                if text[i] != expected:
                    return f"invalid character '{text[i]}' in literal {literal} (expecting '{expected}')"
    return None


def decode_secret_data(data: dict[str, Any]) -> str | None:
    """None when every value is valid base64, else Go's message for the first bad one."""
    for value in data.values():
        if not isinstance(value, str):
            continue
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            stripped = value.rstrip("=")
            for i, ch in enumerate(stripped):
                if not (ch.isalnum() or ch in "+/"):
                    return f"illegal base64 data at input byte {i}"
            return f"illegal base64 data at input byte {len(stripped)}"
    return None


def validate_configmap(cm: JSON) -> list[Cause]:
    causes = validate_metadata(cm.get("metadata") or {}, "subdomain")
    for section in ("data", "binaryData"):
        for key in cm.get(section) or {}:
            if not CONFIG_KEY_RE.match(key):
                causes.append(invalid_value(f"{section}[{key}]", key, CONFIG_KEY_MSG))
    return causes


def validate_rbac(obj: JSON, kind: str) -> list[Cause]:
    causes = validate_metadata(obj.get("metadata") or {}, "path")
    if kind in ("Role", "ClusterRole"):
        for i, rule in enumerate(obj.get("rules") or []):
            if not rule.get("verbs"):
                causes.append(required(f"rules[{i}].verbs", "verbs must contain at least one value"))
            if kind == "Role" and rule.get("nonResourceURLs"):
                causes.append(
                    invalid_value(
                        f"rules[{i}].nonResourceURLs",
                        rule["nonResourceURLs"],
                        "namespaced rules cannot apply to non-resource URLs",
                    )
                )
            if not rule.get("nonResourceURLs") and not rule.get("resources"):
                causes.append(
                    required(f"rules[{i}].resources", "resource rules must supply at least one resource")
                )
    else:
        ref = obj.get("roleRef") or {}
        if ref.get("kind") not in ("Role", "ClusterRole"):
            causes.append(not_supported("roleRef.kind", ref.get("kind") or "", ["Role", "ClusterRole"]))
        if not ref.get("name"):
            causes.append(required("roleRef.name"))
        if kind == "ClusterRoleBinding" and ref.get("kind") == "Role":
            causes.append(not_supported("roleRef.kind", "Role", ["ClusterRole"]))
        for i, subject in enumerate(obj.get("subjects") or []):
            skind = subject.get("kind")
            if skind not in ("ServiceAccount", "User", "Group"):
                causes.append(
                    not_supported(f"subjects[{i}].kind", skind or "", ["ServiceAccount", "User", "Group"])
                )
            if not subject.get("name"):
                causes.append(required(f"subjects[{i}].name"))
            if skind == "ServiceAccount" and kind == "ClusterRoleBinding" and not subject.get("namespace"):
                causes.append(required(f"subjects[{i}].namespace"))
    return causes
