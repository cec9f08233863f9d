"""The job's pod, and its two Secrets, as pure functions over plain Kubernetes JSON.

Layout (``docs/kubernetes-executor.md``)::

    initContainers: <services>   native sidecars (restartPolicy: Always), only when the
                                 cluster has them (1.29+); a startupProbe on a known port
                                 makes the next container wait until the service accepts
                                 connections
                    init         helper image: sh /kuberunner/scripts/init
    containers:     build        job image:    sh /kuberunner/scripts/build
                    helper       helper image: sh /kuberunner/scripts/helper
                    <services>   ordinary containers when native sidecars are unavailable
    volumes:        repo (builds: emptyDir at builds_dir), scripts (the scripts Secret,
                    read-only at /kuberunner/scripts), kuberunner-state (emptyDir at
                    /kuberunner/state), kuberunner-cache (emptyDir at cache_dir), every
                    configured volume; for ``kuberunner exec``, kuberunner-relay (its
                    Secrets, read-only at /kuberunner/relay in init and helper only)

The builds and cache volumes are left out when a configured volume is mounted
at that path (a PVC cache, a shared builds volume), as gitlab-runner does.

Secrets stay out of the pod spec: anyone who may ``get pods`` can read it. The
job's own containers (init, build, helper) get no job variables as env; the
stage scripts in the scripts Secret export them. Services read their settings
from the environment, so they get the job's variables as env, but only the ones
GitLab marks public (predefined and ``.gitlab-ci.yml`` variables) plus the
runner's own, never project or group CI/CD variables and never file variables:
exactly gitlab-runner's ``PublicOrInternal`` rule.

Every rule that has a gitlab-runner counterpart follows it (service names,
host aliases, capabilities, pull policies, allowed images, tolerations,
labels); where kuberunner differs, the docstring of the function says why.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from kuberunner.build import go_duration
from kuberunner.config.schema import ContainerSecurityContext, KubernetesConfig, SeccompProfile
from kuberunner.executors.base import BuildError
from kuberunner.executors.kubernetes.overrides import (
    NODE_SELECTOR_PREFIX,
    NODE_TOLERATIONS_PREFIX,
    POD_ANNOTATIONS_PREFIX,
    POD_LABELS_PREFIX,
    ResourceKind,
    apply_pod_spec_patches,
    map_overrides,
    resolve_resources,
    resolve_service_account,
    variable_map,
)
from kuberunner.executors.kubernetes.relay import RELAY_DIR, RelayPlan
from kuberunner.helper.relay import RELAY_DIR_ENV, RELAY_MARK_ENV, RELAY_ORIGIN_ENV
from kuberunner.job import Credential, Image, JobPayload
from kuberunner.util.quantity import QuantityError, parse_quantity

__all__ = [
    "BUILDS_VOLUME",
    "BUILD_CONTAINER",
    "CACHE_VOLUME",
    "HELPER_CONTAINER",
    "INIT_CONTAINER",
    "SCRIPTS_DIR",
    "SCRIPTS_FILE_MODE",
    "SCRIPTS_VOLUME",
    "SECRET_MAX_BYTES",
    "STATE_DIR",
    "STATE_VOLUME",
    "UPLOAD_GRACE_SECONDS",
    "PodPlan",
    "RenderedPod",
    "active_deadline_seconds",
    "build_pod",
    "build_registry_secret",
    "build_scripts_secret",
    "container_pull_policies",
    "image_allowed",
    "next_pull_policy",
    "registry_of",
    "render_pod",
    "termination_grace_period_seconds",
]

INIT_CONTAINER = "init"
BUILD_CONTAINER = "build"
HELPER_CONTAINER = "helper"
SCRIPTS_DIR = "/kuberunner/scripts"
STATE_DIR = "/kuberunner/state"
# Readable by every user, writable by none. The scripts are run as
# ``sh <file>`` (no execute bit needed) by whatever user the job image or the
# security context picks (OpenShift assigns a random one), while the files
# belong to root: 0o500 would lock every non-root image out. The Secret only
# holds this job's own scripts and file variables, which every process in
# these containers is entitled to read anyway.
SCRIPTS_FILE_MODE = 0o444
# activeDeadlineSeconds leaves this much beyond after_script for the helper's
# cache and artifact uploads (see :func:`active_deadline_seconds`).
UPLOAD_GRACE_SECONDS = 300
# terminationGracePeriodSeconds beyond after_script's own timeout.
TERMINATION_GRACE_MARGIN_SECONDS = 30
# Volume names: gitlab-runner's where it has the same volume (see _volumes).
BUILDS_VOLUME = "repo"
SCRIPTS_VOLUME = "scripts"
STATE_VOLUME = "kuberunner-state"
RELAY_VOLUME = "kuberunner-relay"
CACHE_VOLUME = "kuberunner-cache"
# A Secret (keys plus values) may hold at most 1 MiB.
SECRET_MAX_BYTES = 1024 * 1024

_SERVICE_PROBE_PERIOD_SECONDS = 1
_RUNNER_LABEL_NAMESPACE = re.compile(r"(?i)(^|.*\.)runner\.gitlab\.com(/.*|$)")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_VARIABLE_REF = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*)|(\$))")
_PULL_POLICY = {"always": "Always", "if-not-present": "IfNotPresent", "never": "Never"}
_DNS_POLICY = {
    "none": "None",
    "default": "Default",
    "cluster-first": "ClusterFirst",
    "cluster-first-with-host-net": "ClusterFirstWithHostNet",
}
_TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_DOCKER_HUB = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"})


def _config_error(message: str) -> BuildError:
    return BuildError(message, "runner_configuration_error")


# --------------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class PodPlan:
    """Everything about one job's pod that is not in ``[runners.kubernetes]``.

    ``variables`` are the job's expanded variables in gitlab-runner's order (the
    last definition of a key wins). ``service_ports`` lists known ports per image
    name without tag (``{"postgres": [5432]}``; the full repository path or its
    last component), used for a service's startup probe when its definition has
    no ``ports``. ``pull_policies`` (container name → Kubernetes policy) replaces
    the first configured pull policy of a container after a failed pull (see
    :func:`next_pull_policy`).
    """

    job: JobPayload
    pod_name: str
    namespace: str
    labels: Mapping[str, str]
    builds_dir: str
    cache_dir: str
    scripts_secret: str
    registry_secret: str | None
    variables: Sequence[tuple[str, str]]
    helper_image: str
    timeout: int
    after_script_timeout: int
    native_sidecars: bool
    service_ports: Mapping[str, Sequence[int]] = field(default_factory=dict)
    pull_policies: Mapping[str, str] = field(default_factory=dict)
    relay: RelayPlan | None = None  # kuberunner exec: see executors.kubernetes.relay


@dataclass(frozen=True)
class RenderedPod:
    """The pod, and notes for the job log (overrides that were ignored, and why)."""

    pod: dict[str, Any]
    notices: tuple[str, ...] = ()


# ------------------------------------------------------------------------------ helpers


def _expand(text: str, values: Mapping[str, str]) -> str:
    """gitlab-runner's ``ExpandValue``: ``$VAR``/``${VAR}`` (unknown → empty), ``$$`` → ``$``."""

    def replace(match: re.Match[str]) -> str:
        if match[3]:
            return "$"
        return values.get(match[1] or match[2], "")

    return _VARIABLE_REF.sub(replace, text)


