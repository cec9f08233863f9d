"""Typed model of the job payload GitLab sends in answer to ``POST /jobs/request``.

The same model is built by ``kuberunner exec`` from a local ``.gitlab-ci.yml``,
so every executor sees one shape whatever the job's source. Unknown fields are
tolerated (GitLab adds keys over time); a payload that does not fit raises
:class:`JobPayloadError` naming each offending field.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = [
    "Artifact",
    "ArtifactsFile",
    "Cache",
    "Credential",
    "Dependency",
    "Features",
    "GitInfo",
    "Hook",
    "Image",
    "JobInfo",
    "JobPayload",
    "JobPayloadError",
    "JobVariable",
    "RunnerInfo",
    "Service",
    "ServiceVariable",
    "Step",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class JobPayloadError(ValueError):
    """The job payload does not have the documented shape."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid job payload:\n" + "\n".join(f"  - {p}" for p in problems))


class JobVariable(_Model):
    key: str
    value: str = Field(default="", repr=False)  # may be masked: never in a traceback
    public: bool = False
    masked: bool = False
    file: bool = False
    raw: bool = False

    @field_validator("value", mode="before")
    @classmethod
    def _none_is_empty(cls, v: Any) -> Any:
        return "" if v is None else v


class ServiceVariable(_Model):
    key: str
    value: str = ""


class Step(_Model):
    name: str
    script: list[str] = Field(default_factory=list)
    timeout: int | None = None
    when: Literal["on_success", "on_failure", "always"] = "on_success"
    allow_failure: bool = False


class Image(_Model):
    name: str = ""
    entrypoint: list[str] | None = None
    ports: list[dict[str, Any]] = Field(default_factory=list)
    pull_policy: list[str] | None = None
    executor_opts: dict[str, Any] = Field(default_factory=dict)


class Service(Image):
    alias: str = ""
    command: list[str] | None = None
    variables: list[ServiceVariable] = Field(default_factory=list)

    @property
    def aliases(self) -> list[str]:
        """GitLab lets one ``alias`` hold several names, comma or space separated."""
        return [a for a in self.alias.replace(",", " ").split() if a]


class Artifact(_Model):
    name: str = ""
    untracked: bool = False
    paths: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    when: Literal["on_success", "on_failure", "always"] = "on_success"
    expire_in: str | None = None
    artifact_type: str = "archive"
    artifact_format: str = "zip"


class Cache(_Model):
    key: str = "default"
    untracked: bool = False
    paths: list[str] = Field(default_factory=list)
    policy: Literal["pull-push", "pull", "push"] = "pull-push"
    when: Literal["on_success", "on_failure", "always"] = "on_success"
    fallback_keys: list[str] = Field(default_factory=list)


class Credential(_Model):
    type: str = "registry"
    url: str
    username: str
    password: str = Field(repr=False)


class ArtifactsFile(_Model):
    filename: str
    size: int = 0


class Dependency(_Model):
    id: int
    name: str
    token: str = Field(default="", repr=False)
    artifacts_file: ArtifactsFile | None = None


class Hook(_Model):
    name: str
    script: list[str] = Field(default_factory=list)


class JobInfo(_Model):
    id: int = 0
    name: str = ""
    stage: str = ""
    pipeline_id: int = 0
    project_id: int = 0
    project_name: str = ""
    project_full_path: str = ""
    time_in_queue_seconds: float = 0


class GitInfo(_Model):
    repo_url: str = Field(default="", repr=False)
    ref: str = ""
    sha: str = ""
    before_sha: str = ""
    ref_type: str = "branch"
    refspecs: list[str] = Field(default_factory=list)
    depth: int = 0
    protected: bool | None = None
    repo_object_format: str = "sha1"


class RunnerInfo(_Model):
    timeout: int = 3600
    runner_session_url: str | None = None


class Features(_Model):
    trace_sections: bool = False
    failure_reasons: list[str] = Field(default_factory=list)


class JobPayload(_Model):
    """A job as GitLab hands it to a runner."""

    id: int
    token: str = Field(repr=False)
    allow_git_fetch: bool = True
    job_info: JobInfo = Field(default_factory=JobInfo)
    git_info: GitInfo = Field(default_factory=GitInfo)
    runner_info: RunnerInfo = Field(default_factory=RunnerInfo)
    variables: list[JobVariable] = Field(default_factory=list)
    steps: list[Step] = Field(default_factory=list)
    hooks: list[Hook] = Field(default_factory=list)
    image: Image | None = None
    services: list[Service] = Field(default_factory=list)
    artifacts: list[Artifact] = Field(default_factory=list)
    cache: list[Cache] = Field(default_factory=list)
    credentials: list[Credential] = Field(default_factory=list)
    features: Features = Field(default_factory=Features)
    dependencies: list[Dependency] = Field(default_factory=list)

    @field_validator(
        "variables",
        "steps",
        "hooks",
        "services",
        "artifacts",
        "cache",
        "credentials",
        "dependencies",
        mode="before",
    )
    @classmethod
    def _null_is_empty(cls, v: Any) -> Any:
        return [] if v is None else v

    @classmethod
    def parse(cls, data: bytes | str | dict[str, Any]) -> JobPayload:
        """Parse a payload, turning every problem into one readable :class:`JobPayloadError`."""
        if not isinstance(data, dict):
            try:
                data = json.loads(data)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise JobPayloadError([f"not JSON: {exc}"]) from None
        if not isinstance(data, dict):
            raise JobPayloadError([f"expected a JSON object, got {type(data).__name__}"])
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise JobPayloadError([_describe(e) for e in exc.errors()]) from None

    def step(self, name: str) -> Step | None:
        return next((s for s in self.steps if s.name == name), None)

    @property
    def masked_values(self) -> list[str]:
        return [v.value for v in self.variables if v.masked and v.value]


def _describe(error: Any) -> str:
    loc = ".".join(str(p) for p in error.get("loc", ())) or "(top level)"
    msg = error.get("msg", "invalid")
    # never echo the offending value: it may be a secret
    return f"{loc}: {msg}"
