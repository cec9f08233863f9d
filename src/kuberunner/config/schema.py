"""The config.toml schema: gitlab-runner's names, types and defaults.

Every table forbids unknown keys so a typo is reported, not ignored. A key
that kuberunner accepts but does not act on yet is declared with
:func:`later`; ``kuberunner config check`` lists those as "not supported yet".
Secrets are declared with :func:`secret` so ``config show`` can redact them.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "Affinity",
    "CacheAzure",
    "CacheConfig",
    "CacheGCS",
    "CacheS3",
    "Config",
    "ContainerSecurityContext",
    "DNSConfig",
    "HostAlias",
    "KubernetesConfig",
    "KubernetesService",
    "PodSecurityContext",
    "PodSpecPatch",
    "RunnerConfig",
    "SessionServer",
    "Volumes",
    "field_flags",
    "later",
    "secret",
]

_LATER = "kuberunner_not_supported_yet"
_SECRET = "kuberunner_secret"


def later(default: Any = None, *, alias: str | None = None, **kw: Any) -> Any:
    """A key that loads (so existing files keep working) but is not acted on yet."""
    if "default_factory" in kw:
        return Field(alias=alias, json_schema_extra={_LATER: True}, **kw)
    return Field(default, alias=alias, json_schema_extra={_LATER: True}, **kw)


def secret(default: Any = "", *, alias: str | None = None, not_supported_yet: bool = False) -> Any:
    """A key whose value is a credential: redacted by ``config show``, never logged."""
    extra: dict[str, Any] = {_SECRET: True}
    if not_supported_yet:
        extra[_LATER] = True
    return Field(default, alias=alias, json_schema_extra=extra, repr=False)


def field_flags(model: type[BaseModel], name: str) -> tuple[bool, bool]:
    """(not_supported_yet, is_secret) for one field of a schema model."""
    extra = model.model_fields[name].json_schema_extra
    if not isinstance(extra, dict):
        return False, False
    return bool(extra.get(_LATER)), bool(extra.get(_SECRET))


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_default=False)


_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(h|m|s|ms))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(value: Any) -> float:
    """A Go duration string ("5m", "1h30m", "500ms") or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError('expected a duration such as "5m" or a number of seconds')
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and _DURATION.match(value.strip()):
        return sum(float(n) * _UNIT[u] for n, u in _DURATION_PART.findall(value))
    raise ValueError('expected a duration such as "5m", "90s" or "1h30m"')


# --------------------------------------------------------------------------- cache


class CacheS3(_Table):
    server_address: str = Field("", alias="ServerAddress")
    access_key: str = secret("", alias="AccessKey")
    secret_key: str = secret("", alias="SecretKey")
    session_token: str = secret("", alias="SessionToken")
    bucket_name: str = Field("", alias="BucketName")
    bucket_location: str = Field("", alias="BucketLocation")
    insecure: bool = Field(False, alias="Insecure")
    authentication_type: Literal["", "iam", "access-key"] = later("", alias="AuthenticationType")
    server_side_encryption: str = later("", alias="ServerSideEncryption")
    server_side_encryption_key_id: str = later("", alias="ServerSideEncryptionKeyID")
    dual_stack: bool = later(True, alias="DualStack")
    path_style: bool | None = Field(None, alias="PathStyle")
    accelerate: bool = later(False, alias="Accelerate")
    role_arn: str = later("", alias="RoleARN")
    upload_role_arn: str = later("", alias="UploadRoleARN")


class CacheGCS(_Table):
    credentials_file: str = later("", alias="CredentialsFile")
    access_id: str = later("", alias="AccessID")
    private_key: str = secret("", alias="PrivateKey", not_supported_yet=True)
    bucket_name: str = later("", alias="BucketName")


class CacheAzure(_Table):
    account_name: str = later("", alias="AccountName")
    account_key: str = secret("", alias="AccountKey", not_supported_yet=True)
    container_name: str = later("", alias="ContainerName")
    storage_domain: str = later("", alias="StorageDomain")