def _is_dns_label(name: str) -> bool:
    return len(name) <= 63 and bool(_DNS_LABEL.match(name))


def _is_dns_subdomain(name: str) -> bool:
    return 0 < len(name) <= 253 and all(_is_dns_label(part) for part in name.split("."))


def _is_qualified_key(key: str) -> bool:
    """A label or annotation key: ``[prefix/]name``, prefix a DNS subdomain, name up to 63 chars."""
    prefix, slash, name = key.rpartition("/")
    if slash and not _is_dns_subdomain(prefix):
        return False
    return len(name) <= 63 and bool(_QUALIFIED_NAME.match(name))


def _sanitize_label_value(value: str) -> str:
    """gitlab-runner's ``sanitizeLabel``: other characters become ``_``, 63 at most, alphanumeric ends."""
    mapped = "".join(c if (c.isascii() and c.isalnum()) or c in "-_." else "_" for c in value)[:63]
    start, end = 0, len(mapped)
    while start < end and not (mapped[start].isascii() and mapped[start].isalnum()):
        start += 1
    while end > start and not (mapped[end - 1].isascii() and mapped[end - 1].isalnum()):
        end -= 1
    return mapped[start:end]


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part[:1].upper() + part[1:] for part in rest)


def _to_api(value: Any) -> Any:
    """A config model as Kubernetes JSON: snake_case → camelCase, empty values left out."""
    if isinstance(value, BaseModel):
        out: dict[str, Any] = {}
        for name in type(value).model_fields:
            converted = _to_api(getattr(value, name))
            if converted is None or (isinstance(converted, str | list | dict) and not converted):
                continue
            out[_camel(name)] = converted
        return out
    if isinstance(value, list):
        return [_to_api(item) for item in value]
    if isinstance(value, dict):
        return {key: _to_api(item) for key, item in value.items()}
    return value


def _repository(image: str) -> str:
    """The image without tag or digest: ``reg:5000/group/app:1.2@sha256:..`` → ``reg:5000/group/app``."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def registry_of(image: str) -> str:
    """The registry host an image is pulled from (``docker.io`` for Docker Hub names), lower case."""
    first, slash, _ = image.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        host = first.lower()
        return "docker.io" if host in _DOCKER_HUB else host
    return "docker.io"


def _registry_of_url(url: str) -> str:
    host = re.sub(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", "", url.strip()).split("/", 1)[0].lower()
    return "docker.io" if host in _DOCKER_HUB else host


# ------------------------------------------------------------------------ allowed images


def _expand_braces(pattern: str) -> list[str]:
    start = pattern.find("{")
    if start < 0:
        return [pattern]
    depth = 0
    for end in range(start, len(pattern)):
        if pattern[end] == "{":
            depth += 1
        elif pattern[end] == "}":
            depth -= 1
            if depth == 0:
                break
    else:
        return [pattern]
    options, depth, current = [], 0, ""
    for char in pattern[start + 1 : end]:
        if char == "," and depth == 0:
            options.append(current)
            current = ""
            continue
        depth += char == "{"
        depth -= char == "}"
        current += char
    options.append(current)
    head, tail = pattern[:start], pattern[end + 1 :]
    return [expanded for option in options for expanded in _expand_braces(head + option + tail)]


def _component_regex(pattern: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if char == "*":
            while i + 1 < len(pattern) and pattern[i + 1] == "*":
                i += 1
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            close = pattern.find("]", i + 2)
            if close < 0:
                out.append(re.escape(char))
            else:
                body = pattern[i + 1 : close]
                negate = body[:1] in ("!", "^")
                body = body[1:] if negate else body
                out.append("[" + ("^" if negate else "") + body.replace("\\", "\\\\") + "]")
                i = close
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out))


def _match_parts(pattern: list[str], name: list[str]) -> bool:
    if not pattern:
        return not name
    if pattern[0] == "**":
        return any(_match_parts(pattern[1:], name[i:]) for i in range(len(name) + 1))
    if not name:
        return False
    return bool(_component_regex(pattern[0]).fullmatch(name[0])) and _match_parts(pattern[1:], name[1:])


def image_allowed(image: str, patterns: Iterable[str]) -> bool:
    """gitlab-runner's ``allowed_images``/``allowed_services`` match (doublestar globs).

    ``*`` and ``?`` stay within one ``/``-separated part, ``**`` as a whole part
    spans any number of parts, ``[abc]``/``[!abc]`` and ``{a,b}`` work as usual.
    """
    for pattern in patterns:
        for candidate in _expand_braces(pattern):
            if _match_parts(candidate.split("/"), image.split("/")):
                return True
    return False


def _check_allowed(image: str, patterns: list[str], option: str, internal: Iterable[str]) -> None:
    if not patterns or image in internal or image_allowed(image, patterns):
        return
    allowed = ", ".join(repr(p) for p in patterns)
    raise _config_error(
        f"the image {image!r} is not allowed by this runner: {option} in [runners.kubernetes] "
        f"lists {allowed}; use one of those or ask an administrator to add it"
    )


# ---------------------------------------------------------------------------- services


@dataclass(frozen=True)
class _Service:
    name: str  # container name
    image: str
    aliases: tuple[str, ...]
    entrypoint: tuple[str, ...]
    command: tuple[str, ...]
    ports: tuple[int, ...]
    variables: tuple[tuple[str, str], ...]
    pull_policy: tuple[str, ...] | None
    origin: str  # for messages


def _ports(raw: Sequence[Mapping[str, Any]], origin: str) -> tuple[int, ...]:
    ports: list[int] = []
    for entry in raw:
        number = entry.get("number")
        if isinstance(number, str) and number.isdigit():
            number = int(number)
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 65535:
            raise _config_error(f"{origin}: port {entry!r} has no valid 'number' (1-65535)")
        if number not in ports:
            ports.append(number)
    return tuple(ports)


class _ConfigService(Image):
    """A ``[[runners.kubernetes.services]]`` entry in the job payload's shape."""

    alias: str = ""
    command: list[str] | None = None


