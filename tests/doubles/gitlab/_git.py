"""Git for the double: small bare repositories for tests, and smart HTTP through real `git http-backend`."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ._http import Request, Response

_IDENTITY = "Double Tester <double@example.com>"
_EPOCH = 1_700_000_000
"""Fixed commit dates so that the same content always gives the same shas."""


def _git_env(home: Path) -> dict[str, str]:
    """A minimal environment: no user or system git config can change what the tests see."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "safe.directory",
        "GIT_CONFIG_VALUE_0": "*",
        "LC_ALL": "C",
    }


@dataclass(frozen=True)
class BareRepo:
    """A bare repository made by `make_bare_repo`: its path, branch and commit shas (oldest first)."""

    path: Path
    branch: str
    commits: tuple[str, ...]

    @property
    def head(self) -> str:
        """The branch tip."""
        return self.commits[-1]


def make_bare_repo(
    directory: Path,
    *,
    name: str = "webapp",
    branch: str = "main",
    commits: int = 2,
    files: Mapping[str, str] | None = None,
) -> BareRepo:
    """Create `directory/<name>.git` with `commits` commits on `branch` (deterministic shas).

    The first commit adds `files` (path -> text) and a README; each later commit rewrites the README.
    """
    if commits < 1:
        raise ValueError("a repository needs at least one commit")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.git"
    env = _git_env(directory)
    subprocess.run(
        ["git", "init", "--quiet", "--bare", f"--initial-branch={branch}", str(path)],
        env=env,
        check=True,
        capture_output=True,
    )
    stream = bytearray()
    for number in range(1, commits + 1):
        changed = {"README.md": f"# {name}\n\ncommit {number}\n"}
        if number == 1:
            changed.update(files or {})
        msg = f"commit {number}\n".encode()
        when = f"{_EPOCH + number * 60} +0000"
        stream += f"commit refs/heads/{branch}\nmark :{number}\n".encode()
        stream += f"author {_IDENTITY} {when}\ncommitter {_IDENTITY} {when}\n".encode()
        stream += f"data {len(msg)}\n".encode() + msg
        for file_path, text in changed.items():
            data = text.encode()
            stream += f"M 100644 inline {file_path}\ndata {len(data)}\n".encode() + data + b"\n"
        stream += b"\n"
    marks = directory / f".{name}.marks"
    subprocess.run(
        ["git", f"--git-dir={path}", "fast-import", "--quiet", f"--export-marks={marks}"],
        input=bytes(stream),
        env=env,
        check=True,
        capture_output=True,
    )
    by_mark = dict(line.split(" ", 1) for line in marks.read_text().split("\n") if line)
    marks.unlink()
    shas = tuple(by_mark[f":{n}"].strip() for n in range(1, commits + 1))
    return BareRepo(path=path, branch=branch, commits=shas)


def rev_parse(repo_dir: Path, ref: str) -> str | None:
    """The sha `ref` points to in `repo_dir`, or None if it does not resolve."""
    done = subprocess.run(
        ["git", f"--git-dir={repo_dir}", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        env=_git_env(repo_dir.parent),
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() if done.returncode == 0 else None


def update_ref(repo_dir: Path, ref: str, sha: str) -> None:
    """Point `ref` at `sha`, as GitLab creates `refs/pipelines/<id>` for every pipeline."""
    subprocess.run(
        ["git", f"--git-dir={repo_dir}", "update-ref", ref, sha],
        env=_git_env(repo_dir.parent),
        check=True,
        capture_output=True,
    )


def http_backend(repo_dir: Path, rest: str, request: Request, remote_user: str) -> Response:
    """Serve one smart-HTTP request for `repo_dir` through `git http-backend` (CGI).

    `rest` is what follows the repository in the URL (`/info/refs`, `/git-upload-pack`). The request
    body is already de-chunked; a gzip Content-Encoding is left for http-backend to inflate.
    """
    env = _git_env(repo_dir.parent)
    env.update(
        {
            "GIT_PROJECT_ROOT": str(repo_dir.parent),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": f"/{repo_dir.name}{rest}",
            "QUERY_STRING": request.query_string,
            "REQUEST_METHOD": request.method,
            "CONTENT_TYPE": request.header("Content-Type") or "",
            "CONTENT_LENGTH": str(len(request.body)),
            "REMOTE_USER": remote_user,
            "REMOTE_ADDR": "127.0.0.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
        }
    )
    for header, variable in (
        ("Git-Protocol", "HTTP_GIT_PROTOCOL"),
        ("Content-Encoding", "HTTP_CONTENT_ENCODING"),
    ):
        value = request.header(header)
        if value:
            env[variable] = value
    done = subprocess.run(
        ["git", "http-backend"],
        input=request.body,
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    head, sep, body = done.stdout.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = done.stdout.partition(b"\n\n")
    if not sep:
        return Response(500, [("Content-Type", "text/plain")], b"git http-backend gave no CGI headers\n")
    status = 200
    headers: list[tuple[str, str]] = []
    for line in head.decode("latin-1").splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "status":
            status = int(value.split()[0])
        elif key.strip():
            headers.append((key.strip(), value.strip()))
    return Response(status, headers, body)
