"""Pod Security admission (baseline and restricted levels) with the plugin's exact message format."""

from __future__ import annotations

from collections.abc import Callable

from ._util import JSON
from .validation import VOLUME_SOURCES

_DEFAULT_CAPS = {
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
}
_RESTRICTED_VOLUMES_OK = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
    "image",
}


def _containers(pod: JSON) -> list[JSON]:
    spec = pod.get("spec") or {}
    return [
        *(spec.get("initContainers") or []),
        *(spec.get("containers") or []),
        *(spec.get("ephemeralContainers") or []),
    ]


def _quoted(items: list[str]) -> str:
    return ", ".join(f'"{i}"' for i in items)


def _who(names: list[str], singular: str = "container", plural: str = "containers") -> str:
    return f"{singular if len(names) == 1 else plural} {_quoted(names)}"


def _sc(c: JSON) -> JSON:
    return c.get("securityContext") or {}


def _pod_sc(pod: JSON) -> JSON:
    return (pod.get("spec") or {}).get("securityContext") or {}


Check = Callable[[JSON], "tuple[str, str] | None"]


def _privileged(pod: JSON) -> tuple[str, str] | None:
    bad = [c["name"] for c in _containers(pod) if _sc(c).get("privileged") is True]
    if not bad:
        return None
    return "privileged", f"{_who(bad)} must not set securityContext.privileged=true"


def _host_namespaces(pod: JSON) -> tuple[str, str] | None:
    spec = pod.get("spec") or {}
    flags = [f"{k}=true" for k in ("hostNetwork", "hostPID", "hostIPC") if spec.get(k) is True]
    if not flags:
        return None
    return "host namespaces", ", ".join(flags)


def _host_path(pod: JSON) -> tuple[str, str] | None:
    bad = [v["name"] for v in (pod.get("spec") or {}).get("volumes") or [] if "hostPath" in v]
    if not bad:
        return None
    return "hostPath volumes", _who(bad, "volume", "volumes")


def _host_ports(pod: JSON) -> tuple[str, str] | None:
    names: list[str] = []
    ports: list[str] = []
    for c in _containers(pod):
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                if c["name"] not in names:
                    names.append(c["name"])
                ports.append(str(p["hostPort"]))
    if not names:
        return None
    if len(ports) == 1:
        return "hostPort", f"{_who(names)} uses hostPort {ports[0]}"
    return "hostPort", f"{_who(names)} use hostPorts {', '.join(ports)}"


def _caps_added(c: JSON) -> list[str]:
    return list((_sc(c).get("capabilities") or {}).get("add") or [])


def _capabilities_baseline(pod: JSON) -> tuple[str, str] | None:
    names: list[str] = []
    caps: list[str] = []
    for c in _containers(pod):
        extra = [cap for cap in _caps_added(c) if cap not in _DEFAULT_CAPS]
        if extra:
            names.append(c["name"])
            caps.extend(x for x in extra if x not in caps)
    if not names:
        return None
    return (
        "non-default capabilities",
        f"{_who(names)} must not include {_quoted(caps)} in securityContext.capabilities.add",
    )


def _seccomp_type(sc: JSON) -> str | None:
    profile = sc.get("seccompProfile")
    return profile.get("type") if isinstance(profile, dict) else None


def _seccomp_baseline(pod: JSON) -> tuple[str, str] | None:
    parts: list[str] = []
    if _seccomp_type(_pod_sc(pod)) == "Unconfined":
        parts.append('pod must not set securityContext.seccompProfile.type to "Unconfined"')
    bad = [c["name"] for c in _containers(pod) if _seccomp_type(_sc(c)) == "Unconfined"]
    if bad:
        parts.append(f'{_who(bad)} must not set securityContext.seccompProfile.type to "Unconfined"')
    return ("seccompProfile", "; ".join(parts)) if parts else None


def _allow_escalation(pod: JSON) -> tuple[str, str] | None:
    bad = [c["name"] for c in _containers(pod) if _sc(c).get("allowPrivilegeEscalation") is not False]
    if not bad:
        return None
    return (
        "allowPrivilegeEscalation != false",
        f"{_who(bad)} must set securityContext.allowPrivilegeEscalation=false",
    )


def _capabilities_restricted(pod: JSON) -> tuple[str, str] | None:
    no_drop: list[str] = []
    adders: list[str] = []
    added: list[str] = []
    for c in _containers(pod):
        caps = _sc(c).get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            no_drop.append(c["name"])
        extra = [cap for cap in caps.get("add") or [] if cap != "NET_BIND_SERVICE"]
        if extra:
            adders.append(c["name"])
            added.extend(x for x in extra if x not in added)
    parts: list[str] = []
    if no_drop:
        parts.append(f'{_who(no_drop)} must set securityContext.capabilities.drop=["ALL"]')
    if adders:
        parts.append(f"{_who(adders)} must not include {_quoted(added)} in securityContext.capabilities.add")
    return ("unrestricted capabilities", "; ".join(parts)) if parts else None


