"""``kuberunner config check``: every problem of a config.toml at once, each with its fix.

The schema catches wrong types and unknown keys (see :mod:`.load`); the
rules here catch settings that are valid one by one but wrong together, keys
that kuberunner accepts but ignores, and values Kubernetes would refuse
later, when a job is already waiting.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel

from kuberunner.config.load import (
    NOT_SUPPORTED_YET,
    SEVERITIES,
    KeyPath,
    LoadedConfig,
    Problem,
    Severity,
    fields_by_key,
    iter_fields,
    load_config,
    runner_at,
    unwrap_annotation,
)
from kuberunner.config.schema import KubernetesConfig, RunnerConfig, field_flags
from kuberunner.util.quantity import QuantityError, parse_quantity

__all__ = [
    "SUPPORTED_EXECUTORS",
    "CheckReport",
    "check_files",
    "render_json",
    "render_text",
    "semantic_problems",
]

SUPPORTED_EXECUTORS = ("kubernetes", "shell")
_GITLAB_EXECUTORS = (
    "docker",
    "docker-windows",
    "docker+machine",
    "docker-autoscaler",
    "docker-ssh",
    "docker-ssh+machine",
    "custom",
    "ssh",
    "parallels",
    "virtualbox",
    "instance",
)
_TOLERATION_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")

_RESOURCE_KEYS = tuple(
    f"{prefix}{resource}_{kind}"
    for prefix in ("", "helper_", "service_")
    for resource in ("cpu", "memory", "ephemeral_storage")
    for kind in ("limit", "request")
)


# --------------------------------------------------------------------------- rules


def semantic_problems(loaded: LoadedConfig) -> list[Problem]:
    """Problems the schema cannot see: contradictions, gaps, unsupported keys."""
    problems = list(_unsupported(loaded))
    problems += _global(loaded)
    for index in range(len(loaded.config.runners)):
        problems += _runner(loaded, index)
    return problems


_MISSING = object()


def _validated_value(loaded: LoadedConfig, loc: KeyPath) -> Any:
    """The validated value at ``loc`` (aliases or names), or ``_MISSING``."""
    obj: Any = loaded.config
    for part in loc:
        if isinstance(part, int):
            if not isinstance(obj, list) or not 0 <= part < len(obj):
                return _MISSING
            obj = obj[part]
        elif isinstance(obj, BaseModel):
            entry = fields_by_key(type(obj)).get(part)
            if entry is None:
                return _MISSING
            obj = getattr(obj, entry[0])
        else:
            return _MISSING
    return obj


def _is_default(loaded: LoadedConfig, loc: KeyPath, model: type[BaseModel], name: str) -> bool:
    """A key written with its default value: ignoring it changes nothing."""
    value = _validated_value(loaded, loc)
    if value is _MISSING:
        return False
    info = model.model_fields[name]
    default = info.get_default(call_default_factory=True)
    if value == default:
        return True
    kind, inner = unwrap_annotation(info.annotation)
    if default is None and kind == "model" and inner is not None:
        return bool(value == inner.model_validate({}))
    if default is None and kind in ("dict", "free"):
        return bool(value == {})
    return False


def _unsupported(loaded: LoadedConfig) -> Iterable[Problem]:
    for loc, model, name, value in iter_fields(loaded.raw):
        if field_flags(model, name)[0]:
            if _is_default(loaded, loc, model, name):
                continue
            yield loaded.problem(
                loc,
                "unsupported",
                NOT_SUPPORTED_YET,
                "remove it to silence this; until kuberunner supports it, it has no effect",
            )
        elif name == "type" and loc[-2:] == ("cache", "Type") and value in ("gcs", "azure"):
            yield loaded.problem(
                loc,
                "unsupported",
                f'not supported yet: cache Type "{value}" (kuberunner has "s3")',
                'use an S3-compatible cache (Type = "s3", e.g. MinIO or GCS\'s S3 interoperability '
                "endpoint); until then jobs run without a shared cache",
            )


def _global(loaded: LoadedConfig) -> list[Problem]:
    config = loaded.config
    out: list[Problem] = []
    raw_runners = loaded.raw.get("runners")
    if not config.runners and not raw_runners:
        out.append(
            loaded.problem(
                ("runners",),
                "warning",
                "no [[runners]] in the file: kuberunner has nothing to run",
                "add a runner with `kuberunner register --url URL --token TOKEN`",
            )
        )
    seen: dict[str, int] = {}
    for index, runner in enumerate(config.runners):
        if runner.name and runner.name in seen:
            out.append(
                loaded.problem(
                    ("runners", index, "name"),
                    "warning",
                    f'the name "{runner.name}" is also used by runner #{seen[runner.name] + 1}: '
                    "logs, metrics and `kuberunner unregister --name` cannot tell them apart",
                    "give each [[runners]] entry its own name",
                )
            )
        seen.setdefault(runner.name, index)
        if runner.limit > config.concurrent:
            out.append(
                loaded.problem(
                    ("runners", index, "limit"),
                    "warning",
                    f"limit = {runner.limit} is more than concurrent = {config.concurrent}: "
                    f"this runner never runs more than {config.concurrent} jobs at once",
                    f"raise the global concurrent to at least {runner.limit}, or lower limit",
                )
            )
    return out


def _runner(loaded: LoadedConfig, index: int) -> list[Problem]:
    runner, raw = runner_at(loaded, index)
    base: KeyPath = ("runners", index)
    out: list[Problem] = []

    def add(key: KeyPath, severity: Severity, message: str, fix: str) -> None:
        out.append(loaded.problem(base + key, severity, message, fix))

    # --- GitLab connection
    if not runner.url:
        if "url" not in raw:
            add(
                ("url",),
                "error",
                "missing: the GitLab URL is required",
                'add url = "https://gitlab.example.com/" (the address of your GitLab)',
            )
        else:
            add(
                ("url",),
                "error",
                "is empty: the GitLab URL is required",
                'set url = "https://gitlab.example.com/" (the address of your GitLab)',
            )
    else:
        parts = urlsplit(runner.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            add(
                ("url",),
                "error",
                f'"{runner.url}" is not an http:// or https:// URL',
                'write the address of your GitLab, e.g. url = "https://gitlab.example.com/"',
            )
    if not runner.token:
        add(
            ("token",),
            "error",
            "missing: the runner's authentication token is required",
            "register the runner with `kuberunner register` (it writes the token), or copy "
            "the token from your existing gitlab-runner config.toml",
        )
    _pair(
        add,
        runner.tls_cert_file,
        runner.tls_key_file,
        "tls-cert-file",
        "tls-key-file",
        "the client certificate for GitLab",
    )
    for key, value in (
        ("tls-ca-file", runner.tls_ca_file),
        ("tls-cert-file", runner.tls_cert_file),
        ("tls-key-file", runner.tls_key_file),
    ):
        _file_exists(add, (key,), value)

    # --- executor
    executor = runner.executor
    if not executor:
        add(
            ("executor",),
            "error",
            "missing: no executor is set",
            'add executor = "kubernetes" (every job runs as a pod) or executor = "shell"',
        )
    elif executor in _GITLAB_EXECUTORS:
        add(
            ("executor",),
            "error",
            f'executor "{executor}" is not supported by kuberunner',
            'use executor = "kubernetes" (every job runs as a pod) or "shell"; keep this runner '
            "on gitlab-runner if it needs the " + executor + " executor",
        )
    elif executor not in SUPPORTED_EXECUTORS:
        close = difflib.get_close_matches(executor, (*SUPPORTED_EXECUTORS, *_GITLAB_EXECUTORS), n=1)
        hint = f'; did you mean "{close[0]}"?' if close else ""
        add(
            ("executor",),
            "error",
            f'unknown executor "{executor}"{hint}',
            'use executor = "kubernetes" or executor = "shell"',
        )

    # --- cache
    out += _cache(loaded, runner, base)

    # --- kubernetes
    if executor == "kubernetes" or (isinstance(raw.get("kubernetes"), dict) and executor != "shell"):
        # also for an executor kuberunner lacks: the table is checked for the day it switches
        out += _kubernetes(
            loaded, runner.kubernetes or KubernetesConfig.model_validate({}), (*base, "kubernetes")
        )
    elif isinstance(raw.get("kubernetes"), dict):
        add(
            ("kubernetes",),
            "warning",
            f'[runners.kubernetes] is ignored: this runner uses executor = "{executor}"',
            'remove the table, or set executor = "kubernetes"',
        )
    return out


def _pair(
    add: Any, first: str, second: str, first_key: str, second_key: str, what: str, prefix: KeyPath = ()
) -> None:
    """A certificate without its key (or the reverse) cannot be used."""
    if first and not second:
        add(
            (*prefix, first_key),
            "error",
            f"{first_key} is set but {second_key} is not: {what} needs both",
            f'add {second_key} = "/path/to/client.key", or remove {first_key}',
        )
    if second and not first:
        add(
            (*prefix, second_key),
            "error",
            f"{second_key} is set but {first_key} is not: {what} needs both",
            f'add {first_key} = "/path/to/client.crt", or remove {second_key}',
        )


def _file_exists(add: Any, key: KeyPath, value: str) -> None:
    if not value:
        return
    path = Path(value).expanduser()
    if path.exists():
        return
    where = "" if path.is_absolute() else " (relative to the current directory)"
    add(
        key,
        "warning",
        f'file "{value}" does not exist on this machine{where}',
        "copy the file there, or correct the path",
    )


def _cache(loaded: LoadedConfig, runner: RunnerConfig, base: KeyPath) -> list[Problem]:
    cache = runner.cache
    if cache is None or cache.type != "s3":
        return []
    loc = (*base, "cache")
    out: list[Problem] = []
    if cache.s3 is None:
        out.append(
            loaded.problem(
                (*loc, "Type"),
                "error",
                'Type = "s3" but there is no [runners.cache.s3] table',
                "add [runners.cache.s3] with ServerAddress, BucketName, AccessKey and SecretKey",
            )
        )
        return out
    s3 = cache.s3
    loc = (*loc, "s3")
    if not s3.bucket_name:
        out.append(
            loaded.problem(
                (*loc, "BucketName"),
                "error",
                "missing: the S3 cache needs a bucket",
                'add BucketName = "runner-cache" to [runners.cache.s3]',
            )
        )
    if not s3.server_address:
        out.append(
            loaded.problem(
                (*loc, "ServerAddress"),
                "error",
                "missing: the S3 cache needs a server address",
                'add ServerAddress = "s3.amazonaws.com" (AWS) or your MinIO '
                'address, e.g. "minio.example.com:9000"',
            )
        )
    if bool(s3.access_key) != bool(s3.secret_key):
        have, lack = ("AccessKey", "SecretKey") if s3.access_key else ("SecretKey", "AccessKey")
        out.append(
            loaded.problem(
                (*loc, have),
                "error",
                f"{have} is set but {lack} is not: S3 credentials need both",
                f"add {lack} to [runners.cache.s3], or remove {have}",
            )
        )
    return out


def _kubernetes(loaded: LoadedConfig, k: KubernetesConfig, base: KeyPath) -> list[Problem]:
    out: list[Problem] = []

    def add(key: KeyPath, severity: Severity, message: str, fix: str) -> None:
        out.append(loaded.problem(base + key, severity, message, fix))

    # connection
    _pair(add, k.cert_file, k.key_file, "cert_file", "key_file", "the client certificate for Kubernetes")
    for key in ("ca_file", "cert_file", "key_file"):
        _file_exists(add, (key,), getattr(k, key))
    if k.bearer_token and not k.host:
        add(
            ("bearer_token",),
            "warning",
            "bearer_token is set but host is not: the token is only used together with host "
            "(without host, kuberunner uses the in-cluster account or the kubeconfig)",
            'add host = "https://<api-server>:6443", or remove bearer_token',
        )
    if not k.namespace:
        add(
            ("namespace",),
            "warning",
            'no namespace is set: jobs run in "default", as with gitlab-runner',
            'set namespace = "gitlab" (the namespace where the runner\'s account may create pods; '
            "`kuberunner rbac` prints what it needs)",
        )

    # waiting
    if k.poll_timeout < k.poll_interval:
        add(
            ("poll_timeout",),
            "error",
            f"poll_timeout ({k.poll_timeout}s) is shorter than poll_interval ({k.poll_interval}s): "
            "a pod would time out before its first check",
            f"set poll_timeout to at least {k.poll_interval} (the default is 180)",
        )

    # resources
    for key in _RESOURCE_KEYS:
        value = getattr(k, key)
        ceiling = getattr(k, f"{key}_overwrite_max_allowed")
        base_q = _quantity(add, key, value)
        max_q = _quantity(add, f"{key}_overwrite_max_allowed", ceiling)
        if base_q is not None and max_q is not None and max_q < base_q:
            add(
                (f"{key}_overwrite_max_allowed",),
                "error",
                f'"{ceiling}" is lower than {key} = "{value}": jobs could not even get the default',
                f'raise it to at least "{value}", or lower {key}',
            )
    for index, volume in enumerate(k.volumes.empty_dir):
        if volume.size_limit:
            _quantity(add, ("volumes", "empty_dir", index, "size_limit"), volume.size_limit)

    # scheduling
    for spec, effect in k.node_tolerations.items():
        if effect not in (*_TOLERATION_EFFECTS, ""):
            add(
                ("node_tolerations", spec),
                "error",
                f'"{effect}" is not a taint effect (NoSchedule, PreferNoSchedule or NoExecute)',
                f'write "{spec}" = "NoSchedule" (or PreferNoSchedule, NoExecute; "" tolerates all)',
            )

    # network
    for index, alias in enumerate(k.host_aliases):
        try:
            ipaddress.ip_address(alias.ip)
        except ValueError:
            add(
                ("host_aliases", index, "ip"),
                "error",
                f'"{alias.ip}" is not an IP address',
                'write the address the names resolve to, e.g. ip = "192.168.80.14"',
            )
    if k.dns_policy == "none" and not (k.dns_config and k.dns_config.nameservers):
        add(
            ("dns_policy",),
            "error",
            'dns_policy = "none" without dns_config nameservers: Kubernetes rejects the pod',
            'add [runners.kubernetes.dns_config] with nameservers = ["10.0.0.10"], or change dns_policy',
        )

    # docker-in-docker needs a privileged pod
    privileged = bool(k.privileged) or bool(
        k.service_container_security_context and k.service_container_security_context.privileged
    )
    for index, service in enumerate(k.services):
        if _is_dind(service.name) and not privileged:
            add(
                ("services", index, "name"),
                "warning",
                f'service "{service.name}" runs a Docker daemon, which needs a privileged container, '
                "but privileged is not set",
                "add privileged = true to [runners.kubernetes]",
            )
    return out


def _quantity(add: Any, key: str | KeyPath, value: str) -> Fraction | None:
    if not value:
        return None
    loc = (key,) if isinstance(key, str) else key
    try:
        number: Fraction | None = parse_quantity(value)
    except QuantityError:
        number = None
    if number is None and value.strip().startswith("-") and _is_number(value.strip()[1:]):
        add(loc, "error", f'"{value}" is negative', "use a positive quantity or leave it unset")
        return None
    if number is None:
        add(
            loc,
            "error",
            f'"{value}" is not a Kubernetes quantity',
            'write a number with an optional unit: CPU as "500m" or "2", memory as "512Mi" or "4Gi"',
        )
        return None
    return number


def _is_number(text: str) -> bool:
    try:
        parse_quantity(text)
    except QuantityError:
        return False
    return True


def _is_dind(image: str) -> bool:
    """docker:dind, docker:24-dind, registry/docker:dind-rootless ..."""
    name, _, tag = image.rpartition("/")[2].partition(":")
    return name == "docker" and "dind" in tag


# -------------------------------------------------------------------------- report


@dataclass
class CheckReport:
    """The outcome of checking one file."""

    path: Path
    problems: list[Problem]

    def count(self, severity: Severity) -> int:
        return sum(1 for p in self.problems if p.severity == severity)

    @property
    def ok(self) -> bool:
        return self.count("error") == 0


def check_files(paths: Sequence[Path]) -> list[CheckReport]:
    """Load each file with every check; never stops at the first problem."""
    return [CheckReport(path, load_config(path, strict=False).problems) for path in paths]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _summary(reports: Sequence[CheckReport]) -> str:
    errors = sum(r.count("error") for r in reports)
    warnings = sum(r.count("warning") for r in reports)
    unsupported = sum(r.count("unsupported") for r in reports)
    if not errors and not warnings and not unsupported:
        return "OK: no problems found"
    text = f"{_plural(errors, 'error')}, {_plural(warnings, 'warning')}, {unsupported} not supported yet"
    return text + ("" if errors else " (OK: only errors fail the check)")


_HEADINGS = {"error": "errors", "warning": "warnings", "unsupported": "not supported yet"}
STYLES = {
    "error": "bold red",
    "warning": "yellow",
    "unsupported": "cyan",
    "fix": "green",
    "heading": "bold",
    "summary": "bold",
}


def render_text(reports: Sequence[CheckReport]) -> list[tuple[str, str | None]]:
    """Lines of the report with a style name for each (None: plain)."""
    lines: list[tuple[str, str | None]] = []
    for report in reports:
        for severity in SEVERITIES:
            group = [p for p in report.problems if p.severity == severity]
            if not group:
                continue
            lines.append((f"{_HEADINGS[severity]} ({len(group)}):", "heading"))
            for problem in group:
                head, _, fix = problem.render().partition("\n")
                lines.append((head, severity))
                if fix:
                    lines.append((fix, "fix"))
        lines.append((f"{report.path}: {_summary([report])}", "summary"))
    if len(reports) > 1:
        lines.append((f"{_plural(len(reports), 'file')} checked: {_summary(reports)}", "summary"))
    return lines


def render_json(reports: Sequence[CheckReport]) -> str:
    def counts(rs: Sequence[CheckReport]) -> dict[str, int]:
        return {s: sum(r.count(s) for r in rs) for s in SEVERITIES}

    body = {
        "ok": all(r.ok for r in reports),
        "counts": counts(reports),
        "files": [
            {
                "path": str(r.path),
                "ok": r.ok,
                "counts": counts([r]),
                "problems": [p.to_dict() for p in r.problems],
            }
            for r in reports
        ],
    }
    return json.dumps(body, indent=2, ensure_ascii=False)