def _services(plan: PodPlan, cfg: KubernetesConfig, values: Mapping[str, str]) -> list[_Service]:
    """Config services first, then the job's (gitlab-runner's order), each with its container name.

    The name is the first alias that is a valid DNS-1123 label not used yet,
    else ``svc-<n>``. Unlike gitlab-runner, ``init``/``build``/``helper`` count as
    used and a generated ``svc-<n>`` skips names an alias already took, so two
    containers never share a name.
    """
    raw: list[tuple[Image, str]] = []
    for number, svc in enumerate(cfg.services, 1):
        raw.append(
            (
                _ConfigService(
                    name=svc.name,
                    alias=_expand(svc.alias, values),
                    entrypoint=svc.entrypoint,
                    command=svc.command,
                    ports=svc.ports,
                ),
                f"[[runners.kubernetes.services]] #{number} ({svc.name})",
            )
        )
    for number, job_svc in enumerate(plan.job.services, 1):
        raw.append((job_svc, f"service #{number} ({job_svc.name})"))

    used = {INIT_CONTAINER, BUILD_CONTAINER, HELPER_CONTAINER}
    counter = 0
    services: list[_Service] = []
    for definition, origin in raw:
        if not definition.name:
            continue
        aliases = tuple(_aliases(definition))
        name = ""
        for alias in aliases:
            if alias in used:
                continue
            used.add(alias)
            if _is_dns_label(alias):
                name = alias
                break
        if not name:
            while f"svc-{counter}" in used:
                counter += 1
            name = f"svc-{counter}"
            used.add(name)
            counter += 1
        variables = tuple((v.key, v.value) for v in getattr(definition, "variables", []))
        pull_policy = definition.pull_policy
        services.append(
            _Service(
                name=name,
                image=_expand(definition.name, values),
                aliases=aliases,
                entrypoint=tuple(definition.entrypoint or ()),
                command=tuple(getattr(definition, "command", None) or ()),
                ports=_ports(definition.ports, origin),
                variables=variables,
                pull_policy=tuple(pull_policy) if pull_policy else None,
                origin=origin,
            )
        )
    return services


def _aliases(definition: Image) -> list[str]:
    alias = getattr(definition, "alias", "")
    return [a for a in alias.replace(",", " ").split() if a]


def _name_aliases(image: str) -> list[str]:
    """gitlab-runner's host names derived from a service image (``services.SplitNameAndVersion``).

    ``registry.example.com:5000/group/redis:7`` → ``registry.example.com__group__redis``
    (never a valid host name, kept for parity and dropped) and
    ``registry.example.com-group-redis``.
    """
    repository = _repository(image)
    host, slash, path = repository.partition("/")
    if slash and ":" in host:
        repository = host.split(":", 1)[0] + "/" + path
    first = repository.replace("/", "__")
    second = repository.replace("/", "-")
    return [first] if first == second else [first, second]


def _probe_port(service: _Service, plan: PodPlan) -> int | None:
    healthcheck = variable_map(service.variables).get("HEALTHCHECK_TCP_PORT", "").strip()
    if healthcheck.isdigit() and 1 <= int(healthcheck) <= 65535:
        return int(healthcheck)
    if service.ports:
        return service.ports[0]
    repository = _repository(service.image)
    for key in (repository, repository.rsplit("/", 1)[-1]):
        known = plan.service_ports.get(key)
        if known:
            return int(known[0])
    return None


# ------------------------------------------------------------------------- pull policies


def _effective_pull_policies(requested: Sequence[str] | None, cfg: KubernetesConfig, what: str) -> list[str]:
    """gitlab-runner's ``ComputeEffectivePullPolicies``: the image's (else config's) policies
    that ``allowed_pull_policies`` permits, in order; none permitted fails the job."""
    names = list(requested or [])
    source = "the job's pull_policy"
    if not names:
        names = list(cfg.pull_policy)
        source = "pull_policy in [runners.kubernetes]"
    for name in names:
        if name not in _PULL_POLICY:
            raise _config_error(
                f"{what}: unknown pull policy {name!r} in {source} (use always, if-not-present or never)"
            )
    policies = [_PULL_POLICY[n] for n in names]
    allowed = [_PULL_POLICY[n] for n in cfg.allowed_pull_policies]
    if not policies:
        return allowed
    if not allowed:
        return policies
    effective = [p for p in policies if p in allowed]
    if not effective:
        raise _config_error(
            f"{what}: pull_policy {names} ({source}) is not one of allowed_pull_policies "
            f"{list(cfg.allowed_pull_policies)} in [runners.kubernetes]"
        )
    return effective


def _job_image(plan: PodPlan, cfg: KubernetesConfig, values: Mapping[str, str]) -> tuple[str, Image | None]:
    image = plan.job.image
    if image is not None and image.name:
        return _expand(image.name, values), image
    default = _expand(cfg.image, values)
    if not default:
        raise _config_error(
            "the job has no image and [runners.kubernetes] has no default: set image: in .gitlab-ci.yml "
            'or image = "..." in [runners.kubernetes]'
        )
    return default, None


def container_pull_policies(plan: PodPlan, cfg: KubernetesConfig) -> dict[str, list[str]]:
    """Container name → its Kubernetes pull policies, in the order to try them.

    init, build and helper follow the job image's ``pull_policy`` (as gitlab-runner's
    build and helper containers do); each service its own. An empty list means
    "leave imagePullPolicy to Kubernetes".
    """
    values = variable_map(plan.variables)
    _, image = _job_image(plan, cfg, values)
    job_policies = _effective_pull_policies(image.pull_policy if image else None, cfg, "the job image")
    result = {INIT_CONTAINER: job_policies, BUILD_CONTAINER: job_policies, HELPER_CONTAINER: job_policies}
    for service in _services(plan, cfg, values):
        result[service.name] = _effective_pull_policies(
            service.pull_policy, cfg, f"service {service.image!r}"
        )
    return result


def next_pull_policy(policies: Sequence[str], attempts: int) -> str | None:
    """The policy for the next try after ``attempts`` failed pulls, or None when all were tried.

    ``pull_policy = ["always", "if-not-present"]``: the first pod uses Always;
    after its pull fails, ``next_pull_policy(policies, 1)`` is IfNotPresent; the
    executor recreates the pod with ``PodPlan.pull_policies`` set accordingly.
    Counting attempts (not looking up the current policy) lets
    ``["always", "always"]`` retry once, as gitlab-runner documents.
    """
    return policies[attempts] if 0 <= attempts < len(policies) else None


def _pull_policy(plan: PodPlan, name: str, policies: Sequence[str]) -> dict[str, str]:
    chosen = plan.pull_policies.get(name) or (policies[0] if policies else "")
    return {"imagePullPolicy": chosen} if chosen else {}