def _restricted_volumes(pod: JSON) -> tuple[str, str] | None:
    names: list[str] = []
    kinds: list[str] = []
    for vol in (pod.get("spec") or {}).get("volumes") or []:
        for kind in VOLUME_SOURCES:
            if kind in vol and kind not in _RESTRICTED_VOLUMES_OK:
                names.append(vol["name"])
                if kind not in kinds:
                    kinds.append(kind)
    if not names:
        return None
    if len(names) == 1:
        return (
            "restricted volume types",
            f"volume {_quoted(names)} uses restricted volume type {_quoted(kinds)}",
        )
    return "restricted volume types", f"volumes {_quoted(names)} use restricted volume types {_quoted(kinds)}"


def _run_as_non_root(pod: JSON) -> tuple[str, str] | None:
    pod_value = _pod_sc(pod).get("runAsNonRoot")
    explicit_false = [c["name"] for c in _containers(pod) if _sc(c).get("runAsNonRoot") is False]
    unset = [c["name"] for c in _containers(pod) if _sc(c).get("runAsNonRoot") is None]
    parts: list[str] = []
    if pod_value is False:
        parts.append("pod must not set securityContext.runAsNonRoot=false")
    if explicit_false:
        parts.append(f"{_who(explicit_false)} must not set securityContext.runAsNonRoot=false")
    if pod_value is not True and unset:
        parts.append(f"pod or {_who(unset)} must set securityContext.runAsNonRoot=true")
    return ("runAsNonRoot != true", "; ".join(parts)) if parts else None


def _run_as_user(pod: JSON) -> tuple[str, str] | None:
    parts: list[str] = []
    if _pod_sc(pod).get("runAsUser") == 0:
        parts.append("pod must not set runAsUser=0")
    bad = [c["name"] for c in _containers(pod) if _sc(c).get("runAsUser") == 0]
    if bad:
        parts.append(f"{_who(bad)} must not set runAsUser=0")
    return ("runAsUser=0", "; ".join(parts)) if parts else None


def _seccomp_restricted(pod: JSON) -> tuple[str, str] | None:
    ok_types = ("RuntimeDefault", "Localhost")
    pod_type = _seccomp_type(_pod_sc(pod))
    parts: list[str] = []
    if pod_type is not None and pod_type not in ok_types:
        parts.append(f'pod must not set securityContext.seccompProfile.type to "{pod_type}"')
    bad_set = [c["name"] for c in _containers(pod) if _seccomp_type(_sc(c)) not in (None, *ok_types)]
    if bad_set:
        parts.append(f'{_who(bad_set)} must not set securityContext.seccompProfile.type to "Unconfined"')
    if pod_type not in ok_types:
        unset = [c["name"] for c in _containers(pod) if _seccomp_type(_sc(c)) is None]
        if unset:
            parts.append(
                f'pod or {_who(unset)} must set securityContext.seccompProfile.type to "RuntimeDefault" '
                'or "Localhost"'
            )
    return ("seccompProfile", "; ".join(parts)) if parts else None


# Baseline checks sorted by check ID, then restricted ones; restricted overrides drop their baseline twin.
_BASELINE: list[tuple[str, Check]] = [
    ("capabilities_baseline", _capabilities_baseline),
    ("hostNamespaces", _host_namespaces),
    ("hostPathVolumes", _host_path),
    ("hostPorts", _host_ports),
    ("privileged", _privileged),
    ("seccompProfile_baseline", _seccomp_baseline),
]
_RESTRICTED: list[tuple[str, Check]] = [
    ("allowPrivilegeEscalation", _allow_escalation),
    ("capabilities_restricted", _capabilities_restricted),
    ("restrictedVolumes", _restricted_volumes),
    ("runAsNonRoot", _run_as_non_root),
    ("runAsUser", _run_as_user),
    ("seccompProfile_restricted", _seccomp_restricted),
]
_OVERRIDDEN = {"capabilities_baseline", "seccompProfile_baseline"}


def violations(level: str, pod: JSON) -> list[str]:
    """`reason (detail)` strings for every failed check at this level, in the plugin's order."""
    if level == "baseline":
        checks = _BASELINE
    elif level == "restricted":
        checks = [c for c in _BASELINE if c[0] not in _OVERRIDDEN] + _RESTRICTED
    else:
        return []
    out: list[str] = []
    for _, check in checks:
        result = check(pod)
        if result is not None:
            out.append(f"{result[0]} ({result[1]})")
    return out


def policy(labels: dict[str, str], mode: str) -> tuple[str, str] | None:
    """(level, version) from `pod-security.kubernetes.io/<mode>` labels, or None when privileged/unset."""
    level = labels.get(f"pod-security.kubernetes.io/{mode}")
    if level not in ("baseline", "restricted"):
        return None
    return level, labels.get(f"pod-security.kubernetes.io/{mode}-version") or "latest"


def message(level: str, version: str, problems: list[str], *, warn: bool = False) -> str:
    prefix = "would violate" if warn else "violates"
    return f'{prefix} PodSecurity "{level}:{version}": ' + ", ".join(problems)
