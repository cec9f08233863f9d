"""The resolved pipeline: what each job is once includes, ``extends``, ``!reference``,
``default:``, rules and ``parallel`` have been applied.

These are plain frozen dataclasses so the runner and executors can rely on one
shape whatever the YAML spelling was (string or list script, string or object
image, single cache or list...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from kuberunner.pipeline.errors import Location
from kuberunner.pipeline.variables import environment_slug, environment_tier

__all__ = [
    "ArtifactsSpec",
    "CacheSpec",
    "EnvironmentSpec",
    "ImageSpec",
    "Need",
    "PipelineJob",
    "PipelineVariable",
    "RetrySpec",
    "ServiceSpec",
    "When",
]

When = Literal["on_success", "on_failure", "always", "manual", "delayed"]


@dataclass(frozen=True)
class PipelineVariable:
    """A variable given from outside the YAML (``--variable``, project variables)."""

    value: str
    file: bool = False
    raw: bool = False
    masked: bool = False


@dataclass(frozen=True)
class Need:
    """One ``needs:`` entry, with the job instances it designates in this pipeline."""

    job: str
    artifacts: bool = True
    optional: bool = False
    pipeline: str | None = None
    project: str | None = None
    ref: str | None = None
    #: ``parallel:matrix`` selectors, each ``{VAR: (allowed values...)}``.
    matrix: tuple[dict[str, tuple[str, ...]], ...] | None = None
    #: names of the job instances this need resolves to (empty for cross-pipeline needs).
    instances: tuple[str, ...] = ()

    @property
    def is_local(self) -> bool:
        """True for a need on a job of this pipeline (not ``pipeline:``/``project:``)."""
        return self.pipeline is None and self.project is None


@dataclass(frozen=True)
class ImageSpec:
    name: str
    entrypoint: tuple[str, ...] | None = None
    pull_policy: tuple[str, ...] | None = None
    docker: dict[str, Any] | None = None
    kubernetes: dict[str, Any] | None = None


@dataclass(frozen=True)
class ServiceSpec(ImageSpec):
    alias: str = ""
    command: tuple[str, ...] | None = None
    variables: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ArtifactsSpec:
    paths: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    untracked: bool = False
    when: Literal["on_success", "on_failure", "always"] = "on_success"
    expire_in: str | None = None
    name: str | None = None
    expose_as: str | None = None
    #: ``reports:`` as written, e.g. ``{"dotenv": ["build.env"], "junit": ["report.xml"]}``.
    reports: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class CacheSpec:
    #: the key as GitLab sends it (``key:files`` already turned into a hash); unexpanded.
    key: str = "default"
    paths: tuple[str, ...] = ()
    policy: Literal["pull-push", "pull", "push"] = "pull-push"
    when: Literal["on_success", "on_failure", "always"] = "on_success"
    untracked: bool = False
    fallback_keys: tuple[str, ...] = ()
    unprotect: bool = False


@dataclass(frozen=True)
class RetrySpec:
    max: int = 0
    when: tuple[str, ...] = ("always",)
    exit_codes: tuple[int, ...] = ()


@dataclass(frozen=True)
class EnvironmentSpec:
    """``environment:`` with ``name``/``url`` expanded against the job's variables."""

    name: str
    url: str | None = None
    action: str = "start"
    deployment_tier: str | None = None
    on_stop: str | None = None
    auto_stop_in: str | None = None
    kubernetes: dict[str, Any] | None = None

    @property
    def slug(self) -> str:
        return environment_slug(self.name)

    @property
    def tier(self) -> str:
        return self.deployment_tier or environment_tier(self.name)


@dataclass(frozen=True)
class PipelineJob:
    """One job instance (a ``parallel`` job gives several) as it will run."""

    name: str
    base_name: str
    stage: str
    when: When = "on_success"
    allow_failure: bool = False
    allow_failure_exit_codes: tuple[int, ...] = ()
    #: ``None`` when the job has no ``needs:`` (it then waits for the earlier stages).
    needs: tuple[Need, ...] | None = None
    #: ``None`` when the job has no ``dependencies:`` (artifacts of all needs / earlier stages).
    dependencies: tuple[str, ...] | None = None
    before_script: tuple[str, ...] = ()
    script: tuple[str, ...] = ()
    after_script: tuple[str, ...] = ()
    #: YAML variables in effect for the job (global, workflow, job, matrix, rules), unexpanded.
    variables: dict[str, str] = field(default_factory=dict)
    #: names of variables with ``expand: false``.
    raw_variables: frozenset[str] = frozenset()
    matrix_variables: dict[str, str] = field(default_factory=dict)
    image: ImageSpec | None = None
    services: tuple[ServiceSpec, ...] = ()
    artifacts: ArtifactsSpec | None = None
    cache: tuple[CacheSpec, ...] = ()
    #: seconds, or ``None`` for the runner's/project's default.
    timeout: int | None = None
    retry: RetrySpec = field(default_factory=RetrySpec)
    tags: tuple[str, ...] = ()
    environment: EnvironmentSpec | None = None
    coverage: str | None = None
    interruptible: bool = False
    resource_group: str | None = None
    start_in: str | None = None
    pre_get_sources_script: tuple[str, ...] = ()
    trigger: dict[str, Any] | None = None
    #: 1-based index and total for ``parallel`` instances (``None`` otherwise).
    node_index: int | None = None
    node_total: int | None = None
    source: Location = field(default_factory=lambda: Location(""))

    def matches(self, name: str) -> bool:
        """Whether a job name given by a user designates this job.

        A base name matches every ``parallel`` instance; an instance can be written as
        GitLab names it (``job 1/2``, ``job: [a, b]``) or as gitlab-ci-local does
        (``job: [1/2]``, ``job: [a,b]``).
        """
        return name == self.base_name or self.is_named(name)

    def is_named(self, name: str) -> bool:
        """Whether ``name`` is this instance's name, in GitLab's or gitlab-ci-local's spelling."""
        return name == self.name or _normal_name(name) == _normal_name(self.name)

    @property
    def aliases(self) -> tuple[str, ...]:
        """The other spellings of this instance's name (gitlab-ci-local's)."""
        if self.node_index is None:
            return ()
        if self.matrix_variables:
            return (f"{self.base_name}: [{','.join(self.matrix_variables.values())}]",)
        return (f"{self.base_name}: [{self.node_index}/{self.node_total}]",)


def _normal_name(name: str) -> str:
    m = re.fullmatch(r"(.*?):? \[(\d+)/(\d+)\]", name)
    if m:
        return f"{m.group(1)} {m.group(2)}/{m.group(3)}"
    m = re.fullmatch(r"(.*): \[(.*)\]", name)
    if m:
        values = ", ".join(v.strip() for v in m.group(2).split(","))
        return f"{m.group(1)}: [{values}]"
    return name