# --------------------------------------------------------------------- security contexts


def _seccomp(profile: SeccompProfile | None, where: str) -> dict[str, Any] | None:
    if profile is None:
        return None
    if profile.type == "Localhost":
        if not profile.localhost_profile:
            raise _config_error(f"{where}.seccomp_profile: type Localhost needs localhost_profile")
        return {"type": "Localhost", "localhostProfile": profile.localhost_profile}
    if profile.localhost_profile:
        raise _config_error(f"{where}.seccomp_profile: localhost_profile is only valid with type Localhost")
    return {"type": profile.type}


def _pod_security_context(cfg: KubernetesConfig) -> dict[str, Any]:
    psc = cfg.pod_security_context
    if psc is None:
        return {}
    out: dict[str, Any] = {}
    for attr, api in (
        ("fs_group", "fsGroup"),
        ("run_as_group", "runAsGroup"),
        ("run_as_non_root", "runAsNonRoot"),
        ("run_as_user", "runAsUser"),
    ):
        value = getattr(psc, attr)
        if value is not None:
            out[api] = value
    if psc.supplemental_groups:
        out["supplementalGroups"] = list(psc.supplemental_groups)
    if psc.selinux_type:
        out["seLinuxOptions"] = {"type": psc.selinux_type}
    if psc.fs_group_change_policy:
        out["fsGroupChangePolicy"] = psc.fs_group_change_policy
    seccomp = _seccomp(psc.seccomp_profile, "[runners.kubernetes.pod_security_context]")
    if seccomp:
        out["seccompProfile"] = seccomp
    if psc.sysctls:
        out["sysctls"] = [{"name": name, "value": value} for name, value in psc.sysctls.items()]
    return out


def _container_security_context(
    ctx: ContainerSecurityContext | None, cfg: KubernetesConfig, key: str
) -> dict[str, Any]:
    """One container's securityContext, gitlab-runner's ``GetContainerSecurityContext``.

    ``privileged``/``allow_privilege_escalation`` from the container table, else
    the global keys. Capabilities: NET_RAW dropped by default, then the
    container table's add/drop if it has any, else ``cap_add``/``cap_drop``;
    a capability both added and dropped ends up dropped.
    """
    ctx = ctx or ContainerSecurityContext.model_validate({})
    where = f"[runners.kubernetes.{key}]"
    out: dict[str, Any] = {}
    add, drop = list(cfg.cap_add), list(cfg.cap_drop)
    if ctx.capabilities is not None and (ctx.capabilities.add or ctx.capabilities.drop):
        add, drop = list(ctx.capabilities.add), list(ctx.capabilities.drop)
    enabled: dict[str, bool] = {"NET_RAW": False}
    for cap in add:
        enabled[cap] = True
    for cap in drop:
        enabled[cap] = False
    capabilities: dict[str, list[str]] = {}
    added = [cap for cap, on in enabled.items() if on]
    dropped = [cap for cap, on in enabled.items() if not on]
    if added:
        capabilities["add"] = added
    if dropped:
        capabilities["drop"] = dropped
    out["capabilities"] = capabilities
    privileged = ctx.privileged if ctx.privileged is not None else cfg.privileged
    escalation = (
        ctx.allow_privilege_escalation
        if ctx.allow_privilege_escalation is not None
        else cfg.allow_privilege_escalation
    )
    if privileged is not None:
        out["privileged"] = privileged
    if escalation is not None:
        out["allowPrivilegeEscalation"] = escalation
    if privileged and escalation is False:
        raise _config_error(
            f"{where}: a privileged container always allows privilege escalation; Kubernetes refuses "
            "privileged = true together with allow_privilege_escalation = false"
        )
    for attr, api in (
        ("run_as_user", "runAsUser"),
        ("run_as_group", "runAsGroup"),
        ("run_as_non_root", "runAsNonRoot"),
        ("read_only_root_filesystem", "readOnlyRootFilesystem"),
    ):
        value = getattr(ctx, attr)
        if value is not None:
            out[api] = value
    if ctx.se_linux_options is not None:
        selinux = _to_api(ctx.se_linux_options)
        if selinux:
            out["seLinuxOptions"] = selinux
    if ctx.proc_mount:
        out["procMount"] = ctx.proc_mount
    seccomp = _seccomp(ctx.seccomp_profile, where)
    if seccomp:
        out["seccompProfile"] = seccomp
    return out


# ----------------------------------------------------------------------------- volumes


@dataclass
class _Volumes:
    volumes: list[dict[str, Any]]
    job_mounts: list[dict[str, Any]]
    service_mounts: list[dict[str, Any]]


def _clean_path(path: str) -> str:
    return posixpath.normpath(path) if path else path


