"""Facts about the local git repository that GitLab would know about a pipeline.

``kuberunner exec`` has no GitLab server to ask, so the branch, commit, project path
and user come from ``git`` itself (subprocesses, no library): the remote
``origin`` gives the server host and project path, ``refs/remotes/origin/HEAD``
the default branch, ``git config user.*`` the triggering user.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kuberunner.pipeline.errors import PipelineError

__all__ = ["GitData", "parse_remote", "read_git_data", "slugify"]

_ZERO_SHA = "0" * 40


@dataclass(frozen=True)
class GitData:
    """What the local repository says about the commit a local pipeline runs for."""

    sha: str
    ref: str
    is_tag: bool
    title: str
    message: str
    timestamp: str
    author: str
    default_branch: str
    remote_url: str
    server_host: str
    server_port: str
    project_path: str
    user_name: str
    user_email: str
    before_sha: str = _ZERO_SHA

    @property
    def has_commit(self) -> bool:
        """False for a project outside any git repository: it has no commit, branch or tag."""
        return bool(self.sha)

    @property
    def project_name(self) -> str:
        return self.project_path.rsplit("/", 1)[-1]

    @property
    def project_namespace(self) -> str:
        return self.project_path.rsplit("/", 1)[0] if "/" in self.project_path else ""


def _git(cwd: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout.rstrip("\n")


_SCP_LIKE = re.compile(r"^(?:(?P<user>[^@/]+)@)?(?P<host>[^:/]+):(?P<path>[^/].*)$")
_URL_LIKE = re.compile(
    r"^(?P<scheme>[a-z+]+)://(?:[^@/]+@)?(?P<host>[^:/]+)(?::(?P<port>\d+))?/(?P<path>.+)$"
)


def parse_remote(url: str) -> tuple[str, str, str] | None:
    """``(host, port, project path)`` of a git remote URL (ssh, scp-like or http[s])."""
    m = _URL_LIKE.match(url)
    if m:
        scheme = m.group("scheme")
        port = m.group("port") or ("443" if scheme == "https" else "80" if scheme == "http" else "443")
        if scheme in {"ssh", "git+ssh", "ssh+git"}:
            port = "443"
        path = m.group("path")
    else:
        m = _SCP_LIKE.match(url)
        if not m:
            return None
        port = "443"
        path = m.group("path")
    path = path.strip("/")
    if path.endswith(".git"):
        path = path[: -len(".git")]
    if not path:
        return None
    return m.group("host"), port, path


def slugify(value: str, limit: int = 63) -> str:
    """GitLab's ref/job-name slug: lowercase, ``[^a-z0-9]`` runs become ``-``, trimmed, at most ``limit``."""
    slug = re.sub(r"[^a-z0-9]+", "-", value.lower())
    slug = slug.strip("-")[:limit]
    return slug.rstrip("-")


def read_git_data(project_dir: Path) -> GitData:
    """Read the repository at ``project_dir``.

    A directory outside any git work tree (an unpacked tarball) is a project without
    a commit: empty ``sha``/``ref`` (see :attr:`GitData.has_commit`), project ``local/<dir>``.
    """
    top = _git(project_dir, "rev-parse", "--show-toplevel")
    if top is None:
        return GitData(
            sha="",
            ref="",
            is_tag=False,
            title="",
            message="",
            timestamp="",
            author="",
            default_branch="main",
            remote_url="",
            server_host="gitlab.com",
            server_port="443",
            project_path=f"local/{slugify(project_dir.resolve().name) or 'project'}",
            user_name="",
            user_email="",
            before_sha="",
        )
    sha = _git(project_dir, "rev-parse", "HEAD")
    if sha is None:
        raise PipelineError(f"{project_dir}: the git repository has no commit yet (commit your files first)")
    branch = _git(project_dir, "symbolic-ref", "--quiet", "--short", "HEAD")
    is_tag = False
    if branch:
        ref = branch
    else:
        tag = _git(project_dir, "describe", "--tags", "--exact-match", "HEAD")
        if tag:
            ref, is_tag = tag, True
        else:
            ref = sha
    message = _git(project_dir, "log", "-1", "--format=%B", "HEAD") or ""
    message = message.rstrip("\n")
    title = message.split("\n", 1)[0]
    timestamp = _git(project_dir, "log", "-1", "--format=%cI", "HEAD") or ""
    author = _git(project_dir, "log", "-1", "--format=%an <%ae>", "HEAD") or ""
    default_ref = _git(project_dir, "symbolic-ref", "--quiet", "--short", "refs/remotes/origin/HEAD")
    if default_ref and "/" in default_ref:
        default_branch = default_ref.split("/", 1)[1]
    else:
        configured = _git(project_dir, "config", "init.defaultBranch")
        default_branch = configured or "main"
    remote_url = _git(project_dir, "remote", "get-url", "origin") or ""
    parsed = parse_remote(remote_url) if remote_url else None
    if parsed is None:
        host, port, path = "gitlab.com", "443", f"local/{Path(top).name}"
    else:
        host, port, path = parsed
    user_name = _git(project_dir, "config", "user.name") or ""
    user_email = _git(project_dir, "config", "user.email") or ""
    return GitData(
        sha=sha,
        ref=ref,
        is_tag=is_tag,
        title=title,
        message=message,
        timestamp=timestamp,
        author=author,
        default_branch=default_branch,
        remote_url=remote_url,
        server_host=host,
        server_port=port,
        project_path=path,
        user_name=user_name,
        user_email=user_email,
    )
