"""A contract-faithful GitLab for tests: the runner API of `shared/docs/gitlab-runner-api.md` on 127.0.0.1.

    with GitLabDouble() as gitlab:
        runner = gitlab.create_runner()
        job = gitlab.enqueue(script=["echo hi"], masked={"DEPLOY_TOKEN": "s3cr3tV4lu3"})
        ...  # point the runner at gitlab.url with runner.token
        assert job.wait_finished() == "success" and job.checksum_ok

Fault injection: `gitlab.faults.add("jobs/request", 503)`; recording: `gitlab.requests`; the pytest
fixture `gitlab` (in `fixtures.py`) fails a test whose client broke the contract.
"""

from __future__ import annotations

from ._faults import ENDPOINTS, Fault, FaultPlan
from ._git import BareRepo, make_bare_repo
from ._model import (
    FAILURE_REASONS,
    KUBERNETES_FEATURES,
    Artifact,
    JobHandle,
    RecordedRequest,
    RunnerRecord,
    Violation,
)
from ._server import TRACE_PATCH_LIMIT, GitLabDouble

__all__ = [
    "ENDPOINTS",
    "FAILURE_REASONS",
    "KUBERNETES_FEATURES",
    "TRACE_PATCH_LIMIT",
    "Artifact",
    "BareRepo",
    "Fault",
    "FaultPlan",
    "GitLabDouble",
    "JobHandle",
    "RecordedRequest",
    "RunnerRecord",
    "Violation",
    "make_bare_repo",
]