def _volumes(plan: PodPlan, cfg: KubernetesConfig, values: Mapping[str, str], notices: list[str]) -> _Volumes:
    """kuberunner's own volumes and the configured ones, with every mount.

    The builds volume is called ``repo`` and the scripts volume ``scripts``, as
    in gitlab-runner, so ``pod_spec`` patches written against gitlab-runner's
    pod mean the same here; the two volumes gitlab-runner does not have carry a
    ``kuberunner-`` prefix so they cannot collide with a configured volume.
    """
    configured: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    kinds: dict[str, str] = {}
    paths: dict[str, str] = {}

    def add(kind: str, entry: Any, source: dict[str, Any], name: str | None = None) -> None:
        name = name or entry.name
        where = f"[[runners.kubernetes.volumes.{kind}]] {entry.name!r}"
        if not _is_dns_label(name):
            raise _config_error(f"{where}: a volume name must be a DNS label (lower case, digits, '-')")
        mount_path = _expand(entry.mount_path, values)
        if not mount_path.startswith("/"):
            raise _config_error(f"{where}: mount_path {mount_path!r} must be an absolute path")
        clean = _clean_path(mount_path)
        if clean in (SCRIPTS_DIR, STATE_DIR):
            raise _config_error(f"{where}: {clean} is where kuberunner mounts its own volume")
        if clean in paths:
            raise _config_error(f"{where}: mount_path {mount_path!r} is already used by {paths[clean]}")
        paths[clean] = where
        if name in kinds:
            if not (kind == "pvc" and kinds[name] == "pvc"):  # one claim may be mounted twice
                raise _config_error(f"{where}: another volume already has the name {name!r}")
        else:
            kinds[name] = kind
            configured.append({"name": name, **source})
        mount: dict[str, Any] = {"name": name, "mountPath": mount_path}
        sub_path = _expand(entry.sub_path, values)
        if sub_path:
            mount["subPath"] = sub_path
        if getattr(entry, "read_only", False):
            mount["readOnly"] = True
        propagation = getattr(entry, "mount_propagation", "")
        if propagation:
            mount["mountPropagation"] = propagation
        mounts.append(mount)

    def items(table: Mapping[str, str]) -> dict[str, Any]:
        return {"items": [{"key": k, "path": p} for k, p in table.items()]} if table else {}

    vols = cfg.volumes
    for hp in vols.host_path:
        add("host_path", hp, {"hostPath": {"path": hp.host_path or hp.mount_path}})
    for sv in vols.secret:
        add("secret", sv, {"secret": {"secretName": sv.name, **items(sv.items)}})
    for pvc in vols.pvc:
        claim = _expand(pvc.name, values)
        add("pvc", pvc, {"persistentVolumeClaim": {"claimName": claim}}, name=claim)
    for cm in vols.config_map:
        add("config_map", cm, {"configMap": {"name": cm.name, **items(cm.items)}})
    for ed in vols.empty_dir:
        empty: dict[str, Any] = {}
        if ed.medium:
            empty["medium"] = ed.medium
        if ed.size_limit.strip():
            try:
                parse_quantity(ed.size_limit)
                empty["sizeLimit"] = ed.size_limit.strip()
            except QuantityError as exc:
                notices.append(
                    f"[[runners.kubernetes.volumes.empty_dir]] {ed.name!r}: size_limit ignored: {exc}"
                )
        add("empty_dir", ed, {"emptyDir": empty})
    for csi in vols.csi:
        source: dict[str, Any] = {"driver": csi.driver}
        if csi.fs_type:
            source["fsType"] = csi.fs_type
        if csi.read_only:
            source["readOnly"] = True
        if csi.volume_attributes:
            source["volumeAttributes"] = dict(csi.volume_attributes)
        add("csi", csi, {"csi": source})
    for nfs in vols.nfs:
        nfs_source: dict[str, Any] = {"server": nfs.server, "path": nfs.path}
        if nfs.read_only:
            nfs_source["readOnly"] = True
        add("nfs", nfs, {"nfs": nfs_source})

    own: list[dict[str, Any]] = []
    job_mounts: list[dict[str, Any]] = []
    service_mounts: list[dict[str, Any]] = []
    builds, cache = _clean_path(plan.builds_dir), _clean_path(plan.cache_dir)
    if builds not in paths:
        own.append({"name": BUILDS_VOLUME, "emptyDir": {}})
        job_mounts.append({"name": BUILDS_VOLUME, "mountPath": plan.builds_dir})
        service_mounts.append({"name": BUILDS_VOLUME, "mountPath": plan.builds_dir})
    secret = {"secretName": plan.scripts_secret, "defaultMode": SCRIPTS_FILE_MODE}
    own.append({"name": SCRIPTS_VOLUME, "secret": secret})
    job_mounts.append({"name": SCRIPTS_VOLUME, "mountPath": SCRIPTS_DIR, "readOnly": True})
    own.append({"name": STATE_VOLUME, "emptyDir": {}})
    job_mounts.append({"name": STATE_VOLUME, "mountPath": STATE_DIR})
    if cache not in paths and cache != builds:
        own.append({"name": CACHE_VOLUME, "emptyDir": {}})
        job_mounts.append({"name": CACHE_VOLUME, "mountPath": plan.cache_dir})
    for volume in own:
        if volume["name"] in kinds:
            kind = kinds[volume["name"]]
            raise _config_error(
                f"[[runners.kubernetes.volumes.{kind}]] {volume['name']!r}: kuberunner's own "
                f"{volume['name']!r} volume has that name; choose another name"
            )
    return _Volumes(own + configured, job_mounts + mounts, service_mounts + list(mounts))


# ---------------------------------------------------------------------------- pod parts


def _labels(
    plan: PodPlan, cfg: KubernetesConfig, values: Mapping[str, str], notices: list[str]
) -> dict[str, str]:
    labels = dict(plan.labels)
    requested = map_overrides(
        cfg.pod_labels,
        plan.variables,
        POD_LABELS_PREFIX,
        cfg.pod_labels_overwrite_allowed,
        "pod_labels_overwrite_allowed",
        notices,
    )
    for key, value in requested.items():
        if key in plan.labels or _RUNNER_LABEL_NAMESPACE.match(key):
            notices.append(f"pod label {key!r} not set: the runner's own labels cannot be changed")
            continue
        if not _is_qualified_key(key):
            raise _config_error(
                f"pod label {key!r} (pod_labels or {POD_LABELS_PREFIX}*) is not a valid label key: "
                "[prefix/]name, name up to 63 letters, digits, '-', '_' or '.'"
            )
        labels[key] = _sanitize_label_value(_expand(value, values))
    return labels


def _annotations(
    plan: PodPlan, cfg: KubernetesConfig, values: Mapping[str, str], notices: list[str]
) -> dict[str, str]:
    job = plan.job
    job_url = values.get("CI_JOB_URL", "")
    if not job_url and values.get("CI_PROJECT_URL"):
        job_url = f"{values['CI_PROJECT_URL']}/-/jobs/{job.id}"
    annotations = {
        "job.runner.gitlab.com/id": str(job.id),
        "job.runner.gitlab.com/url": job_url,
        "job.runner.gitlab.com/sha": job.git_info.sha,
        "job.runner.gitlab.com/before_sha": job.git_info.before_sha,
        "job.runner.gitlab.com/ref": job.git_info.ref,
        "job.runner.gitlab.com/name": job.job_info.name,
        "job.runner.gitlab.com/timeout": go_duration(plan.timeout),
        "project.runner.gitlab.com/id": str(job.job_info.project_id),
    }
    requested = map_overrides(
        cfg.pod_annotations,
        plan.variables,
        POD_ANNOTATIONS_PREFIX,
        cfg.pod_annotations_overwrite_allowed,
        "pod_annotations_overwrite_allowed",
        notices,
    )
    for key, value in requested.items():
        if not _is_qualified_key(key):
            raise _config_error(
                f"pod annotation {key!r} (pod_annotations or {POD_ANNOTATIONS_PREFIX}*) is not a valid key: "
                "[prefix/]name, name up to 63 letters, digits, '-', '_' or '.'"
            )
        annotations[key] = _expand(value, values)
    return annotations


