"""Build the job JSON of a 201 answer, in the shape of `shared/docs/fixtures/job-payload.json`."""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ._model import JobHandle


def _var(key: str, value: str, *, public: bool, masked: bool = False) -> dict[str, Any]:
    return {"key": key, "value": value, "public": public, "masked": masked}


def deep_merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Merge `overrides` into `base` in place: objects merge key by key, anything else replaces."""
    for key, value in overrides.items():
        current = base.get(key)
        if isinstance(current, dict) and isinstance(value, Mapping):
            deep_merge(current, value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def build_payload(
    job: JobHandle,
    *,
    server_url: str,
    dependencies: Sequence[JobHandle],
    repo_url: str,
) -> dict[str, Any]:
    """The job JSON a runner receives; dependency entries carry this running job's token, as GitLab does."""
    spec = job.spec
    token = job.token
    project_name = spec.repo.rsplit("/", 1)[-1]
    namespace_id = 7
    predefined = [
        _var("CI_JOB_ID", str(job.id), public=True),
        _var("CI_JOB_NAME", spec.name, public=True),
        _var("CI_JOB_STAGE", spec.stage, public=True),
        _var("CI_JOB_TOKEN", token, public=False, masked=True),
        _var("CI_PIPELINE_ID", str(spec.pipeline_id), public=True),
        _var("CI_PROJECT_ID", str(spec.project_id), public=True),
        _var("CI_PROJECT_NAME", project_name, public=True),
        _var("CI_PROJECT_PATH", spec.repo, public=True),
        _var("CI_SERVER_URL", server_url, public=True),
        _var("CI_API_V4_URL", f"{server_url}/api/v4", public=True),
        _var("CI_REPOSITORY_URL", repo_url, public=False),
        _var("CI_COMMIT_SHA", spec.sha, public=True),
        _var("CI_COMMIT_BEFORE_SHA", spec.before_sha, public=True),
        _var("CI_COMMIT_REF_NAME", spec.ref, public=True),
        _var("CI_COMMIT_BRANCH" if spec.ref_type == "branch" else "CI_COMMIT_TAG", spec.ref, public=True),
        _var("CI_REGISTRY_USER", "gitlab-ci-token", public=True),
        _var("CI_REGISTRY_PASSWORD", token, public=False, masked=True),
        _var("GITLAB_CI", "true", public=True),
        _var("CI", "true", public=True),
    ]
    steps: list[dict[str, Any]] = [
        {
            "name": "script",
            "script": [*spec.before_script, *spec.script],
            "timeout": spec.timeout,
            "when": "on_success",
            "allow_failure": False,
        }
    ]
    if spec.after_script:
        steps.append(
            {
                "name": "after_script",
                "script": list(spec.after_script),
                "timeout": spec.timeout,
                "when": "always",
                "allow_failure": True,
            }
        )
    deps: list[dict[str, Any]] = []
    for dep in dependencies:
        entry: dict[str, Any] = {"id": dep.id, "name": dep.name, "token": token}
        archive = dep.artifacts.get("archive")
        if archive is not None:
            entry["artifacts_file"] = {"filename": archive.filename, "size": archive.size}
        deps.append(entry)
    pipeline_ref = f"refs/pipelines/{spec.pipeline_id}"
    if spec.ref_type == "branch":
        ref_spec = f"+refs/heads/{spec.ref}:refs/remotes/origin/{spec.ref}"
    else:
        ref_spec = f"+refs/tags/{spec.ref}:refs/tags/{spec.ref}"
    payload: dict[str, Any] = {
        "id": job.id,
        "token": token,
        "allow_git_fetch": True,
        "job_info": {
            "id": job.id,
            "name": spec.name,
            "stage": spec.stage,
            "pipeline_id": spec.pipeline_id,
            "project_id": spec.project_id,
            "project_name": project_name,
            "project_full_path": spec.repo,
            "namespace_id": namespace_id,
            "root_namespace_id": namespace_id,
            "time_in_queue_seconds": int(time.monotonic() - job.enqueued_at),
            "project_jobs_running_on_instance_runners_count": "+Inf",
            "queue_size": 0,
            "queue_depth": 1,
        },
        "git_info": {
            "repo_url": repo_url,
            "ref": spec.ref,
            "sha": spec.sha,
            "before_sha": spec.before_sha,
            "ref_type": spec.ref_type,
            "refspecs": [f"+{pipeline_ref}:{pipeline_ref}", ref_spec],
            "depth": spec.depth,
            "repo_object_format": "sha1",
            "protected": spec.ref_type == "branch" and spec.ref == "main",
        },
        "runner_info": {"uuid": None, "timeout": spec.timeout, "runner_session_url": None},
        "variables": [*predefined, *copy.deepcopy(list(spec.variables))],
        "steps": steps,
        "hooks": copy.deepcopy(list(spec.hooks)),
        "image": copy.deepcopy(spec.image),
        "services": copy.deepcopy(list(spec.services)),
        "artifacts": copy.deepcopy(list(spec.artifacts)) if spec.artifacts is not None else None,
        "cache": copy.deepcopy(list(spec.cache)),
        "credentials": [
            {
                "type": "registry",
                "url": "registry.example.com",
                "username": "gitlab-ci-token",
                "password": token,
            }
        ],
        "features": {"trace_sections": spec.trace_sections, "failure_reasons": list(spec.failure_reasons)},
        "dependencies": deps,
    }
    if spec.payload_overrides:
        deep_merge(payload, spec.payload_overrides)
    return payload