class CacheConfig(_Table):
    type: Literal["", "s3", "gcs", "azure"] = Field("", alias="Type")
    path: str = Field("", alias="Path")
    shared: bool = Field(False, alias="Shared")
    max_uploaded_archive_size: int = later(0, alias="MaxUploadedArchiveSize", ge=0)
    s3: CacheS3 | None = None
    gcs: CacheGCS | None = None
    azure: CacheAzure | None = None


# --------------------------------------------------------------------- kubernetes


class Capabilities(_Table):
    add: list[str] = Field(default_factory=list)
    drop: list[str] = Field(default_factory=list)


class SELinuxOptions(_Table):
    user: str = ""
    role: str = ""
    type: str = ""
    level: str = ""


class SeccompProfile(_Table):
    type: Literal["RuntimeDefault", "Localhost", "Unconfined"] = "RuntimeDefault"
    localhost_profile: str = ""


class ContainerSecurityContext(_Table):
    capabilities: Capabilities | None = None
    privileged: bool | None = None
    run_as_user: int | None = Field(None, ge=0)
    run_as_group: int | None = Field(None, ge=0)
    run_as_non_root: bool | None = None
    read_only_root_filesystem: bool | None = None
    allow_privilege_escalation: bool | None = None
    se_linux_options: SELinuxOptions | None = None
    proc_mount: Literal["", "Default", "Unmasked"] = ""
    seccomp_profile: SeccompProfile | None = None


class PodSecurityContext(_Table):
    fs_group: int | None = Field(None, ge=0)
    run_as_group: int | None = Field(None, ge=0)
    run_as_non_root: bool | None = None
    run_as_user: int | None = Field(None, ge=0)
    supplemental_groups: list[int] = Field(default_factory=list)
    selinux_type: str = ""
    fs_group_change_policy: Literal["", "OnRootMismatch", "Always"] = ""
    seccomp_profile: SeccompProfile | None = None
    sysctls: dict[str, str] = Field(default_factory=dict)


class _VolumeBase(_Table):
    name: str
    mount_path: str
    sub_path: str = ""
    read_only: bool = False
    mount_propagation: Literal["", "None", "HostToContainer", "Bidirectional"] = ""


class HostPathVolume(_VolumeBase):
    host_path: str = ""


class PVCVolume(_VolumeBase):
    pass


class ConfigMapVolume(_VolumeBase):
    items: dict[str, str] = Field(default_factory=dict)


class SecretVolume(_VolumeBase):
    items: dict[str, str] = Field(default_factory=dict)


class EmptyDirVolume(_Table):
    name: str
    mount_path: str
    sub_path: str = ""
    medium: Literal["", "Memory", "HugePages"] = ""
    size_limit: str = ""


class CSIVolume(_VolumeBase):
    driver: str
    fs_type: str = ""
    volume_attributes: dict[str, str] = Field(default_factory=dict)


class NFSVolume(_VolumeBase):
    server: str
    path: str


class Volumes(_Table):
    host_path: list[HostPathVolume] = Field(default_factory=list)
    pvc: list[PVCVolume] = Field(default_factory=list)
    config_map: list[ConfigMapVolume] = Field(default_factory=list)
    secret: list[SecretVolume] = Field(default_factory=list)
    empty_dir: list[EmptyDirVolume] = Field(default_factory=list)
    csi: list[CSIVolume] = Field(default_factory=list)
    nfs: list[NFSVolume] = Field(default_factory=list)


class HostAlias(_Table):
    ip: str
    hostnames: list[str]


class DNSConfigOption(_Table):
    name: str
    value: str | None = None


class DNSConfig(_Table):
    nameservers: list[str] = Field(default_factory=list)
    options: list[DNSConfigOption] = Field(default_factory=list)
    searches: list[str] = Field(default_factory=list)