def _tolerations(plan: PodPlan, cfg: KubernetesConfig, notices: list[str]) -> list[dict[str, str]]:
    """``"key=value" = "Effect"`` → operator Equal, ``"key" = "Effect"`` → Exists, ``""`` → tolerate all."""
    table = map_overrides(
        cfg.node_tolerations,
        plan.variables,
        NODE_TOLERATIONS_PREFIX,
        cfg.node_tolerations_overwrite_allowed,
        "node_tolerations_overwrite_allowed",
        notices,
    )
    tolerations: list[dict[str, str]] = []
    for keyvalue, effect in sorted(table.items()):
        toleration: dict[str, str] = {}
        if "=" in keyvalue:
            key, _, value = keyvalue.partition("=")
            if not key:
                raise _config_error(
                    f"node toleration {keyvalue!r}: a toleration with a value needs a key (key=value)"
                )
            toleration.update(key=key, operator="Equal", value=value)
        else:
            if keyvalue:
                toleration["key"] = keyvalue
            toleration["operator"] = "Exists"
        if effect:
            if effect not in _TAINT_EFFECTS:
                raise _config_error(
                    f"node toleration {keyvalue!r}: effect {effect!r} is not one of "
                    + ", ".join(_TAINT_EFFECTS)
                )
            toleration["effect"] = effect
        tolerations.append(toleration)
    return tolerations


def _host_aliases(cfg: KubernetesConfig, services: Sequence[_Service]) -> list[dict[str, Any]]:
    """Every service reachable by its aliases and image-derived names on 127.0.0.1, then ``host_aliases``.

    gitlab-runner skips services that declare ``ports`` here (it reaches them
    through proxy Services); kuberunner has no proxies, so they get host names too.
    """
    hostnames: list[str] = []
    for service in services:
        for derived in _name_aliases(service.image):
            if _is_dns_subdomain(derived) and derived not in hostnames:
                hostnames.append(derived)
        for alias in service.aliases:
            if not _is_dns_subdomain(alias):
                raise _config_error(
                    f"{service.origin}: alias {alias!r} is not a valid host name "
                    "(lower case letters, digits, '-' and '.')"
                )
            if alias not in hostnames:
                hostnames.append(alias)
    aliases: list[dict[str, Any]] = [{"ip": "127.0.0.1", "hostnames": hostnames}] if hostnames else []
    for number, entry in enumerate(cfg.host_aliases, 1):
        where = f"[[runners.kubernetes.host_aliases]] #{number}"
        try:
            ipaddress.ip_address(entry.ip)
        except ValueError:
            raise _config_error(f"{where}: ip {entry.ip!r} is not an IP address") from None
        for hostname in entry.hostnames:
            if not _is_dns_subdomain(hostname):
                raise _config_error(f"{where}: {hostname!r} is not a valid host name")
        aliases.append({"ip": entry.ip, "hostnames": list(entry.hostnames)})
    return aliases


def _image_pull_secrets(plan: PodPlan, cfg: KubernetesConfig) -> list[dict[str, str]]:
    """``image_pull_secrets`` plus the job's registry Secret; none at all with
    ``use_service_account_image_pull_secrets`` (the service account's then apply), as gitlab-runner."""
    if cfg.use_service_account_image_pull_secrets:
        return []
    names = list(
        dict.fromkeys([*cfg.image_pull_secrets, *([plan.registry_secret] if plan.registry_secret else [])])
    )
    return [{"name": name} for name in names]


def _dns(cfg: KubernetesConfig) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if cfg.dns_policy:
        out["dnsPolicy"] = _DNS_POLICY[cfg.dns_policy]
    if cfg.dns_config is not None:
        dns_config = _to_api(cfg.dns_config)
        if dns_config:
            out["dnsConfig"] = dns_config
    if cfg.dns_policy == "none" and not (cfg.dns_config and cfg.dns_config.nameservers):
        raise _config_error(
            'dns_policy = "none" needs at least one nameserver in [runners.kubernetes.dns_config]'
        )
    return out


def active_deadline_seconds(plan: PodPlan, cfg: KubernetesConfig) -> int:
    """The pod's ``activeDeadlineSeconds``: a backstop, not the job timeout.

    The runner enforces the job timeout itself (stop the script, run
    after_script, upload on_failure artifacts). The deadline only ends a pod
    whose runner has gone away, so it must not cut that sequence short. It
    counts from the pod's start, image pulls included, hence::

        poll_timeout + timeout + after_script_timeout + UPLOAD_GRACE_SECONDS

    (gitlab-runner, behind a feature flag, uses ``timeout + 1`` and lets the
    kubelet kill after_script.)
    """
    return cfg.poll_timeout + plan.timeout + plan.after_script_timeout + UPLOAD_GRACE_SECONDS


def termination_grace_period_seconds(plan: PodPlan, cfg: KubernetesConfig) -> int:
    """``termination_grace_period_seconds`` (deprecated, wins as in gitlab-runner), else
    ``pod_termination_grace_period_seconds``, else long enough for after_script: a
    graceful cancel deletes the pod and the build wrapper runs after_script on TERM."""
    if cfg.termination_grace_period_seconds is not None:
        return cfg.termination_grace_period_seconds
    if cfg.pod_termination_grace_period_seconds is not None:
        return cfg.pod_termination_grace_period_seconds
    return plan.after_script_timeout + TERMINATION_GRACE_MARGIN_SECONDS


def _essential_env() -> list[dict[str, str]]:
    """The only env the job's own containers get: where the driver's files are. No job variables."""
    return [
        {"name": "KUBERUNNER_SCRIPTS_DIR", "value": SCRIPTS_DIR},
        {"name": "KUBERUNNER_STATE_DIR", "value": STATE_DIR},
    ]


def _service_env(
    plan: PodPlan, service: _Service, values: Mapping[str, str], notices: list[str]
) -> list[Any]:
    """Public and runner variables, then the service's own (which win), expanded.

    ``$`` is written as ``$$``: Kubernetes would otherwise expand ``$(NAME)``
    inside values, and a service must see the value exactly as defined.
    """
    hidden: dict[str, bool] = {}
    for variable in plan.job.variables:
        hidden[variable.key] = not variable.public or variable.file
    env: dict[str, str] = {}
    for key, value in plan.variables:
        if not hidden.get(key, False):
            env[key] = value
    scope = dict(values)
    for key, value in service.variables:
        expanded = _expand(value, scope)
        env[key] = expanded
        scope[key] = expanded
    out: list[Any] = []
    skipped: list[str] = []
    for key, value in env.items():
        if _ENV_NAME.match(key):
            out.append({"name": key, "value": value.replace("$", "$$")})
        else:
            skipped.append(key)
    if skipped:
        notices.append(
            f"service {service.name}: variables {', '.join(skipped)} not passed (not valid environment names)"
        )
    return out


# --------------------------------------------------------------------------------- pod