def normalize_image(image: str | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """An `image` entry with every key the fixture has."""
    if image is None:
        return None
    base: dict[str, Any] = {
        "name": "",
        "entrypoint": None,
        "ports": [],
        "executor_opts": {},
        "pull_policy": None,
    }
    if isinstance(image, str):
        base["name"] = image
        return base
    return deep_merge(base, image)


def normalize_service(service: str | Mapping[str, Any]) -> dict[str, Any]:
    """A `services[]` entry with every key the fixture has."""
    base = normalize_image(service if isinstance(service, str) else {})
    assert base is not None
    base.update({"alias": None, "command": None, "variables": []})
    if not isinstance(service, str):
        deep_merge(base, service)
    return base


def normalize_artifact(artifact: Mapping[str, Any]) -> dict[str, Any]:
    """An `artifacts[]` entry: the main archive by default."""
    base: dict[str, Any] = {
        "name": "artifacts",
        "untracked": False,
        "paths": [],
        "exclude": [],
        "when": "on_success",
        "expire_in": "1 week",
        "artifact_type": "archive",
        "artifact_format": "zip",
    }
    return deep_merge(base, artifact)


def normalize_cache(cache: Mapping[str, Any]) -> dict[str, Any]:
    """A `cache[]` entry with every key the fixture has."""
    base: dict[str, Any] = {
        "key": "default",
        "untracked": False,
        "paths": [],
        "policy": "pull-push",
        "when": "on_success",
        "fallback_keys": [],
    }
    return deep_merge(base, cache)


def normalize_variables(
    variables: Mapping[str, str] | Sequence[Mapping[str, Any]],
    masked: Mapping[str, str] | None,
) -> tuple[dict[str, Any], ...]:
    """User variables as payload entries; `file`/`raw` keys appear only when true, as GitLab sends them."""
    out: list[dict[str, Any]] = []
    if isinstance(variables, Mapping):
        out.extend(_var(k, v, public=False) for k, v in variables.items())
    else:
        for var in variables:
            entry = _var(str(var["key"]), str(var["value"]), public=bool(var.get("public", False)))
            entry["masked"] = bool(var.get("masked", False))
            for flag in ("file", "raw"):
                if var.get(flag):
                    entry[flag] = True
            out.append(entry)
    for key, value in (masked or {}).items():
        out.append(_var(key, value, public=False, masked=True))
    for entry in out:
        if entry["masked"] and len(entry["value"]) < 8:
            raise ValueError(
                f"masked variable {entry['key']} must be at least 8 characters (GitLab refuses it)"
            )
    return tuple(out)