class KubernetesService(_Table):
    name: str
    alias: str = ""
    command: list[str] = Field(default_factory=list)
    entrypoint: list[str] = Field(default_factory=list)
    ports: list[dict[str, Any]] = Field(default_factory=list)


class PodSpecPatch(_Table):
    name: str = ""
    patch_path: str = ""
    patch: str = ""
    patch_type: Literal["merge", "json", "strategic", ""] = ""


class NodeSelectorRequirement(_Table):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
    values: list[str] = Field(default_factory=list)


class NodeSelectorTerm(_Table):
    match_expressions: list[NodeSelectorRequirement] = Field(default_factory=list)
    match_fields: list[NodeSelectorRequirement] = Field(default_factory=list)


class NodeSelector(_Table):
    node_selector_terms: list[NodeSelectorTerm] = Field(default_factory=list)


class PreferredSchedulingTerm(_Table):
    weight: int = Field(ge=1, le=100)
    preference: NodeSelectorTerm


class NodeAffinity(_Table):
    required_during_scheduling_ignored_during_execution: NodeSelector | None = None
    preferred_during_scheduling_ignored_during_execution: list[PreferredSchedulingTerm] = Field(
        default_factory=list
    )


class LabelSelectorRequirement(_Table):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = Field(default_factory=list)


class LabelSelector(_Table):
    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list)


class PodAffinityTerm(_Table):
    label_selector: LabelSelector | None = None
    namespaces: list[str] = Field(default_factory=list)
    topology_key: str
    namespace_selector: LabelSelector | None = None


class WeightedPodAffinityTerm(_Table):
    weight: int = Field(ge=1, le=100)
    pod_affinity_term: PodAffinityTerm


class PodAffinity(_Table):
    required_during_scheduling_ignored_during_execution: list[PodAffinityTerm] = Field(default_factory=list)
    preferred_during_scheduling_ignored_during_execution: list[WeightedPodAffinityTerm] = Field(
        default_factory=list
    )


class Affinity(_Table):
    node_affinity: NodeAffinity | None = None
    pod_affinity: PodAffinity | None = None
    pod_anti_affinity: PodAffinity | None = None


PullPolicy = Literal["never", "if-not-present", "always"]


