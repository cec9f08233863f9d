"""Facts about the local git repository that GitLab would know about a pipeline.

``kuberunner exec`` has no GitLab server to ask, so the branch, commit, project path
and user come from ``git`` itself (subprocesses, no library): the remote
``origin`` gives the server host and project path, ``refs/remotes/origin/HEAD``
the default branch, ``git config user.*`` the triggering user.

Each ``git`` process costs a few milliseconds of every ``kuberunner exec``, so questions
that one command can answer share it (five processes for a branch, six for a detached
HEAD). Where a shared answer could mean more than one thing (no commit yet, an unusual
HEAD), each question is asked on its own as ``git`` would answer it alone.
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


def _run_git(cwd: Path, *args: str) -> tuple[bool, str]:
    """Whether ``git args`` succeeded, and what it printed (empty when it could not start)."""
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
        return False, ""
    return proc.returncode == 0, proc.stdout


def _git(cwd: Path, *args: str) -> str | None:
    ok, out = _run_git(cwd, *args)
    return out.rstrip("\n") if ok else None


def _head(cwd: Path) -> tuple[str, str, str | None] | None:
    """``(work tree top, HEAD's sha, branch or None when detached)``, or None outside a work tree.

    One ``git rev-parse --show-toplevel HEAD --abbrev-ref=loose HEAD`` answers all three:
    ``--abbrev-ref=loose`` shortens the branch as ``git symbolic-ref --short`` does, and
    prints ``HEAD`` only for a detached HEAD (a branch called HEAD would be ``heads/HEAD``).
    rev-parse prints each answer in turn, and nothing at all outside a work tree. Any other
    failure or shape (no commit yet, a path with a line break) asks each question alone.
    """
    ok, out = _run_git(cwd, "rev-parse", "--show-toplevel", "HEAD", "--abbrev-ref=loose", "HEAD")
    lines = out.split("\n")
    if ok and len(lines) == 4 and all(lines[:3]) and not lines[3]:
        top, sha, short = lines[:3]
        return top, sha, None if short == "HEAD" else short
    if not ok and not out:
        return None
    alone_top = _git(cwd, "rev-parse", "--show-toplevel")
    if alone_top is None:
        return None
    alone_sha = _git(cwd, "rev-parse", "HEAD")
    if alone_sha is None:
        raise PipelineError(f"{cwd}: the git repository has no commit yet (commit your files first)")
    return alone_top, alone_sha, _git(cwd, "symbolic-ref", "--quiet", "--short", "HEAD")


def _commit(cwd: Path) -> tuple[str, str, str]:
    """HEAD's ``(message, committer date, author)`` from one ``git log``, each as
    ``git log -1 --format=<one field>`` prints it ("" when git fails).

    The fields are NUL-separated (git refuses NUL in a commit message, names and dates have
    none) and the message comes last, so whatever it holds stays in it. A signature's
    verdict (``log.showSignature``) is no part of the commit GitLab would see: not asked for.
    """
    out = _git(cwd, "log", "-1", "--no-show-signature", "--format=%x00%cI%x00%an <%ae>%x00%B", "HEAD")
    if out is None:
        return "", "", ""
    parts = out.split("\0", 3)
    if len(parts) != 4:  # not this format's output: ask for each field on its own
        message = _git(cwd, "log", "-1", "--no-show-signature", "--format=%B", "HEAD") or ""
        timestamp = _git(cwd, "log", "-1", "--no-show-signature", "--format=%cI", "HEAD") or ""
        author = _git(cwd, "log", "-1", "--no-show-signature", "--format=%an <%ae>", "HEAD") or ""
        return message.rstrip("\n"), timestamp, author
    prefix, timestamp, author, message = parts
    return (prefix + message).rstrip("\n"), (prefix + timestamp).rstrip("\n"), (prefix + author).rstrip("\n")


_CONFIG_KEYS = ("user.name", "user.email", "init.defaultbranch")


def _config(cwd: Path) -> dict[str, str]:
    """The value ``git config KEY`` prints for each of :data:`_CONFIG_KEYS` that is set.

    One ``git config -z --get-regexp`` lists every value of the three keys (git lowercases
    section and key names) in the order git reads them; the last one is the one
    ``git config KEY`` prints. ``-z`` keeps values with line breaks whole; a key without a
    value (``[user] name``) reads as empty, as it does alone.
    """
    out = _git(cwd, "config", "-z", "--get-regexp", r"^(user\.(name|email)|init\.defaultbranch)$")
    values: dict[str, str] = {}
    for entry in (out or "").split("\0"):
        key, _, value = entry.partition("\n")
        if key in _CONFIG_KEYS:
            values[key] = value.rstrip("\n")
    return values


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
    head = _head(project_dir)
    if head is None:
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
    top, sha, branch = head
    is_tag = False
    if branch:
        ref = branch
    else:
        tag = _git(project_dir, "describe", "--tags", "--exact-match", "HEAD")
        if tag:
            ref, is_tag = tag, True
        else:
            ref = sha
    message, timestamp, author = _commit(project_dir)
    title = message.split("\n", 1)[0]
    config = _config(project_dir)
    default_ref = _git(project_dir, "symbolic-ref", "--quiet", "--short", "refs/remotes/origin/HEAD")
    if default_ref and "/" in default_ref:
        default_branch = default_ref.split("/", 1)[1]
    else:
        default_branch = config.get("init.defaultbranch") or "main"
    remote_url = _git(project_dir, "remote", "get-url", "origin") or ""
    parsed = parse_remote(remote_url) if remote_url else None
    if parsed is None:
        host, port, path = "gitlab.com", "443", f"local/{Path(top).name}"
    else:
        host, port, path = parsed
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
        user_name=config.get("user.name", ""),
        user_email=config.get("user.email", ""),
    )
