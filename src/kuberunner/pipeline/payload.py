"""Building the job payload GitLab would send for a local job.

``kuberunner exec`` hands executors the same :class:`~kuberunner.job.JobPayload`
as a real GitLab job, so nothing downstream knows the difference. ``dependencies``
(artifacts of earlier jobs) are left empty: the runner fills them in once the
jobs they come from have run.
"""

from __future__ import annotations

from pathlib import Path

from kuberunner.job import (
    Artifact,
    Cache,
    Features,
    GitInfo,
    Hook,
    Image,
    JobInfo,
    JobPayload,
    JobVariable,
    RunnerInfo,
    Service,
    ServiceVariable,
    Step,
)
from kuberunner.pipeline.model import ImageSpec, PipelineJob, PipelineVariable, ServiceSpec
from kuberunner.pipeline.pipeline import Pipeline

__all__ = ["to_payload"]

DEFAULT_TIMEOUT = 3600
_REPORT_FORMATS = {"dotenv": "gzip", "junit": "gzip", "cobertura": "gzip", "coverage_report": "gzip"}


def _executor_opts(image: ImageSpec) -> dict[str, object]:
    opts: dict[str, object] = {}
    if image.docker:
        opts["docker"] = dict(image.docker)
    if image.kubernetes:
        opts["kubernetes"] = dict(image.kubernetes)
    return opts


def _image(image: ImageSpec) -> Image:
    return Image(
        name=image.name,
        entrypoint=list(image.entrypoint) if image.entrypoint is not None else None,
        pull_policy=list(image.pull_policy) if image.pull_policy is not None else None,
        executor_opts=_executor_opts(image),
    )


def _service(service: ServiceSpec) -> Service:
    return Service(
        name=service.name,
        entrypoint=list(service.entrypoint) if service.entrypoint is not None else None,
        pull_policy=list(service.pull_policy) if service.pull_policy is not None else None,
        executor_opts=_executor_opts(service),
        alias=service.alias,
        command=list(service.command) if service.command is not None else None,
        variables=[ServiceVariable(key=k, value=v) for k, v in service.variables.items()],
    )


def _artifacts(job: PipelineJob) -> list[Artifact]:
    spec = job.artifacts
    if spec is None:
        return []
    out: list[Artifact] = []
    if spec.paths or spec.untracked:
        out.append(
            Artifact(
                name=spec.name or "",
                untracked=spec.untracked,
                paths=list(spec.paths),
                exclude=list(spec.exclude),
                when=spec.when,
                expire_in=spec.expire_in,
                artifact_type="archive",
                artifact_format="zip",
            )
        )
    for report, paths in spec.reports.items():
        out.append(
            Artifact(
                name=report,
                paths=list(paths),
                when="always",
                expire_in=spec.expire_in,
                artifact_type=report,
                artifact_format=_REPORT_FORMATS.get(report, "raw"),
            )
        )
    return out


def to_payload(
    job: PipelineJob, pipeline: Pipeline, *, job_id: int, project_dir: Path, token: str
) -> JobPayload:
    """The payload GitLab would send for ``job`` (``token`` becomes the masked ``CI_JOB_TOKEN``)."""
    git = pipeline.git
    extra = {
        "CI_JOB_ID": PipelineVariable(str(job_id)),
        "CI_JOB_URL": PipelineVariable(f"{pipeline.predefined['CI_PROJECT_URL']}/-/jobs/{job_id}"),
        "CI_JOB_TOKEN": PipelineVariable(token, masked=True),
        "CI_BUILDS_DIR": PipelineVariable(str(project_dir.resolve().parent)),
    }
    variables = [
        JobVariable(
            key=key,
            value=var.value,
            public=public and not var.masked,
            masked=var.masked,
            file=var.file,
            raw=var.raw,
        )
        for key, var, public in pipeline.job_variables(job, extra)
    ]
    steps = [
        Step(
            name="script",
            script=[*job.before_script, *job.script],
            timeout=job.timeout or DEFAULT_TIMEOUT,
            when="on_success",
            allow_failure=False,
        )
    ]
    if job.after_script:
        steps.append(
            Step(
                name="after_script",
                script=list(job.after_script),
                timeout=job.timeout or DEFAULT_TIMEOUT,
                when="always",
                allow_failure=True,
            )
        )
    hooks = (
        [Hook(name="pre_get_sources_script", script=list(job.pre_get_sources_script))]
        if job.pre_get_sources_script
        else []
    )
    return JobPayload(
        id=job_id,
        token=token,
        allow_git_fetch=True,
        job_info=JobInfo(
            id=job_id,
            name=job.name,
            stage=job.stage,
            pipeline_id=pipeline.pipeline_id,
            project_id=int(pipeline.predefined.get("CI_PROJECT_ID", "1")),
            project_name=git.project_name,
            project_full_path=git.project_path,
        ),
        git_info=GitInfo(
            repo_url=project_dir.resolve().as_uri(),
            ref=git.ref,
            sha=git.sha,
            before_sha=git.before_sha,
            ref_type="tag" if git.is_tag else "branch",
            refspecs=[]
            if not git.has_commit
            else [f"+refs/tags/{git.ref}:refs/tags/{git.ref}"]
            if git.is_tag
            else [f"+refs/heads/{git.ref}:refs/remotes/origin/{git.ref}"],
            depth=0,
        ),
        runner_info=RunnerInfo(timeout=job.timeout or DEFAULT_TIMEOUT),
        variables=variables,
        steps=steps,
        hooks=hooks,
        image=_image(job.image) if job.image is not None else None,
        services=[_service(s) for s in job.services],
        artifacts=_artifacts(job),
        cache=[
            Cache(
                key=c.key,
                untracked=c.untracked,
                paths=list(c.paths),
                policy=c.policy,
                when=c.when,
                fallback_keys=list(c.fallback_keys),
            )
            for c in job.cache
        ],
        features=Features(trace_sections=True),
        dependencies=[],
    )