class KubernetesConfig(_Table):
    """``[runners.kubernetes]``."""

    # connection
    host: str = ""
    context: str = ""
    cert_file: str = ""
    key_file: str = ""
    ca_file: str = ""
    bearer_token: str = secret("")
    bearer_token_overwrite_allowed: bool = False
    # where
    namespace: str = ""
    namespace_overwrite_allowed: str = ""
    namespace_per_job: bool = later(False)
    service_account: str = ""
    service_account_overwrite_allowed: str = ""
    automount_service_account_token: bool | None = None
    # images
    image: str = ""
    helper_image: str = ""
    helper_image_flavor: Literal["", "alpine", "ubuntu", "ubi-fips"] = ""
    helper_image_autoset_arch_and_os: bool = later(False)
    pull_policy: list[PullPolicy] = Field(default_factory=list)
    allowed_images: list[str] = Field(default_factory=list)
    allowed_services: list[str] = Field(default_factory=list)
    allowed_pull_policies: list[PullPolicy] = Field(default_factory=list)
    allowed_users: list[str] = later(default_factory=list)
    allowed_groups: list[str] = later(default_factory=list)
    image_pull_secrets: list[str] = Field(default_factory=list)
    use_service_account_image_pull_secrets: bool = False
    # pod
    privileged: bool | None = None
    allow_privilege_escalation: bool | None = None
    cap_add: list[str] = Field(default_factory=list)
    cap_drop: list[str] = Field(default_factory=list)
    cpu_limit: str = ""
    cpu_limit_overwrite_max_allowed: str = ""
    cpu_request: str = ""
    cpu_request_overwrite_max_allowed: str = ""
    memory_limit: str = ""
    memory_limit_overwrite_max_allowed: str = ""
    memory_request: str = ""
    memory_request_overwrite_max_allowed: str = ""
    ephemeral_storage_limit: str = ""
    ephemeral_storage_limit_overwrite_max_allowed: str = ""
    ephemeral_storage_request: str = ""
    ephemeral_storage_request_overwrite_max_allowed: str = ""
    helper_cpu_limit: str = ""
    helper_cpu_limit_overwrite_max_allowed: str = ""
    helper_cpu_request: str = ""
    helper_cpu_request_overwrite_max_allowed: str = ""
    helper_memory_limit: str = ""
    helper_memory_limit_overwrite_max_allowed: str = ""
    helper_memory_request: str = ""
    helper_memory_request_overwrite_max_allowed: str = ""
    helper_ephemeral_storage_limit: str = ""
    helper_ephemeral_storage_limit_overwrite_max_allowed: str = ""
    helper_ephemeral_storage_request: str = ""
    helper_ephemeral_storage_request_overwrite_max_allowed: str = ""
    service_cpu_limit: str = ""
    service_cpu_limit_overwrite_max_allowed: str = ""
    service_cpu_request: str = ""
    service_cpu_request_overwrite_max_allowed: str = ""
    service_memory_limit: str = ""
    service_memory_limit_overwrite_max_allowed: str = ""
    service_memory_request: str = ""
    service_memory_request_overwrite_max_allowed: str = ""
    service_ephemeral_storage_limit: str = ""
    service_ephemeral_storage_limit_overwrite_max_allowed: str = ""
    service_ephemeral_storage_request: str = ""
    service_ephemeral_storage_request_overwrite_max_allowed: str = ""
    node_selector: dict[str, str] = Field(default_factory=dict)
    node_selector_overwrite_allowed: str = ""
    node_tolerations: dict[str, str] = Field(default_factory=dict)
    node_tolerations_overwrite_allowed: str = ""
    affinity: Affinity | None = None
    pod_labels: dict[str, str] = Field(default_factory=dict)
    pod_labels_overwrite_allowed: str = ""
    pod_annotations: dict[str, str] = Field(default_factory=dict)
    pod_annotations_overwrite_allowed: str = ""
    pod_security_context: PodSecurityContext | None = None
    build_container_security_context: ContainerSecurityContext | None = None
    helper_container_security_context: ContainerSecurityContext | None = None
    service_container_security_context: ContainerSecurityContext | None = None
    init_permissions_container_security_context: ContainerSecurityContext | None = later(None)
    hostname: str = ""
    host_aliases: list[HostAlias] = Field(default_factory=list)
    dns_policy: Literal["", "none", "default", "cluster-first", "cluster-first-with-host-net"] = ""
    dns_config: DNSConfig | None = None
    runtime_class_name: str = ""
    priority_class_name: str = ""
    scheduler_name: str = ""
    termination_grace_period_seconds: int | None = Field(None, ge=0)
    pod_termination_grace_period_seconds: int | None = Field(None, ge=0)
    pod_spec: list[PodSpecPatch] = Field(default_factory=list)
    # waiting and cleanup
    poll_interval: int = Field(3, ge=1)
    poll_timeout: int = Field(180, ge=1)
    cleanup_grace_period_seconds: int | None = Field(None, ge=0)
    cleanup_resources_timeout: float = 300.0
    retry_limit: int = Field(5, ge=0)
    retry_backoff_max: int = Field(2000, ge=1)
    retry_limits: dict[str, int] = Field(default_factory=dict)
    print_pod_warning_events: bool = True
    logs_base_dir: str = later("")
    scripts_base_dir: str = later("")
    # nested tables
    volumes: Volumes = Field(default_factory=Volumes)
    services: list[KubernetesService] = Field(default_factory=list)

    @field_validator("pull_policy", "allowed_pull_policies", mode="before")
    @classmethod
    def _string_or_array(cls, v: Any) -> Any:
        """gitlab-runner accepts ``pull_policy = "always"`` as well as a list."""
        if isinstance(v, str):
            return [v] if v else []
        return v

    @field_validator("cleanup_resources_timeout", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float:
        return parse_duration(v)


# -------------------------------------------------------------------------- runner


class CustomBuildDir(_Table):
    enabled: bool = later(False)


class RunnerConfig(_Table):
    """One ``[[runners]]`` entry."""

    name: str = ""
    url: str = ""
    id: int = 0
    token: str = secret("")
    token_obtained_at: Any = None
    token_expires_at: Any = None
    tls_ca_file: str = Field("", alias="tls-ca-file")
    tls_cert_file: str = Field("", alias="tls-cert-file")
    tls_key_file: str = Field("", alias="tls-key-file")
    executor: str = ""
    shell: str = ""
    limit: int = Field(0, ge=0)
    request_concurrency: int = Field(1, ge=1)
    unhealthy_requests_limit: int = Field(3, ge=1)
    unhealthy_interval: float = 3600.0
    output_limit: int = Field(4096, ge=1)
    builds_dir: str = ""
    cache_dir: str = ""
    environment: list[str] = Field(default_factory=list, repr=False)  # values may be credentials
    clone_url: str = ""
    pre_get_sources_script: str = ""
    post_get_sources_script: str = ""
    pre_build_script: str = ""
    post_build_script: str = ""
    debug_trace_disabled: bool = False
    custom_build_dir: CustomBuildDir | None = later(None)
    feature_flags: dict[str, bool] = Field(default_factory=dict)
    cache: CacheConfig | None = None
    kubernetes: KubernetesConfig | None = None
    # Tables of executors kuberunner does not have: accepted so a shared file
    # loads, reported by `config check` as not supported. Kept out of reprs:
    # they may hold credentials the schema does not know about.
    docker: dict[str, Any] | None = later(None, repr=False)
    machine: dict[str, Any] | None = later(None, repr=False)
    custom: dict[str, Any] | None = later(None, repr=False)
    ssh: dict[str, Any] | None = later(None, repr=False)
    parallels: dict[str, Any] | None = later(None, repr=False)
    virtualbox: dict[str, Any] | None = later(None, repr=False)
    autoscaler: dict[str, Any] | None = later(None, repr=False)
    referees: dict[str, Any] | None = later(None, repr=False)

    @field_validator("unhealthy_interval", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float:
        return parse_duration(v)

    @field_validator("environment")
    @classmethod
    def _environment_pairs(cls, v: list[str]) -> list[str]:
        for item in v:
            if "=" not in item or item.startswith("="):
                # the value may be a secret: name only the key part, if any
                key = item.split("=", 1)[0] if "=" in item else "(no '=')"
                raise ValueError(f'environment entries are "KEY=value"; entry {key!r} is not')
        return v

    @property
    def short_token(self) -> str:
        """What gitlab-runner prints after the runner name: 8 chars past any ``glrt-`` prefix."""
        token = self.token
        for prefix in ("glrtr-", "glrt-"):
            if token.startswith(prefix):
                token = token[len(prefix) :]
                break
        return token[:8]


class SessionServer(_Table):
    listen_address: str = later("")
    advertise_address: str = later("")
    session_timeout: int = later(1800)


class Config(_Table):
    """The whole file."""

    concurrent: int = Field(1, ge=1)
    check_interval: int = Field(3, ge=0)
    log_level: Literal["debug", "info", "warn", "warning", "error", "fatal", "panic"] = "info"
    log_format: Literal["runner", "text", "json"] = "runner"
    user: str = later("")
    listen_address: str = ""
    shutdown_timeout: int = Field(30, ge=0)
    sentry_dsn: str = secret("", not_supported_yet=True)
    connection_max_age: float = later(900.0)
    session_server: SessionServer | None = None
    runners: list[RunnerConfig] = Field(default_factory=list)

    @field_validator("connection_max_age", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float:
        return parse_duration(v)