@dataclass
class _Context:
    """What every part of one pod is computed from."""

    plan: PodPlan
    cfg: KubernetesConfig
    values: dict[str, str]
    notices: list[str]
    policies: dict[str, list[str]]
    volumes: _Volumes

    def resources(self, kind: ResourceKind, service: _Service | None = None) -> dict[str, Any]:
        return resolve_resources(
            self.cfg,
            kind,
            self.plan.variables,
            self.notices,
            service_variables=service.variables if service else (),
            service_name=service.name if service else "",
        ).to_api()


def _job_container(
    ctx: _Context, name: str, image: str, sc: dict[str, Any], res: dict[str, Any]
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        **_pull_policy(ctx.plan, name, ctx.policies[name]),
        "command": ["sh", f"{SCRIPTS_DIR}/{name}"],
        "env": _essential_env(),
        "volumeMounts": [dict(m) for m in ctx.volumes.job_mounts],
        "securityContext": sc,
    }
    if res:
        container["resources"] = res
    return container


def _job_containers(ctx: _Context, job_image: str, image_def: Image | None) -> list[dict[str, Any]]:
    """init, build, helper. An image ``entrypoint`` (not ``[""]``) gets the build script as arguments."""
    cfg = ctx.cfg
    helper_sc = _container_security_context(
        cfg.helper_container_security_context, cfg, "helper_container_security_context"
    )
    build_sc = _container_security_context(
        cfg.build_container_security_context, cfg, "build_container_security_context"
    )
    helper_resources = ctx.resources("helper")
    init = _job_container(ctx, INIT_CONTAINER, ctx.plan.helper_image, helper_sc, helper_resources)
    build = _job_container(ctx, BUILD_CONTAINER, job_image, build_sc, ctx.resources("build"))
    entrypoint = list(image_def.entrypoint or []) if image_def else []
    if entrypoint and entrypoint != [""]:
        build["args"] = build["command"]
        build["command"] = entrypoint
    if image_def and image_def.ports:
        build["ports"] = [{"containerPort": p} for p in _ports(image_def.ports, "the job image")]
    helper = _job_container(ctx, HELPER_CONTAINER, ctx.plan.helper_image, helper_sc, helper_resources)
    return [init, build, helper]


def _service_command(service: _Service) -> dict[str, list[str]]:
    """Docker semantics: entrypoint → command, command → args. ``entrypoint: [""]`` with a
    command runs the command itself, the closest Kubernetes has to "no entrypoint"."""
    if service.entrypoint and list(service.entrypoint) != [""]:
        out = {"command": list(service.entrypoint)}
        if service.command:
            out["args"] = list(service.command)
        return out
    if service.command:
        return {"command" if service.entrypoint else "args": list(service.command)}
    return {}


def _service_container(ctx: _Context, service: _Service, sc: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": service.name,
        "image": service.image,
        **_pull_policy(ctx.plan, service.name, ctx.policies[service.name]),
        **_service_command(service),
    }
    env = _service_env(ctx.plan, service, ctx.values, ctx.notices)
    if env:
        container["env"] = env
    if service.ports:
        container["ports"] = [{"containerPort": p} for p in service.ports]
    resources = ctx.resources("service", service)
    if resources:
        container["resources"] = resources
    container["volumeMounts"] = [dict(m) for m in ctx.volumes.service_mounts]
    container["securityContext"] = dict(sc)
    if ctx.plan.native_sidecars:
        container["restartPolicy"] = "Always"
        port = _probe_port(service, ctx.plan)
        if port is not None:
            # The next init container starts once this probe succeeds; failing it
            # for poll_timeout restarts the sidecar, and the runner's own
            # poll_timeout reports the service as what the pod is waiting for.
            container["startupProbe"] = {
                "tcpSocket": {"port": port},
                "periodSeconds": _SERVICE_PROBE_PERIOD_SECONDS,
                "timeoutSeconds": 1,
                "failureThreshold": max(1, ctx.cfg.poll_timeout // _SERVICE_PROBE_PERIOD_SECONDS),
            }
    return container


def _check_bidirectional(containers: Iterable[dict[str, Any]]) -> None:
    for container in containers:
        names = [m["name"] for m in container["volumeMounts"] if m.get("mountPropagation") == "Bidirectional"]
        if names and container["securityContext"].get("privileged") is not True:
            raise _config_error(
                f'volume {names[0]!r} uses mount_propagation = "Bidirectional", which Kubernetes allows '
                f"only in privileged containers, and container {container['name']!r} is not privileged"
            )


def _placement(ctx: _Context) -> dict[str, Any]:
    """Identity, scheduling and host settings of the PodSpec."""
    cfg, plan = ctx.cfg, ctx.plan
    spec: dict[str, Any] = {}
    service_account = resolve_service_account(cfg, plan.variables)
    if service_account:
        spec["serviceAccountName"] = service_account
    if cfg.automount_service_account_token is not None:
        spec["automountServiceAccountToken"] = cfg.automount_service_account_token
    node_selector = map_overrides(
        cfg.node_selector,
        plan.variables,
        NODE_SELECTOR_PREFIX,
        cfg.node_selector_overwrite_allowed,
        "node_selector_overwrite_allowed",
        ctx.notices,
    )
    if node_selector:
        spec["nodeSelector"] = node_selector
    tolerations = _tolerations(plan, cfg, ctx.notices)
    if tolerations:
        spec["tolerations"] = tolerations
    affinity = _to_api(cfg.affinity) if cfg.affinity is not None else None
    if affinity:
        spec["affinity"] = affinity
    for attr, api in (
        ("runtime_class_name", "runtimeClassName"),
        ("priority_class_name", "priorityClassName"),
        ("scheduler_name", "schedulerName"),
    ):
        if getattr(cfg, attr):
            spec[api] = getattr(cfg, attr)
    if cfg.hostname:
        if not _is_dns_label(cfg.hostname):
            raise _config_error(
                f"[runners.kubernetes] hostname = {cfg.hostname!r} is not a valid host name label"
            )
        spec["hostname"] = cfg.hostname
    pod_sc = _pod_security_context(cfg)
    if pod_sc:
        spec["securityContext"] = pod_sc
    return spec


def _relay_volume(relay: RelayPlan) -> dict[str, Any]:
    sources = [{"secret": {"name": name}} for name in relay.secrets]
    return {"name": RELAY_VOLUME, "projected": {"sources": sources, "defaultMode": 0o444}}


def render_pod(
    plan: PodPlan, cfg: KubernetesConfig, *, read_file: Callable[[str], str] | None = None
) -> RenderedPod:
    """The complete v1 Pod for one job, and notices for the job log.

    Raises :class:`BuildError` (``runner_configuration_error``) naming the key,
    variable or image at fault when the config or the job asks for something
    this runner does not allow or Kubernetes would refuse. ``read_file`` reads
    ``pod_spec`` ``patch_path`` files.
    """
    notices: list[str] = []
    values = variable_map(plan.variables)
    job_image, image_def = _job_image(plan, cfg, values)
    internal = {_expand(cfg.image, values), plan.helper_image}
    _check_allowed(job_image, cfg.allowed_images, "allowed_images", internal)
    services = _services(plan, cfg, values)
    for service in services:
        _check_allowed(service.image, cfg.allowed_services, "allowed_services", internal)
    ctx = _Context(
        plan, cfg, values, notices, container_pull_policies(plan, cfg), _volumes(plan, cfg, values, notices)
    )

    init, build, helper = _job_containers(ctx, job_image, image_def)
    if plan.relay is not None:
        if plan.relay.secrets:  # nothing to carry in: the helper answers 404, as the store would
            ctx.volumes.volumes.append(_relay_volume(plan.relay))
        for container in (init, helper):
            if plan.relay.secrets:
                mount = {"name": RELAY_VOLUME, "mountPath": RELAY_DIR, "readOnly": True}
                container["volumeMounts"].append(mount)
            container["env"] += [
                {"name": RELAY_DIR_ENV, "value": RELAY_DIR},
                {"name": RELAY_MARK_ENV, "value": plan.relay.mark},
                {"name": RELAY_ORIGIN_ENV, "value": plan.relay.origin},
            ]
    service_sc = _container_security_context(
        cfg.service_container_security_context, cfg, "service_container_security_context"
    )
    sidecars = [_service_container(ctx, service, service_sc) for service in services]
    _check_bidirectional([init, build, helper, *sidecars])

    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "activeDeadlineSeconds": active_deadline_seconds(plan, cfg),
        "terminationGracePeriodSeconds": termination_grace_period_seconds(plan, cfg),
        **_placement(ctx),
    }
    host_aliases = _host_aliases(cfg, services)
    if host_aliases:
        spec["hostAliases"] = host_aliases
    spec.update(_dns(cfg))
    pull_secrets = _image_pull_secrets(plan, cfg)
    if pull_secrets:
        spec["imagePullSecrets"] = pull_secrets
    if plan.native_sidecars:
        spec["initContainers"] = [*sidecars, init]
        spec["containers"] = [build, helper]
    else:
        spec["initContainers"] = [init]
        spec["containers"] = [build, helper, *sidecars]
    spec["volumes"] = ctx.volumes.volumes
    if cfg.pod_spec:
        spec = apply_pod_spec_patches(spec, cfg.pod_spec, read_file)

    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": plan.pod_name,
            "namespace": plan.namespace,
            "labels": _labels(plan, cfg, values, notices),
            "annotations": _annotations(plan, cfg, values, notices),
        },
        "spec": spec,
    }
    return RenderedPod(pod, tuple(dict.fromkeys(notices)))


