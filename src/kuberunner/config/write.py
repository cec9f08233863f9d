"""Editing config.toml in place: comments and layout kept, the file replaced atomically.

``kuberunner register``/``unregister`` and ``rbac --write`` change one thing
in a file people maintain by hand, so everything else in it (comments, key
order, indentation) must survive. Writes go to a temporary file in the same
directory, mode 0600 (the file holds tokens), then replace the original in one
rename, so a crash never leaves half a config behind. A change that would
make the file invalid is refused before anything is written.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import tomlkit
from pydantic import ValidationError
from tomlkit.container import Container
from tomlkit.items import AoT, Table

from kuberunner.config.load import ConfigError, Problem, display_key
from kuberunner.config.schema import Config

__all__ = ["add_runner", "remove_runner", "set_key", "write_atomic"]

_NEW_FILE = "concurrent = 1\ncheck_interval = 0\n"


def write_atomic(path: Path, text: str, *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``text`` in one rename; the new file has ``mode``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable where the OS allows it
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _read(path: Path, *, create: bool) -> tomlkit.TOMLDocument:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if not create:
            raise ConfigError(
                f"{path}: config file not found",
                [
                    Problem(
                        path,
                        None,
                        "",
                        "error",
                        "config file not found",
                        "create it with `kuberunner register`, or pass --config PATH",
                    )
                ],
            ) from None
        text = _NEW_FILE
    try:
        return tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as exc:
        problem = Problem(
            path,
            exc.line,
            "",
            "error",
            f"TOML syntax error (column {exc.col})",
            "fix the syntax first: `kuberunner config check` explains it",
        )
        raise ConfigError(f"{path}: cannot edit a file that is not valid TOML", [problem]) from None


def _save(path: Path, doc: tomlkit.TOMLDocument) -> None:
    """Validate the edited document against the schema, then write it."""
    text = tomlkit.dumps(doc)
    try:
        Config.model_validate(tomllib.loads(text), strict=True)
    except ValidationError as exc:
        problems = [
            Problem(
                path,
                None,
                display_key(tuple(e["loc"])),
                "error",
                str(e["msg"]),
                "correct the value passed to this command",
            )
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise ConfigError(f"{path}: refusing to write an invalid config.toml", problems) from None
    write_atomic(path, text)


def _table(values: Mapping[str, Any]) -> Table:
    """A tomlkit table from plain data: values first, then sub-tables, then lists of tables."""
    table = tomlkit.table()

    def rank(value: Any) -> int:
        if isinstance(value, Mapping):
            return 1
        if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            return 2
        return 0

    for key, value in sorted(values.items(), key=lambda kv: rank(kv[1])):
        if rank(value) == 1:
            table.add(key, _table(value))
        elif rank(value) == 2:
            aot = tomlkit.aot()
            for element in value:
                aot.append(_table(element))
            table.add(key, aot)
        else:
            table.add(key, value)
    return table


def add_runner(path: Path, runner_table: Mapping[str, Any]) -> None:
    """Append a ``[[runners]]`` entry (creating the file if needed), keeping the rest as is."""
    doc = _read(path, create=True)
    entry = _table(runner_table)
    entry.trivia.indent = "\n"  # a blank line before the new [[runners]]
    runners = doc.get("runners")
    if runners is None:
        aot = tomlkit.aot()
        aot.append(entry)
        doc.append("runners", aot)
    elif isinstance(runners, AoT):
        runners.append(entry)
    else:
        problem = Problem(
            path,
            None,
            "runners",
            "error",
            "runners is not a list of [[runners]] tables",
            "write each runner as a [[runners]] table",
        )
        raise ConfigError(f"{path}: cannot add a runner", [problem])
    _save(path, doc)


def remove_runner(path: Path, name: str) -> int:
    """Remove every ``[[runners]]`` entry called ``name``; returns how many were removed."""
    doc = _read(path, create=False)
    runners = doc.get("runners")
    entries = list(runners) if isinstance(runners, AoT) else []
    keep = [t for t in entries if t.get("name") != name]
    removed = len(entries) - len(keep)
    if not removed:
        names = ", ".join(f'"{t.get("name")}"' for t in entries if t.get("name")) or "none"
        problem = Problem(
            path,
            None,
            "runners.name",
            "error",
            f'no runner is named "{name}"',
            f"use one of the names in the file: {names}",
        )
        raise ConfigError(f"{path}: nothing to remove", [problem])
    assert isinstance(runners, AoT)
    for index in reversed(range(len(entries))):
        if entries[index].get("name") == name:
            del runners[index]
    if not keep:
        doc.remove("runners")
    _save(path, doc)
    return removed


def set_key(path: Path, key: Sequence[str | int], value: Any) -> None:
    """Set one value, e.g. ``("runners", 0, "kubernetes", "namespace")``; missing tables are created."""
    if not key or not isinstance(key[-1], str):
        raise ValueError("the key path must end with a key name")
    doc = _read(path, create=False)
    node: Container | Table | AoT = doc
    for index, part in enumerate(key[:-1]):
        if isinstance(part, int):
            if not isinstance(node, AoT) or not 0 <= part < len(node):
                shown = display_key(tuple(key[:index]))
                problem = Problem(
                    path,
                    None,
                    shown,
                    "error",
                    f"there is no entry #{part + 1} in {shown}",
                    "check the runner's position with `kuberunner config show`",
                )
                raise ConfigError(f"{path}: cannot set {display_key(tuple(key))}", [problem])
            node = node[part]
            continue
        assert not isinstance(node, AoT)
        child = node.get(part)
        if child is None:
            child = tomlkit.table()
            node.append(part, child)
            child = node[part]
        if not isinstance(child, Table | AoT):
            problem = Problem(
                path,
                None,
                display_key(tuple(key[: index + 1])),
                "error",
                "is a value, not a table",
                "choose a key inside a table",
            )
            raise ConfigError(f"{path}: cannot set {display_key(tuple(key))}", [problem])
        node = child
    assert not isinstance(node, AoT)
    last = key[-1]
    if last in node:
        node[last] = value
    else:
        node.append(last, value)
    _save(path, doc)
