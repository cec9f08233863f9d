"""The GitLab runner API client and its errors."""

from kuberunner.gitlab.client import (
    FEATURES,
    GitLabClient,
    JobRequest,
    RegisteredRunner,
    RetryPolicy,
    TracePatch,
    UpdateAnswer,
    api_base,
    runner_info,
)
from kuberunner.gitlab.errors import (
    GitLabError,
    GitLabForbidden,
    GitLabGone,
    GitLabHTTPError,
    GitLabNotFound,
    GitLabTooLarge,
    GitLabUnreachable,
)

__all__ = [
    "FEATURES",
    "GitLabClient",
    "GitLabError",
    "GitLabForbidden",
    "GitLabGone",
    "GitLabHTTPError",
    "GitLabNotFound",
    "GitLabTooLarge",
    "GitLabUnreachable",
    "JobRequest",
    "RegisteredRunner",
    "RetryPolicy",
    "TracePatch",
    "UpdateAnswer",
    "api_base",
    "runner_info",
]
