"""The local pipeline model behind ``kuberunner exec``.

:func:`load_pipeline` reads a ``.gitlab-ci.yml`` (includes, ``extends``,
``!reference``, ``spec:inputs``, rules, ``parallel``...) for a local git project;
the resulting :class:`Pipeline` lists its jobs, previews the expanded
configuration, chooses the jobs of a run (:meth:`Pipeline.select`) and
:func:`to_payload` turns a job into the payload GitLab would have sent.
Every configuration problem is a :class:`PipelineError` naming file, line and column.
"""

from __future__ import annotations

from kuberunner.pipeline.errors import Location, PipelineError, Problem
from kuberunner.pipeline.inputs import InputValues
from kuberunner.pipeline.model import (
    ArtifactsSpec,
    CacheSpec,
    EnvironmentSpec,
    ImageSpec,
    Need,
    PipelineJob,
    PipelineVariable,
    RetrySpec,
    ServiceSpec,
)
from kuberunner.pipeline.payload import to_payload
from kuberunner.pipeline.pipeline import Pipeline, ScopedJob, ScopedJobs, load_pipeline, read_variables_file

__all__ = [
    "ArtifactsSpec",
    "CacheSpec",
    "EnvironmentSpec",
    "ImageSpec",
    "InputValues",
    "Location",
    "Need",
    "Pipeline",
    "PipelineError",
    "PipelineJob",
    "PipelineVariable",
    "Problem",
    "RetrySpec",
    "ScopedJob",
    "ScopedJobs",
    "ServiceSpec",
    "load_pipeline",
    "read_variables_file",
    "to_payload",
]
