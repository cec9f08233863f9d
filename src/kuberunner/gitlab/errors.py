"""Errors of the GitLab client. One tree, translated from httpx at one boundary.

GitLabError
├── GitLabUnreachable      network error, TLS failure, timeout (after retries)
└── GitLabHTTPError        an answer with a status the call does not accept
    ├── GitLabForbidden    401/403: bad runner or job token, job no longer ours
    ├── GitLabNotFound     404
    ├── GitLabGone         410: e.g. registration with tokens disabled
    └── GitLabTooLarge     413
"""

from __future__ import annotations

__all__ = [
    "GitLabError",
    "GitLabForbidden",
    "GitLabGone",
    "GitLabHTTPError",
    "GitLabNotFound",
    "GitLabTooLarge",
    "GitLabUnreachable",
]


class GitLabError(Exception):
    """Anything that went wrong talking to GitLab. Messages never contain tokens."""


class GitLabUnreachable(GitLabError):
    pass


class GitLabHTTPError(GitLabError):
    def __init__(self, endpoint: str, status: int, message: str) -> None:
        self.endpoint = endpoint
        self.status = status
        self.server_message = message
        super().__init__(f"{endpoint}: {status} {message}".rstrip())


class GitLabForbidden(GitLabHTTPError):
    pass


class GitLabNotFound(GitLabHTTPError):
    pass


class GitLabGone(GitLabHTTPError):
    pass


class GitLabTooLarge(GitLabHTTPError):
    pass


def error_for(endpoint: str, status: int, message: str) -> GitLabHTTPError:
    cls: type[GitLabHTTPError] = {
        401: GitLabForbidden,
        403: GitLabForbidden,
        404: GitLabNotFound,
        410: GitLabGone,
        413: GitLabTooLarge,
    }.get(status, GitLabHTTPError)
    return cls(endpoint, status, message)
