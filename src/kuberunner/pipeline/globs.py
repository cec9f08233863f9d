"""Glob matching for ``include:local`` wildcards and ``rules:exists``.

GitLab documents two slightly different behaviours, both reproduced here:

* ``include:local``: ``*`` stays within one directory, ``**`` not followed by ``/``
  crosses directories (``configs/**.yml`` = every ``.yml`` under ``configs``), and
  ``**/`` stands for *one or more* directories (``configs/**/*.yml`` = only files in
  sub-folders of ``configs``).
* ``rules:exists``: Ruby's ``File.fnmatch`` with ``FNM_PATHNAME | FNM_DOTMATCH |
  FNM_EXTGLOB``: ``**/`` is *zero* or more directories and ``{a,b}`` alternation works.

Dot files match ``*`` in both (GitLab matches with ``FNM_DOTMATCH``).
"""

from __future__ import annotations

import os
import re
import subprocess
from functools import lru_cache
from pathlib import Path

__all__ = ["exists_regex", "include_regex", "is_glob", "project_files"]


def is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[{")


def _translate(pattern: str, *, double_star_dir: str) -> str:
    out: list[str] = []
    i = 0
    n = len(pattern)
    depth = 0
    while i < n:
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**/", i):
                out.append(double_star_dir)
                i += 3
                continue
            if pattern.startswith("**", i):
                out.append(".*")
                i += 2
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end + 1
                continue
        elif c == "{":
            depth += 1
            out.append("(?:")
        elif c == "}" and depth:
            depth -= 1
            out.append(")")
        elif c == "," and depth:
            out.append("|")
        elif c == "\\" and i + 1 < n:
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


@lru_cache(maxsize=256)
def include_regex(pattern: str) -> re.Pattern[str]:
    """Regex for an ``include:local`` wildcard, relative to the project root."""
    return re.compile(_translate(pattern.lstrip("/"), double_star_dir="(?:[^/]+/)+") + r"\Z")


@lru_cache(maxsize=256)
def exists_regex(pattern: str) -> re.Pattern[str]:
    """Regex for a ``rules:exists`` pattern, relative to the project root."""
    return re.compile(_translate(pattern.lstrip("/"), double_star_dir="(?:.*/)?") + r"\Z")


def project_files(root: Path) -> list[str]:
    """The project's files as GitLab would see them once committed (POSIX paths relative to ``root``).

    That is git's tracked plus untracked-but-not-ignored files (so ``node_modules/`` and
    other ignored output do not count, nor slow the search); outside a git work tree,
    every file but ``.git``.
    """
    try:
        proc = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "."],
            cwd=root,
            capture_output=True,
            check=False,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        proc = None
    if proc is not None and proc.returncode == 0:
        names = {n for n in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if n}
        return sorted(n for n in names if (root / n).is_file())
    files: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != ".git")
        rel_dir = os.path.relpath(dirpath, root)
        for name in sorted(filenames):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            files.append(rel.replace(os.sep, "/"))
    return files