def build_pod(
    plan: PodPlan, cfg: KubernetesConfig, *, read_file: Callable[[str], str] | None = None
) -> dict[str, Any]:
    """The Pod alone (see :func:`render_pod` for the notices that go with it)."""
    return render_pod(plan, cfg, read_file=read_file).pod


# ------------------------------------------------------------------------------ secrets


def _metadata(name: str, namespace: str, labels: Mapping[str, str]) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        metadata["labels"] = dict(labels)
    return metadata


def build_scripts_secret(
    name: str, namespace: str, labels: Mapping[str, str], scripts: Mapping[str, str]
) -> dict[str, Any]:
    """The Opaque Secret mounted at :data:`SCRIPTS_DIR`: one key per script, base64 in ``data``.

    Raises :class:`BuildError` when a name is not a valid Secret key or the
    whole does not fit the 1 MiB a Secret may hold (usually large file variables).
    """
    data: dict[str, str] = {}
    size = 0
    for key, text in scripts.items():
        if not _SECRET_KEY.match(key) or len(key) > 253:
            raise BuildError(
                f"script name {key!r} is not a valid Secret key (letters, digits, '-', '_', '.')"
            )
        raw = text.encode()
        size += len(key) + len(raw)
        data[key] = base64.b64encode(raw).decode("ascii")
    if size > SECRET_MAX_BYTES:
        raise BuildError(
            f"the job's scripts and file variables take {size} bytes, more than the {SECRET_MAX_BYTES} bytes "
            "a Kubernetes Secret can hold; make file variables smaller",
            "script_failure",
        )
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(name, namespace, labels),
        "type": "Opaque",
        "data": data,
    }


def _auth_entries(docker_auth_config: str) -> dict[str, dict[str, str]]:
    if not docker_auth_config.strip():
        return {}
    try:
        parsed = json.loads(docker_auth_config)
    except ValueError:
        raise _config_error("DOCKER_AUTH_CONFIG is not valid JSON (its content is not shown)") from None
    auths = parsed.get("auths") if isinstance(parsed, dict) else None
    if not isinstance(auths, dict):
        raise _config_error('DOCKER_AUTH_CONFIG has no "auths" object (its content is not shown)')
    entries: dict[str, dict[str, str]] = {}
    for registry, entry in auths.items():
        if isinstance(entry, dict):
            kept = {k: str(v) for k, v in entry.items() if k in ("username", "password", "auth") and v}
            if kept:
                entries[str(registry)] = kept
    return entries


def build_registry_secret(
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    credentials: Sequence[Credential],
    image_names: Iterable[str],
    *,
    docker_auth_config: str = "",
) -> dict[str, Any] | None:
    """A ``kubernetes.io/dockerconfigjson`` Secret for the registries these images come from, or None.

    Sources, the first for a registry winning (gitlab-runner's resolver
    order): the job's ``DOCKER_AUTH_CONFIG`` variable, then the payload's
    ``registry`` credentials (the job token for the GitLab registry). Only
    registries one of ``image_names`` is pulled from get an entry, so a
    credential never reaches a pod that does not need it.
    """
    wanted = {registry_of(image) for image in image_names if image}
    auths: dict[str, dict[str, str]] = {}
    covered: set[str] = set()
    for registry, entry in _auth_entries(docker_auth_config).items():
        host = _registry_of_url(registry)
        if host in wanted and host not in covered:
            auths[registry] = entry
            covered.add(host)
    for credential in credentials:
        if credential.type != "registry":
            continue
        host = _registry_of_url(credential.url)
        if host not in wanted or host in covered:
            continue
        token = base64.b64encode(f"{credential.username}:{credential.password}".encode()).decode("ascii")
        auths[credential.url] = {
            "username": credential.username,
            "password": credential.password,
            "auth": token,
        }
        covered.add(host)
    if not auths:
        return None
    content = json.dumps({"auths": auths}, separators=(",", ":")).encode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(name, namespace, labels),
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(content).decode("ascii")},
    }
