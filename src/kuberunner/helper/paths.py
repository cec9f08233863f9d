"""Which files an artifacts or cache step archives, with GitLab's path semantics.

- ``paths`` are relative to the project directory (absolute paths inside it are
  accepted); a directory includes everything under it; globs follow doublestar
  (``*``, ``?``, ``[a-z]``, ``{a,b}``, ``**`` for any number of directories).
- ``exclude`` patterns use the same globs but are not recursive: they are
  matched against each collected path (``dist/**`` excludes a whole tree).
- ``untracked`` adds what ``git ls-files --others`` lists. Like gitlab-runner,
  ignored files are included: GitLab documents that ``untracked`` ignores
  ``.gitignore``.
- Nothing outside the project directory is ever collected, also not through a
  symbolic link in a parent directory; symbolic links themselves are archived
  as links, never followed.
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kuberunner.helper.log import Log

__all__ = ["FileSet", "collect", "compile_glob", "split_pattern"]

_MAGIC = "*?[{"


def _has_magic(pattern: str) -> bool:
    return any(c in pattern for c in _MAGIC)


def split_pattern(pattern: str) -> tuple[str, str]:
    """Split ``pattern`` into the directory before its first glob segment and the rest."""
    first = min((i for i, c in enumerate(pattern) if c in _MAGIC), default=-1)
    if first < 0:
        return pattern, ""
    slash = pattern.rfind("/", 0, first)
    if slash < 0:
        return ".", pattern
    if slash == 0:
        return "/", pattern[1:]
    return pattern[:slash], pattern[slash + 1 :]


def _matching_close(text: str, start: int, open_c: str, close_c: str) -> int:
    depth = 0
    i = start
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == open_c:
            depth += 1
        elif c == close_c:
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _split_alternatives(body: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            current.append(body[i : i + 2])
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        if c == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(c)
        i += 1
    parts.append("".join(current))
    return parts


def _translate_segment(seg: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(seg):
        c = seg[i]
        if c == "\\" and i + 1 < len(seg):
            out.append(re.escape(seg[i + 1]))
            i += 2
        elif c == "*":
            while i < len(seg) and seg[i] == "*":
                i += 1
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            start = i + 1
            negate = seg[start : start + 1] in ("!", "^")
            if negate:
                start += 1
            end = seg.find("]", start + 1)
            if end < 0:
                out.append(re.escape(c))
                i += 1
                continue
            body = "".join(ch if ch == "-" else re.escape(ch) for ch in seg[start:end])
            out.append(f"[^/{body}]" if negate else f"[{body}]")
            i = end + 1
        elif c == "{":
            end = _matching_close(seg, i, "{", "}")
            if end < 0:
                out.append(re.escape(c))
                i += 1
                continue
            alternatives = _split_alternatives(seg[i + 1 : end])
            out.append("(?:" + "|".join(_translate_segment(a) for a in alternatives) + ")")
            i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def compile_glob(pattern: str) -> re.Pattern[str]:
    """Compile a doublestar pattern (relative, ``/``-separated) into a full-match regex."""
    segments = pattern.split("/")
    rx = ""
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == "**":
            if i > 0 and segments[i - 1] == "**":
                continue
            if i == 0:
                rx += ".*" if last else "(?:.*/)?"
            else:
                rx += "(?:/.*)?" if last else "/(?:.*/)?"
        else:
            if i > 0 and segments[i - 1] != "**":
                rx += "/"
            rx += _translate_segment(seg)
    return re.compile(rx, re.DOTALL)


@dataclass
class FileSet:
    """Collected entries: project-relative ``/`` paths mapped to their ``lstat``."""

    root: Path
    entries: dict[str, os.stat_result] = field(default_factory=dict)

    def names(self) -> list[str]:
        """Entries in a stable order (byte order, like gitlab-runner), so archives are reproducible."""
        return sorted(self.entries)

    def newest_mtime(self) -> float:
        return max((st.st_mtime for st in self.entries.values()), default=0.0)

    def __len__(self) -> int:
        return len(self.entries)


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class _Collector:
    def __init__(self, root: Path, exclude: Sequence[str], log: Log, *, verbose: bool) -> None:
        self.root = Path(os.path.abspath(root))
        self.real_root = os.path.realpath(self.root)
        self.log = log
        self.verbose = verbose
        self.files = FileSet(self.root)
        self.excluded: dict[str, int] = {}
        self.exclude: list[tuple[str, re.Pattern[str]]] = []
        for raw in exclude:
            if not raw:
                continue
            rel = self.relative_pattern(raw)
            if rel is None:
                log.warning(
                    f"{raw}: the exclude pattern is outside the project directory {self.root}, ignored"
                )
                continue
            self.exclude.append((raw, compile_glob(rel)))

    def relative_pattern(self, raw: str) -> str | None:
        """The pattern relative to the project directory, or None if it points outside it."""
        base, rest = split_pattern(raw) if _has_magic(raw) else (raw, "")
        abs_base = os.path.normpath(os.path.join(self.root, base))
        if not _within(abs_base, str(self.root)):
            return None
        rel = os.path.relpath(abs_base, self.root).replace(os.sep, "/")
        joined = posixpath.normpath(posixpath.join(rel, rest)) if rest else rel
        if joined == ".." or joined.startswith("../"):
            return None
        return joined

    def _safe_parent(self, rel: str) -> bool:
        parent = os.path.dirname(os.path.join(self.root, rel))
        return _within(os.path.realpath(parent), self.real_root)

    def _excluded_by(self, rel: str) -> str | None:
        for raw, rx in self.exclude:
            if rx.fullmatch(rel):
                return raw
        return None

    def _consider(self, rel: str, st: os.stat_result, seen: set[str]) -> None:
        rule = self._excluded_by(rel)
        if rule is not None:
            self.excluded[rule] = self.excluded.get(rule, 0) + 1
            return
        seen.add(rel)
        if rel not in self.files.entries and self.verbose:
            self.log.info(f"  {rel}")
        self.files.entries[rel] = st

    def _add_tree(self, rel: str, seen: set[str]) -> None:
        try:
            st = os.lstat(os.path.join(self.root, rel))
        except OSError:
            return
        if rel != ".":
            self._consider(rel, st, seen)
        if not _is_dir(st):
            return
        try:
            names = sorted(os.listdir(os.path.join(self.root, rel)))
        except OSError as exc:
            self.log.warning(f"{rel}: cannot list the directory: {exc.strerror}")
            return
        for name in names:
            self._add_tree(name if rel == "." else f"{rel}/{name}", seen)

    def _glob(self, rel_pattern: str) -> list[str]:
        rx = compile_glob(rel_pattern)
        start, _ = split_pattern(rel_pattern)
        start = "." if start in ("", "/") else start
        abs_start = os.path.join(self.root, start)
        if not os.path.isdir(abs_start) or not _within(os.path.realpath(abs_start), self.real_root):
            return []
        if start != "." and rx.fullmatch(start):
            return [start]
        # Without "**" a pattern cannot match deeper than its own segment count: don't walk further.
        max_depth = None if "**" in rel_pattern else rel_pattern.count("/") + 1
        matches: list[str] = []
        stack = [start]
        while stack:
            current = stack.pop()
            try:
                with os.scandir(os.path.join(self.root, current)) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError:
                continue
            for entry in entries:
                rel = entry.name if current == "." else f"{current}/{entry.name}"
                if rx.fullmatch(rel):
                    matches.append(rel)
                elif entry.is_dir(follow_symlinks=False) and (
                    max_depth is None or rel.count("/") + 1 < max_depth
                ):
                    stack.append(rel)
        return sorted(matches)

    def add_path(self, raw: str) -> None:
        if raw == "":
            self.log.warning("No matching files. Path is empty.")
            return
        rel = self.relative_pattern(raw)
        if rel is None:
            self.log.warning(
                f"{raw}: the path is outside the project directory {self.root}, ignored "
                "(artifact and cache paths must be relative to the project directory)"
            )
            return
        matches = self._glob(rel) if _has_magic(rel) else ([rel] if self._exists(rel) else [])
        seen: set[str] = set()
        for match in matches:
            if match != "." and not self._safe_parent(match):
                self.log.warning(
                    f"{raw}: {match} is reached through a symbolic link that leads outside "
                    f"the project directory {self.root}, ignored"
                )
                continue
            self._add_tree(match, seen)
        if seen:
            self.log.info(f"{raw}: found {len(seen)} matching artifact files and directories")
        else:
            self.log.warning(
                f"{raw}: no matching files. Ensure that the artifact path is relative to "
                f"the working directory ({self.root})"
            )

    def _exists(self, rel: str) -> bool:
        return os.path.lexists(os.path.join(self.root, rel))

    def add_untracked(self) -> None:
        try:
            proc = subprocess.run(
                ["git", "ls-files", "--others", "-z"],
                cwd=self.root,
                capture_output=True,
                check=False,
            )
        except FileNotFoundError:
            self.log.warning(
                "untracked: git is not installed in this image, so untracked files cannot be listed"
            )
            return
        if proc.returncode != 0:
            detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            first = detail[0] if detail else f"exit code {proc.returncode}"
            if "not a git repository" in first:
                self.log.warning(
                    f"untracked: {self.root} is not a git repository, so no untracked files are added"
                )
            else:
                self.log.warning(f"untracked: git ls-files failed: {first}")
            return
        seen: set[str] = set()
        for raw in proc.stdout.decode("utf-8", "surrogateescape").split("\0"):
            rel = raw.rstrip("/")
            if not rel or not self._safe_parent(rel):
                continue
            try:
                st = os.lstat(os.path.join(self.root, rel))
            except OSError:
                continue
            self._consider(rel, st, seen)
        if seen:
            self.log.info(f"untracked: found {len(seen)} files")
        else:
            self.log.warning("untracked: no files")

    def finish(self) -> FileSet:
        for rule, count in self.excluded.items():
            self.log.info(f"{rule}: excluded {count} files")
        return self.files


def _is_dir(st: os.stat_result) -> bool:
    return stat.S_ISDIR(st.st_mode)


def collect(
    root: Path,
    paths: Iterable[str],
    *,
    exclude: Sequence[str] = (),
    untracked: bool = False,
    log: Log,
    verbose: bool = False,
) -> FileSet:
    """Collect what ``paths``/``untracked`` select under ``root``, minus ``exclude``, reporting each step."""
    collector = _Collector(root, exclude, log, verbose=verbose)
    for raw in paths:
        collector.add_path(raw)
    if untracked:
        collector.add_untracked()
    return collector.finish()
